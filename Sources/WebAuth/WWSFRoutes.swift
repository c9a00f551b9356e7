import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Storage
import Utilities

public struct WWSFConfiguration: Sendable {
    /// The WWSF's own origin (`https://host:port`): the Origin the eP-CSCF must allow.
    public var origin: String
    /// The eP-CSCF's WebSocket URL (`wss://host:port`).
    public var epcscfURL: String
    public var homeDomain: String
    /// The WAF's issuer URL.
    public var wafIssuer: String
    /// The folder of the WIC library and demo page.
    public var staticDirectory: String?

    public init(origin: String, epcscfURL: String, homeDomain: String, wafIssuer: String, staticDirectory: String?) {
        self.origin = origin
        self.epcscfURL = epcscfURL
        self.homeDomain = homeDomain
        self.wafIssuer = wafIssuer
        self.staticDirectory = staticDirectory
    }

    /// The WWSF identity carried in tokens (`wwsf` claim): the origin's host[:port].
    public var identity: String {
        guard let components = URLComponents(string: origin), let host = components.host else { return origin }
        return components.port.map { "\(host):\($0)" } ?? host
    }
}

/// The WWSF (W1): serves the WIC and the demo page, logs users in, and hands the WIC its
/// WAF token and IMS identities (WWSF-2, WWSF-3); `/.well-known/webims` lets a WIC that
/// knows only the WWSF find the eP-CSCF (U.2.0 discovery, spec.md WWSF-1).
public struct WWSFRoutes: Sendable {
    let configuration: WWSFConfiguration
    let waf: AuthorizationServer
    /// The WWSF's client registration at the WAF (co-located: tokens come over the back
    /// channel, an in-process call).
    let client: OAuthClient
    /// A WAF at another origin to get tokens from instead (third-party WAF).
    let remote: RemoteWAF?
    let files: StaticFiles
    let clock: @Sendable () -> Int64
    static let sessionCookie = "__Host-webims-session"

    public init(
        configuration: WWSFConfiguration, waf: AuthorizationServer, client: OAuthClient, remote: RemoteWAF? = nil,
        clock: @escaping @Sendable () -> Int64 = unixNow
    ) {
        self.configuration = configuration
        self.waf = waf
        self.client = client
        self.remote = remote
        self.files = StaticFiles(directory: configuration.staticDirectory)
        self.clock = clock
    }

    var accounts: AccountService { waf.accounts }

    public func router() -> Router<WebRequestContext> {
        let router = Router(context: WebRequestContext.self)
        let wss =
            URLComponents(string: configuration.epcscfURL).map { c in
                "\(c.scheme ?? "wss")://\(c.host ?? "localhost")\(c.port.map { ":\($0)" } ?? "")"
            } ?? configuration.epcscfURL
        router.add(
            middleware: SecurityHeaders(
                contentSecurityPolicy:
                    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                    + "connect-src 'self' \(wss); frame-ancestors 'none'; base-uri 'none'; form-action 'self'; "
                    + "object-src 'none'"))
        router.get("/.well-known/webims") { _, _ in
            jsonResponse(
                .ok,
                [
                    "wwsf": configuration.origin, "epcscf": configuration.epcscfURL,
                    "home_domain": configuration.homeDomain, "waf_issuer": configuration.wafIssuer,
                    "login_endpoint": configuration.origin + "/api/login",
                    "token_endpoint": configuration.origin + "/api/token",
                ], headers: [.cacheControl: "max-age=60"])
        }
        router.post("/api/login") { request, context in try await login(request, context: context) }
        router.post("/api/logout") { request, _ in
            let cookieValue: String
            let session: WebSession
            switch await authorizedSession(request) {
            case .success(let s): (cookieValue, session) = s
            case .failure(let refusal): return refusal.response
            }
            await accounts.endSession(cookie: cookieValue)
            remote?.forget(session: session.idHash)
            if let account = try? await accounts.store.account(username: session.username), account.usesIMPUPool {
                // The token issued for the pool IMPU ends with the session (issue 26 item 4):
                // its subject is that IMPU, so the next user it goes to starts clean.
                if let held = try? await accounts.store.assignPoolIMPU(username: session.username, candidates: []) {
                    try? await accounts.store.revokeTokens(subject: held, issuedBefore: clock())
                }
                try? await accounts.store.releasePoolIMPU(username: session.username)
            }
            return jsonResponse(
                .ok, ["logged_out": true], headers: [.setCookie: setCookie(Self.sessionCookie, "", maxAge: 0)])
        }
        router.get("/api/session") { request, _ in
            let now = clock()
            guard let value = cookie(request, Self.sessionCookie),
                let session = await accounts.session(cookie: value, now: now),
                let account = try? await accounts.store.account(username: session.username)
            else { return unauthorized() }
            return jsonResponse(
                .ok,
                [
                    "username": account.username, "impi": account.impi, "csrf": session.csrfToken,
                    "expires_at": session.expiresAt, "epcscf": configuration.epcscfURL,
                ])
        }
        router.post("/api/token") { request, _ in
            let session: WebSession
            switch await authorizedSession(request) {
            case .success(let s): session = s.1
            case .failure(let refusal): return refusal.response
            }
            let now = clock()
            guard let account = try? await accounts.store.account(username: session.username) else {
                return unauthorized()
            }
            if let remote {
                // Third-party WAF: the token the session got from it, or the way to get one.
                guard let held = remote.token(session: session.idHash, now: now) else {
                    return jsonResponse(
                        .unauthorized,
                        [
                            "error": "authorization_required",
                            "error_description": "Sign in at the authorization server \(remote.issuer) first.",
                            "authorize_url": configuration.origin + "/oauth/start",
                        ])
                }
                return jsonResponse(
                    .ok,
                    [
                        "token": held.token, "token_type": "Bearer", "expires_at": held.expiresAt,
                        "expires_in": held.expiresAt - now, "impi": held.impi ?? account.impi, "impus": held.impus,
                        "epcscf": configuration.epcscfURL,
                    ])
            }
            do {
                let issued = try await waf.issueToken(for: account, client: client, now: now)
                WebMetrics.tokensIssued.increment()
                return jsonResponse(
                    .ok,
                    [
                        "token": issued.token, "token_type": "Bearer", "expires_at": issued.expiresAt,
                        "expires_in": issued.expiresAt - now, "impi": issued.impi, "impus": issued.impus,
                        "epcscf": configuration.epcscfURL,
                    ])
            } catch {
                return errorResponse(.serviceUnavailable, "token_unavailable", "No token can be issued now.")
            }
        }
        router.get("/oauth/start") { request, _ in
            guard let remote, let value = cookie(request, Self.sessionCookie),
                let session = await accounts.session(cookie: value, now: clock())
            else { return redirect(to: "/") }
            return redirect(
                to: remote.authorizationURL(
                    session: session.idHash, redirectURI: configuration.origin + "/oauth/callback",
                    scope: "ims-register", now: clock()))
        }
        router.get("/oauth/callback") { request, _ in
            guard let remote, let query = queryParameters(request) else { return redirect(to: "/") }
            guard let code = query["code"], let state = query["state"] else {
                let reason = query["error_description"] ?? query["error"] ?? "no code"
                return htmlResponse(
                    .badRequest,
                    "<!doctype html><title>Not authorized</title><p>The authorization server said: \(escapeMarkup(reason)).</p><p><a href=\"/\">Back</a></p>"
                )
            }
            // The caller's own session: the token goes to it only if it started this request.
            var session: String?
            if let value = cookie(request, Self.sessionCookie) {
                session = await accounts.session(cookie: value, now: clock())?.idHash
            }
            do {
                try await remote.redeem(
                    code: code, state: state, session: session, iss: query["iss"],
                    redirectURI: configuration.origin + "/oauth/callback", now: clock())
            } catch {
                return htmlResponse(
                    .badGateway,
                    "<!doctype html><title>Not authorized</title><p>\(escapeMarkup(String(describing: error))).</p><p><a href=\"/\">Back</a></p>"
                )
            }
            return redirect(to: "/")
        }
        router.get("/**") { request, _ in files.response(for: request.uri.path) }
        router.get("/") { request, _ in files.response(for: "/index.html") }
        return router
    }

    func unauthorized() -> Response {
        errorResponse(.unauthorized, "not_logged_in", "Log in first.")
    }

    /// The session of a state-changing request: cookie plus the CSRF token header; the
    /// error answer (401 without a session, 403 without the right CSRF token) otherwise.
    func authorizedSession(_ request: Request) async -> Result<(String, WebSession), SessionRefusal> {
        guard let value = cookie(request, Self.sessionCookie),
            let session = await accounts.session(cookie: value, now: clock())
        else { return .failure(SessionRefusal(response: unauthorized())) }
        guard let sent = request.headers[.csrfToken], sent == session.csrfToken else {
            return .failure(
                SessionRefusal(response: errorResponse(.forbidden, "csrf", "Missing or wrong X-CSRF-Token.")))
        }
        return .success((value, session))
    }

    func login(_ request: Request, context: WebRequestContext) async throws -> Response {
        // Login CSRF: JSON only (a cross-site form cannot send it without a preflight we
        // never grant), and a browser's Origin must be ours.
        if let origin = request.headers[.origin], origin != configuration.origin {
            return errorResponse(.forbidden, "bad_origin", "Log in from the WWSF's own page.")
        }
        guard request.headers[.contentType]?.lowercased().hasPrefix("application/json") == true else {
            return errorResponse(.unsupportedMediaType, "json_required", "Send the login as JSON.")
        }
        var request = request
        guard let body = try await readBody(&request, context: context), let username = body["username"] as? String,
            let password = body["password"] as? String
        else { return errorResponse(.badRequest, "invalid_request", "username and password are required") }
        let now = clock()
        switch await accounts.authenticate(
            username: username, password: password, source: context.sourceAddress, now: now)
        {
        case .failure(let failure):
            WebMetrics.login(failure)
            let message = loginMessage(failure, now: now)
            switch failure {
            case .invalidCredentials:
                return errorResponse(.unauthorized, "invalid_credentials", message)
            case .locked(let until):
                return errorResponse(
                    .tooManyRequests, "locked", message, headers: [.retryAfter: "\(max(1, until - now))"])
            case .rateLimited(let wait):
                return errorResponse(.tooManyRequests, "rate_limited", message, headers: [.retryAfter: "\(wait)"])
            }
        case .success(let account):
            WebMetrics.login(nil)
            let (value, session) = try await accounts.startSession(username: account.username, now: now)
            return jsonResponse(
                .ok,
                [
                    "username": account.username, "impi": account.impi, "csrf": session.csrfToken,
                    "expires_at": session.expiresAt, "epcscf": configuration.epcscfURL,
                ],
                headers: [.setCookie: setCookie(Self.sessionCookie, value, maxAge: session.expiresAt - now)])
        }
    }
}

struct SessionRefusal: Error {
    var response: Response
}

/// The files of the `wic/` folder, read once at start (they are small) and served with a
/// content type and an ETag.
struct StaticFiles: Sendable {
    struct File: Sendable {
        var bytes: [UInt8]
        var contentType: String
        var etag: String
    }
    let files: [String: File]

    init(directory: String?) {
        var files: [String: File] = [:]
        if let directory, let enumerator = FileManager.default.enumerator(atPath: directory) {
            while let relative = enumerator.nextObject() as? String {
                let path = directory + "/" + relative
                var isDirectory: ObjCBool = false
                guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue,
                    !relative.split(separator: "/").contains(where: { $0.hasPrefix(".") }),
                    let data = FileManager.default.contents(atPath: path), data.count <= 4 * 1_024 * 1_024
                else { continue }
                let bytes = Array(data)
                let tag = AccountService.hash(String(decoding: bytes, as: UTF8.self)).prefix(16)
                files["/" + relative] = File(bytes: bytes, contentType: Self.contentType(relative), etag: "\"\(tag)\"")
            }
        }
        self.files = files
    }

    static func contentType(_ name: String) -> String {
        switch name.split(separator: ".").last.map(String.init) ?? "" {
        case "html": "text/html; charset=utf-8"
        case "js", "mjs": "text/javascript; charset=utf-8"
        case "css": "text/css; charset=utf-8"
        case "json": "application/json"
        case "png": "image/png"
        case "svg": "image/svg+xml"
        case "ico": "image/x-icon"
        case "txt", "md": "text/plain; charset=utf-8"
        default: "application/octet-stream"
        }
    }

    func response(for path: String) -> Response {
        guard let file = files[path] ?? files[path.hasSuffix("/") ? path + "index.html" : path + "/index.html"] else {
            return errorResponse(.notFound, "not_found", "No such page.")
        }
        return Response(
            status: .ok,
            headers: [.contentType: file.contentType, .eTag: file.etag, .cacheControl: "no-cache"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: file.bytes)))
    }
}
