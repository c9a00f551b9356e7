import Metrics
import SIPCore
import Synchronization

/// What operators watch at the registrar: REGISTERs by scheme and final status, and how
/// long they take (the store's durable commit included).
enum RegistrarMetrics {
    static let duration = Metrics.Timer(label: "webims_scscf_register_duration_seconds")

    static func record(_ request: SIPRequest, _ response: SIPResponse, since start: ContinuousClock.Instant) {
        duration.recordInterval(since: start)
        counter(scheme: scheme(of: request), status: response.statusCode).increment()
    }

    /// One counter per scheme and status, made once: asking the metrics factory for it on
    /// every REGISTER costs a lookup and allocations per request.
    private static let counters = Mutex<[String: Counter]>([:])

    private static func counter(scheme: String, status: Int) -> Counter {
        let key = "\(scheme) \(status)"
        return counters.withLock { table in
            if let existing = table[key] { return existing }
            let made = Counter(
                label: "webims_scscf_registrations_total", dimensions: [("scheme", scheme), ("status", String(status))])
            table[key] = made
            return made
        }
    }

    /// The scheme a REGISTER claims, from the raw Authorization text (no credentials:
    /// `none`); a label only, so no full parse.
    static func scheme(of request: SIPRequest) -> String {
        guard let value = request.headers[.authorization] else { return "none" }
        if containsIgnoringASCIICase(value, "auth-done") { return "tna" }
        if containsIgnoringASCIICase(value, "algorithm=aka") || containsIgnoringASCIICase(value, "algorithm=\"aka") {
            return "aka"
        }
        return value.utf8.count >= 6 && equalsIgnoringASCIICase(value.prefix(6), "digest") ? "digest" : "other"
    }
}

extension Metrics.Timer {
    func recordInterval(since start: ContinuousClock.Instant) {
        let elapsed = ContinuousClock.now - start
        recordNanoseconds(elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
    }
}
