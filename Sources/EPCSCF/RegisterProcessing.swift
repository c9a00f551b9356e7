import Foundation
import SIPAuth
import SIPCore
import Utilities

/// The eP-CSCF's settings for REGISTER handling (spec.md §6).
public struct EPCSCFConfiguration: Sendable {
    /// Home domain: the realm in challenges and TNA headers.
    public var homeDomain: String
    /// Host[:port] of this eP-CSCF, for Path URIs.
    public var hostPort: String
    /// Written in P-Visited-Network-ID and as orig-ioi.
    public var networkID: String
    /// The WAF a WIC should get a token from (authz_server in Bearer challenges).
    public var authorizationServer: String
    public var requiredScope: String = "ims-register"
    /// The operator's own WAFs (issuer URLs) and WWSFs (origins): a token from any other
    /// names its authorization entity to the S-CSCF in `waf-id` (its issuer URL) and
    /// `wwsf-id` (its `wwsf`), which the subscription must allow (spec.md §2.2, SCS-4).
    public var homeWAFs: Set<String>
    public var homeWWSFs: Set<String> = []
    /// The transport on which we take requests from the S-CSCF side (`transport=` in our
    /// Path, so the S-CSCF reaches us by it; RFC 3263 would pick UDP without it).
    public var pathTransport: String? = "tcp"

    public init(homeDomain: String, hostPort: String, networkID: String? = nil, authorizationServer: String) {
        self.homeDomain = homeDomain
        self.hostPort = hostPort
        self.networkID = networkID ?? homeDomain
        self.authorizationServer = authorizationServer
        self.homeWAFs = [authorizationServer]
    }
}

/// The token a flow registered with, as much of it as later requests are checked against
/// (issue 26 item 5): when it ends — expired or revoked — so does what the flow may send.
public struct TokenCredential: Sendable, Hashable {
    public var tokenID: String?
    public var subject: String
    /// Unix seconds.
    public var issuedAt: Int64?
    public var expires: Int64
    /// The public identities the token names (canonical form).
    public var impus: [String]

    public init(_ claims: AccessTokenClaims) {
        tokenID = claims.tokenID
        subject = claims.subject
        issuedAt = claims.issuedAt.map { Int64($0.timeIntervalSince1970) }
        expires = Int64(claims.expires.timeIntervalSince1970)
        impus = claims.canonicalIMPUs
    }
}

/// What a REGISTER from a WIC becomes.
public enum RegisterDecision: Sendable {
    /// Forward this request to the S-CSCF; `impi` is the private identity it registers
    /// (the token's, or the Digest username), `token` the token it rests on, if any.
    /// `contacts` are its Contact values, parsed once here for whoever needs them next.
    case forward(SIPRequest, impi: String?, token: TokenCredential?, contacts: [SIPContact])
    /// Answer the WIC with this response; nothing goes to the S-CSCF.
    case reject(SIPResponse)
}

/// The REGISTER rules of the eP-CSCF, as pure functions of the request, the flow and the
/// token: everything the WebSocket side does to a REGISTER before it leaves for the S-CSCF.
public struct RegisterProcessor: Sendable {
    public let configuration: EPCSCFConfiguration
    public let tokens: TokenValidator
    let clock: @Sendable () -> Date
    /// Our Path value around the flow token, without and with `ob`: the same for every
    /// REGISTER, so written once.
    let pathAround: (plain: (String, String), outbound: (String, String))
    let visitedNetworkID: String

    public init(
        configuration: EPCSCFConfiguration, tokens: TokenValidator, clock: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.configuration = configuration
        self.tokens = tokens
        self.clock = clock
        // EPC-7: our Path with the flow token; `ob` when the WIC uses outbound.
        func around(outbound: Bool) -> (String, String) {
            var parameters: SIPParameters = [SIPParameter("lr")]
            if outbound { parameters.elements.append(SIPParameter("ob")) }
            if let transport = configuration.pathTransport {
                parameters.elements.append(SIPParameter("transport", transport))
            }
            let (host, port) = splitHostPort(configuration.hostPort)
            let marker = "\u{1}"
            let text = SIPAddress(SIPURI(user: marker, host: host, port: port, parameters: parameters)).description
            let parts = text.components(separatedBy: marker)
            return (parts.first ?? text, parts.count > 1 ? parts[1] : "")
        }
        pathAround = (around(outbound: false), around(outbound: true))
        visitedNetworkID = quote(configuration.networkID)
    }

    /// - Parameters:
    ///   - flowToken: identifies the WebSocket flow in our Path URI (RFC 5626 style).
    ///   - origin: the WebSocket handshake's Origin, to match the token's `wwsf`.
    ///   - boundIMPI: the IMPI a successful Digest registration bound to this TLS session.
    public func process(_ incoming: SIPRequest, flowToken: String, origin: String?, boundIMPI: String?)
        -> RegisterDecision
    {
        var request = incoming
        // EPC-14: whatever a WIC says about integrity protection goes first, unread.
        let authorizations: [SIPAuthField]
        do {
            authorizations = try request.headers.authorizations()
        } catch {
            return .reject(reply(request, 400, "Malformed Authorization"))
        }
        // One Digest field as the WIC wrote it, when nothing in it had to go: forwarded as
        // it came plus our parameter, instead of printed again from its parsed form.
        let asWritten = authorizations.count == 1 ? request.headers[.authorization] : nil
        request.headers.removeAll(.authorization)
        var digest: SIPAuthField?
        var digestAsWritten: String?
        var bearer: String?
        for var field in authorizations {
            if field.isBearer {
                guard let token = field.bearerToken, !token.isEmpty else {
                    return .reject(reply(request, 400, "Malformed Authorization"))
                }
                bearer = token
            } else if field.isDigest {
                let given = field.parameters.count
                field.removeTrustedNodeParameters()
                if field.parameters.count == given { digestAsWritten = asWritten }
                digest = field
            }
            // Any other scheme is one we cannot use: left out, so the REGISTER is challenged
            // as one without credentials (RFC 4475 §3.3.7, `regaut01`).

        }
        let to: SIPAddress
        let from: SIPAddress
        do {
            to = try request.headers.to
            from = try request.headers.from
        } catch {
            return .reject(reply(request, 400, error.reasonPhrase))
        }

        if let refusal = decrementMaxForwards(&request) { return .reject(refusal) }
        let impi: String?
        var credential: TokenCredential?
        if let bearer {
            // Scenario 2/3: the token is the authentication (EPC-15 … EPC-20).
            let claims: AccessTokenClaims
            switch tokens.validate(bearer) {
            case .success(let c): claims = c
            case .failure(let error):
                EdgeMetrics.tokenFailure(error)
                return .reject(bearerChallenge(request, error: error))
            }
            let toIMPU = to.uri.publicIdentity
            // EPC-17: To among the token's IMPUs, From = To, any IMPI given = the token's.
            guard let toIMPU, claims.canonicalIMPUs.contains(toIMPU) else {
                return .reject(reply(request, 403, "Identity Not In Token"))
            }
            guard from.uri.publicIdentity == toIMPU else { return .reject(reply(request, 403, "From Must Equal To")) }
            if let given = digest?.username, !given.isEmpty, given != claims.impi {
                return .reject(reply(request, 403, "IMPI Not In Token"))
            }
            if let origin, !originMatches(origin, wwsf: claims.wwsf) {
                return .reject(reply(request, 403, "Origin Does Not Match Token"))
            }
            // EPC-19: the TNA header replaces the Bearer one.
            var tna = TrustedNodeAuthorization(
                impi: claims.impi, realm: configuration.homeDomain, uri: request.uri.description)
            // Third-party authorization entities, named in full (issue 26 item 14).
            if !configuration.homeWAFs.contains(claims.issuer) { tna.wafID = claims.issuer }
            if !configuration.homeWWSFs.contains(where: { originMatches($0, wwsf: claims.wwsf) }) {
                tna.wwsfID = claims.wwsf
            }
            request.headers.append(.authorization, tna.headerValue)
            impi = claims.impi
            credential = TokenCredential(claims)
            // EPC-20: the registration may not outlive the token.
            let remaining = UInt32(max(0, claims.expires.timeIntervalSince(clock()).rounded(.down)))
            capExpires(&request, at: remaining)
        } else if var digest {
            // Scenario 1 over TLS (EPC-10): nothing on the very first REGISTER; tls-pending
            // with a response; tls-yes once the TLS session is bound to the IMPI.
            var protection: String?
            if let response = digest.response, !response.isEmpty {
                let bound = boundIMPI != nil && boundIMPI == digest.username
                protection = bound ? "tls-yes" : "tls-pending"
            }
            if var text = digestAsWritten {
                if let protection {
                    text += ", integrity-protected="
                    text += protection
                }
                request.headers.append(.authorization, text)
            } else {
                if let protection { digest.set("integrity-protected", protection, quoted: false) }
                request.headers.append(.authorization, digest.description)
            }
            impi = digest.username
        } else {
            // No credentials at all, as JsSIP and SIP.js send first (issue 27, PROJECT
            // DECISION): the S-CSCF challenges with the subscriber's own scheme when the
            // IMPU has exactly one IMPI, and `processResponse(_:offeringBearer:)` adds our
            // Bearer challenge to that 401, or answers with it alone.
            impi = nil
        }
        let contacts = addPathAndCharging(&request, flowToken: flowToken)
        return .forward(request, impi: impi, token: credential, contacts: contacts)
    }

    /// The S-CSCF's answer on its way to the WIC. EPC-12: ik and ck are for a P-CSCF setting
    /// up IPsec; the WIC never sees them. For a REGISTER that came without credentials
    /// (`upstream` given): its 401 gets our Bearer challenge too (RFC 8898 §2.4 allows
    /// several), so the WIC may take either; any other refusal becomes the Bearer-only 401.
    public func processResponse(_ response: SIPResponse, offeringBearerFor upstream: SIPRequest? = nil)
        -> SIPResponse
    {
        if let upstream, response.statusCode >= 300 {
            guard response.statusCode == 401 else { return bearerChallenge(upstream, error: nil) }
            var out = stripIntegrityKeys(response)
            if let bearer = bearerChallenge(upstream, error: nil).headers[.wwwAuthenticate] {
                out.headers.append(.wwwAuthenticate, bearer)
            }
            return out
        }
        return stripIntegrityKeys(response)
    }

    func stripIntegrityKeys(_ response: SIPResponse) -> SIPResponse {
        guard response.statusCode == 401 || response.statusCode == 407 else { return response }
        var out = response
        for name in [SIPHeaderName.wwwAuthenticate, .proxyAuthenticate] {
            for index in out.headers.positions(of: name) {
                let value = out.headers[index].value
                // Digest challenges without either (every one but IMS AKA's) need no parse.
                guard containsIgnoringASCIICase(value, "ik") || containsIgnoringASCIICase(value, "ck"),
                    var challenge = try? SIPAuthField.parse(value, header: name)
                else { continue }
                // Nothing to take out: leave the field as it came.
                guard challenge.ik != nil || challenge.ck != nil else { continue }
                challenge.remove("ik")
                challenge.remove("ck")
                out.headers[index].value = challenge.description
            }
        }
        return out
    }

    // MARK: helpers

    /// What the eP-CSCF forwards carries one hop less (`SIPRequest.takeHop`); the answer
    /// when it may not be forwarded, else nil.
    public func decrementMaxForwards(_ request: inout SIPRequest) -> SIPResponse? {
        guard let refusal = request.takeHop() else { return nil }
        return reply(request, refusal.status, refusal.reason)
    }

    /// Returns the request's contacts (none for `*` or no Contact).
    func addPathAndCharging(_ request: inout SIPRequest, flowToken: String) -> [SIPContact] {
        var contacts: [SIPContact] = []
        if case .contacts(let list)? = try? request.headers.contact { contacts = list }
        let wantsOutbound = contacts.contains { $0.address.parameters["+sip.instance"] != nil && $0.regID != nil }
        // EPC-7: our Path with the flow token; `ob` when the WIC uses outbound.
        let (before, after) = wantsOutbound ? pathAround.outbound : pathAround.plain
        request.headers.prepend(.path, before + flowToken + after)
        if !request.headers.require.contains(where: { equalsIgnoringASCIICase($0, "path") }) {
            request.headers.append(.require, "path")
        }
        // EPC-8.
        request.headers[.pVisitedNetworkID] = visitedNetworkID
        request.headers[.pChargingVector] = "icid-value=\"\(randomICID())\";orig-ioi=\(configuration.networkID)"
        return contacts
    }

    func capExpires(_ request: inout SIPRequest, at limit: UInt32) {
        switch (try? request.headers.expires) ?? nil {
        case 0?: break  // a de-registration stays one
        case let requested? where requested <= limit: break
        default: request.headers[.expires] = String(limit)
        }
        // Contact-level expires wins over the header (RFC 3261 §10.2.1.1): cap those too.
        for index in request.headers.positions(of: .contact) {
            guard containsIgnoringASCIICase(request.headers[index].value, "expires"),
                var list = try? SIPAddress.parseList(request.headers[index].value)
            else { continue }
            var changed = false
            for i in list.indices {
                if let value = list[i].parameters["expires"].flatMap({ UInt32($0) }), value > limit {
                    list[i].parameters.set("expires", String(limit))
                    changed = true
                }
            }
            if changed { request.headers[index].value = list.map(\.description).joined(separator: ", ") }
        }
    }

    /// 401 with `error="invalid_token"` for a request whose flow's token has ended.
    public func tokenEnded(_ request: SIPRequest) -> SIPResponse {
        bearerChallenge(request, error: .expired)
    }

    /// EPC-18: 401 with a Bearer challenge; `error="invalid_token"` when a token was given;
    /// 403 when the token is valid but lacks the scope.
    func bearerChallenge(_ request: SIPRequest, error: TokenError?) -> SIPResponse {
        if let error, error.statusCode == 403 { return reply(request, 403, "Insufficient Scope") }
        var challenge = SIPAuthField(scheme: "Bearer")
        challenge.set("realm", configuration.homeDomain, quoted: true)
        challenge.set("scope", configuration.requiredScope, quoted: true)
        challenge.set("authz_server", configuration.authorizationServer, quoted: true)
        if error != nil { challenge.set("error", "invalid_token", quoted: true) }
        var response = reply(request, 401)
        response.headers.append(.wwwAuthenticate, challenge.description)
        return response
    }

    func reply(_ request: SIPRequest, _ code: Int, _ reason: String? = nil) -> SIPResponse {
        SIPResponse(replyingTo: request, statusCode: code, reasonPhrase: reason, toTag: "ep" + randomToken(length: 8))
    }
}

/// EPC-17: the token's `wwsf` names the page's origin: an origin (`https://host:port`)
/// must match exactly (scheme, host, port); a bare host name matches the origin's host.
func originMatches(_ origin: String, wwsf: String) -> Bool {
    // Both are usually the same origin text: no parsing needed then.
    if equalsIgnoringASCIICase(origin, wwsf) { return containsIgnoringASCIICase(origin, "://") }
    guard let page = URLComponents(string: origin), let pageHost = page.host?.lowercased() else { return false }
    if let claimed = URLComponents(string: wwsf), let scheme = claimed.scheme, let host = claimed.host {
        func port(_ c: URLComponents) -> Int? { c.port ?? (c.scheme?.lowercased() == "https" ? 443 : nil) }
        return scheme.lowercased() == page.scheme?.lowercased() && host.lowercased() == pageHost
            && port(claimed) == port(page)
    }
    return pageHost == wwsf.lowercased()
}

func splitHostPort(_ hostPort: String) -> (String, UInt16?) {
    if hostPort.hasPrefix("["), let close = hostPort.firstIndex(of: "]") {
        let host = String(hostPort[...close])
        let rest = hostPort[hostPort.index(after: close)...]
        return (host, rest.hasPrefix(":") ? UInt16(rest.dropFirst()) : nil)
    }
    let parts = hostPort.split(separator: ":")
    if parts.count == 2, let port = UInt16(parts[1]) { return (String(parts[0]), port) }
    return (hostPort, nil)
}

/// A globally unique icid-value (EPC-8).
func randomICID() -> String {
    "ep-" + String(UInt64(Date().timeIntervalSince1970 * 1000), radix: 36) + "-" + randomToken(length: 12)
}
