import ArgumentParser
import Dispatch
import Foundation
import HSS
import Logging
import NIOCore
import NIOPosix
import SCSCF
import SIPCore
import SIPTransport
import Storage
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start the webims functions in one process.",
        discussion: """
            Today this starts the HSS and the S-CSCF registrar (SIP over UDP and TCP) on an \
            SQLite store in the data directory, with a demo subscriber on first start. The \
            WWSF, WAF and eP-CSCF are coming and will start from this same command.
            """
    )

    @OptionGroup var storage: StorageOptions

    @Option(help: "Address every listener binds to (loopback unless you say otherwise).")
    var host: String = "127.0.0.1"

    @Option(help: "S-CSCF SIP port, UDP and TCP (0 picks a free port).")
    var sipPort: Int = 5060

    @Option(help: "Home domain: the digest realm and the domain of the demo identities.")
    var homeDomain: String = "ims.example.com"

    @Option(help: "An address whose integrity-protected=auth-done the S-CSCF trusts (an eP-CSCF); repeatable.")
    var trustedNode: [String] = []

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    func run() async throws {
        var logger = Logger(label: "webims")
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
        let store = try await storage.open()
        let demo = try await provisionDemoSubscriber(store)

        var sip = SIPEndpointConfiguration()
        sip.host = host
        sip.udpPort = sipPort
        sip.tcpPort = sipPort
        // The registrar needs the port actually bound (for Service-Route), so it is plugged
        // in once the listeners are up; until then requests get 503.
        let late = LateBound<Registrar>()
        let endpoint = try SIPEndpoint(configuration: sip, logger: logger) { request, peer in
            guard let registrar = late.value else {
                return SIPResponse(replyingTo: request, statusCode: 503, toTag: randomToken(length: 8))
            }
            return await registrar.handle(request, from: peer)
        }
        try await endpoint.start()
        let boundPort = endpoint.address(.udp)?.port ?? sipPort
        var config = SCSCFConfiguration(
            homeDomain: homeDomain, hostPort: "\(host):\(boundPort)", trustedNodes: Set(trustedNode),
            nonceKey: try storage.secret(named: "nonce.key"))
        config.defaultExpires = 3600
        let registrar = Registrar(configuration: config, hss: HSS(store: store), bindings: store, logger: logger)
        registrar.attach(endpoint)
        late.set(registrar)
        let sweeper = Task {
            // Expired bindings leave the store on time (the registrar never lists them anyway).
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(5))
                await registrar.removeExpiredBindings()
            }
        }
        let udp = endpoint.address(.udp).map(hostPort) ?? "-"
        let tcp = endpoint.address(.tcp).map(hostPort) ?? "-"
        say("webims: S-CSCF listening on UDP \(udp) and TCP \(tcp), home domain \(homeDomain)")
        if let demo {
            say("webims: demo subscriber \(demo.impi) (\(demo.impu)), SIP Digest password: \(demo.password)")
        }
        say("webims: WWSF, WAF and eP-CSCF are coming; this command will start them.")
        say("webims: data in \(storage.dataDir). Press Ctrl-C to stop.")
        logger.info("ready")

        await waitForTerminationSignal()
        logger.info("shutting down")
        sweeper.cancel()
        await endpoint.shutdown()
        await store.close()
    }

    /// On an empty store: one subscriber to try things with. Its password is shown once
    /// (only HA1 is stored).
    func provisionDemoSubscriber(_ store: any DataStore) async throws -> (impi: String, impu: String, password: String)?
    {
        guard try await store.allSubscribers().isEmpty else { return nil }
        let impi = "alice@\(homeDomain)"
        let impu = "sip:alice@\(homeDomain)"
        let password = randomToken(length: 12)
        let ha1 = digestHA1(impi: impi, realm: homeDomain, password: password)
        try await store.put(
            SubscriberRecord(
                impi: impi, realm: homeDomain, publicIdentities: [PublicIdentity(uri: impu)],
                allowedSchemes: [.digest, .trustedNode], ha1MD5: ha1.md5, ha1SHA256: ha1.sha256))
        return (impi, impu, password)
    }
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
