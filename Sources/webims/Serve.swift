import ArgumentParser
import Dispatch
import Logging
import NIOCore
import NIOPosix
import SIPCore
import SIPTransport
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start the webims functions in one process.",
        discussion: """
            Today this starts the SIP transport (UDP and TCP) that the S-CSCF will use; it \
            answers OPTIONS so SIP tools can check it is alive. The WWSF, WAF, eP-CSCF, \
            S-CSCF registrar and HSS are coming and will start from this same command.
            """
    )

    @Option(help: "Directory for the database, certificates and keys.")
    var dataDir: String = "./webims-data"

    @Option(help: "Address every listener binds to (loopback unless you say otherwise).")
    var host: String = "127.0.0.1"

    @Option(help: "S-CSCF SIP port, UDP and TCP (0 picks a free port).")
    var sipPort: Int = 5060

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    func run() async throws {
        var logger = Logger(label: "webims")
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
        try makeDirectory(dataDir)

        var sip = SIPEndpointConfiguration()
        sip.host = host
        sip.udpPort = sipPort
        sip.tcpPort = sipPort
        let endpoint = try SIPEndpoint(configuration: sip, logger: logger) { request, _ in
            switch request.method {
            case .options:
                var ok = SIPResponse(replyingTo: request, statusCode: 200, toTag: randomToken(length: 8))
                ok.headers.append(.allow, "OPTIONS")
                return ok
            case .ack:
                return nil
            default:
                return SIPResponse(
                    replyingTo: request, statusCode: 501, reasonPhrase: "Not Implemented Yet",
                    toTag: randomToken(length: 8))
            }
        }
        try await endpoint.start()
        let udp = endpoint.address(.udp).map(hostPort) ?? "-"
        let tcp = endpoint.address(.tcp).map(hostPort) ?? "-"
        print("webims: SIP (S-CSCF port) listening on UDP \(udp) and TCP \(tcp); OPTIONS answered.")
        print("webims: WWSF, WAF, eP-CSCF, S-CSCF registrar and HSS are coming; this command will start them.")
        print("webims: data directory \(dataDir). Press Ctrl-C to stop.")
        logger.info("ready")

        await waitForTerminationSignal()
        logger.info("shutting down")
        await endpoint.shutdown()
    }
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

func makeDirectory(_ path: String) throws {
    if mkdir(path, 0o700) != 0 && errno != EEXIST {
        throw ValidationError("cannot create data directory \(path): errno \(errno)")
    }
}
