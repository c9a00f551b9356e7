import ArgumentParser
import Foundation
import HSS
import NIOCore
import NIOSSL
import SIPAuth
import SIPCore
import SIPTransport
import Storage
import Synchronization
import WebAuth

/// `webims bench`: N concurrent TLS WebSockets acting as WICs against a running
/// `webims serve`, registering with WAF tokens or SIP Digest for a bounded time.
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Load generator: WICs over WSS registering with tokens or Digest; prints rates, latency, memory.",
        discussion: """
            Run it against a serve started on the same data directory (for endpoints.json, the \\
            CA and the WAF's keys). `--provision` adds the subscribers bench1…bench<users> first \\
            (Digest password bench-secret). Every final response is counted by status; only \\
            200 counts as a registration. With --server-pid it reports the server's CPU \\
            seconds (utime+stime) and resident memory.
            """)

    @OptionGroup var storage: StorageOptions
    @OptionGroup var web: WebOptions
    @Option(help: "Home domain (as given to serve).") var homeDomain: String = "ims.example.com"
    @Option(help: "token or digest.") var scheme: String = "token"
    @Option(help: "Concurrent WebSocket connections (one WIC each).") var connections: Int = 100
    @Option(help: "Distinct subscribers (default: one per connection).") var users: Int?
    @Option(help: "How long to run, in seconds.") var seconds: Double = 10
    @Option(help: "Target registrations per second in all (0: flat out).") var rate: Double = 0
    @Flag(help: "A fresh token for every registration (default: each WIC refreshes with its token).")
    var freshToken = false
    @Flag(help: "Add the bench subscribers before starting.") var provision = false
    @Flag(
        help: """
            Register every connection once and hold them for --seconds: memory per connection. \
            Connections are opened 500 at a time (the server's connect-storm behaviour is \
            a test of its own).
            """)
    var hold = false

    /// Connections opening at once in --hold mode: 10,000 TLS handshakes at once on two
    /// shared cores ran past the server's 10 s handshake timeout.
    static let holdWindow = 500
    @Option(help: "The server's process id, for CPU seconds and memory.") var serverPid: Int32?

    func run() async throws {
        guard scheme == "token" || scheme == "digest" else { throw ValidationError("--scheme token|digest") }
        raiseOpenFileLimit()
        guard let endpoints = Endpoints.read(dataDir: storage.dataDir), let wss = endpoints.epcscf,
            let url = URLComponents(string: wss), let host = url.host, let port = url.port
        else { throw ValidationError("no eP-CSCF in \(storage.dataDir)/endpoints.json: start serve first") }
        let origin = endpoints.wwsf.map { String($0.dropLast($0.hasSuffix("/") ? 1 : 0)) } ?? "https://localhost"
        let userCount = max(1, users ?? connections)
        try await storage.withStore { store in
            try await load(store: store, host: host, port: port, origin: origin, userCount: userCount)
        }
    }

    /// Provisions (when asked), runs the WICs and prints the figures.
    func load(store: any DataStore, host: String, port: Int, origin: String, userCount: Int) async throws {
        if provision { try await provisionUsers(store, count: userCount) }
        let waf = try await wafServer(store: store, storage: storage, web: web, homeDomain: homeDomain)
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.additionalTrustRoots = [.file(storage.dataDir + "/tls/ca.pem")]
        let context = try NIOSSLContext(configuration: tls)

        let baselineRSS = serverPid.flatMap(residentKiB)
        let stats = BenchStats()
        let pacer = Pacer(rate: rate)
        let startCPU = serverPid.flatMap(cpuSeconds)
        let start = ContinuousClock.now
        let deadline = start + .milliseconds(Int64(seconds * 1000))
        let holding = HeldFlows()
        let (scheme, freshToken, hold, homeDomain) = (self.scheme, self.freshToken, self.hold, self.homeDomain)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<connections {
                if hold && index >= Self.holdWindow { try await group.next() }
                let user = index % userCount + 1
                group.addTask {
                    let wic = BenchWIC(
                        impi: "bench\(user)@\(homeDomain)", impu: "sip:bench\(user)@\(homeDomain)",
                        domain: homeDomain)
                    let flow: BenchFlow
                    do {
                        flow = try await BenchFlow.connect(
                            host: host == "localhost" ? "127.0.0.1" : host, port: port, path: "/", origin: origin,
                            tls: context, serverName: host)
                    } catch {
                        stats.error("connect: \(error)")
                        return
                    }
                    // The WIC's loop runs on its connection's event loop: an answer resumes it
                    // on the thread that read it, so the load generator's own thread hops do
                    // not add to the latency it reports (nor take the cores the server needs).
                    await withTaskExecutorPreference(EventLoopExecutor.of(flow.channel.eventLoop)) {
                        var token: String?
                        repeat {
                            await pacer.wait(on: flow.channel.eventLoop)
                            let began = ContinuousClock.now
                            do {
                                let status: Int
                                if scheme == "token" {
                                    if token == nil || freshToken {
                                        let account = WebAccount(
                                            username: "bench", passwordHash: "", impi: wic.impi, impus: [wic.impu])
                                        token = try await waf.issueToken(
                                            for: account, client: waf.configuration.clients[0], now: unixNow()
                                        ).token
                                    }
                                    status = try await flow.transaction(
                                        wic.register(authorization: "Bearer \(token ?? "")")
                                    ).statusCode
                                } else {
                                    status = try await wic.digestRegister(over: flow)
                                }
                                stats.record(status: status, latency: ContinuousClock.now - began)
                            } catch {
                                stats.error("\(error)")
                                return
                            }
                        } while !hold && ContinuousClock.now < deadline
                    }
                    if hold { holding.flows.withLock { $0.append(flow) } } else { flow.close() }
                }
            }
            try await group.waitForAll()
        }
        let elapsed = ContinuousClock.now - start
        var heldFor = Duration.zero
        if hold {
            let registered = ContinuousClock.now
            try await Task.sleep(until: deadline, clock: .continuous)
            heldFor = ContinuousClock.now - registered
        }
        let endCPU = serverPid.flatMap(cpuSeconds)
        let endRSS = serverPid.flatMap(residentKiB)
        stats.report(
            elapsed: hold ? elapsed : min(elapsed, deadline - start + .seconds(1)),
            serverCPU: zip2(startCPU, endCPU).map { $1 - $0 }, scheme: scheme, connections: connections,
            freshToken: freshToken)
        if let baselineRSS, let endRSS {
            print("server RSS: \(baselineRSS) KiB before, \(endRSS) KiB after")
            if hold {
                let held = holding.flows.withLock { $0.count }
                print(
                    String(
                        format:
                            "held %d registered connections for %.0f s: %.1f KiB per connection (RSS growth / connections)",
                        held, Double(heldFor.components.seconds), Double(endRSS - baselineRSS) / Double(max(1, held))))
            }
        }
        for flow in holding.flows.withLock({ $0 }) { flow.close() }
    }

    func provisionUsers(_ store: any DataStore, count: Int) async throws {
        for n in 1...count {
            let impi = "bench\(n)@\(homeDomain)"
            let ha1 = digestHA1(impi: impi, realm: homeDomain, password: "bench-secret")
            try await store.put(
                SubscriberRecord(
                    impi: impi, realm: homeDomain,
                    publicIdentities: [PublicIdentity(uri: "sip:bench\(n)@\(homeDomain)")],
                    allowedSchemes: [.digest, .trustedNode], ha1MD5: ha1.md5, ha1SHA256: ha1.sha256))
        }
    }
}

/// What one bench WIC sends.
final class BenchWIC: Sendable {
    let impi: String
    let impu: String
    let domain: String

    init(impi: String, impu: String, domain: String) {
        self.impi = impi
        self.impu = impu
        self.domain = domain
    }

    let host = randomToken(length: 10) + ".invalid"
    let callID = randomToken(length: 16)
    let instance = "<urn:uuid:\(UUID().uuidString.lowercased())>"
    let cseq = Mutex<UInt32>(0)

    func register(authorization: String?) throws -> SIPRequest {
        let n = cseq.withLock { value -> UInt32 in
            value += 1
            return value
        }
        var text =
            "REGISTER sip:\(domain) SIP/2.0\r\nVia: SIP/2.0/WSS \(host);branch=z9hG4bK\(randomToken(length: 12))\r\n"
        text += "Max-Forwards: 70\r\nFrom: <\(impu)>;tag=\(callID.prefix(8))\r\nTo: <\(impu)>\r\nCall-ID: \(callID)\r\n"
        text +=
            "CSeq: \(n) REGISTER\r\nContact: <sip:b@\(host);transport=ws>;+sip.instance=\"\(instance)\";reg-id=1\r\n"
        text += "Expires: 600\r\nSupported: path, outbound, gruu\r\n"
        if let authorization { text += "Authorization: \(authorization)\r\n" }
        text += "Content-Length: 0\r\n\r\n"
        guard case .request(let request) = try SIPParser().parse(Array(text.utf8)) else { throw BenchError.connect }
        return request
    }

    /// REGISTER → 401 → answered REGISTER; returns the final status.
    func digestRegister(over flow: BenchFlow) async throws -> Int {
        let first = try await flow.transaction(
            register(
                authorization:
                    "Digest username=\"\(impi)\", realm=\"\(domain)\", uri=\"sip:\(domain)\", nonce=\"\", response=\"\""
            ))
        guard first.statusCode == 401,
            let challenge = try first.headers.challenges().first(where: { $0.algorithm == "MD5" || $0.algorithm == nil }
            ),
            let nonce = challenge.nonce
        else { return first.statusCode }
        let ha1 = DigestAlgorithm.md5.ha1(username: impi, realm: domain, password: Array("bench-secret".utf8))
        let response = DigestAlgorithm.md5.response(
            ha1: ha1, nonce: nonce, nc: "00000001", cnonce: "bench", qop: "auth", method: "REGISTER",
            uri: "sip:\(domain)")
        let answered = try register(
            authorization:
                "Digest username=\"\(impi)\", realm=\"\(domain)\", uri=\"sip:\(domain)\", nonce=\"\(nonce)\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"bench\", response=\"\(response)\""
        )
        return try await flow.transaction(answered).statusCode
    }
}

final class HeldFlows: Sendable {
    let flows = Mutex<[BenchFlow]>([])
}

/// Spaces registrations to a target rate (0: no pacing). A WIC waits for its slot on its
/// own event loop's timer, so pacing wakes no other thread.
final class Pacer: Sendable {
    let interval: Int64?
    let next = Mutex(NIODeadline.now())

    init(rate: Double) { interval = rate > 0 ? Int64(1e9 / rate) : nil }

    func wait(on loop: any EventLoop) async {
        guard let interval else { return }
        let slot = next.withLock { next in
            let slot = max(next, NIODeadline.now())
            next = slot + .nanoseconds(interval)
            return slot
        }
        guard slot > NIODeadline.now() else { return }
        try? await loop.scheduleTask(deadline: slot) {}.futureResult.get()
    }
}

/// Counts every final response by status and keeps every latency.
final class BenchStats: Sendable {
    let state = Mutex<(statuses: [Int: Int], latencies: [Double], errors: [String: Int])>(([:], [], [:]))

    func record(status: Int, latency: Duration) {
        let ms = Double(latency.components.seconds) * 1000 + Double(latency.components.attoseconds) / 1e15
        state.withLock {
            $0.statuses[status, default: 0] += 1
            if status == 200 { $0.latencies.append(ms) }
        }
    }

    func error(_ text: String) { state.withLock { $0.errors[text, default: 0] += 1 } }

    func report(elapsed: Duration, serverCPU: Double?, scheme: String, connections: Int, freshToken: Bool) {
        let (statuses, latencies, errors) = state.withLock { ($0.statuses, $0.latencies.sorted(), $0.errors) }
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let ok = statuses[200] ?? 0
        func percentile(_ p: Double) -> Double {
            latencies.isEmpty ? 0 : latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))]
        }
        print(
            "bench: \(scheme)\(freshToken ? " (fresh token each)" : "") registrations over WSS, \(connections) connections, \(String(format: "%.1f", seconds)) s"
        )
        print(
            "responses: " + statuses.sorted { $0.key < $1.key }.map { "\($0.key)×\($0.value)" }.joined(separator: " "))
        if !errors.isEmpty {
            print(
                "errors: "
                    + errors.sorted { $0.value > $1.value }.prefix(5).map { "\($0.key)×\($0.value)" }.joined(
                        separator: ", "))
        }
        print(String(format: "registrations: %d, %.0f/s", ok, Double(ok) / max(seconds, 0.001)))
        if let serverCPU, serverCPU > 0 {
            print(
                String(
                    format: "server CPU: %.2f s → %.0f registrations per server CPU-second", serverCPU,
                    Double(ok) / serverCPU))
        }
        print(
            String(
                format: "latency ms: p50 %.2f, p90 %.2f, p99 %.2f, max %.2f", percentile(0.5), percentile(0.9),
                percentile(0.99), latencies.last ?? 0))
    }
}

func cpuSeconds(_ pid: Int32) -> Double? {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
        let close = text.lastIndex(of: ")")
    else { return nil }
    let fields = text[text.index(after: close)...].split(separator: " ")
    guard fields.count > 13, let utime = Double(fields[11]), let stime = Double(fields[12]) else { return nil }
    return (utime + stime) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

func residentKiB(_ pid: Int32) -> Int? {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
    for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        return Int(line.split(separator: " ").dropFirst().first ?? "")
    }
    return nil
}

func zip2<A, B>(_ a: A?, _ b: B?) -> (A, B)? {
    guard let a, let b else { return nil }
    return (a, b)
}
