import Metrics
import SIPCore

/// What operators watch at the registrar: REGISTERs by scheme and final status, and how
/// long they take (the store's durable commit included).
enum RegistrarMetrics {
    static let duration = Metrics.Timer(label: "webims_scscf_register_duration_seconds")

    static func record(_ request: SIPRequest, _ response: SIPResponse, since start: ContinuousClock.Instant) {
        duration.recordInterval(since: start)
        Counter(
            label: "webims_scscf_registrations_total",
            dimensions: [("scheme", scheme(of: request)), ("status", String(response.statusCode))]
        ).increment()
    }

    /// The scheme a REGISTER claims, from the raw Authorization text (no credentials:
    /// `none`); a label only, so no full parse.
    static func scheme(of request: SIPRequest) -> String {
        guard let field = request.headers.first(where: { $0.name == .authorization }) else { return "none" }
        let value = field.value.lowercased()
        if value.contains("auth-done") { return "tna" }
        if value.contains("algorithm=aka") || value.contains("algorithm=\"aka") { return "aka" }
        return value.hasPrefix("digest") ? "digest" : "other"
    }
}

extension Metrics.Timer {
    func recordInterval(since start: ContinuousClock.Instant) {
        let elapsed = ContinuousClock.now - start
        recordNanoseconds(elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
    }
}
