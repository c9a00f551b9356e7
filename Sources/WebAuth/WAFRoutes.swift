import Foundation
import HTTPSClient
import HTTPTypes
import Hummingbird
import NIOCore
import Utilities

/// The WAF's HTTP face (W4): metadata, JWKS, the authorization code flow with its own
/// login form, token, introspection and revocation endpoints.
public struct WAFRoutes: Sendable {
    let server: AuthorizationServer
    let clock: @Sendable () -> Int64
    static let sessionCookie = "__Host-webims-waf"
    static let csrfCookie = "__Host-webims-waf-csrf"

    public init(server: AuthorizationServer, clock: @escaping @Sendable () -> Int64 = unixNow) {
        self.server = server
        self.clock = clock
    }

    public func router() -> Router<WebRequestContext> {
        let router = Router(context: WebRequestContext.self)
        router.add(
            middleware: SecurityHeaders(
                contentSecurityPolicy: Self.contentSecurityPolicy(formAction: nil)))
        router.get("/.well-known/oauth-authorization-server") { _, _ in
            jsonResponse(.ok, bytes: server.metadataBytes, cacheControl: "max-age=300")
        }
        router.get("/jwks.json") { _, _ in
            jsonResponse(.ok, bytes: server.keys.jwksBytes(), cacheControl: "max-age=60")
        }
        router.get("/authorize") { request, _ in await authorize(request) }
        router.post("/authorize") { request, context in try await authorizeLogin(request, context: context) }
        router.post("/token") { request, context in
            var request = request
            guard let form = try await readBody(&request, context: context) as? [String: String] else {
                return errorResponse(.badRequest, "invalid_request", "a form body is expected")
            }
            switch await server.exchange(form, clientCredentials: basicCredentials(request), now: clock()) {
            case .success(let answer): return jsonResponse(.ok, answer)
            case .failure(let e): return oauthError(e)
            }
        }
        router.post("/introspect") { request, context in
            guard let (token, credentials) = try await tokenRequest(request, context: context) else {
                return errorResponse(.badRequest, "invalid_request", "token is required")
            }
            switch await server.introspect(token, clientCredentials: credentials, now: clock()) {
            case .success(let answer): return jsonResponse(.ok, answer)
            case .failure(let e): return oauthError(e)
            }
        }
        router.post("/revoke") { request, context in
            guard let (token, credentials) = try await tokenRequest(request, context: context) else {
                return errorResponse(.badRequest, "invalid_request", "token is required")
            }
            if let e = await server.revoke(token, clientCredentials: credentials) { return oauthError(e) }
            return Response(status: .ok, headers: [.cacheControl: "no-store"])
        }
        return router
    }

    /// The `token` of an introspection or revocation form, and the client's credentials
    /// (HTTP Basic, or client_id/client_secret in the form).
    func tokenRequest(_ request: Request, context: WebRequestContext) async throws
        -> (String, (id: String, secret: String?)?)?
    {
        var request = request
        guard let form = try await readBody(&request, context: context) as? [String: String],
            let token = form["token"]
        else { return nil }
        return (token, basicCredentials(request) ?? form["client_id"].map { ($0, form["client_secret"]) })
    }

    func oauthError(_ e: OAuthError) -> Response {
        var headers: HTTPFields = [:]
        if e.status == 401 { headers[.wwwAuthenticate] = "Basic realm=\"webims-waf\"" }
        return errorResponse(HTTPResponse.Status(code: e.status), e.code, e.description, headers: headers)
    }

    /// GET /authorize: a logged-in user gets a code at once; anyone else the login form.
    func authorize(_ request: Request) async -> Response {
        guard let parameters = queryParameters(request) else {
            return htmlResponse(.badRequest, page("Bad request", "<p>The request repeats a parameter.</p>"))
        }
        let checked: AuthorizationRequest
        switch server.checkAuthorization(parameters) {
        case .success(let r): checked = r
        case .failure(let e): return authorizationError(e, parameters: parameters)
        }
        let now = clock()
        if let cookie = cookie(request, Self.sessionCookie),
            let session = await server.accounts.session(cookie: cookie, now: now)
        {
            return codeRedirect(checked, username: session.username, now: now)
        }
        return loginForm(parameters: parameters, message: nil)
    }

    /// POST /authorize: the login form's answer.
    func authorizeLogin(_ request: Request, context: WebRequestContext) async throws -> Response {
        var request = request
        guard let form = try await readBody(&request, context: context) as? [String: String] else {
            return htmlResponse(.badRequest, page("Bad request", "<p>A form body is expected.</p>"))
        }
        // CSRF (double submit) and, when the browser says it, the origin.
        guard let sent = form["csrf"], let expected = cookie(request, Self.csrfCookie), !sent.isEmpty, sent == expected,
            request.headers[.origin].map({ $0 == server.configuration.issuer }) ?? true
        else { return htmlResponse(.forbidden, page("Forbidden", "<p>The form expired; go back and retry.</p>")) }
        var parameters = form
        for key in ["csrf", "username", "password"] { parameters[key] = nil }
        let checked: AuthorizationRequest
        switch server.checkAuthorization(parameters) {
        case .success(let r): checked = r
        case .failure(let e): return authorizationError(e, parameters: parameters)
        }
        let now = clock()
        switch await server.accounts.authenticate(
            username: form["username"] ?? "", password: form["password"] ?? "", source: context.sourceAddress, now: now)
        {
        case .failure(let failure):
            return loginForm(parameters: parameters, message: loginMessage(failure, now: now))
        case .success(let account):
            let (value, session) = try await server.accounts.startSession(username: account.username, now: now)
            var response = codeRedirect(checked, username: account.username, now: now)
            response.headers.append(
                HTTPField(
                    name: .setCookie,
                    value: setCookie(Self.sessionCookie, value, maxAge: session.expiresAt - now)))
            return response
        }
    }

    func codeRedirect(_ request: AuthorizationRequest, username: String, now: Int64) -> Response {
        let code = server.makeCode(for: request, username: username, now: now)
        var query = "code=\(formEncode(code))&iss=\(formEncode(server.configuration.issuer))"
        if let state = request.state { query += "&state=\(formEncode(state))" }
        let separator = request.redirectURI.contains("?") ? "&" : "?"
        return redirect(to: request.redirectURI + separator + query)
    }

    /// Client/redirect problems are shown; the rest go back to the client (RFC 6749 §4.1.2.1).
    func authorizationError(_ e: OAuthError, parameters: [String: String]) -> Response {
        if e.status == 302, let redirectURI = parameters["redirect_uri"] {
            var query = "error=\(formEncode(e.code))&error_description=\(formEncode(e.description))"
            query += "&iss=\(formEncode(server.configuration.issuer))"
            if let state = parameters["state"] { query += "&state=\(formEncode(state))" }
            return redirect(to: redirectURI + (redirectURI.contains("?") ? "&" : "?") + query)
        }
        return htmlResponse(
            HTTPResponse.Status(code: e.status),
            page("Authorization refused", "<p>\(escapeMarkup(e.description)) (\(escapeMarkup(e.code))).</p>"))
    }

    /// No page of the WAF may be framed or post a form anywhere but here (issue 26 item 2);
    /// the login form also to the origin of the redirect URI it was checked for, since a
    /// browser holds the redirect after the POST to `form-action` too.
    static func contentSecurityPolicy(formAction redirectOrigin: String?) -> String {
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
            + (redirectOrigin.map { " " + $0 } ?? "")
    }

    /// The authorization request's own parameters (RFC 6749 §4.1.1, RFC 7636 §4.3): the
    /// only ones the login form carries on. Anything else in the link is dropped, never
    /// reflected into the page.
    static let authorizationParameters: Set<String> = [
        "response_type", "client_id", "redirect_uri", "scope", "state", "code_challenge", "code_challenge_method",
    ]

    func loginForm(parameters: [String: String], message: String?) -> Response {
        let csrf = randomSecret()
        var hidden = ""
        for (name, value) in parameters.sorted(by: { $0.key < $1.key })
        where Self.authorizationParameters.contains(name) {
            hidden += "<input type=\"hidden\" name=\"\(name)\" value=\"\(escapeMarkup(value))\">\n"
        }
        // checkAuthorization accepted the redirect URI before any form is shown.
        let redirectOrigin = parameters["redirect_uri"].flatMap(URLComponents.init(string:)).flatMap { c in
            c.scheme.flatMap { scheme in c.host.map { "\(scheme)://\($0)" + (c.port.map { ":\($0)" } ?? "") } }
        }
        let note = message.map { "<p role=\"alert\">\(escapeMarkup($0))</p>" } ?? ""
        let body = """
            \(note)
            <form method="post" action="/authorize">
            \(hidden)<input type="hidden" name="csrf" value="\(csrf)">
            <p><label>User name <input name="username" autocomplete="username" required></label></p>
            <p><label>Password <input name="password" type="password" autocomplete="current-password" required></label></p>
            <p><button type="submit">Sign in</button></p>
            </form>
            """
        return htmlResponse(
            message == nil ? .ok : .unauthorized, page("Sign in to webims", body),
            headers: [
                .setCookie: "\(Self.csrfCookie)=\(csrf); Path=/; Max-Age=600; Secure; HttpOnly; SameSite=Strict",
                .contentSecurityPolicy: Self.contentSecurityPolicy(formAction: redirectOrigin),
            ])
    }

    func page(_ title: String, _ body: String) -> String {
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>\(escapeMarkup(title))</title></head>"
            + "<body><h1>\(escapeMarkup(title))</h1>\n\(body)</body></html>"
    }
}

func loginMessage(_ failure: LoginFailure, now: Int64) -> String {
    switch failure {
    case .invalidCredentials: "Wrong user name or password."
    case .locked(let until):
        "Too many failed logins: this account is locked for \(max(1, (until - now + 59) / 60)) minutes."
    case .rateLimited(let wait): "Too many attempts from your address: try again in \(wait) seconds."
    }
}
