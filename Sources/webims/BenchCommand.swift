import ArgumentParser
import Foundation
import HSS
import LoadGenerator
import Storage
import Utilities
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

    @Option(help: "The server's process id, for CPU seconds and memory.") var serverPid: Int32?
    @Option(
        help: """
            Write an access token for each of bench1…bench<users>, one per line, to this file \
            and exit, for a load generator of another kind (scripts/bench-vs-kamailio).
            """)
    var writeTokens: String?
    @Option(
        help: """
            SIP messages per second each connection sends at most (0: unpaced). serve closes \
            a flow that sends faster than its own --flow-message-rate (default 20); set both \
            to measure flat out.
            """)
    var flowMessageRate: Double = 20

    func run() async throws {
        guard let scheme = LoadPlan.Scheme(rawValue: scheme) else { throw ValidationError("--scheme token|digest") }
        raiseOpenFileLimit()
        guard let endpoints = Endpoints.read(dataDir: storage.dataDir), let wss = endpoints.epcscf,
            let url = URLComponents(string: wss), let host = url.host, let port = url.port
        else { throw ValidationError("no eP-CSCF in \(storage.dataDir)/endpoints.json: start serve first") }
        var plan = LoadPlan(
            host: host, port: port,
            origin: endpoints.wwsf.map { String($0.dropLast($0.hasSuffix("/") ? 1 : 0)) } ?? "https://localhost",
            caFile: storage.dataDir + "/tls/ca.pem", homeDomain: homeDomain)
        plan.scheme = scheme
        plan.connections = connections
        plan.userCount = max(1, users ?? connections)
        plan.seconds = seconds
        plan.rate = rate
        plan.flowMessageRate = flowMessageRate
        plan.freshToken = freshToken
        plan.hold = hold
        plan.serverPid = serverPid
        let stats: BenchStats? = try await storage.withStore { store in
            if provision { try await provisionUsers(store, count: plan.userCount) }
            let waf = try await wafServer(store: store, storage: storage, web: web, homeDomain: homeDomain)
            let token: TokenIssuer = { impi, impu in
                let account = WebAccount(username: "bench", passwordHash: "", impi: impi, impus: [impu])
                return try await waf.issueToken(for: account, client: waf.configuration.clients[0], now: unixNow())
                    .token
            }
            if let writeTokens {
                var lines = ""
                for n in 1...plan.userCount {
                    let identity = LoadPlan.benchIdentity(n, homeDomain: homeDomain)
                    lines += try await token(identity.impi, identity.impu) + "\n"
                }
                try lines.write(toFile: writeTokens, atomically: true, encoding: .utf8)
                return nil
            }
            return try await LoadRun.run(plan, issueToken: token)
        }
        guard let stats else { return }
        // Closed or unanswered flows mean the figures are not the server's capacity.
        if stats.errorCount > 0 || stats.registrations == 0 {
            print("bench: \(stats.errorCount) errors, \(stats.registrations) registrations: failed")
            throw ExitCode.failure
        }
    }

    func provisionUsers(_ store: any DataStore, count: Int) async throws {
        for n in 1...count {
            let (impi, impu) = LoadPlan.benchIdentity(n, homeDomain: homeDomain)
            let ha1 = digestHA1(impi: impi, realm: homeDomain, password: "bench-secret")
            try await store.put(
                SubscriberRecord(
                    impi: impi, realm: homeDomain,
                    publicIdentities: [PublicIdentity(uri: impu)],
                    allowedSchemes: [.digest, .trustedNode], ha1MD5: ha1.md5, ha1SHA256: ha1.sha256))
        }
    }
}
