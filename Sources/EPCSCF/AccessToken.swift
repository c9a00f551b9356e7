import Crypto
import Foundation
import SIPAuth
import SIPCore
import Synchronization

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
        self.canonicalIMPUs = impus.map(canonicalPublicIdentity)
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
    let cache = Mutex<[SHA256Digest: AccessTokenClaims]>([:])
    let cacheLimit: Int

    public init(
        issuers: [TrustedIssuer], audience: String, requiredScope: String = "ims-register",
        clockSkew: TimeInterval = 60,
        cacheLimit: Int = 100_000, clock: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.issuers = Mutex(Dictionary(issuers.map { ($0.issuer, $0) }, uniquingKeysWith: { a, _ in a }))
        self.audience = audience
        self.requiredScope = requiredScope
        self.clockSkew = clockSkew
        self.cacheLimit = cacheLimit
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
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard token.utf8.count <= 8_192, parts.count == 3, let headerBytes = base64URLDecode(String(parts[0])),
            let payloadBytes = base64URLDecode(String(parts[1])),
            let header = (try? JSONSerialization.jsonObject(with: Data(headerBytes))) as? [String: Any],
            let claims = (try? JSONSerialization.jsonObject(with: Data(payloadBytes))) as? [String: Any],
            let kid = header["kid"] as? String, let issuer = claims["iss"] as? String
        else { return nil }
        return issuers.withLock { $0[issuer].map { $0.keys[kid] == nil } ?? false } ? issuer : nil
    }

    /// Replaces the revocation list; cached tokens are checked against it too.
    public func setRevocations(tokenIDs: Set<String>, subjects: [String: Int64]) {
        revoked.withLock { $0 = (tokenIDs, subjects) }
    }

    public func validate(_ token: String) -> Result<AccessTokenClaims, TokenError> {
        let now = clock()
        let digest = SHA256.hash(data: Array(token.utf8))
        if let cached = cache.withLock({ $0[digest] }) {
            if isRevoked(cached) { return .failure(.revoked) }
            if cached.expires.addingTimeInterval(clockSkew) > now { return .success(cached) }
            _ = cache.withLock { $0.removeValue(forKey: digest) }
            return .failure(.expired)
        }
        let result = verify(token, now: now)
        if case .success(let claims) = result {
            if isRevoked(claims) { return .failure(.revoked) }
            cache.withLock { table in
                if table.count >= cacheLimit { table = table.filter { $0.value.expires > now } }
                if table.count < cacheLimit { table[digest] = claims }
            }
        }
        return result
    }

    func isRevoked(_ claims: AccessTokenClaims) -> Bool {
        revoked.withLock { list in
            if let id = claims.tokenID, list.tokenIDs.contains(id) { return true }
            if let before = list.subjects[claims.subject] {
                return Int64((claims.issuedAt ?? .distantPast).timeIntervalSince1970) <= before
            }
            return false
        }
    }

    func verify(_ token: String, now: Date) -> Result<AccessTokenClaims, TokenError> {
        guard token.utf8.count <= 8_192 else { return .failure(.malformed) }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let headerBytes = base64URLDecode(String(parts[0])),
            let payloadBytes = base64URLDecode(String(parts[1])), let signature = base64URLDecode(String(parts[2])),
            let header = (try? JSONSerialization.jsonObject(with: Data(headerBytes))) as? [String: Any],
            let claims = (try? JSONSerialization.jsonObject(with: Data(payloadBytes))) as? [String: Any]
        else { return .failure(.malformed) }
        // 1. typ (RFC 9068 §4).
        guard let typ = header["typ"] as? String, ["at+jwt", "application/at+jwt"].contains(typ.lowercased()) else {
            return .failure(.wrongType)
        }
        // 2. alg: ES256 only.
        guard header["alg"] as? String == "ES256" else { return .failure(.algorithmNotAllowed) }
        // 3. iss: exactly a configured WAF; the key from that WAF's keys only.
        guard let issuer = claims["iss"] as? String, let trusted = issuers.withLock({ $0[issuer] }) else {
            return .failure(.unknownIssuer)
        }
        guard let kid = header["kid"] as? String, let key = trusted.keys[kid] else { return .failure(.unknownKey) }
        // 5. signature over the first two parts as sent.
        guard signature.count == 64, let ecdsa = try? P256.Signing.ECDSASignature(rawRepresentation: signature),
            key.isValidSignature(ecdsa, for: Array((parts[0] + "." + parts[1]).utf8))
        else { return .failure(.badSignature) }
        // 4. aud: a string or an array containing us.
        let audience: [String]
        if let single = claims["aud"] as? String {
            audience = [single]
        } else {
            audience = claims["aud"] as? [String] ?? []
        }
        guard audience.contains(self.audience) else { return .failure(.wrongAudience) }
        // 6. time claims, with bounded skew.
        guard let exp = numericDate(claims["exp"]) else { return .failure(.missingClaim("exp")) }
        guard exp.addingTimeInterval(clockSkew) > now else { return .failure(.expired) }
        let nbf = numericDate(claims["nbf"])
        if let nbf, nbf.addingTimeInterval(-clockSkew) > now { return .failure(.notYetValid) }
        let iat = numericDate(claims["iat"])
        if let iat, iat.addingTimeInterval(-clockSkew) > now { return .failure(.notYetValid) }
        // 8. the claims the eP-CSCF needs (checked before scope: without them it is malformed).
        guard let impi = claims["impi"] as? String, !impi.isEmpty else { return .failure(.missingClaim("impi")) }
        let impus: [String]
        if let single = claims["impu"] as? String {
            impus = [single]
        } else {
            impus = (claims["impu"] as? [String]) ?? []
        }
        guard !impus.isEmpty else { return .failure(.missingClaim("impu")) }
        guard let wwsf = claims["wwsf"] as? String, !wwsf.isEmpty else { return .failure(.missingClaim("wwsf")) }
        // 7. scope.
        let scopes = (claims["scope"] as? String)?.split(separator: " ").map(String.init) ?? []
        guard scopes.contains(requiredScope) else { return .failure(.insufficientScope) }
        return .success(
            AccessTokenClaims(
                issuer: issuer, subject: claims["sub"] as? String ?? impi, audience: audience, expires: exp,
                notBefore: nbf,
                issuedAt: iat, tokenID: claims["jti"] as? String, clientID: claims["client_id"] as? String,
                scopes: scopes,
                impi: impi, impus: impus, wwsf: wwsf))
    }
}

/// RFC 7519 NumericDate: seconds since 1970, integer or not.
func numericDate(_ value: Any?) -> Date? {
    if let n = value as? NSNumber { return Date(timeIntervalSince1970: n.doubleValue) }
    return nil
}
