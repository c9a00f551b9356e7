import Foundation
import NIOCore
import NIOSSL
import SIPTransport
import Synchronization

/// What `webims bench` runs: how many WICs, how they register, for how long.
public struct LoadPlan: Sendable {
    public enum Scheme: String, Sendable { case token, digest }

    public var host: String
    public var port: Int
    public var origin: String
    public var caFile: String
    public var homeDomain: String
    public var scheme: Scheme = .token
    public var connections = 100
    public var userCount = 100
    public var seconds = 10.0
    /// Registrations per second in all (0: flat out).
    public var rate = 0.0
    /// SIP messages per second each flow may send (0: unpaced). The server closes a flow
    /// that sends faster than its `--flow-message-rate` (1008), so the default is serve's.
    public var flowMessageRate = 20.0
    public var freshToken = false
    public var hold = false
    public var serverPid: Int32?

    public init(host: String, port: Int, origin: String, caFile: String, homeDomain: String) {
        self.host = host
        self.port = port
        self.origin = origin
        self.caFile = caFile
        self.homeDomain = homeDomain
    }

    /// The identities of bench subscriber `n` (1…): what `webims bench --provision` adds,
    /// what its WICs register and what `--write-tokens` issues tokens for.
    public static func benchIdentity(_ n: Int, homeDomain: String) -> (impi: String, impu: String) {
        ("bench\(n)@\(homeDomain)", "sip:bench\(n)@\(homeDomain)")
    }

    /// Connections opening at once in hold mode: 10,000 TLS handshakes at once on two
    /// shared cores ran past the server's 10 s handshake timeout.
    public static let holdWindow = 500
}

/// Issues a WAF token for a WIC's identity (the bench signs with the WAF's own keys).
public typealias TokenIssuer = @Sendable (_ impi: String, _ impu: String) async throws -> String

/// N concurrent WICs over TLS WebSockets, registering until the plan's time is up.
public enum LoadRun {
    /// Runs the plan, prints the figures; returns the counts so the caller can fail the run.
    public static func run(_ plan: LoadPlan, issueToken: @escaping TokenIssuer) async throws -> BenchStats {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.additionalTrustRoots = [.file(plan.caFile)]
        let context = try NIOSSLContext(configuration: tls)

        let baselineRSS = plan.serverPid.flatMap(residentKiB)
        let stats = BenchStats()
        let pacer = Pacer(rate: plan.rate)
        // A Digest registration is two requests on the flow.
        let messagesPerRegistration = plan.scheme == .digest ? 2.0 : 1.0
        let startCPU = plan.serverPid.flatMap(cpuSeconds)
        let start = ContinuousClock.now
        let deadline = start + .milliseconds(Int64(plan.seconds * 1000))
        let holding = HeldFlows()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<plan.connections {
                if plan.hold && index >= LoadPlan.holdWindow { try await group.next() }
                let user = index % max(1, plan.userCount) + 1
                group.addTask {
                    let identity = LoadPlan.benchIdentity(user, homeDomain: plan.homeDomain)
                    let wic = BenchWIC(impi: identity.impi, impu: identity.impu, domain: plan.homeDomain)
                    let flowPacer = Pacer(rate: plan.flowMessageRate / messagesPerRegistration)
                    let flow: BenchFlow
                    do {
                        flow = try await BenchFlow.connect(
                            host: plan.host == "localhost" ? "127.0.0.1" : plan.host, port: plan.port, path: "/",
                            origin: plan.origin, tls: context, serverName: plan.host)
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
                            await flowPacer.wait(on: flow.channel.eventLoop)
                            await pacer.wait(on: flow.channel.eventLoop)
                            let began = ContinuousClock.now
                            do {
                                let status: Int
                                if plan.scheme == .token {
                                    if token == nil || plan.freshToken {
                                        token = try await issueToken(wic.impi, wic.impu)
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
                        } while !plan.hold && ContinuousClock.now < deadline
                    }
                    if plan.hold { holding.flows.withLock { $0.append(flow) } } else { flow.close() }
                }
            }
            try await group.waitForAll()
        }
        let elapsed = ContinuousClock.now - start
        var heldFor = Duration.zero
        if plan.hold {
            let registered = ContinuousClock.now
            try await Task.sleep(until: deadline, clock: .continuous)
            heldFor = ContinuousClock.now - registered
        }
        let endCPU = plan.serverPid.flatMap(cpuSeconds)
        let endRSS = plan.serverPid.flatMap(residentKiB)
        stats.report(
            elapsed: plan.hold ? elapsed : min(elapsed, deadline - start + .seconds(1)),
            serverCPU: startCPU.flatMap { start in endCPU.map { $0 - start } }, scheme: plan.scheme.rawValue,
            connections: plan.connections, freshToken: plan.freshToken)
        if let baselineRSS, let endRSS {
            print("server RSS: \(baselineRSS) KiB before, \(endRSS) KiB after")
            if plan.hold {
                let held = holding.flows.withLock { $0.count }
                print(
                    String(
                        format:
                            "held %d registered connections for %.0f s: %.1f KiB per connection (RSS growth / connections)",
                        held, Double(heldFor.components.seconds), Double(endRSS - baselineRSS) / Double(max(1, held))))
            }
        }
        for flow in holding.flows.withLock({ $0 }) { flow.close() }
        return stats
    }
}

final class HeldFlows: Sendable {
    let flows = Mutex<[BenchFlow]>([])
}
