/// A web login of the WWSF, mapped to IMS identities in the HSS (WWSF-3).
public struct WebAccount: Sendable, Hashable, Codable {
    public var username: String
    /// `pbkdf2-sha256$<iterations>$<salt b64url>$<hash b64url>`; never the password.
    public var passwordHash: String
    public var impi: String
    /// The IMPUs the account may register; empty = the IMPI's whole implicit set.
    public var impus: [String]
    /// Scenario 3 (WWSF-5): the account is served an IMPU from the pool `impi` owns.
    public var usesIMPUPool: Bool

    public init(
        username: String, passwordHash: String, impi: String, impus: [String] = [], usesIMPUPool: Bool = false
    ) {
        self.username = username
        self.passwordHash = passwordHash
        self.impi = impi
        self.impus = impus
        self.usesIMPUPool = usesIMPUPool
    }
}

/// A logged-in browser. Only the SHA-256 of the cookie value is stored, so a copy of the
/// database does not log anyone in.
public struct WebSession: Sendable, Hashable {
    public var idHash: String
    public var username: String
    public var csrfToken: String
    public var expiresAt: Int64

    public init(idHash: String, username: String, csrfToken: String, expiresAt: Int64) {
        self.idHash = idHash
        self.username = username
        self.csrfToken = csrfToken
        self.expiresAt = expiresAt
    }
}

/// One WAF signing key (ES256). A new key is published in the JWKS before it signs
/// (`usableFrom`), and an old one stays published until its last token expired (`retiredAt`
/// + token lifetime).
public struct SigningKeyRecord: Sendable, Hashable {
    public var kid: String
    /// The raw 32-byte P-256 private scalar.
    public var privateKey: [UInt8]
    public var createdAt: Int64
    public var usableFrom: Int64
    public var retiredAt: Int64?

    public init(kid: String, privateKey: [UInt8], createdAt: Int64, usableFrom: Int64, retiredAt: Int64? = nil) {
        self.kid = kid
        self.privateKey = privateKey
        self.createdAt = createdAt
        self.usableFrom = usableFrom
        self.retiredAt = retiredAt
    }
}

/// Revoked tokens: single tokens by `jti`, and every token of a subject issued before a time.
public struct RevocationList: Sendable, Hashable, Codable {
    public var tokenIDs: Set<String>
    /// subject → tokens with `iat` before this Unix time are revoked.
    public var subjects: [String: Int64]

    public init(tokenIDs: Set<String> = [], subjects: [String: Int64] = [:]) {
        self.tokenIDs = tokenIDs
        self.subjects = subjects
    }

    public func isRevoked(tokenID: String?, subject: String, issuedAt: Int64) -> Bool {
        if let tokenID, tokenIDs.contains(tokenID) { return true }
        if let before = subjects[subject], issuedAt <= before { return true }
        return false
    }
}
