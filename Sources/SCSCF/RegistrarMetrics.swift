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
        let bytes = Array(value.utf8)
        if containsIgnoringCase(bytes, "auth-done") { return "tna" }
        if containsIgnoringCase(bytes, "algorithm=aka") || containsIgnoringCase(bytes, "algorithm=\"aka") {
            return "aka"
        }
        return bytes.count >= 6 && containsIgnoringCase(Array(bytes[0..<6]), "digest") ? "digest" : "other"
    }

    private static func containsIgnoringCase(_ bytes: [UInt8], _ needle: StaticString) -> Bool {
        let n = needle.utf8CodeUnitCount
        guard bytes.count >= n else { return false }
        let p = needle.utf8Start
        for start in 0...(bytes.count - n) {
            var i = 0
            while i < n, bytes[start + i] | 0x20 == p[i] | 0x20 { i += 1 }
            if i == n { return true }
        }
        return false
    }
}

extension Metrics.Timer {
    func recordInterval(since start: ContinuousClock.Instant) {
        let elapsed = ContinuousClock.now - start
        recordNanoseconds(elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
    }
}
