import EPCSCF
import Foundation
import HSS
import NIOSSL
import SCSCF
import SIPCore
import SIPTransport
import Storage
import Synchronization

/// eP-CSCF (WSS) in front of a real S-CSCF on SQLite, with a test WAF.
public struct EdgeHarness: Sendable {
    public let waf: TestWAF
    public let storage: any DataStore
    public let scscf: SIPEndpoint
    public let toSCSCF: SIPEndpoint
    public let edge: EdgeProxy
    public let location: String
    public let registrar: Registrar

    public static let origin = "https://wwsf.ims.example.com"

    /// The S-CSCF here is a separate endpoint over TCP on loopback: lab trust both ways,
    /// unless a test names the peers the eP-CSCF takes flow requests from.
    static func start(
        grace: Duration = .seconds(30), terminatingPeers: TerminatingPeers = .labAddresses(["127.0.0.1"])
    ) async throws
        -> EdgeHarness
    {
        let (storage, location) = try await StoreBackend.sqlite.makeFreshStore()
        let ha1 = digestHA1(impi: "alice_private@ims.example.com", realm: "ims.example.com", password: "alice-secret")
        try await storage.put(
            SubscriberRecord(
                impi: "alice_private@ims.example.com", realm: "ims.example.com",
                publicIdentities: [PublicIdentity(uri: "sip:alice@ims.example.com")],
                allowedSchemes: [.digest, .trustedNode],
                ha1MD5: ha1.md5, ha1SHA256: ha1.sha256))
        var scscfConfig = SIPEndpointConfiguration()
        scscfConfig.tcpPort = 0
        // The registrar needs the bound port (its Service-Route names it): plugged in after.
        let lateRegistrar = Late<Registrar>()
        let scscf = try SIPEndpoint(
            configuration: scscfConfig,
            handler: { request, peer in await lateRegistrar.value?.handle(request, from: peer) },
            sessionHandler: { request, transaction in await lateRegistrar.value?.session(request, transaction) })
        try await scscf.start()
        var scscfSettings = SCSCFConfiguration(
            homeDomain: "ims.example.com", hostPort: "127.0.0.1:\(scscf.address(.tcp)?.port ?? 0)",
            trustedNodes: ["127.0.0.1"])
        scscfSettings.labTrustsPlainTransport = true
        let registrar = Registrar(configuration: scscfSettings, hss: HSS(store: storage), bindings: storage)
        registrar.attach(scscf)
        lateRegistrar.set(registrar)
        let cert = try makeTestCertificate()
        var upstreamConfig = SIPEndpointConfiguration()
        upstreamConfig.tcpPort = 0
        var webSocket = SIPWebSocketConfiguration()
        webSocket.port = 0
        webSocket.tls = .makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMBytes(Array(cert.certificate.utf8)).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(cert.key.utf8), format: .pem)))
        let origins = OriginPolicy(allowed: [origin])
        webSocket.originPolicy = { origins.verdict($0) }
        upstreamConfig.webSocket = webSocket
        // Requests from the flows and from the S-CSCF side go to the edge, which exists later.
        let late = Late<EdgeProxy>()
        let toSCSCF = try SIPEndpoint(
            configuration: upstreamConfig,
            handler: { request, peer in await late.value?.handle(request, from: peer) },
            sessionHandler: { request, transaction in await late.value?.session(request, transaction) })
        try await toSCSCF.start()
        var config = EdgeConfiguration(
            scscf: SIPDestination(transport: .tcp, host: "127.0.0.1", port: scscf.address(.tcp)?.port ?? 0))
        config.flowCloseGrace = grace
        config.terminatingPeers = terminatingPeers
        let waf = TestWAF()
        var edgeSettings = EPCSCFConfiguration(
            homeDomain: "ims.example.com", hostPort: "127.0.0.1:\(toSCSCF.address(.tcp)?.port ?? 0)",
            authorizationServer: TestWAF.issuer)
        edgeSettings.homeWWSFs = [origin]
        let processor = RegisterProcessor(
            configuration: edgeSettings, tokens: TokenValidator(issuers: [waf.trusted], audience: TestWAF.audience))
        let edge = EdgeProxy(configuration: config, processor: processor, sip: toSCSCF, logger: .init(label: "test"))
        late.set(edge)
        return EdgeHarness(
            waf: waf, storage: storage, scscf: scscf, toSCSCF: toSCSCF, edge: edge, location: location,
            registrar: registrar)
    }

    init(
        waf: TestWAF, storage: any DataStore, scscf: SIPEndpoint, toSCSCF: SIPEndpoint, edge: EdgeProxy,
        location: String, registrar: Registrar
    ) {
        self.registrar = registrar
        self.storage = storage
        self.scscf = scscf
        self.toSCSCF = toSCSCF
        self.edge = edge
        self.location = location
        self.waf = waf
    }

    public var wssPort: Int { toSCSCF.address(.wss)?.port ?? 0 }

    /// Runs `body` with a fresh harness and stops it afterwards, also when `body` throws.
    public static func with<T>(
        grace: Duration = .seconds(30), terminatingPeers: TerminatingPeers = .labAddresses(["127.0.0.1"]),
        _ body: (EdgeHarness) async throws -> T
    ) async throws -> T {
        try await scoped(
            try await start(grace: grace, terminatingPeers: terminatingPeers), stop: { await $0.stop() }, body)
    }

    func stop() async {
        await toSCSCF.closeFlows(grace: .seconds(2))
        await toSCSCF.shutdown()
        await scscf.shutdown()
        await storage.close()
        try? FileManager.default.removeItem(atPath: location)
    }

    public func client() async throws -> RawWSSClient { try await RawWSSClient(port: wssPort) }
}

/// A function made after the endpoint it serves (it names the endpoint's ports).
final class Late<Value: Sendable>: Sendable {
    let storage = Mutex<Value?>(nil)
    var value: Value? { storage.withLock { $0 } }
    func set(_ value: Value) { storage.withLock { $0 = value } }
}

/// A token valid now (the tests' TestWAF uses a fixed t0; this one uses the real clock).
public func liveToken(_ waf: TestWAF) throws -> String {
    let now = Date().timeIntervalSince1970
    return try waf.token(claims: ["exp": now + 3600, "iat": now - 5])
}
