import ArgumentParser
import EPCSCF
import Foundation
import HSS
import HTTPSClient
import LocalPKI
import Logging
import MediaGateway
import NIOCore
import NIOSSL
import SCSCF
import SIPAuth
import SIPCore
import SIPTransport
import Storage
import TLSPolicy
import Utilities
import WebAuth

/// What the functions of one `serve` share while they start.
struct StartupContext {
    let store: any DataStore
    let roles: Set<Role>
    let identity: ServerIdentity?
    let trace: SIPTrace?
    let logger: Logger
    let wwsfPort: Int
    let wafPort: Int
    let wwsfOrigin: String
    let localIssuer: String
    let audience: String
    let tokenLifetime: Int64
}

/// The S-CSCF and its HSS, listening.
struct SCSCFFunction {
    let endpoint: SIPEndpoint
    let registrar: Registrar
    let hostPort: String
}

/// The WAF: its keys live in the store, so every WAF node signs with the same ones.
struct WAFFunction {
    let server: AuthorizationServer
    let keys: SigningKeyRing
    /// The WWSF, the WAF's one built-in OAuth client.
    let client: OAuthClient
}

/// The eP-CSCF: WSS towards the WICs and SIP towards the S-CSCF on one endpoint.
struct EdgeFunction {
    let endpoint: SIPEndpoint
    let edge: EdgeProxy
    let tokens: TokenValidator
    let fetchers: [WAFKeyFetcher]
    /// The WSS URL the WWSF hands the WIC.
    let url: String
}

extension Serve {
    func startSCSCF(_ c: StartupContext) async throws -> SCSCFFunction {
        var sip = SIPEndpointConfiguration()
        sip.host = host
        sip.udpPort = sipPort
        sip.tcpPort = sipPort
        sip.trace = c.trace
        if let identity = c.identity {
            // Towards an eP-CSCF's TLS Path this node's certificate is its credential.
            sip.tlsClientConfiguration = try nodeTLSClient(identity)
        }
        if let sipTLSPort, let identity = c.identity {
            sip.tlsPort = sipTLSPort
            sip.tlsServerConfiguration = try nodeTLSServer(identity)
        }
        // The registrar needs the port actually bound (for Service-Route), so it is
        // plugged in once the listeners are up; until then requests get 503.
        let late = LateBound<Registrar>()
        let endpoint = try sipEndpoint(sip, logger: c.logger, serving: late)
        try await endpoint.start()
        let boundPort = endpoint.address(.udp)?.port ?? sipPort
        // The co-located eP-CSCF calls in process: trusted for that, never by address.
        var config = SCSCFConfiguration(
            homeDomain: homeDomain, hostPort: "\(host):\(boundPort)", trustedNodes: Set(trustedNode),
            nonceKey: try await storage.sharedSecret(named: "nonce.key", in: c.store))
        // Several S-CSCFs share PostgreSQL (and the nonce key): each Digest answer is claimed
        // there, so none can be replayed at another node (docs/scale-out.md).
        config.nonceUses = c.store as? any NonceUseStore
        config.trustedNodeNames = Set(trustedNodeName.map { $0.lowercased() })
        config.labTrustsPlainTransport = labPlainSipTrust
        config.trustedNetworkIDs = Set(trustedNetworkId)
        config.defaultExpires = 3600
        // The eP-CSCF caps a token registration at the token's lifetime, so the registrar
        // must accept registrations that short (else every token registration gets 423).
        config.minExpires = UInt32(clamping: max(1, min(minExpires, Int(c.tokenLifetime) / 2)))
        config.maxExpires = UInt32(clamping: max(Int(config.minExpires), maxExpires))
        config.maxContactsPerAOR = max(1, maxContacts)
        config.peers = try peers()
        let r = Registrar(configuration: config, hss: HSS(store: c.store), bindings: c.store, logger: c.logger)
        r.attach(endpoint)
        late.set(r)
        return SCSCFFunction(endpoint: endpoint, registrar: r, hostPort: "\(host):\(boundPort)")
    }

    func makeWAF(_ c: StartupContext) async throws -> WAFFunction {
        let ring = try await SigningKeyRing.load(store: c.store, tokenLifetimeLimit: c.tokenLifetime, now: unixNow())
        let client = OAuthClient(
            id: "webims-wwsf",
            secret: base64URLEncode(try await storage.sharedSecret(named: "waf-client-secret", in: c.store)),
            redirectURIs: [c.wwsfOrigin + "/oauth/callback"], wwsf: c.wwsfOrigin)
        let server = AuthorizationServer(
            configuration: WAFConfiguration(
                issuer: c.localIssuer, audience: c.audience, tokenLifetime: c.tokenLifetime,
                clients: [client] + (try web.extraWAFClients())),
            keys: ring,
            accounts: AccountService(
                store: c.store, subscribers: c.store, attemptsPerSourcePerMinute: max(1, web.loginAttemptsPerSource)))
        return WAFFunction(server: server, keys: ring, client: client)
    }

    func startEdge(
        _ c: StartupContext, identity: ServerIdentity, scscf: SCSCFFunction?, waf: WAFFunction?,
        media: (any MediaGateway)?
    ) async throws -> EdgeFunction {
        let next: SIPDestination
        if let uri = scscfURI {
            guard let parsed = try? SIPURI.parse(uri), let destination = SIPDestination(uri: parsed) else {
                throw ValidationError("--scscf-uri: not a SIP URI: \(uri)")
            }
            next = destination
        } else if let scscfEndpoint = scscf?.endpoint {
            next = SIPDestination(
                transport: .tcp, host: host, port: scscfEndpoint.address(.tcp)?.port ?? sipPort)
        } else {
            throw ValidationError("--role ep-cscf without s-cscf needs --scscf-uri")
        }
        let lateEdge = LateBound<EdgeProxy>()
        var upstream = SIPEndpointConfiguration()
        upstream.host = host
        upstream.tcpPort = 0
        upstream.trace = c.trace
        // Towards an S-CSCF over TLS this node's certificate is its credential (SCS-1).
        upstream.tlsClientConfiguration = try nodeTLSClient(identity)
        // Over TLS to the S-CSCF, the way back (requests routed by our Path) is TLS too,
        // and only from peers with a verified certificate.
        let upstreamTLS = next.transport == .tls
        if upstreamTLS {
            upstream.tlsPort = 0
            upstream.tlsServerConfiguration = try nodeTLSServer(identity)
        }
        // The WICs' side: WSS (RFC 7118) on the same endpoint, one transaction layer for both.
        var webSocket = SIPWebSocketConfiguration()
        webSocket.port = web.wssPort
        webSocket.tls = try tlsConfiguration(identity)
        webSocket.maxConnectionsPerAddress = max(1, maxConnectionsPerAddress)
        webSocket.maxConnections = max(1, maxConnections)
        webSocket.messagesPerSecond = max(1, flowMessageRate)
        webSocket.messageBurst = max(3, flowMessageRate * 3)
        let origins = OriginPolicy(
            allowed: Set((c.roles.contains(.wwsf) ? [c.wwsfOrigin] : []) + allowedOrigin), allowMissing: allowNoOrigin)
        webSocket.originPolicy = { origins.verdict($0) }
        upstream.webSocket = webSocket
        let sip = try sipEndpoint(upstream, logger: c.logger, serving: lateEdge)
        try await sip.start()
        let homeRemote = homeWafIssuer.map(trimmingSlash)
        let remoteIssuers = (self.wafIssuer.map(trimmingSlash) + (homeRemote.map { [$0] } ?? []))
            .filter { waf == nil || $0 != c.localIssuer }
        guard waf != nil || !remoteIssuers.isEmpty else {
            throw ValidationError("--role ep-cscf without waf needs --home-waf-issuer or --waf-issuer")
        }
        // Only the operator's own WAFs are home: with no local WAF, a --waf-issuer is
        // not promoted to home for being first (issue 26 item 14).
        let homeIssuers = (waf != nil ? [c.localIssuer] : []) + (homeRemote.map { [$0] } ?? [])
        let validator = TokenValidator(
            issuers: (waf.map { [TrustedIssuer(issuer: c.localIssuer, keys: $0.keys.publicKeys())] } ?? [])
                + remoteIssuers.map { TrustedIssuer(issuer: $0, keys: [:]) }, audience: c.audience)
        var clientTLS = TLSConfiguration.makeClientConfiguration()
        TLSPolicy.apply(to: &clientTLS)
        if let wafCA { clientTLS.additionalTrustRoots = [.file(wafCA)] }
        let fetchers = remoteIssuers.map {
            WAFKeyFetcher(issuer: $0, validator: validator, trust: HTTPSTrust(tls: clientTLS), logger: c.logger)
        }
        var edgeSIP = EPCSCFConfiguration(
            homeDomain: homeDomain,
            hostPort: "\(host):\(sip.address(upstreamTLS ? .tls : .tcp)?.port ?? 0)",
            authorizationServer: homeIssuers.first ?? remoteIssuers.first ?? c.localIssuer)
        edgeSIP.homeWAFs = Set(homeIssuers)
        edgeSIP.homeWWSFs = Set((c.roles.contains(.wwsf) ? [c.wwsfOrigin] : []) + homeWwsf.map(trimmingSlash))
        edgeSIP.pathTransport = upstreamTLS ? "tls" : "tcp"
        let processor = RegisterProcessor(configuration: edgeSIP, tokens: validator)
        var edgeConfig = EdgeConfiguration(scscf: next)
        edgeConfig.sipHost = host
        edgeConfig.flowCloseGrace = .seconds(max(0, flowCloseGrace))
        edgeConfig.mediaGateway = media
        edgeConfig.keyFetchers = Dictionary(fetchers.map { ($0.issuer, $0) }, uniquingKeysWith: { a, _ in a })
        if scscfURI == nil, let registrar = scscf?.registrar {
            edgeConfig.localSCSCF = registrar.handler
            edgeConfig.terminatingPeers = .inProcessOnly
        } else if upstreamTLS {
            let names = scscfName.isEmpty ? [next.host] : scscfName
            edgeConfig.terminatingPeers = .certificateNames(Set(names.map { $0.lowercased() }))
        } else {
            // Checked at start-up: only with --lab-plain-sip-trust.
            let address = try? SocketAddress.makeAddressResolvingHost(next.host, port: next.port)
            edgeConfig.terminatingPeers = .labAddresses(Set([address?.ipAddress ?? next.host]))
        }
        let server = EdgeProxy(configuration: edgeConfig, processor: processor, sip: sip, logger: c.logger)
        lateEdge.set(server)
        if edgeConfig.localSCSCF != nil, let scscfEndpoint = scscf?.endpoint, let port = sip.address(.tcp)?.port {
            // The co-located S-CSCF and eP-CSCF reach each other by a call, transactions and
            // all (INVITE, CANCEL, ACK); the eP-CSCF's SIP port takes nothing from outside
            // (docs/security.md).
            sip.linkInProcess(toHost: next.host, port: next.port, scscfEndpoint)
            scscfEndpoint.linkInProcess(toHost: host, port: port, sip)
        }
        return EdgeFunction(
            endpoint: sip, edge: server, tokens: validator, fetchers: fetchers,
            url: publicEPCSCF ?? "wss://\(web.publicHost):\(sip.address(.wss)?.port ?? web.wssPort)")
    }

    /// HTTPS: the WWSF (with the co-located WAF) and the WAF's own origin.
    func webSites(_ c: StartupContext, waf: WAFFunction?, edgeURL: String?) throws -> [HTTPSServers.Site] {
        var sites: [HTTPSServers.Site] = []
        if c.roles.contains(.wwsf), let waf {
            var remote: RemoteWAF?
            if let issuer = wwsfWafIssuer {
                guard let secret = wwsfWafClientSecret else {
                    throw ValidationError("--wwsf-waf-issuer needs --wwsf-waf-client-secret")
                }
                var clientTLS = TLSConfiguration.makeClientConfiguration()
                TLSPolicy.apply(to: &clientTLS)
                if let wafCA { clientTLS.additionalTrustRoots = [.file(wafCA)] }
                remote = RemoteWAF(issuer: issuer, clientID: wwsfWafClientId, clientSecret: secret, tls: clientTLS)
            }
            let wwsf = WWSFRoutes(
                configuration: WWSFConfiguration(
                    origin: c.wwsfOrigin, epcscfURL: edgeURL ?? publicEPCSCF ?? "", homeDomain: homeDomain,
                    wafIssuer: remote?.issuer ?? c.localIssuer,
                    staticDirectory: FileManager.default.fileExists(atPath: wicDir) ? wicDir : nil),
                waf: waf.server, client: waf.client, remote: remote)
            sites.append(.init(router: wwsf.router(), host: host, port: c.wwsfPort))
        }
        if let waf {
            sites.append(.init(router: WAFRoutes(server: waf.server).router(), host: host, port: c.wafPort))
        }
        return sites
    }

    /// Once every listener is up: endpoints.json, and what to open, with which credentials.
    func announce(
        _ c: StartupContext, scscf: SCSCFFunction?, waf: WAFFunction?, edge: EdgeFunction?, media: MediaFunction?,
        metricsPort: Int?, demo: DemoSubscriber?
    ) throws {
        try Endpoints(
            wwsf: c.roles.contains(.wwsf) ? c.wwsfOrigin + "/" : nil, wafIssuer: waf != nil ? c.localIssuer : nil,
            epcscf: edge?.url, scscf: scscf?.hostPort,
            scscfTLS: scscf?.endpoint.address(.tls).map { "\(host):\($0.port ?? 0)" },
            epcscfSIP: (edge?.endpoint.address(.tls) ?? edge?.endpoint.address(.tcp)).map(hostPort),
            homeDomain: homeDomain,
            audience: c.audience,
            metrics: metricsPort.map { "http://\(host):\($0)/metrics" }
        ).write(dataDir: storage.dataDir)
        say("webims: roles \(Role.allCases.filter(c.roles.contains).map(\.rawValue).joined(separator: ", "))")
        if c.roles.contains(.wwsf) { say("webims: WWSF  \(c.wwsfOrigin)/  (open this in a browser)") }
        if waf != nil {
            say("webims: WAF   \(c.localIssuer)  (issuer; metadata at /.well-known/oauth-authorization-server)")
        }
        if let url = edge?.url { say("webims: eP-CSCF \(url)  (SIP over secure WebSocket)") }
        if let media { say("webims: eIMS-AGW \(media.summary)") }
        if let scscfEndpoint = scscf?.endpoint {
            let udp = scscfEndpoint.address(.udp).map(hostPort) ?? "-"
            let tcp = scscfEndpoint.address(.tcp).map(hostPort) ?? "-"
            let tls = scscfEndpoint.address(.tls).map { " and TLS " + hostPort($0) } ?? ""
            say("webims: S-CSCF listening on UDP \(udp), TCP \(tcp)\(tls), home domain \(homeDomain)")
        }
        if let demo {
            say("webims: demo web account: user \(demo.username), password \(demo.webPassword)")
            say("webims: demo subscriber \(demo.impi) (\(demo.impu)), SIP Digest password: \(demo.sipPassword)")
        }
        if let ca = c.identity?.caCertificatePath {
            say("webims: TLS by a local CA: trust \(ca) in your browser (or accept the warning once per port)")
        }
        if let port = metricsPort { say("webims: metrics http://\(host):\(port)/metrics") }
        say("webims: data in \(storage.dataDir). Press Ctrl-C to stop.")
        say("webims: ready")
    }
}
