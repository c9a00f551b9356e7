import Crypto
import Foundation
import Storage
import Synchronization
import Utilities

/// The WAF's ES256 signing keys (WAF-5). Keys live in the store so every WAF node and the
/// `webims waf rotate-key` command see the same ones. A rotated-in key is published in the
/// JWKS `publishAhead` seconds before it signs, so verifiers that cache the JWKS know it
/// before they meet it; a rotated-out key stays published until its last token expired.
public final class SigningKeyRing: Sendable {
    struct Key: Sendable {
        var record: SigningKeyRecord
        var privateKey: P256.Signing.PrivateKey
    }

    let store: any WebStore
    let tokenLifetimeLimit: Int64
    let keys = Mutex<[Key]>([])
    /// The JWKS document, serialized once per key change (deriving the public points and
    /// sorting JSON keys per request cost ~0.3 ms).
    let jwksDocument = Mutex<[UInt8]>(Array("{\"keys\":[]}".utf8))

    /// Loads the keys, creating the first one when there is none.
    public static func load(store: any WebStore, tokenLifetimeLimit: Int64, now: Int64) async throws -> SigningKeyRing {
        let ring = SigningKeyRing(store: store, tokenLifetimeLimit: tokenLifetimeLimit)
        try await ring.reload(now: now)
        if ring.keys.withLock({ $0.isEmpty }) {
            _ = try await ring.rotate(now: now, publishAhead: 0)
        }
        return ring
    }

    init(store: any WebStore, tokenLifetimeLimit: Int64) {
        self.store = store
        self.tokenLifetimeLimit = tokenLifetimeLimit
    }

    /// Re-reads the keys (another node or the CLI may have rotated) and drops keys whose
    /// tokens have all expired.
    public func reload(now: Int64) async throws {
        try await store.pruneSigningKeys(retiredBefore: now - tokenLifetimeLimit - 300)
        let loaded = try await store.signingKeys().compactMap { record -> Key? in
            guard let key = try? P256.Signing.PrivateKey(rawRepresentation: record.privateKey) else { return nil }
            return Key(record: record, privateKey: key)
        }
        keys.withLock { $0 = loaded }
        let document = (try? json(jwks())) ?? Array("{\"keys\":[]}".utf8)
        jwksDocument.withLock { $0 = document }
    }

    /// The serialized JWK Set, as served at /jwks.json.
    public func jwksBytes() -> [UInt8] { jwksDocument.withLock { $0 } }

    /// Adds a new key that signs from `now + publishAhead`; the others retire then. Returns its kid.
    public func rotate(now: Int64, publishAhead: Int64) async throws -> String {
        let key = P256.Signing.PrivateKey()
        let thumb = SHA256.hash(data: key.publicKey.x963Representation)
        let kid = "waf-" + base64URLEncode(Array(thumb.prefix(9)))
        let usable = now + publishAhead
        try await store.addSigningKey(
            SigningKeyRecord(
                kid: kid, privateKey: Array(key.rawRepresentation), createdAt: now, usableFrom: usable))
        try await store.retireSigningKeys(except: kid, at: usable)
        try await reload(now: now)
        return kid
    }

    /// The key that signs now: the newest one already usable.
    func current(now: Int64) -> Key? {
        keys.withLock { keys in
            keys.filter { $0.record.usableFrom <= now }.max { $0.record.usableFrom < $1.record.usableFrom }
        }
    }

    func publicKey(kid: String) -> P256.Signing.PublicKey? {
        keys.withLock { $0.first { $0.record.kid == kid }?.privateKey.publicKey }
    }

    /// Every published key by kid (for an in-process eP-CSCF).
    public func publicKeys() -> [String: P256.Signing.PublicKey] {
        Dictionary(
            keys.withLock { $0.map { ($0.record.kid, $0.privateKey.publicKey) } }, uniquingKeysWith: { a, _ in a })
    }

    /// RFC 7517 JWK Set of the published keys.
    public func jwks() -> [String: Any] {
        let entries: [[String: Any]] = keys.withLock { keys in
            keys.map { key in
                let point = Array(key.privateKey.publicKey.x963Representation)
                return [
                    "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": key.record.kid,
                    "x": base64URLEncode(Array(point[1..<33])), "y": base64URLEncode(Array(point[33..<65])),
                ]
            }
        }
        return ["keys": entries]
    }

    /// A compact JWS (RFC 7515) of `claims`, ES256, with `typ` at+jwt (RFC 9068 §2.1).
    func sign(claims: [String: Any], now: Int64) throws -> String {
        guard let key = current(now: now) else { throw WebAuthError.noSigningKey }
        let header: [String: Any] = ["alg": "ES256", "typ": "at+jwt", "kid": key.record.kid]
        let input = try base64URLEncode(jsonText(header)) + "." + base64URLEncode(jsonText(claims))
        let signature = try key.privateKey.signature(for: Array(input.utf8))
        return input + "." + base64URLEncode(Array(signature.rawRepresentation))
    }

    /// The claims of a token this WAF signed, if its signature holds (expiry not checked).
    func verifiedClaims(_ token: String) -> [String: Any]? {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard token.utf8.count <= 8_192, parts.count == 3,
            let headerBytes = base64URLDecode(String(parts[0])),
            let header = (try? JSONSerialization.jsonObject(with: Data(headerBytes))) as? [String: Any],
            header["alg"] as? String == "ES256", let kid = header["kid"] as? String, let key = publicKey(kid: kid),
            let signature = base64URLDecode(String(parts[2])), signature.count == 64,
            let ecdsa = try? P256.Signing.ECDSASignature(rawRepresentation: signature),
            key.isValidSignature(ecdsa, for: Array((parts[0] + "." + parts[1]).utf8)),
            let payload = base64URLDecode(String(parts[1])),
            let claims = (try? JSONSerialization.jsonObject(with: Data(payload))) as? [String: Any]
        else { return nil }
        return claims
    }
}

func json(_ object: Any) throws -> [UInt8] {
    // No .sortedKeys: sorting goes through ICU collation on Linux and costs more than the rest.
    Array(try JSONSerialization.data(withJSONObject: object, options: [.withoutEscapingSlashes]))
}

public enum WebAuthError: Error, CustomStringConvertible {
    case noSigningKey
    case unknownAccount(String)
    case badConfiguration(String)

    public var description: String {
        switch self {
        case .noSigningKey: "the WAF has no usable signing key"
        case .unknownAccount(let name): "no web account \(name)"
        case .badConfiguration(let text): text
        }
    }
}
