import Foundation
import NIOCore
import Synchronization

/// Spaces registrations to a target rate (0: no pacing). A WIC waits for its slot on its
/// own event loop's timer, so pacing wakes no other thread.
public final class Pacer: Sendable {
    let interval: Int64?
    let next = Mutex(NIODeadline.now())

    public init(rate: Double) { interval = rate > 0 ? Int64(1e9 / rate) : nil }

    public func wait(on loop: any EventLoop) async {
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
public final class BenchStats: Sendable {
    public init() {}

    let state = Mutex<(statuses: [Int: Int], latencies: [Double], errors: [String: Int])>(([:], [], [:]))

    public func record(status: Int, latency: Duration) {
        let ms = Double(latency.components.seconds) * 1000 + Double(latency.components.attoseconds) / 1e15
        state.withLock {
            $0.statuses[status, default: 0] += 1
            if status == 200 { $0.latencies.append(ms) }
        }
    }

    public func error(_ text: String) { state.withLock { $0.errors[text, default: 0] += 1 } }

    /// Connections that failed, were closed or went unanswered: a run with any is not a
    /// measurement of the server's capacity.
    public var errorCount: Int { state.withLock { $0.errors.values.reduce(0, +) } }
    public var registrations: Int { state.withLock { $0.statuses[200] ?? 0 } }

    public func report(elapsed: Duration, serverCPU: Double?, scheme: String, connections: Int, freshToken: Bool) {
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
