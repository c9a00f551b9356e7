import Crypto
import EPCSCF
import Foundation
import Utilities

/// A WAF for tests: mints tokens the way spec.md WAF-3 describes, and forged variants.
public struct TestWAF: Sendable {
    public static let issuer = "https://waf.ims.example.com"
    public static let audience = "https://epcscf.ims.example.com"
    /// The fixed "now" of the token tests.
    public static let t0 = Date(timeIntervalSince1970: 1_893_453_000)

    public init() {}

    public let key = P256.Signing.PrivateKey()
    public let kid = "waf-test-1"

    public var trusted: TrustedIssuer { TrustedIssuer(issuer: Self.issuer, keys: [kid: key.publicKey]) }

    public var claims: [String: Any] {
        [
            "iss": Self.issuer, "sub": "alice_private@ims.example.com", "aud": Self.audience,
            "exp": Self.t0.timeIntervalSince1970 + 3600, "iat": Self.t0.timeIntervalSince1970 - 10,
            "jti": UUID().uuidString, "client_id": "wwsf.ims.example.com", "scope": "ims-register",
            "impi": "alice_private@ims.example.com", "impu": ["sip:alice@ims.example.com"],
            "wwsf": "wwsf.ims.example.com",
        ]
    }

    public func token(
        header: [String: Any] = [:], claims changes: [String: Any?] = [:],
        signWith other: P256.Signing.PrivateKey? = nil
    )
        throws -> String
    {
        var h: [String: Any] = ["alg": "ES256", "typ": "at+jwt", "kid": kid]
        for (k, v) in header { h[k] = v }
        var c = claims
        for (k, v) in changes { c[k] = v ?? nil }
        for (k, v) in changes where v == nil { c.removeValue(forKey: k) }
        let input = try part(h) + "." + part(c)
        let signature = try (other ?? key).signature(for: Array(input.utf8))
        return input + "." + base64URLEncode(Array(signature.rawRepresentation))
    }

    public func part(_ object: [String: Any]) throws -> String {
        base64URLEncode(Array(try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])))
    }
}
