import ArgumentParser
import EPCSCF
import Foundation
import LocalPKI
import Logging
import NIOCore
import NIOSSL
import SCSCF
import SIPCore
import SIPTransport
import Synchronization
import TLSPolicy
import Utilities

#if canImport(Glibc)
    import Glibc
#endif

/// The demo subscriber made on an empty store, with its passwords (shown once).
typealias DemoSubscriber = (impi: String, impu: String, sipPassword: String, username: String, webPassword: String)

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
        // A fixed mmap threshold fixes the trim threshold at 128 KiB too: each thread's
        // arena then gave memory back, and took it again, with an mprotect every few
        // messages — about seven per call through the S-CSCF (strace, scripts/bench-calls).
        // Up to 16 MiB free stays in the arena; `afterLoad` still trims after a burst.
        let trimThreshold: Int32 = -1  // M_TRIM_THRESHOLD
        _ = mallopt(trimThreshold, 16 << 20)
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

func tlsConfiguration(_ identity: ServerIdentity) throws -> TLSConfiguration {
    var tls = TLSConfiguration.makeServerConfiguration(
        certificateChain: try NIOSSLCertificate.fromPEMBytes(Array(identity.certificateChainPEM.utf8)).map {
            .certificate($0)
        },
        privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(identity.privateKeyPEM.utf8), format: .pem)))
    TLSPolicy.apply(to: &tls)
    return tls
}

/// The functions `serve` can run (docs/architecture.md).
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

/// A function with a SIP endpoint of its own: REGISTER and SUBSCRIBE answered once, every
/// other request driven through its server transaction.
protocol SIPFunction: Sendable {
    func handle(_ request: SIPRequest, from peer: SIPPeer) async -> SIPResponse?
    func session(_ request: SIPRequest, _ transaction: SIPServerTransaction) async
}

extension Registrar: SIPFunction {}
extension EdgeProxy: SIPFunction {}

/// The endpoint of a function made once the endpoint's listeners are up (it names their
/// ports): until then every request gets 503.
func sipEndpoint<Function: SIPFunction>(
    _ configuration: SIPEndpointConfiguration, logger: Logger, serving late: LateBound<Function>
) throws -> SIPEndpoint {
    try SIPEndpoint(
        configuration: configuration, logger: logger,
        handler: { request, peer in
            guard let function = late.value else { return notReady(request) }
            return await function.handle(request, from: peer)
        },
        sessionHandler: { request, transaction in
            guard let function = late.value else {
                if request.method != .ack { transaction.respond(notReady(request)) }
                return
            }
            await function.session(request, transaction)
        })
}

/// A value that exists only after start-up, read from request handlers.
final class LateBound<Value: Sendable>: Sendable {
    private let storage = Mutex<Value?>(nil)
    var value: Value? { storage.withLock { $0 } }
    func set(_ value: Value) { storage.withLock { $0 = value } }
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

/// `--metrics-port`: a port (0 picks a free one), or `off`. A negative number cannot be typed
/// as an option's value (the parser takes `-1` for a flag); `-1` still means off in a config
/// file or `WEBIMS_METRICS_PORT`.
enum MetricsPort: ExpressibleByArgument, Equatable, Sendable {
    case off
    case port(Int)

    init?(argument: String) {
        if argument.lowercased() == "off" || argument == "-1" {
            self = .off
            return
        }
        guard let number = Int(argument), (0...65_535).contains(number) else { return nil }
        self = .port(number)
    }

    var port: Int? {
        if case .port(let number) = self { return number }
        return nil
    }

    var defaultValueDescription: String { port.map(String.init) ?? "off" }
}

extension Serve {
    /// `--peer [domain=]sip:host:port;transport=…`: the S-CSCF's next hop per other domain
    /// ("" for every other domain and for tel: numbers no subscriber has).
    func peers() throws -> [String: SIPURI] {
        var peers: [String: SIPURI] = [:]
        for entry in peer {
            let (domain, text) =
                entry.hasPrefix("sip:") || entry.hasPrefix("sips:")
                ? ("", entry)
                : (String(entry.prefix { $0 != "=" }).lowercased(), String(entry.drop { $0 != "=" }.dropFirst()))
            guard let uri = try? SIPURI.parse(text), SIPDestination(uri: uri) != nil else {
                throw ValidationError("--peer: not [domain=]sip:host:port;transport=…: \(entry)")
            }
            peers[domain] = uri
        }
        return peers
    }
}
