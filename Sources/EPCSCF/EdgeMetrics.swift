import Metrics
import Synchronization

/// What operators watch at the eP-CSCF (open flows and refused connections are the
/// transport's: `WebSocketFlows`).
public enum EdgeMetrics {
    /// Makes every fixed series, so /metrics shows them at zero before the first request
    /// (Prometheus's rate() needs the zero).
    public static func exportAtZero() {
        _ = (foreignFlowRequests, endedCredentialRequests, registerDuration, mediaFailures)
        for status in [200, 401, 403] { _ = registerCounter(status: status) }
    }

    /// Requests for a flow from a peer that is not one of our S-CSCFs (issue 26 item 8),
    /// and requests a flow sent after its token or registration ended (item 5).
    static let foreignFlowRequests = Counter(label: "webims_epcscf_foreign_flow_requests_total")
    static let endedCredentialRequests = Counter(label: "webims_epcscf_ended_credential_requests_total")
    /// Media gateway requests that failed (no answer, malformed reply, a refused answer or
    /// delete); a refused offer is the caller's SDP and is answered 488 instead.
    static let mediaFailures = Counter(label: "webims_epcscf_media_gateway_failures_total")
    /// REGISTER round trips to the S-CSCF (WIC's REGISTER in, answer out).
    static let registerDuration = Metrics.Timer(label: "webims_epcscf_register_duration_seconds")

    static func tokenFailure(_ error: TokenError) {
        let reason: String
        switch error {
        case .missingClaim: reason = "missing_claim"
        default: reason = String(describing: error)
        }
        Counter(label: "webims_epcscf_token_failures_total", dimensions: [("reason", reason)]).increment()
    }

    /// REGISTERs answered, by final status: one counter per status, made once (asking the
    /// metrics factory on every REGISTER costs a look-up and allocations).
    static func registerAnswered(status: Int) { registerCounter(status: status).increment() }

    private static func registerCounter(status: Int) -> Counter {
        registerCounters.withLock { table in
            if let existing = table[status] { return existing }
            let made = Counter(label: "webims_epcscf_registers_total", dimensions: [("status", String(status))])
            table[status] = made
            return made
        }
    }

    private static let registerCounters = Mutex<[Int: Counter]>([:])
}
