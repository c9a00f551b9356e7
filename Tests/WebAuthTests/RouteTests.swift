import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Storage
import Testing
import Utilities
import WebIMSTesting

@testable import WebAuth

/// The WWSF's and WAF's routes in process (HummingbirdTesting's router framework: no
/// sockets, no TLS), over a fresh SQLite store: what the Python suites check through the
/// real `webims serve`, here in a second.
struct WebSites {
    static let wwsf = "https://wwsf.ims.example.com"
    static let issuer = "https://waf.ims.example.com"

    let store: any DataStore
    let location: String
    let waf: AuthorizationServer
    let wwsfRoutes: WWSFRoutes
    let wafRoutes: WAFRoutes

    /// Runs `body` with the sites and a web account `alice` (password `web secret`), and
    /// closes the store afterwards, also when `body` throws.
    static func with(_ body: (WebSites) async throws -> Void) async throws {
        let (store, location) = try await StoreBackend.sqlite.makeFreshStore()
        try await scoped(store, stop: { await $0.close() }) { store in
            let now = unixNow()
            // A few PBKDF2 rounds: the hashing is PasswordHasher's test, not this one's.
            let accounts = AccountService(store: store, subscribers: store, hasher: PasswordHasher(rounds: 1_000))
            try await store.put(
                WebAccount(
                    username: "alice", passwordHash: try PasswordHasher(rounds: 1_000).hash("web secret"),
                    impi: "alice_private@ims.example.com", impus: ["sip:alice@ims.example.com"]))
            let client = OAuthClient(id: "webims-wwsf", redirectURIs: [wwsf + "/oauth/callback"], wwsf: wwsf)
            let waf = AuthorizationServer(
                configuration: WAFConfiguration(
                    issuer: issuer, audience: "https://epcscf.ims.example.com", clients: [client]),
                keys: try await SigningKeyRing.load(store: store, tokenLifetimeLimit: 3_600, now: now),
                accounts: accounts)
            try await body(
                WebSites(
                    store: store, location: location, waf: waf,
                    wwsfRoutes: WWSFRoutes(
                        configuration: WWSFConfiguration(
                            origin: wwsf, epcscfURL: "wss://epcscf.ims.example.com:7443",
                            homeDomain: "ims.example.com", wafIssuer: issuer, staticDirectory: nil),
                        waf: waf, client: client),
                    wafRoutes: WAFRoutes(server: waf)))
        }
    }
}

func json(_ response: TestResponse) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any])
}

@Suite struct WWSFRouteTests {
    @Test func discoveryNamesEveryEndpointAndTheHeadersAreSet() async throws {
        try await WebSites.with { sites async throws in
            try await Application(router: sites.wwsfRoutes.router()).test(.router) { client async throws in
                try await client.execute(uri: "/.well-known/webims", method: .get) { response async throws in
                    #expect(response.status == .ok)
                    let body = try json(response)
                    #expect(body["wwsf"] as? String == WebSites.wwsf)
                    #expect(body["epcscf"] as? String == "wss://epcscf.ims.example.com:7443")
                    #expect(body["token_endpoint"] as? String == WebSites.wwsf + "/api/token")
                    #expect(body["waf_issuer"] as? String == WebSites.issuer)
                    // The page may talk to itself and the eP-CSCF only.
                    let policy = response.headers[try #require(HTTPField.Name("Content-Security-Policy"))] ?? ""
                    #expect(policy.contains("connect-src 'self' wss://epcscf.ims.example.com:7443;"))
                    #expect(policy.contains("frame-ancestors 'none'"))
                }
            }
        }
    }

    /// Login → session cookie and CSRF token → a token; each step refused without its proof.
    @Test func loginThenTokenNeedsTheCookieAndTheCSRFToken() async throws {
        try await WebSites.with { sites async throws in
            try await Application(router: sites.wwsfRoutes.router()).test(.router) { client async throws in
                let json = HTTPFields([HTTPField(name: .contentType, value: "application/json")])
                try await client.execute(
                    uri: "/api/login", method: .post, headers: json,
                    body: ByteBuffer(string: #"{"username":"alice","password":"wrong"}"#)
                ) { response async throws in
                    #expect(response.status == .unauthorized)
                    #expect(response.headers[.setCookie] == nil)
                }
                // A form post (what a cross-site page can send without a preflight) is refused.
                try await client.execute(
                    uri: "/api/login", method: .post,
                    headers: [.contentType: "application/x-www-form-urlencoded"],
                    body: ByteBuffer(string: "username=alice&password=web+secret")
                ) { response async throws in #expect(response.status == .unsupportedMediaType) }
                var fields = json
                fields[.origin] = "https://evil.example"
                try await client.execute(
                    uri: "/api/login", method: .post, headers: fields,
                    body: ByteBuffer(string: #"{"username":"alice","password":"web secret"}"#)
                ) { response async throws in #expect(response.status == .forbidden) }

                let (cookie, csrf) = try await client.execute(
                    uri: "/api/login", method: .post, headers: json,
                    body: ByteBuffer(string: #"{"username":"alice","password":"web secret"}"#)
                ) { response async throws -> (String, String) in
                    #expect(response.status == .ok)
                    let setCookie = try #require(response.headers[.setCookie])
                    #expect(setCookie.hasPrefix("__Host-webims-session="))
                    #expect(setCookie.contains("Secure") && setCookie.contains("HttpOnly"))
                    let value = String(setCookie.split(separator: ";")[0])
                    return (value, try #require(try WebAuthTests.json(response)["csrf"] as? String))
                }
                try await client.execute(uri: "/api/token", method: .post, headers: [.cookie: cookie]) {
                    response async throws in
                    #expect(response.status == .forbidden)  // no X-CSRF-Token
                }
                try await client.execute(uri: "/api/token", method: .post, headers: [.csrfToken: csrf]) {
                    response async throws in
                    #expect(response.status == .unauthorized)  // no session
                }
                try await client.execute(
                    uri: "/api/token", method: .post, headers: [.cookie: cookie, .csrfToken: csrf]
                ) { response async throws in
                    #expect(response.status == .ok)
                    let body = try WebAuthTests.json(response)
                    #expect(body["impi"] as? String == "alice_private@ims.example.com")
                    #expect(body["impus"] as? [String] == ["sip:alice@ims.example.com"])
                    let token = try #require(body["token"] as? String)
                    let parts = token.split(separator: ".")
                    #expect(parts.count == 3)
                    let header = try #require(base64URLDecode(String(parts[0])))
                    let fields = try #require(try JSONSerialization.jsonObject(with: Data(header)) as? [String: Any])
                    #expect(fields["alg"] as? String == "ES256" && fields["typ"] as? String == "at+jwt")
                }
                // Logged out, the cookie opens nothing.
                try await client.execute(
                    uri: "/api/logout", method: .post, headers: [.cookie: cookie, .csrfToken: csrf]
                ) { response async throws in #expect(response.status == .ok) }
                try await client.execute(
                    uri: "/api/token", method: .post, headers: [.cookie: cookie, .csrfToken: csrf]
                ) { response async throws in #expect(response.status == .unauthorized) }
            }
        }
    }
}

@Suite struct WAFRouteTests {
    @Test func metadataAndKeysDescribeTheIssuer() async throws {
        try await WebSites.with { sites async throws in
            try await Application(router: sites.wafRoutes.router()).test(.router) { client async throws in
                try await client.execute(uri: "/.well-known/oauth-authorization-server", method: .get) {
                    response async throws in
                    #expect(response.status == .ok)
                    let body = try json(response)
                    #expect(body["issuer"] as? String == WebSites.issuer)
                    #expect(body["jwks_uri"] as? String == WebSites.issuer + "/jwks.json")
                    #expect((body["code_challenge_methods_supported"] as? [String])?.contains("S256") == true)
                }
                try await client.execute(uri: "/jwks.json", method: .get) { response async throws in
                    let keys = try #require(try json(response)["keys"] as? [[String: Any]])
                    #expect(!keys.isEmpty)
                    for key in keys {
                        #expect(key["kty"] as? String == "EC" && key["crv"] as? String == "P-256")
                        #expect(key["d"] == nil)  // never the private part
                    }
                }
            }
        }
    }

    @Test func badTokenRequestsGetOAuthErrors() async throws {
        try await WebSites.with { sites async throws in
            try await Application(router: sites.wafRoutes.router()).test(.router) { client async throws in
                try await client.execute(uri: "/token", method: .post) { response async throws in
                    #expect(response.status == .badRequest)
                    #expect(try json(response)["error"] as? String == "invalid_request")
                }
                try await client.execute(
                    uri: "/token", method: .post, headers: [.contentType: "application/x-www-form-urlencoded"],
                    body: ByteBuffer(string: "grant_type=password&username=alice&password=web+secret")
                ) { response async throws in
                    #expect(response.status.code >= 400 && response.status.code < 500)
                    let error = try json(response)["error"] as? String
                    #expect(error == "unsupported_grant_type" || error == "invalid_client")
                }
                try await client.execute(
                    uri: "/introspect", method: .post, headers: [.contentType: "application/x-www-form-urlencoded"],
                    body: ByteBuffer(string: "token=abc")
                ) { response async throws in #expect(response.status == .unauthorized) }
            }
        }
    }
}
