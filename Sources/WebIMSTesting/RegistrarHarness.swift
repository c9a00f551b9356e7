import Foundation
import HSS
import SCSCF
import SIPCore
import SIPTransport
import Storage
import Synchronization
import Utilities

/// A clock tests can move.
public final class TestClock: Sendable {
    public init() {}

    public let now = Mutex(Date(timeIntervalSince1970: 1_893_453_000))
    public func advance(_ seconds: TimeInterval) { now.withLock { $0 = $0.addingTimeInterval(seconds) } }
    public var read: @Sendable () -> Date { { self.now.withLock { $0 } } }
}

/// A real S-CSCF on loopback (UDP + TCP) over a fresh SQLite file, and a UA endpoint.
public struct RegistrarHarness: Sendable {
    public static let home = "ims.example.com"
    /// A Digest and TNA subscriber with three IMPUs (one tel:, one barred).
    public static let aliceIMPI = "alice_private@ims.example.com"
    public static let aliceIMPU = "sip:alice@ims.example.com"
    /// An IMS AKA subscriber with TS 35.208 test set 1's K and OPc.
    public static let bobIMPI = "001010000000001@ims.example.com"
    public static let bobIMPU = "sip:001010000000001@ims.example.com"
    public static let setOneK: [UInt8] = bytes(hex: "465b5ce8b199b49faa5f0a2ee238a6bc") ?? []
    public static let setOneOPc: [UInt8] = bytes(hex: "cd63cb71954a9f4e48a5994e37a02baf") ?? []

    public let storage: any DataStore
    public let registrar: Registrar
    public let server: SIPEndpoint
    public let client: SIPEndpoint
    public let clock: TestClock
    public let location: String

    public static func start(
        _ backend: StoreBackend = .sqlite, clientHost: String = "127.0.0.1", trusted: Set<String> = ["127.0.0.1"],
        lab: Bool = true, configure: (inout SCSCFConfiguration) -> Void = { _ in },
        networkIDs: Set<String> = [], wrapBindings: (any BindingStore) -> any BindingStore = { $0 },
        wrapSubscribers: (any SubscriberStore) -> any SubscriberStore = { $0 }
    )
        async throws -> RegistrarHarness
    {
        let (storage, location) = try await backend.makeFreshStore()
        let ha1 = digestHA1(impi: Self.aliceIMPI, realm: Self.home, password: "alice-secret")
        try await storage.put(
            SubscriberRecord(
                impi: Self.aliceIMPI, realm: Self.home,
                publicIdentities: [
                    PublicIdentity(uri: Self.aliceIMPU), PublicIdentity(uri: "tel:+15551234567"),
                    PublicIdentity(uri: "sip:alice-barred@ims.example.com", barred: true),
                ],
                allowedSchemes: [.digest, .trustedNode], ha1MD5: ha1.md5, ha1SHA256: ha1.sha256,
                allowedWAFs: ["https://waf.partner.example/"], allowedWWSFs: ["https://wwsf.partner.example"]))
        try await storage.put(
            SubscriberRecord(
                impi: Self.bobIMPI, realm: Self.home, publicIdentities: [PublicIdentity(uri: Self.bobIMPU)],
                allowedSchemes: [.aka],
                akaK: Self.setOneK, akaOPc: Self.setOneOPc, akaAMF: [0x80, 0x00], sqn: 0x20))
        let clock = TestClock()
        var config = SCSCFConfiguration(homeDomain: Self.home, hostPort: "127.0.0.1", trustedNodes: trusted)
        config.minExpires = 60
        config.trustedNetworkIDs = networkIDs
        // These suites drive the registrar over UDP from loopback: lab mode, as its flag says.
        config.labTrustsPlainTransport = lab
        configure(&config)
        let registrar = Registrar(
            configuration: config, hss: HSS(store: wrapSubscribers(storage)), bindings: wrapBindings(storage),
            clock: clock.read)
        var serverConfig = SIPEndpointConfiguration()
        serverConfig.udpPort = 0
        serverConfig.tcpPort = 0
        let server = try SIPEndpoint(
            configuration: serverConfig, handler: registrar.handler, sessionHandler: registrar.sessionHandler)
        try await server.start()
        // The proxy core it forwards calls and NOTIFYs with.
        registrar.attach(server)
        var clientConfig = SIPEndpointConfiguration()
        clientConfig.host = clientHost
        clientConfig.udpPort = 0
        // T1 250 ms: a request unanswered for 16 s (Timer F) is lost. With 50 ms (3.2 s), a CI
        // run with every suite in parallel on two cores once timed a challenge out.
        clientConfig.timers = SIPTimers(t1: .milliseconds(250))
        let client = try SIPEndpoint(configuration: clientConfig) { _, _ in nil }
        try await client.start()
        return RegistrarHarness(
            storage: storage, registrar: registrar, server: server, client: client, clock: clock, location: location)
    }

    /// Runs `body` with a fresh S-CSCF and stops it afterwards, also when `body` throws.
    public static func with<T>(
        _ backend: StoreBackend = .sqlite, clientHost: String = "127.0.0.1", trusted: Set<String> = ["127.0.0.1"],
        lab: Bool = true, configure: (inout SCSCFConfiguration) -> Void = { _ in },
        networkIDs: Set<String> = [], wrapBindings: (any BindingStore) -> any BindingStore = { $0 },
        wrapSubscribers: (any SubscriberStore) -> any SubscriberStore = { $0 },
        _ body: (RegistrarHarness) async throws -> T
    ) async throws -> T {
        try await scoped(
            try await start(
                backend, clientHost: clientHost, trusted: trusted, lab: lab, configure: configure,
                networkIDs: networkIDs, wrapBindings: wrapBindings, wrapSubscribers: wrapSubscribers),
            stop: { await $0.stop() }, body)
    }

    public func stop() async {
        await client.shutdown()
        await server.shutdown()
        await storage.close()
        if !location.hasPrefix("postgres") { try? FileManager.default.removeItem(atPath: location) }
    }

    public func destination(_ transport: SIPTransportProtocol = .udp) -> SIPDestination {
        SIPDestination(transport: transport, host: "127.0.0.1", port: server.address(transport)?.port ?? 0)
    }

    public func send(_ request: SIPRequest, over transport: SIPTransportProtocol = .udp) async -> SIPResponse {
        await client.send(request, to: destination(transport))
    }
}
