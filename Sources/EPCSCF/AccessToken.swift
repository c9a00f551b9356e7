import Crypto
import Foundation
import SIPAuth
import SIPCore
import Synchronization
import Utilities

/// What the eP-CSCF takes from a WAF access token (spec.md WAF-2, WAF-3; RFC 9068).
public struct AccessTokenClaims: Sendable, Hashable {
    public var issuer: String
    public var subject: String
    public var audience: [String]
    public var expires: Date
    public var notBefore: Date?
    public var issuedAt: Date?
    public var tokenID: String?
    public var clientID: String?
    public var scopes: [String]
    public var impi: String
    public var impus: [String] {
        didSet { canonicalIMPUs = impus.map(canonicalPublicIdentity) }
    }
    public var wwsf: String
    /// `impus` in `AnyURI.publicIdentity` form, worked out once per token rather than on
    /// every REGISTER that presents it.
    public private(set) var canonicalIMPUs: [String]

    public init(
        issuer: String, subject: String, audience: [String], expires: Date, notBefore: Date?, issuedAt: Date?,
        tokenID: String?, clientID: String?, scopes: [String], impi: String, impus: [String], wwsf: String
    ) {
        self.issuer = issuer
        self.subject = subject
        self.audience = audience
        self.expires = expires
        self.notBefore = notBefore
        self.issuedAt = issuedAt
        self.tokenID = tokenID
        self.clientID = clientID
        self.scopes = scopes
        self.impi = impi
        self.impus = impus
        self.wwsf = wwsf
        // Usually already canonical: then the one array serves both (a cached token's memory).
        let canonical = impus.map(canonicalPublicIdentity)
        self.canonicalIMPUs = canonical == impus ? impus : canonical
    }
}

/// Why a token was refused, and the SIP answer it earns (EPC-18, RFC 6750 §3.1).
public enum TokenError: Error, Sendable, Hashable {
    case malformed
    case wrongType
    case algorithmNotAllowed
    case unknownIssuer
    case unknownKey
    case badSignature
    case wrongAudience
    case expired
    case notYetValid
    case missingClaim(String)
    case insufficientScope
    case revoked

    /// 403 for a valid token without the scope (insufficient_scope); 401 invalid_token else.
    public var statusCode: Int { self == .insufficientScope ? 403 : 401 }
}

/// The public keys of one trusted WAF, by `kid`.
public struct TrustedIssuer: Sendable {
    public var issuer: String
    public var keys: [String: P256.Signing.PublicKey]

    public init(issuer: String, keys: [String: P256.Signing.PublicKey]) {
        self.issuer = issuer
        self.keys = keys
    }

    /// Reads the EC P-256 keys of a JWKS document (RFC 7517); other keys are skipped.
    public static func keys(fromJWKS data: Data) -> [String: P256.Signing.PublicKey] {
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let keys = object["keys"] as? [[String: Any]]
        else { return [:] }
        var result: [String: P256.Signing.PublicKey] = [:]
        for jwk in keys {
            guard jwk["kty"] as? String == "EC", jwk["crv"] as? String == "P-256", let kid = jwk["kid"] as? String,
                let x = (jwk["x"] as? String).flatMap(base64URLDecode),
                let y = (jwk["y"] as? String).flatMap(base64URLDecode),
                x.count == 32, y.count == 32,
                let key = try? P256.Signing.PublicKey(x963Representation: [0x04] + x + y)
            else { continue }
            if let use = jwk["use"] as? String, use != "sig" { continue }
            result[kid] = key
        }
        return result
    }
}

/// Validates RFC 9068 JWT access tokens as EPC-16 orders: `typ` at+jwt, ES256 only (never
/// `none`, never an HMAC — so a public key can never be used as an HMAC secret), a key
/// chosen by `kid` from the configured WAFs only (`jku`, `jwk`, `x5u` are ignored), exact
/// `iss`, our `aud`, `exp`/`nbf`/`iat` with bounded skew, the registration scope, and the
/// project claims `impi`, `impu`, `wwsf`. A validated token is cached by its SHA-256 until
/// it expires, so a refresh with the same token skips the signature check.
public final class TokenValidator: Sendable {
    /// Replaced whole when a WAF's JWKS changes (rotation), so a check sees one key set.
    let issuers: Mutex<[String: TrustedIssuer]>
    /// Revoked token ids, and subjects whose tokens issued up to a time are revoked.
    let revoked = Mutex<(tokenIDs: Set<String>, subjects: [String: Int64])>(([], [:]))
    let audience: String
    let requiredScope: String
    let clockSkew: TimeInterval
    let clock: @Sendable () -> Date
    /// Validated tokens by their SHA-256: bounded, and each re-checked at least once an hour.
    let cache: Mutex<AgedTable<SHA256Digest, AccessTokenClaims>>
    /// The claims every token of a WAF repeats (`wwsf`, `client_id`, `aud`, `scope`), held
    /// once: a cached token keeps one flow's worth of state, so seven copies of the same
    /// texts were ~40 % of it (scripts/heap-profile).
    let shared = Mutex(SharedTexts())

    public init(
        issuers: [TrustedIssuer], audience: String, requiredScope: String = "ims-register",
        clockSkew: TimeInterval = 60,
        cacheLimit: Int = 100_000, clock: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.issuers = Mutex(Dictionary(issuers.map { ($0.issuer, $0) }, uniquingKeysWith: { a, _ in a }))
        self.audience = audience
        self.requiredScope = requiredScope
        self.clockSkew = clockSkew
        self.cache = Mutex(AgedTable(capacity: cacheLimit, lifetime: 3600))
        self.clock = clock
    }

    /// Sets the keys of one WAF (after its JWKS was fetched or its key ring reloaded).
    public func setKeys(_ keys: [String: P256.Signing.PublicKey], issuer: String) {
        issuers.withLock { $0[issuer] = TrustedIssuer(issuer: issuer, keys: keys) }
    }

    /// The kids known for a WAF (to decide whether its JWKS must be fetched again).
    public func knownKeyIDs(issuer: String) -> Set<String> {
        issuers.withLock { Set($0[issuer]?.keys.keys ?? [:].keys) }
    }

    /// The configured issuer of a token whose `kid` we do not know yet (before any
    /// signature check): its keys may have rotated, so they are worth fetching again.
    public func issuerMissingKey(for token: String) -> String? {
        guard let jws = CompactJWS(token), let kid = jws.header.kid, let issuer = jws.claims.iss else { return nil }
        return issuers.withLock { $0[issuer].map { $0.keys[kid] == nil } ?? false } ? issuer : nil
    }

    /// Replaces the revocation list; cached tokens are checked against it too.
    public func setRevocations(tokenIDs: Set<String>, subjects: [String: Int64]) {
        revoked.withLock { $0 = (tokenIDs, subjects) }
    }

    public func validate(_ token: String) -> Result<AccessTokenClaims, TokenError> {
        let now = clock()
        var text = token
        let digest = text.withUTF8 { SHA256.hash(data: UnsafeRawBufferPointer($0)) }
        let seconds = now.timeIntervalSince1970
        if let cached = cache.withLock({ $0.value(for: digest, now: seconds) }) {
            if isRevoked(cached) { return .failure(.revoked) }
            if cached.expires.addingTimeInterval(clockSkew) > now { return .success(cached) }
            _ = cache.withLock { $0.removeValue(for: digest) }
            return .failure(.expired)
        }
        let result = verify(token, now: now)
        if case .success(let claims) = result {
            if isRevoked(claims) { return .failure(.revoked) }
            _ = cache.withLock { $0.set(digest, claims, now: seconds) }
        }
        return result
    }

    func isRevoked(_ claims: AccessTokenClaims) -> Bool {
        isRevoked(
            tokenID: claims.tokenID, subject: claims.subject,
            issuedAt: claims.issuedAt.map { Int64($0.timeIntervalSince1970) })
    }

    func isRevoked(tokenID: String?, subject: String, issuedAt: Int64?) -> Bool {
        revoked.withLock { list in
            if let tokenID, list.tokenIDs.contains(tokenID) { return true }
            if let before = list.subjects[subject] { return (issuedAt ?? Int64.min) <= before }
            return false
        }
    }

    /// Whether a token a flow registered with still stands now: not expired, not revoked.
    public func stillValid(_ token: TokenCredential) -> Bool {
        // No skew here: the registration was capped at the token's end by this clock (EPC-20).
        guard Double(token.expires) > clock().timeIntervalSince1970 else { return false }
        return !isRevoked(tokenID: token.tokenID, subject: token.subject, issuedAt: token.issuedAt)
    }

    func verify(_ token: String, now: Date) -> Result<AccessTokenClaims, TokenError> {
        guard let jws = CompactJWS(token) else { return .failure(.malformed) }
        let (header, claims) = (jws.header, jws.claims)
        // 1. typ (RFC 9068 §4).
        guard let typ = header.typ,
            equalsIgnoringASCIICase(typ, "at+jwt") || equalsIgnoringASCIICase(typ, "application/at+jwt")
        else {
            return .failure(.wrongType)
        }
        // 2. alg: ES256 only.
        guard header.alg == "ES256" else { return .failure(.algorithmNotAllowed) }
        // 3. iss: exactly a configured WAF; the key from that WAF's keys only.
        guard let issuer = claims.iss, let trusted = issuers.withLock({ $0[issuer] }) else {
            return .failure(.unknownIssuer)
        }
        guard let kid = header.kid, let key = trusted.keys[kid] else { return .failure(.unknownKey) }
        // 5. signature over the first two parts as sent.
        guard jws.signature.count == 64, let ecdsa = try? P256.Signing.ECDSASignature(rawRepresentation: jws.signature),
            key.isValidSignature(ecdsa, for: jws.signingInput)
        else { return .failure(.badSignature) }
        // 4. aud: a string or an array containing us.
        let audience = claims.aud ?? []
        guard audience.contains(self.audience) else { return .failure(.wrongAudience) }
        // 6. time claims, with bounded skew.
        guard let exp = claims.exp.map(Date.init(timeIntervalSince1970:)) else { return .failure(.missingClaim("exp")) }
        guard exp.addingTimeInterval(clockSkew) > now else { return .failure(.expired) }
        let nbf = claims.nbf.map(Date.init(timeIntervalSince1970:))
        if let nbf, nbf.addingTimeInterval(-clockSkew) > now { return .failure(.notYetValid) }
        let iat = claims.iat.map(Date.init(timeIntervalSince1970:))
        if let iat, iat.addingTimeInterval(-clockSkew) > now { return .failure(.notYetValid) }
        // 8. the claims the eP-CSCF needs (checked before scope: without them it is malformed).
        guard let impi = claims.impi, !impi.isEmpty else { return .failure(.missingClaim("impi")) }
        let impus = claims.impu ?? []
        guard !impus.isEmpty else { return .failure(.missingClaim("impu")) }
        guard let wwsf = claims.wwsf, !wwsf.isEmpty else { return .failure(.missingClaim("wwsf")) }
        // 7. scope.
        let scopes = claims.scope?.split(separator: " ").map(String.init) ?? []
        guard scopes.contains(requiredScope) else { return .failure(.insufficientScope) }
        let subject = claims.sub.map { $0 == impi ? impi : $0 } ?? impi
        let (sharedAudience, sharedScopes, sharedWWSF, clientID) = shared.withLock { shared in
            (shared.list(audience), shared.list(scopes), shared.text(wwsf), claims.clientID.map { shared.text($0) })
        }
        return .success(
            AccessTokenClaims(
                issuer: trusted.issuer, subject: subject, audience: sharedAudience, expires: exp, notBefore: nbf,
                issuedAt: iat, tokenID: claims.jti, clientID: clientID, scopes: sharedScopes, impi: impi, impus: impus,
                wwsf: sharedWWSF))
    }
}

/// A JWS in compact serialization (RFC 7515 §7.1): header and claims decoded, the signing
/// input as sent and the signature. The parts are found by byte: `String.split` walks
/// grapheme clusters, and cost twice the signature check on a 1 KB token.
struct CompactJWS {
    var header: JOSEHeader
    var claims: TokenClaims
    var signingInput: [UInt8]
    var signature: [UInt8]

    /// nil unless there are exactly three base64url parts, the first two JSON objects.
    init?(_ token: String) {
        var text = token
        guard
            let parts = text.withUTF8({ bytes -> (signingInput: [UInt8], [UInt8], [UInt8], [UInt8])? in
                guard bytes.count <= 8_192, let firstDot = bytes.firstIndex(of: UInt8(ascii: ".")),
                    let secondDot = bytes[(firstDot + 1)...].firstIndex(of: UInt8(ascii: ".")),
                    !bytes[(secondDot + 1)...].contains(UInt8(ascii: ".")),
                    let header = base64URLDecode(UnsafeBufferPointer(rebasing: bytes[..<firstDot])),
                    let claims = base64URLDecode(UnsafeBufferPointer(rebasing: bytes[(firstDot + 1)..<secondDot])),
                    let signature = base64URLDecode(UnsafeBufferPointer(rebasing: bytes[(secondDot + 1)...]))
                else { return nil }
                return (Array(bytes[..<secondDot]), header, claims, signature)
            }),
            let header = (try? JSONSerialization.jsonObject(with: Data(parts.1))) as? [String: Any],
            let claims = (try? JSONSerialization.jsonObject(with: Data(parts.2))) as? [String: Any]
        else { return nil }
        self.header = JOSEHeader(header)
        self.claims = TokenClaims(claims)
        self.signingInput = parts.signingInput
        self.signature = parts.3
    }
}

/// The JOSE header fields the eP-CSCF reads. A field of another JSON type reads as absent,
/// so each check answers for it (`typ: 1` is a wrong type, not a malformed token).
struct JOSEHeader {
    var typ, alg, kid: String?

    init(_ object: [String: Any]) {
        (typ, alg, kid) = (object["typ"] as? String, object["alg"] as? String, object["kid"] as? String)
    }
}

/// The claims of an RFC 9068 access token with the project's `impi`, `impu`, `wwsf`
/// (spec.md WAF-3). `aud` and `impu` may be one string or an array of strings; times are
/// JSON numbers (RFC 7519 NumericDate, integer or not).
struct TokenClaims {
    var iss, sub, jti, clientID, scope, impi, wwsf: String?
    var aud, impu: [String]?
    var exp, nbf, iat: Double?

    init(_ object: [String: Any]) {
        func texts(_ key: String) -> [String]? {
            if let one = object[key] as? String { return [one] }
            return object[key] as? [String]
        }
        func number(_ key: String) -> Double? { (object[key] as? NSNumber)?.doubleValue }
        iss = object["iss"] as? String
        sub = object["sub"] as? String
        jti = object["jti"] as? String
        clientID = object["client_id"] as? String
        scope = object["scope"] as? String
        impi = object["impi"] as? String
        wwsf = object["wwsf"] as? String
        (aud, impu) = (texts("aud"), texts("impu"))
        (exp, nbf, iat) = (number("exp"), number("nbf"), number("iat"))
    }
}
