import Crypto
import Foundation
import Storage
import Synchronization
import Utilities

/// An OAuth client of the WAF (RFC 6749 §2): the co-located WWSF, or another web
/// application. A confidential client has a secret (stored as its SHA-256).
public struct OAuthClient: Sendable, Codable, Hashable {
    public var id: String
    /// Hex SHA-256 of the client secret; nil for a public client (PKCE only).
    public var secretHash: String?
    /// Exact redirect URIs (RFC 9700 §2.1: exact string match).
    public var redirectURIs: [String]
    /// The WWSF identity put in the tokens issued to this client (`wwsf` claim, WAF-3).
    public var wwsf: String

    public init(id: String, secret: String? = nil, redirectURIs: [String], wwsf: String) {
        self.id = id
        self.secretHash = secret.map(AccountService.hash)
        self.redirectURIs = redirectURIs
        self.wwsf = wwsf
    }
}

public struct WAFConfiguration: Sendable {
    /// `iss`, an https origin (RFC 8414 §2).
    public var issuer: String
    /// `aud`: the eP-CSCF's identifier.
    public var audience: String
    public var tokenLifetime: Int64
    public var scope: String
    public var clients: [OAuthClient]
    /// How long an authorization code lives (RFC 6749 §4.1.2: short, e.g. 60 s).
    public var codeLifetime: Int64 = 60

    public init(
        issuer: String, audience: String, tokenLifetime: Int64 = 3_600, scope: String = "ims-register",
        clients: [OAuthClient]
    ) {
        self.issuer = issuer
        self.audience = audience
        self.tokenLifetime = tokenLifetime
        self.scope = scope
        self.clients = clients
    }
}

/// A token as the WAF issued it.
public struct IssuedToken: Sendable {
    public var token: String
    public var tokenID: String
    public var subject: String
    public var impi: String
    public var impus: [String]
    public var issuedAt: Int64
    public var expiresAt: Int64
}

/// An OAuth error answer (RFC 6749 §5.2 / §4.1.2.1).
public struct OAuthError: Error, Sendable, Equatable {
    public var status: Int
    public var code: String
    public var description: String

    public init(_ status: Int, _ code: String, _ description: String) {
        self.status = status
        self.code = code
        self.description = description
    }
}

/// A checked `/authorize` request: client and redirect known, PKCE S256 present.
public struct AuthorizationRequest: Sendable, Hashable {
    public var client: OAuthClient
    public var redirectURI: String
    public var codeChallenge: String
    public var state: String?
    public var scope: String
}

/// The WAF: RFC 9068 JWT access tokens, authorization code + PKCE (RFC 7636, S256 only),
/// RFC 7662 introspection, RFC 7009 revocation, RFC 8414 metadata.
public final class AuthorizationServer: Sendable {
    struct PendingCode: Sendable {
        var request: AuthorizationRequest
        var username: String
        var expiresAt: Int64
        /// Set once redeemed: a second use revokes what the first issued (RFC 6749 §4.1.2).
        var issuedTokenID: String?
        var issuedExpiry: Int64 = 0
    }

    public let configuration: WAFConfiguration
    public let keys: SigningKeyRing
    public let accounts: AccountService
    let codes: Mutex<AgedTable<String, PendingCode>>
    /// RFC 8414 metadata, serialized once.
    public let metadataBytes: [UInt8]

    public init(configuration: WAFConfiguration, keys: SigningKeyRing, accounts: AccountService) {
        self.configuration = configuration
        self.keys = keys
        self.accounts = accounts
        // Codes stay at least their lifetime, so a replay within it is seen (and revoked).
        self.codes = Mutex(AgedTable(capacity: 20_000, lifetime: Double(max(configuration.codeLifetime, 1))))
        self.metadataBytes = (try? json(Self.metadata(configuration))) ?? []
    }

    // MARK: Issuing

    /// Signs a token for an account (`ttl` capped at the configured lifetime).
    public func issueToken(for account: WebAccount, client: OAuthClient, ttl: Int64? = nil, now: Int64) async throws
        -> IssuedToken
    {
        let (impi, impus) = try await accounts.identities(of: account)
        let lifetime = max(1, min(ttl ?? configuration.tokenLifetime, configuration.tokenLifetime))
        let jti = UUID().uuidString.lowercased()
        // `sub` = IMPI (spec.md WAF-3); for a pool account the assigned IMPU, so revoking one
        // pool user's tokens spares the others.
        let subject = account.usesIMPUPool ? (impus.first ?? impi) : impi
        let claims: [String: Any] = [
            "iss": configuration.issuer, "sub": subject, "aud": configuration.audience,
            "exp": now + lifetime, "iat": now, "nbf": now, "jti": jti, "client_id": client.id,
            "scope": configuration.scope, "impi": impi, "impu": impus, "wwsf": client.wwsf,
            "waf": URLComponents(string: configuration.issuer)?.host ?? configuration.issuer,
        ]
        let token = try keys.sign(claims: claims, now: now)
        return IssuedToken(
            token: token, tokenID: jti, subject: subject, impi: impi, impus: impus, issuedAt: now,
            expiresAt: now + lifetime)
    }

    public func client(id: String) -> OAuthClient? { configuration.clients.first { $0.id == id } }

    // MARK: Authorization code flow

    /// Checks the parameters of `/authorize`. Errors about the client or redirect URI must be
    /// shown to the user, never redirected (RFC 6749 §4.1.2.1).
    public func checkAuthorization(_ p: [String: String]) -> Result<AuthorizationRequest, OAuthError> {
        guard let clientID = p["client_id"], let client = client(id: clientID) else {
            return .failure(OAuthError(400, "invalid_client", "unknown client_id"))
        }
        guard let redirect = p["redirect_uri"], client.redirectURIs.contains(redirect) else {
            return .failure(OAuthError(400, "invalid_request", "redirect_uri is not registered for this client"))
        }
        guard p["response_type"] == "code" else {
            return .failure(OAuthError(302, "unsupported_response_type", "only response_type=code"))
        }
        guard p["code_challenge_method"] == "S256", let challenge = p["code_challenge"],
            challenge.utf8.count == 43, base64URLDecode(challenge)?.count == 32
        else {
            return .failure(OAuthError(302, "invalid_request", "PKCE with code_challenge_method=S256 is required"))
        }
        let scope = p["scope"] ?? configuration.scope
        guard scope.split(separator: " ").allSatisfy({ $0 == configuration.scope }) else {
            return .failure(OAuthError(302, "invalid_scope", "only scope \(configuration.scope)"))
        }
        return .success(
            AuthorizationRequest(
                client: client, redirectURI: redirect, codeChallenge: challenge, state: p["state"],
                scope: configuration.scope))
    }

    /// A one-time code for a logged-in user.
    public func makeCode(for request: AuthorizationRequest, username: String, now: Int64) -> String {
        let code = randomSecret()
        codes.withLock { codes in
            _ = codes.set(
                code,
                PendingCode(request: request, username: username, expiresAt: now + configuration.codeLifetime),
                now: Double(now))
        }
        return code
    }

    /// The `/token` endpoint (RFC 6749 §4.1.3, RFC 7636 §4.6).
    public func exchange(_ p: [String: String], clientCredentials: (id: String, secret: String?)?, now: Int64)
        async -> Result<[String: Any], OAuthError>
    {
        guard p["grant_type"] == "authorization_code" else {
            return .failure(OAuthError(400, "unsupported_grant_type", "only authorization_code"))
        }
        let client: OAuthClient
        switch authenticateClient(p, clientCredentials) {
        case .success(let c): client = c
        case .failure(let e): return .failure(e)
        }
        guard let code = p["code"], let verifier = p["code_verifier"] else {
            return .failure(OAuthError(400, "invalid_request", "code and code_verifier are required"))
        }
        let pending = codes.withLock { $0.value(for: code, now: Double(now)) }
        guard let pending, pending.expiresAt > now, pending.request.client.id == client.id else {
            return .failure(OAuthError(400, "invalid_grant", "unknown or expired code"))
        }
        if let used = pending.issuedTokenID {
            // A replayed code: revoke what it issued.
            try? await accounts.store.revokeToken(id: used, expiresAt: pending.issuedExpiry)
            return .failure(OAuthError(400, "invalid_grant", "code already used"))
        }
        guard p["redirect_uri"] == pending.request.redirectURI else {
            return .failure(OAuthError(400, "invalid_grant", "redirect_uri differs from the authorization request"))
        }
        let computed = base64URLEncode(Array(SHA256.hash(data: Array(verifier.utf8))))
        guard (43...128).contains(verifier.utf8.count),
            constantTimeEqual(Array(computed.utf8), Array(pending.request.codeChallenge.utf8))
        else {
            return .failure(OAuthError(400, "invalid_grant", "code_verifier does not match"))
        }
        // Mark used before issuing, so two concurrent redemptions cannot both win.
        let won = codes.withLock { codes -> Bool in
            guard var entry = codes.value(for: code, now: Double(now)), entry.issuedTokenID == nil else { return false }
            entry.issuedTokenID = ""
            codes.set(code, entry, now: Double(now))
            return true
        }
        guard won else { return .failure(OAuthError(400, "invalid_grant", "code already used")) }
        guard let account = try? await accounts.store.account(username: pending.username),
            let issued = try? await issueToken(for: account, client: client, now: now)
        else { return .failure(OAuthError(400, "invalid_grant", "the account is gone")) }
        codes.withLock { codes in
            guard var entry = codes.value(for: code, now: Double(now)) else { return }
            entry.issuedTokenID = issued.tokenID
            entry.issuedExpiry = issued.expiresAt
            codes.set(code, entry, now: Double(now))
        }
        return .success([
            "access_token": issued.token, "token_type": "Bearer", "expires_in": issued.expiresAt - now,
            "scope": configuration.scope, "impi": issued.impi, "impu": issued.impus,
        ])
    }

    /// Client authentication (RFC 6749 §2.3.1): HTTP Basic or form secret for confidential
    /// clients; a public client only names itself.
    func authenticateClient(_ p: [String: String], _ credentials: (id: String, secret: String?)?)
        -> Result<OAuthClient, OAuthError>
    {
        let id = credentials?.id ?? p["client_id"]
        let secret = credentials?.secret ?? p["client_secret"]
        guard let id, let client = client(id: id) else {
            return .failure(OAuthError(401, "invalid_client", "unknown client"))
        }
        if let expected = client.secretHash {
            guard let secret,
                constantTimeEqual(Array(AccountService.hash(secret).utf8), Array(expected.utf8))
            else { return .failure(OAuthError(401, "invalid_client", "client authentication failed")) }
        }
        return .success(client)
    }

    // MARK: Introspection and revocation

    /// RFC 7662 §2.2. Only confidential clients may ask.
    public func introspect(_ token: String, clientCredentials: (id: String, secret: String?)?, now: Int64) async
        -> Result<[String: Any], OAuthError>
    {
        switch authenticateClient([:], clientCredentials) {
        case .failure(let e): return .failure(e)
        case .success(let client) where client.secretHash == nil:
            return .failure(OAuthError(401, "invalid_client", "introspection needs a confidential client"))
        case .success: break
        }
        guard let claims = keys.verifiedClaims(token), claims["iss"] as? String == configuration.issuer,
            let exp = (claims["exp"] as? NSNumber)?.int64Value, exp > now,
            let subject = claims["sub"] as? String
        else { return .success(["active": false]) }
        let iat = (claims["iat"] as? NSNumber)?.int64Value ?? 0
        let revoked = (try? await accounts.store.revocations(now: now)) ?? RevocationList()
        if revoked.isRevoked(tokenID: claims["jti"] as? String, subject: subject, issuedAt: iat) {
            return .success(["active": false])
        }
        var answer = claims
        answer["active"] = true
        answer["token_type"] = "Bearer"
        return .success(answer)
    }

    /// RFC 7009: revokes a token this WAF issued (unknown tokens are not an error). §2.1:
    /// only the client the token was issued to may revoke it.
    public func revoke(_ token: String, clientCredentials: (id: String, secret: String?)?) async -> OAuthError? {
        let client: OAuthClient
        switch authenticateClient([:], clientCredentials) {
        case .failure(let e): return e
        case .success(let c): client = c
        }
        guard let claims = keys.verifiedClaims(token), let jti = claims["jti"] as? String else { return nil }
        guard claims["client_id"] as? String == client.id else {
            return OAuthError(400, "unauthorized_client", "the token was not issued to this client")
        }
        let exp = (claims["exp"] as? NSNumber)?.int64Value ?? 0
        try? await accounts.store.revokeToken(id: jti, expiresAt: exp)
        return nil
    }

    // MARK: Metadata

    /// RFC 8414 authorization server metadata.
    static func metadata(_ configuration: WAFConfiguration) -> [String: Any] {
        let base = configuration.issuer
        return [
            "issuer": base,
            "authorization_endpoint": base + "/authorize",
            "token_endpoint": base + "/token",
            "jwks_uri": base + "/jwks.json",
            "introspection_endpoint": base + "/introspect",
            "revocation_endpoint": base + "/revoke",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "scopes_supported": [configuration.scope],
            "authorization_response_iss_parameter_supported": true,
            "token_endpoint_auth_signing_alg_values_supported": ["ES256"],
        ]
    }
}
