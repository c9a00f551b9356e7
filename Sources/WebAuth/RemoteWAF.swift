import Crypto
import Foundation
import HTTPSClient
import NIOSSL
import Synchronization
import Utilities

/// A WAF at another origin (issue 5 §4, a third-party WAF): the WWSF is its OAuth client
/// and gets each session's token by the authorization-code flow with PKCE — the browser
/// goes to the WAF's `/authorize` (the user signs in there), comes back to the WWSF's
/// `/oauth/callback`, and the WWSF redeems the code with its client secret. The token
/// then carries that WAF as issuer.
public final class RemoteWAF: Sendable {
    public let issuer: String
    let clientID: String
    let clientSecret: String
    let tls: TLSConfiguration
    /// Authorization requests in progress: state → (session hash, PKCE verifier, deadline).
    let pending = Mutex(
        AgedTable<String, (session: String, verifier: String, expires: Int64)>(capacity: 20_000, lifetime: 600))
    /// Tokens by session hash.
    let tokens = Mutex<[String: RemoteToken]>([:])

    public struct RemoteToken: Sendable {
        public var token: String
        public var expiresAt: Int64
        public var impi: String?
        public var impus: [String]
    }

    public init(issuer: String, clientID: String, clientSecret: String, tls: TLSConfiguration) {
        self.issuer = issuer.hasSuffix("/") ? String(issuer.dropLast()) : issuer
        self.clientID = clientID
        self.clientSecret = clientSecret
        self.tls = tls
    }

    /// The session's token if it has more than `margin` seconds left.
    func token(session: String, now: Int64, margin: Int64 = 30) -> RemoteToken? {
        tokens.withLock { $0[session] }.flatMap { $0.expiresAt - now > margin ? $0 : nil }
    }

    func forget(session: String) { _ = tokens.withLock { $0.removeValue(forKey: session) } }

    /// Where to send the browser to get a code for this session.
    func authorizationURL(session: String, redirectURI: String, scope: String, now: Int64) -> String {
        let verifier = randomSecret()
        let challenge = base64URLEncode(Array(SHA256.hash(data: Array(verifier.utf8))))
        let state = randomSecret()
        pending.withLock { table in
            _ = table.set(state, (session, verifier, now + 600), now: Double(now))
        }
        let query = [
            ("response_type", "code"), ("client_id", clientID), ("redirect_uri", redirectURI),
            ("code_challenge", challenge), ("code_challenge_method", "S256"), ("state", state), ("scope", scope),
        ].map { "\($0.0)=\(formEncode($0.1))" }.joined(separator: "&")
        return issuer + "/authorize?" + query
    }

    /// Redeems a code at the WAF's token endpoint (RFC 6749 §4.1.3, RFC 7636 §4.5) for the
    /// session of the browser that brought it — which must be the session that started the
    /// request (`state` bound to it, RFC 6749 §10.12; issue 26 item 3). A state brought by
    /// another browser is used up without a token for anyone.
    func redeem(code: String, state: String, session: String?, iss: String?, redirectURI: String, now: Int64)
        async throws
    {
        guard let request = pending.withLock({ $0.removeValue(for: state) }), request.expires > now else {
            throw WebAuthError.badConfiguration("unknown or expired authorization request")
        }
        guard let session, constantTimeEqual(Array(session.utf8), Array(request.session.utf8)) else {
            throw WebAuthError.badConfiguration("the authorization was started in another browser session")
        }
        // RFC 9207: the answer must come from the WAF we asked.
        if let iss, iss != issuer { throw WebAuthError.badConfiguration("authorization answered by another issuer") }
        let metadata = try await HTTPSClient.json(issuer + "/.well-known/oauth-authorization-server", tls: tls)
        guard metadata["issuer"] as? String == issuer, let endpoint = metadata["token_endpoint"] as? String else {
            throw WebAuthError.badConfiguration("the WAF's metadata does not name it")
        }
        let (status, body) = try await HTTPSClient.fetch(
            endpoint, tls: tls,
            form: [
                ("grant_type", "authorization_code"), ("code", code), ("redirect_uri", redirectURI),
                ("code_verifier", request.verifier),
            ], basicAuth: (clientID, clientSecret))
        guard status == 200, let answer = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any],
            let token = answer["access_token"] as? String
        else { throw WebAuthError.badConfiguration("the WAF refused the code (HTTP \(status))") }
        let lifetime = (answer["expires_in"] as? NSNumber)?.int64Value ?? 300
        let impus = answer["impu"] as? [String] ?? []
        tokens.withLock {
            $0[request.session] = RemoteToken(
                token: token, expiresAt: now + lifetime, impi: answer["impi"] as? String, impus: impus)
        }
    }
}
