import ArgumentParser
import Dispatch
import EPCSCF
import Foundation
import HSS
import LocalPKI
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Prometheus
import SCSCF
import SIPAuth
import SIPCore
import SIPTransport
import Storage
import Synchronization
import TLSPolicy
import WebAuth

#if canImport(Glibc)
    import Glibc
#endif

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start every webims function in one process.",
        discussion: """
            Starts the WWSF (HTTPS, serves the WIC and the demo page), the WAF (HTTPS, OAuth \
            2.0 tokens), the eP-CSCF (SIP over secure WebSocket), the S-CSCF (SIP over UDP and \
            TCP) and the HSS, on an SQLite store in the data directory (or PostgreSQL with \
            --database). On first start it makes a local certificate authority, a server \
            certificate for localhost, the WAF's signing key, and a demo subscriber with a web \
            account, and prints the URL to open and the credentials. When every listener is up \
            it writes <data-dir>/endpoints.json and logs `ready`.
            """
    )

    @OptionGroup var storage: StorageOptions
    @OptionGroup var web: WebOptions

    @Option(
        help: ArgumentHelp(
            "A file of settings: `name = value` lines (names as the options here, without --).",
            discussion: "Precedence: command line, then WEBIMS_* environment variables, then this file."))
    var config: String?

    @Option(
        help: ArgumentHelp(
            "The functions this process runs, comma separated: wwsf, waf, ep-cscf, s-cscf, hss (default: all).",
            discussion: "The WWSF needs the WAF in the same process; the HSS runs with the S-CSCF."))
    var role: String = "wwsf,waf,ep-cscf,s-cscf,hss"

    @Option(help: "The eP-CSCF's next hop when the S-CSCF runs elsewhere, e.g. sip:10.0.0.5:5060;transport=tcp.")
    var scscfURI: String?

    @Option(help: "The eP-CSCF's WSS URL the WWSF announces when the eP-CSCF runs elsewhere.")
    var publicEPCSCF: String?

    @Flag(
        help: "Log every SIP message in and out with its flow and peer (tokens, Digest responses, AKA keys redacted).")
    var sipTrace = false

    @Option(help: "Port of the Prometheus /metrics endpoint (plain HTTP; 0 picks a free port; -1 turns it off).")
    var metricsPort: Int = 9464

    @Option(help: "Address every listener binds to (loopback unless you say otherwise).")
    var host: String = "127.0.0.1"

    @Option(help: "S-CSCF SIP port, UDP and TCP (0 picks a free port).")
    var sipPort: Int = 5060

    @Option(help: "Home domain: the digest realm and the domain of the demo identities.")
    var homeDomain: String = "ims.example.com"

    @Option(
        help: ArgumentHelp(
            "An address a trusted node (a remote eP-CSCF) sends from; repeatable.",
            discussion:
                "With --trusted-node-name, a trusted node over TLS must also come from one of these. Over plain UDP/TCP an address counts only with --lab-plain-sip-trust. The in-process eP-CSCF is always trusted."
        ))
    var trustedNode: [String] = []

    @Option(
        help: ArgumentHelp(
            "S-CSCF SIP over TLS port (0 picks a free port; off unless given).",
            discussion:
                "The listener asks for a client certificate and verifies one that is presented against this node's local CA and --sip-tls-ca."
        ))
    var sipTLSPort: Int?

    @Option(
        help:
            "A name (DNS or IP subject alternative name) whose verified TLS client certificate makes a remote eP-CSCF a trusted node (its auth-done counts); repeatable. Needs --sip-tls-port."
    )
    var trustedNodeName: [String] = []

    @Option(
        help:
            "A name the S-CSCF's TLS certificate must carry for the eP-CSCF to hand its requests down a flow; repeatable (default: the host of --scscf-uri)."
    )
    var scscfName: [String] = []

    @Option(
        help:
            "A visited network (P-Visited-Network-ID value) whose trusted nodes may send auth-done; repeatable. Unset: not checked."
    )
    var trustedNetworkId: [String] = []

    @Flag(
        help: ArgumentHelp(
            "LAB ONLY: trust --trusted-node addresses over plain UDP/TCP, and let an eP-CSCF take requests for its flows from its S-CSCF over plain TCP.",
            discussion:
                "Anyone who can send from (or spoof) such an address can then register any user and reach any flow. Never in production (docs/security.md)."
        ))
    var labPlainSipTrust = false

    @Option(
        name: .customLong("sip-tls-ca"),
        help:
            "PEM CA certificates to trust, besides this node's local CA, for SIP over TLS between eP-CSCF and S-CSCF (both directions)."
    )
    var sipTLSCA: String?

    @Option(help: "A WWSF origin whose pages may open a WebSocket to the eP-CSCF, besides this WWSF's own; repeatable.")
    var allowedOrigin: [String] = []

    @Flag(help: "Let clients that send no Origin header (non-browser SIP clients) open WebSockets.")
    var allowNoOrigin = false

    @Option(help: "Seconds a closed WebSocket's registrations stay before the eP-CSCF de-registers them.")
    var flowCloseGrace: Int = 30

    @Option(
        help:
            "Another WAF whose tokens the eP-CSCF accepts (its issuer URL; keys from its metadata's JWKS over HTTPS); repeatable."
    )
    var wafIssuer: [String] = []

    @Option(
        help: ArgumentHelp(
            "The operator's own WAF when it runs on another node (its issuer URL): its tokens are trusted as home tokens.",
            discussion:
                "Tokens of a --waf-issuer are third-party: the eP-CSCF names that WAF (waf-id, its issuer URL) to the S-CSCF, and the subscription must allow it."
        ))
    var homeWafIssuer: String?

    @Option(
        help:
            "The operator's own WWSF origin when it runs on another node; repeatable. Tokens for any other WWSF name it (wwsf-id) to the S-CSCF, and the subscription must allow it."
    )
    var homeWwsf: [String] = []

    @Option(help: "A WAF at another origin the WWSF gets tokens from (its issuer URL), instead of the local one.")
    var wwsfWafIssuer: String?

    @Option(help: "The WWSF's client id at --wwsf-waf-issuer.")
    var wwsfWafClientId: String = "webims-wwsf"

    @Option(help: "The WWSF's client secret at --wwsf-waf-issuer (better in WEBIMS_WWSF_WAF_CLIENT_SECRET).")
    var wwsfWafClientSecret: String?

    @Option(help: "PEM CA certificates to trust (besides the system's) when fetching other WAFs' keys.")
    var wafCA: String?

    @Option(help: "Most open WebSocket connections from one address (more are refused at once).")
    var maxConnectionsPerAddress: Int = 500

    @Option(
        help: "SIP messages per second one WebSocket flow may send (burst: 3 s worth); over it, the flow is closed.")
    var flowMessageRate: Int = 20

    @Option(help: "Most open WebSocket connections in all.")
    var maxConnections: Int = 50_000

    @Option(
        help:
            "PEM certificate chain for the HTTPS, WSS and SIP TLS listeners and the eP-CSCF's certificate towards the S-CSCF (default: made by the local CA)."
    )
    var tlsCertificate: String?

    @Option(help: "PEM private key for --tls-certificate.")
    var tlsKey: String?

    @Option(help: "Folder of the WIC library and demo page served by the WWSF.")
    var wicDir: String = "wic"

    @Option(
        help: "Shortest registration the S-CSCF accepts, in seconds (423 below it; at most half the token lifetime).")
    var minExpires: Int = 60

    @Option(help: "Longest registration the S-CSCF grants, in seconds.")
    var maxExpires: Int = 600_000

    @Option(help: "Most bindings (contacts) one public identity may hold; a REGISTER adding more gets 403.")
    var maxContacts: Int = 20

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    func run() async throws {
        var configuredLogger = Logger(label: "webims")
        configuredLogger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
        let logger = configuredLogger
        raiseOpenFileLimit()
        MemoryTrimmer.configure()
        let roles = try Role.parse(role)
        try checkTrust(roles: roles, logger: logger)
        let registry = MetricsEndpoint.bootstrap()
        let trace = sipTrace ? SIPTrace(logger: Logger(label: "webims.sip-trace")) : nil
        let store = try await storage.open()
        do {
            try await serve(store: store, roles: roles, registry: registry, trace: trace, logger: logger)
        } catch {
            // A start-up failure (a port taken, a bad certificate) still closes the database
            // clean, as a shutdown does.
            await store.close()
            throw error
        }
        await store.close()
    }

    /// Starts the functions of `roles` on an open store, runs until SIGTERM/SIGINT, and stops
    /// them; the caller closes the store.
    func serve(
        store: any DataStore, roles: Set<Role>, registry: PrometheusCollectorRegistry, trace: SIPTrace?,
        logger: Logger
    ) async throws {
        let needsTLS = roles.contains(.wwsf) || roles.contains(.epcscf) || sipTLSPort != nil
        let identity = needsTLS ? try serverIdentity() : nil

        let wwsfPort = web.wwsfPort == 0 ? try await freePort(host: host) : web.wwsfPort
        let wafPort = web.wafPort == 0 ? try await freePort(host: host) : web.wafPort
        let wwsfOrigin = origin("https", web.publicHost, wwsfPort)
        let localIssuer = origin("https", web.publicHost, wafPort)
        let audience = web.audience(homeDomain: homeDomain)
        let tokenLifetime = Int64(max(1, web.tokenLifetime))
        let demo = roles.contains(.scscf) || roles.contains(.wwsf) ? try await provisionDemo(store) : nil

        // S-CSCF and HSS.
        var scscfEndpoint: SIPEndpoint?
        var registrar: Registrar?
        var scscfHostPort: String?
        if roles.contains(.scscf) {
            var sip = SIPEndpointConfiguration()
            sip.host = host
            sip.udpPort = sipPort
            sip.tcpPort = sipPort
            sip.trace = trace
            if let identity {
                // Towards an eP-CSCF's TLS Path this node's certificate is its credential.
                sip.tlsClientConfiguration = try nodeTLSClient(identity)
            }
            if let sipTLSPort, let identity {
                sip.tlsPort = sipTLSPort
                sip.tlsServerConfiguration = try nodeTLSServer(identity)
            }
            // The registrar needs the port actually bound (for Service-Route), so it is
            // plugged in once the listeners are up; until then requests get 503.
            let late = LateBound<Registrar>()
            let endpoint = try SIPEndpoint(configuration: sip, logger: logger) { request, peer in
                guard let registrar = late.value else { return notReady(request) }
                return await registrar.handle(request, from: peer)
            }
            try await endpoint.start()
            let boundPort = endpoint.address(.udp)?.port ?? sipPort
            // The co-located eP-CSCF calls in process: trusted for that, never by address.
            var config = SCSCFConfiguration(
                homeDomain: homeDomain, hostPort: "\(host):\(boundPort)", trustedNodes: Set(trustedNode),
                nonceKey: try storage.secret(named: "nonce.key"))
            config.trustedNodeNames = Set(trustedNodeName.map { $0.lowercased() })
            config.labTrustsPlainTransport = labPlainSipTrust
            config.trustedNetworkIDs = Set(trustedNetworkId)
            config.defaultExpires = 3600
            // The eP-CSCF caps a token registration at the token's lifetime, so the registrar
            // must accept registrations that short (else every token registration gets 423).
            config.minExpires = UInt32(clamping: max(1, min(minExpires, Int(tokenLifetime) / 2)))
            config.maxExpires = UInt32(clamping: max(Int(config.minExpires), maxExpires))
            config.maxContactsPerAOR = max(1, maxContacts)
            let r = Registrar(configuration: config, hss: HSS(store: store), bindings: store, logger: logger)
            r.attach(endpoint)
            late.set(r)
            scscfEndpoint = endpoint
            registrar = r
            scscfHostPort = "\(host):\(boundPort)"
        }

        // WAF (its keys live in the store, so every WAF node signs with the same ones).
        var waf: AuthorizationServer?
        var keys: SigningKeyRing?
        var wwsfClient: OAuthClient?
        if roles.contains(.waf) {
            let ring = try await SigningKeyRing.load(store: store, tokenLifetimeLimit: tokenLifetime, now: unixNow())
            let client = OAuthClient(
                id: "webims-wwsf", secret: base64URLEncode(try storage.secret(named: "waf-client-secret")),
                redirectURIs: [wwsfOrigin + "/oauth/callback"], wwsf: wwsfOrigin)
            waf = AuthorizationServer(
                configuration: WAFConfiguration(
                    issuer: localIssuer, audience: audience, tokenLifetime: tokenLifetime,
                    clients: [client] + (try web.extraWAFClients())),
                keys: ring, accounts: AccountService(store: store, subscribers: store))
            keys = ring
            wwsfClient = client
        }

        // eP-CSCF: WSS towards WICs, SIP over TCP towards the S-CSCF.
        var edge: WebSocketServer?
        var toSCSCF: SIPEndpoint?
        var tokens: TokenValidator?
        var fetchers: [WAFKeyFetcher] = []
        var epcscfURL: String?
        if roles.contains(.epcscf), let identity {
            let next: SIPDestination
            if let uri = scscfURI {
                guard let parsed = try? SIPURI.parse(uri), let destination = SIPDestination(uri: parsed) else {
                    throw ValidationError("--scscf-uri: not a SIP URI: \(uri)")
                }
                next = destination
            } else if let scscfEndpoint {
                next = SIPDestination(
                    transport: .tcp, host: host, port: scscfEndpoint.address(.tcp)?.port ?? sipPort)
            } else {
                throw ValidationError("--role ep-cscf without s-cscf needs --scscf-uri")
            }
            let lateEdge = LateBound<WebSocketServer>()
            var upstream = SIPEndpointConfiguration()
            upstream.host = host
            upstream.tcpPort = 0
            upstream.trace = trace
            // Towards an S-CSCF over TLS this node's certificate is its credential (SCS-1).
            upstream.tlsClientConfiguration = try nodeTLSClient(identity)
            // Over TLS to the S-CSCF, the way back (requests routed by our Path) is TLS too,
            // and only from peers with a verified certificate.
            let upstreamTLS = next.transport == .tls
            if upstreamTLS {
                upstream.tlsPort = 0
                upstream.tlsServerConfiguration = try nodeTLSServer(identity)
            }
            let sip = try SIPEndpoint(configuration: upstream, logger: logger) { request, peer in
                await lateEdge.value?.terminating(request, from: peer)
            }
            try await sip.start()
            func trimmed(_ url: String) -> String { url.hasSuffix("/") ? String(url.dropLast()) : url }
            let homeRemote = homeWafIssuer.map(trimmed)
            let remoteIssuers = (self.wafIssuer.map(trimmed) + (homeRemote.map { [$0] } ?? []))
                .filter { keys == nil || $0 != localIssuer }
            guard keys != nil || !remoteIssuers.isEmpty else {
                throw ValidationError("--role ep-cscf without waf needs --home-waf-issuer or --waf-issuer")
            }
            // Only the operator's own WAFs are home: with no local WAF, a --waf-issuer is
            // not promoted to home for being first (issue 26 item 14).
            let homeIssuers = (keys != nil ? [localIssuer] : []) + (homeRemote.map { [$0] } ?? [])
            let validator = TokenValidator(
                issuers: (keys.map { [TrustedIssuer(issuer: localIssuer, keys: $0.publicKeys())] } ?? [])
                    + remoteIssuers.map { TrustedIssuer(issuer: $0, keys: [:]) }, audience: audience)
            var clientTLS = TLSConfiguration.makeClientConfiguration()
            TLSPolicy.apply(to: &clientTLS)
            if let wafCA { clientTLS.additionalTrustRoots = [.file(wafCA)] }
            fetchers = remoteIssuers.map {
                WAFKeyFetcher(issuer: $0, validator: validator, tls: clientTLS, logger: logger)
            }
            var edgeSIP = EPCSCFConfiguration(
                homeDomain: homeDomain,
                hostPort: "\(host):\(sip.address(upstreamTLS ? .tls : .tcp)?.port ?? 0)",
                authorizationServer: homeIssuers.first ?? remoteIssuers.first ?? localIssuer)
            edgeSIP.homeWAFs = Set(homeIssuers)
            edgeSIP.homeWWSFs = Set((roles.contains(.wwsf) ? [wwsfOrigin] : []) + homeWwsf.map(trimmed))
            edgeSIP.pathTransport = upstreamTLS ? "tls" : "tcp"
            let processor = RegisterProcessor(configuration: edgeSIP, tokens: validator)
            var edgeConfig = WebSocketServerConfiguration(
                allowedOrigins: Set((roles.contains(.wwsf) ? [wwsfOrigin] : []) + allowedOrigin), scscf: next)
            edgeConfig.host = host
            edgeConfig.port = web.wssPort
            edgeConfig.sipHost = host
            edgeConfig.allowMissingOrigin = allowNoOrigin
            edgeConfig.flowCloseGrace = .seconds(max(0, flowCloseGrace))
            edgeConfig.maxConnectionsPerAddress = max(1, maxConnectionsPerAddress)
            edgeConfig.maxConnections = max(1, maxConnections)
            edgeConfig.messagesPerSecond = max(1, flowMessageRate)
            edgeConfig.messageBurst = max(3, flowMessageRate * 3)
            edgeConfig.keyFetchers = Dictionary(fetchers.map { ($0.issuer, $0) }, uniquingKeysWith: { a, _ in a })
            edgeConfig.tls = try tlsConfiguration(identity)
            edgeConfig.trace = trace
            if scscfURI == nil, let registrar {
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
            let server = try WebSocketServer(
                configuration: edgeConfig, processor: processor, sip: sip, logger: logger)
            try await server.start()
            lateEdge.set(server)
            if edgeConfig.localSCSCF != nil, let scscfEndpoint, let port = sip.address(.tcp)?.port {
                // Requests the co-located S-CSCF routes to our Path or Record-Route come by a
                // call; the eP-CSCF's SIP port takes nothing from outside (docs/security.md).
                scscfEndpoint.deliverInProcess(toHost: host, port: port) { request, peer in
                    await server.terminating(request, from: peer)
                }
            }
            edge = server
            toSCSCF = sip
            tokens = validator
            epcscfURL = "wss://\(web.publicHost):\(server.port ?? web.wssPort)"
        }

        // HTTPS: the WWSF (with the co-located WAF) and the WAF's own origin.
        var sites: [HTTPSServers.Site] = []
        if roles.contains(.wwsf), let waf, let wwsfClient {
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
                    origin: wwsfOrigin, epcscfURL: epcscfURL ?? publicEPCSCF ?? "", homeDomain: homeDomain,
                    wafIssuer: remote?.issuer ?? localIssuer,
                    staticDirectory: FileManager.default.fileExists(atPath: wicDir) ? wicDir : nil),
                waf: waf, client: wwsfClient, remote: remote)
            sites.append(.init(router: wwsf.router(), host: host, port: wwsfPort))
        }
        if let waf { sites.append(.init(router: WAFRoutes(server: waf).router(), host: host, port: wafPort)) }

        let fetching = fetchers.map { fetcher in Task { await fetcher.run() } }
        let background = Task { [registrar, keys, tokens, edge] in
            // Expired bindings leave the store on time; a key rotated by another node or by
            // `webims waf rotate-key`, and new revocations, reach the eP-CSCF within 5 s.
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(5))
                await registrar?.removeExpiredBindings()
                if let keys {
                    try? await keys.reload(now: unixNow())
                    tokens?.setKeys(keys.publicKeys(), issuer: localIssuer)
                }
                if let tokens, let list = try? await store.revocations(now: unixNow()) {
                    tokens.setRevocations(tokenIDs: list.tokenIDs, subjects: list.subjects)
                }
                if let edge { MemoryTrimmer.afterLoad(edge.takeConnectionHighWater()) }
            }
        }

        let (listening, listeningContinuation) = AsyncStream.makeStream(of: Int.self)
        let metricsPortBox = LateBound<Int>()
        let metrics =
            metricsPort < 0
            ? []
            : [
                MetricsEndpoint.service(
                    registry: registry, host: host, port: metricsPort, logger: logger,
                    onListening: {
                        metricsPortBox.set($0)
                        listeningContinuation.yield($0)
                    })
            ]
        let https =
            sites.isEmpty && metrics.isEmpty
            ? nil
            : try HTTPSServers(
                sites: sites, certificateChainPEM: identity?.certificateChainPEM ?? "",
                privateKeyPEM: identity?.privateKeyPEM ?? "", logger: logger, otherServices: metrics,
                onListening: { listeningContinuation.yield($0) })
        let siteCount = sites.count + metrics.count
        try await withThrowingTaskGroup(of: Void.self) { group in
            if let https {
                group.addTask {
                    // A listener that cannot bind (its port taken) ends the servers: stop
                    // waiting for the others to come up.
                    defer { listeningContinuation.finish() }
                    try await https.run()
                }
            }
            var up = 0
            if siteCount > 0 {
                for await _ in listening {
                    up += 1
                    if up == siteCount { break }
                }
            }
            if up < siteCount {
                let ports = "WWSF \(wwsfPort), WAF \(wafPort)" + (metricsPort < 0 ? "" : ", metrics \(metricsPort)")
                do {
                    try await group.waitForAll()
                } catch {
                    throw ServeError(description: "cannot listen on \(host) (ports \(ports)): \(error)")
                }
                throw ServeError(
                    description: "the HTTP listeners on \(host) (ports \(ports)) stopped before all were up")
            }
            try Endpoints(
                wwsf: roles.contains(.wwsf) ? wwsfOrigin + "/" : nil, wafIssuer: waf != nil ? localIssuer : nil,
                epcscf: epcscfURL, scscf: scscfHostPort,
                scscfTLS: scscfEndpoint?.address(.tls).map { "\(host):\($0.port ?? 0)" },
                epcscfSIP: (toSCSCF?.address(.tls) ?? toSCSCF?.address(.tcp)).map(hostPort), homeDomain: homeDomain,
                audience: audience,
                metrics: metricsPortBox.value.map { "http://\(host):\($0)/metrics" }
            ).write(dataDir: storage.dataDir)
            say("webims: roles \(Role.allCases.filter(roles.contains).map(\.rawValue).joined(separator: ", "))")
            if roles.contains(.wwsf) { say("webims: WWSF  \(wwsfOrigin)/  (open this in a browser)") }
            if waf != nil {
                say("webims: WAF   \(localIssuer)  (issuer; metadata at /.well-known/oauth-authorization-server)")
            }
            if let epcscfURL { say("webims: eP-CSCF \(epcscfURL)  (SIP over secure WebSocket)") }
            if let scscfEndpoint {
                let udp = scscfEndpoint.address(.udp).map(hostPort) ?? "-"
                let tcp = scscfEndpoint.address(.tcp).map(hostPort) ?? "-"
                let tls = scscfEndpoint.address(.tls).map { " and TLS " + hostPort($0) } ?? ""
                say("webims: S-CSCF listening on UDP \(udp), TCP \(tcp)\(tls), home domain \(homeDomain)")
            }
            if let demo {
                say("webims: demo web account: user \(demo.username), password \(demo.webPassword)")
                say("webims: demo subscriber \(demo.impi) (\(demo.impu)), SIP Digest password: \(demo.sipPassword)")
            }
            if let ca = identity?.caCertificatePath {
                say("webims: TLS by a local CA: trust \(ca) in your browser (or accept the warning once per port)")
            }
            if let port = metricsPortBox.value { say("webims: metrics http://\(host):\(port)/metrics") }
            say("webims: data in \(storage.dataDir). Press Ctrl-C to stop.")
            say("webims: ready")
            logger.info("ready")

            await waitForTerminationSignal()
            logger.info("shutting down")
            await https?.shutdown()
            try await group.waitForAll()
        }
        background.cancel()
        for task in fetching { task.cancel() }
        await edge?.shutdown()
        await toSCSCF?.shutdown()
        await scscfEndpoint?.shutdown()
    }

    /// Trust between nodes is a certificate, never an address (docs/security.md): settings
    /// that would trust plain UDP/TCP are a start-up error unless the operator says lab.
    func checkTrust(roles: Set<Role>, logger: Logger) throws {
        let lab = "--lab-plain-sip-trust (lab only: anyone who can send from that address can register any user)"
        if roles.contains(.scscf) {
            if !trustedNode.isEmpty, trustedNodeName.isEmpty, !labPlainSipTrust {
                throw ValidationError(
                    "--trusted-node trusts an address, which plain UDP/TCP cannot prove: name the node's certificate with --trusted-node-name and open --sip-tls-port, or add \(lab)"
                )
            }
            if !trustedNodeName.isEmpty, sipTLSPort == nil {
                throw ValidationError(
                    "--trusted-node-name needs --sip-tls-port: trusted nodes reach the S-CSCF over TLS")
            }
        }
        if roles.contains(.epcscf), let uri = scscfURI, let parsed = try? SIPURI.parse(uri),
            let next = SIPDestination(uri: parsed), next.transport != .tls, !labPlainSipTrust
        {
            throw ValidationError(
                "--scscf-uri over \(next.transport.rawValue): the S-CSCF link carries auth-done and requests for the flows, so it must be TLS (transport=tls or sips:), or add \(lab)"
            )
        }
        if labPlainSipTrust {
            logger.warning(
                "--lab-plain-sip-trust: trusting addresses over plain UDP/TCP between the CSCFs; never in production")
        }
    }

    func serverIdentity() throws -> ServerIdentity {
        if let certificate = tlsCertificate {
            guard let key = tlsKey else { throw ValidationError("--tls-certificate needs --tls-key") }
            return try LocalCertificateAuthority.serverIdentity(certificatePath: certificate, keyPath: key)
        }
        var names = ["localhost"]
        if !names.contains(web.publicHost) && !web.publicHost.allSatisfy({ $0.isNumber || $0 == "." || $0 == ":" }) {
            names.append(web.publicHost)
        }
        return try LocalCertificateAuthority.serverIdentity(in: storage.dataDir + "/tls", hostNames: names)
    }

    /// SIP over TLS between the nodes (SCS-1): this node's certificate, and as trust roots its
    /// local CA and --sip-tls-ca.
    func nodeTLSServer(_ identity: ServerIdentity) throws -> TLSConfiguration {
        try SIPNodeTLS.server(
            certificateChainPEM: identity.certificateChainPEM, privateKeyPEM: identity.privateKeyPEM,
            caFiles: nodeTrustRoots(identity))
    }

    func nodeTLSClient(_ identity: ServerIdentity) throws -> TLSConfiguration {
        try SIPNodeTLS.client(
            certificateChainPEM: identity.certificateChainPEM, privateKeyPEM: identity.privateKeyPEM,
            caFiles: nodeTrustRoots(identity))
    }

    func nodeTrustRoots(_ identity: ServerIdentity) -> [String] {
        [identity.caCertificatePath, sipTLSCA].compactMap { $0 }
    }

    /// On an empty store: one subscriber with a web account to try things with. The
    /// passwords are shown once (only HA1 and a PBKDF2 hash are stored).
    func provisionDemo(_ store: any DataStore) async throws -> (
        impi: String, impu: String, sipPassword: String, username: String, webPassword: String
    )? {
        guard try await store.allSubscribers().isEmpty, try await store.allAccounts().isEmpty else { return nil }
        let impi = "alice@\(homeDomain)"
        let impu = "sip:alice@\(homeDomain)"
        let password = randomToken(length: 12)
        let ha1 = digestHA1(impi: impi, realm: homeDomain, password: password)
        try await store.put(
            SubscriberRecord(
                impi: impi, realm: homeDomain, publicIdentities: [PublicIdentity(uri: impu)],
                allowedSchemes: [.digest, .trustedNode], ha1MD5: ha1.md5, ha1SHA256: ha1.sha256))
        let webPassword = randomToken(length: 12)
        try await store.put(
            WebAccount(username: "alice", passwordHash: try PasswordHasher().hash(webPassword), impi: impi))
        return (impi, impu, password, "alice", webPassword)
    }
}

/// After a burst of connections closes, hands the freed heap back to the system (glibc
/// keeps it otherwise), so resident memory returns towards its baseline.
enum MemoryTrimmer {
    /// Buffers of 16 KiB and more come straight from mmap, so their pages cost memory only
    /// once touched. Each TLS connection keeps a 32 KiB plaintext buffer and a 16 KiB
    /// outbound buffer (NIOSSL) of which an idle SIP flow touches a page or two; carved
    /// from the heap they would sit on pages other data had already touched.
    static func configure() {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return }
        let mallopt = unsafeBitCast(symbol, to: (@convention(c) (Int32, Int32) -> Int32).self)
        let mmapThreshold: Int32 = -3  // M_MMAP_THRESHOLD in glibc's malloc.h
        _ = mallopt(mmapThreshold, 16 * 1024)
    }

    /// The connection count at the last trim.
    private static let trimmedAt = Mutex(0)

    /// Every few seconds: once the number of connections has moved by 100 or more since
    /// the last trim, hand freed heap pages back to the system. A burst of registrations
    /// leaves its task and message memory freed but resident until then.
    static func afterLoad(_ stats: (highWater: Int, now: Int)) {
        let due = trimmedAt.withLock { last -> Bool in
            guard abs(stats.now - last) >= 100 || stats.highWater - stats.now >= 100 else { return false }
            last = stats.now
            return true
        }
        if due, let trim = mallocTrim { _ = trim(0) }
    }

    /// glibc's malloc_trim, looked up at run time (the Glibc module does not export it).
    static let mallocTrim: (@convention(c) (Int) -> Int32)? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_trim") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (Int) -> Int32).self)
    }()
}

/// Every WebSocket is a file descriptor: use the whole hard limit, not the soft 1024.
func raiseOpenFileLimit() {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
    limit.rlim_cur = limit.rlim_max
    _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
}

func tlsConfiguration(_ identity: ServerIdentity) throws -> TLSConfiguration {
    var tls = TLSConfiguration.makeServerConfiguration(
        certificateChain: try NIOSSLCertificate.fromPEMBytes(Array(identity.certificateChainPEM.utf8)).map {
            .certificate($0)
        },
        privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(identity.privateKeyPEM.utf8), format: .pem)))
    TLSPolicy.apply(to: &tls)
    return tls
}

/// The functions `serve` can run (ARCHITECTURE.md).
enum Role: String, CaseIterable {
    case wwsf
    case waf
    case epcscf = "ep-cscf"
    case scscf = "s-cscf"
    case hss

    static func parse(_ text: String) throws -> Set<Role> {
        var roles = Set<Role>()
        for name in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces).lowercased() }) {
            guard let role = Role(rawValue: name) else {
                throw ValidationError(
                    "unknown role \(name); roles are \(allCases.map(\.rawValue).joined(separator: ", "))")
            }
            roles.insert(role)
        }
        guard !roles.isEmpty else { throw ValidationError("--role names no function") }
        if roles.contains(.wwsf) && !roles.contains(.waf) {
            throw ValidationError("the WWSF needs the WAF in the same process (--role wwsf,waf)")
        }
        // The HSS is the S-CSCF's in-process Cx: one goes with the other.
        if roles.contains(.scscf) { roles.insert(.hss) }
        if roles.contains(.hss) { roles.insert(.scscf) }
        return roles
    }
}

/// 503 before the function behind a listener is plugged in; out of line, so the handler's
/// async frame (one per request) does not hold a response it almost never builds.
@inline(never)
func notReady(_ request: SIPRequest) -> SIPResponse {
    SIPResponse(replyingTo: request, statusCode: 503, toTag: randomToken(length: 8))
}

/// A value that exists only after start-up, read from request handlers.
final class LateBound<Value: Sendable>: Sendable {
    private let storage = Mutex<Value?>(nil)
    var value: Value? { storage.withLock { $0 } }
    func set(_ value: Value) { storage.withLock { $0 = value } }
}

/// Suspends until SIGINT or SIGTERM.
func waitForTerminationSignal() async {
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        let queue = DispatchQueue(label: "webims.signals")
        let once = SignalOnce(continuation)
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: queue)
            source.setEventHandler { once.fire() }
            source.resume()
            once.keep(source)
        }
    }
}

/// Resumes the continuation on the first signal only. `sources` is written only while
/// setting up, before any handler can run; it keeps the sources alive.
private final class SignalOnce: @unchecked Sendable {
    private let continuation: Mutex<CheckedContinuation<Void, Never>?>
    private var sources: [any DispatchSourceSignal] = []

    init(_ continuation: CheckedContinuation<Void, Never>) { self.continuation = Mutex(continuation) }

    func keep(_ source: any DispatchSourceSignal) { sources.append(source) }

    func fire() {
        let pending = continuation.withLock { value in
            defer { value = nil }
            return value
        }
        pending?.resume()
    }
}

func hostPort(_ address: SocketAddress) -> String {
    "\(address.ipAddress ?? "?"):\(address.port ?? 0)"
}

/// One line to standard output, unbuffered: scripts wait for these lines while the
/// server runs (print would sit in a buffer when stdout is a file).
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

/// A start-up failure `serve` reports and exits with.
struct ServeError: Error, CustomStringConvertible {
    var description: String
}
