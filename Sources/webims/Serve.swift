import ArgumentParser
import EPCSCF
import Foundation
import HSS
import HTTPSClient
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
import ServiceLifecycle
import Storage
import Synchronization
import TLSPolicy
import Utilities
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

    @Option(
        help:
            "The eP-CSCF's WSS URL the WWSF announces: where it runs elsewhere, or a load balancer's, e.g. wss://webims.example.com:7443 (docs/scale-out.md)."
    )
    var publicEPCSCF: String?

    @Flag(
        help: "Log every SIP message in and out with its flow and peer (tokens, Digest responses, AKA keys redacted).")
    var sipTrace = false

    @Option(help: "Port of the Prometheus /metrics endpoint (plain HTTP; 0 picks a free port; off turns it off).")
    var metricsPort: MetricsPort = .port(9464)

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
            "Where the S-CSCF sends calls for another domain: domain=sip:host:port;transport=tcp, or sip:… alone for every other domain and for tel: numbers no subscriber has (a trunk); repeatable."
    )
    var peer: [String] = []

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

    @Option(
        help:
            "The eP-CSCF's eIMS-AGW: embedded (start rtpengine here when it is installed; the default), ng://host:port of an rtpengine elsewhere (repeatable: a call sticks to one, the next is tried when one does not answer), or none (SDP passes through: WIC to WIC only)."
    )
    var mediaGateway: [String] = []

    @Option(help: "UDP ports the embedded rtpengine relays media on, A-B.")
    var mediaPorts: String = "20000-20999"

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
        // The functions' counters at zero from the start, as Prometheus clients expect.
        if roles.contains(.scscf) { RegistrarMetrics.exportAtZero() }
        if roles.contains(.epcscf) { EdgeMetrics.exportAtZero() }
        if roles.contains(.wwsf) || roles.contains(.waf) { WebMetrics.exportAtZero() }
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

    /// Starts the functions of `roles` on an open store and runs them as services of one
    /// group until SIGTERM or SIGINT; the caller closes the store.
    func serve(
        store: any DataStore, roles: Set<Role>, registry: PrometheusCollectorRegistry, trace: SIPTrace?,
        logger: Logger
    ) async throws {
        let needsTLS = roles.contains(.wwsf) || roles.contains(.epcscf) || sipTLSPort != nil
        let identity = needsTLS ? try serverIdentity() : nil
        let wwsfPort = web.wwsfPort == 0 ? try await freePort(host: host) : web.wwsfPort
        let wafPort = web.wafPort == 0 ? try await freePort(host: host) : web.wafPort
        let c = StartupContext(
            store: store, roles: roles, identity: identity, trace: trace, logger: logger, wwsfPort: wwsfPort,
            wafPort: wafPort, wwsfOrigin: web.wwsfOrigin(port: wwsfPort),
            localIssuer: web.wafIssuer(port: wafPort), audience: web.audience(homeDomain: homeDomain),
            tokenLifetime: Int64(max(1, web.tokenLifetime)))
        let demo = roles.contains(.scscf) || roles.contains(.wwsf) ? try await provisionDemo(store) : nil

        // The SIP functions listen from here on; the group stops them.
        let scscf = roles.contains(.scscf) ? try await startSCSCF(c) : nil
        let waf = roles.contains(.waf) ? try await makeWAF(c) : nil
        let media = roles.contains(.epcscf) ? try await startMedia(logger: logger) : nil
        let edge: EdgeFunction?
        do {
            if roles.contains(.epcscf), let identity {
                edge = try await startEdge(c, identity: identity, scscf: scscf, waf: waf, media: media?.gateway)
            } else {
                edge = nil
            }
        } catch {
            await media?.embedded?.stop()
            throw error
        }
        let sites = try webSites(c, waf: waf, edgeURL: edge?.url)

        let (listening, listeningContinuation) = AsyncStream.makeStream(of: Int.self)
        let metricsPortBox = LateBound<Int>()
        let metrics =
            metricsPort.port == nil
            ? []
            : [
                MetricsEndpoint.service(
                    registry: registry, host: host, port: metricsPort.port ?? 0, logger: logger,
                    onListening: {
                        metricsPortBox.set($0)
                        listeningContinuation.yield($0)
                    })
            ]
        // Stopped last (the group stops services in reverse order), after the calls it carries.
        var services: [any Service] = media?.embedded.map { [MediaGatewayService(engine: $0)] } ?? []
        if let scscf {
            services.append(SIPFunctionService(description: "S-CSCF", endpoint: scscf.endpoint, flowGrace: nil))
        }
        if let edge {
            services.append(SIPFunctionService(description: "eP-CSCF", endpoint: edge.endpoint, flowGrace: .seconds(2)))
        }
        services.append(
            HousekeepingService(
                store: store, registrar: scscf?.registrar, keys: waf?.keys, localIssuer: c.localIssuer,
                tokens: edge?.tokens, fetchers: edge?.fetchers ?? [], edgeEndpoint: edge?.endpoint, edge: edge?.edge))
        if !sites.isEmpty || !metrics.isEmpty {
            let servers = try HTTPSServers(
                sites: sites, certificateChainPEM: identity?.certificateChainPEM ?? "",
                privateKeyPEM: identity?.privateKeyPEM ?? "", logger: logger, otherServices: metrics,
                onListening: { listeningContinuation.yield($0) })
            let ports =
                "\(host) (ports WWSF \(wwsfPort), WAF \(wafPort)"
                + (metricsPort.port.map { ", metrics \($0))" } ?? ")")
            services.append(WebService(servers: servers, ports: ports, stopped: { listeningContinuation.finish() }))
        }
        let announce: @Sendable () throws -> Void = { [self] in
            try self.announce(
                c, scscf: scscf, waf: waf, edge: edge, media: media, metricsPort: metricsPortBox.value, demo: demo)
        }
        services.append(
            ReadinessService(
                listeners: sites.count + metrics.count, listening: listening, logger: logger, announce: announce))
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: Self.quiet(logger)))
        try await group.run()
    }

    /// The group logs its own steps at debug level only; what an operator reads is ours.
    static func quiet(_ logger: Logger) -> Logger {
        var quiet = logger
        quiet.logLevel = max(logger.logLevel, .warning)
        return quiet
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
    func provisionDemo(_ store: any DataStore) async throws -> DemoSubscriber? {
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
