import Metrics
import Synchronization

/// What operators watch at the eP-CSCF.
enum EdgeMetrics {
    /// Open WebSocket flows.
    static let flows = Gauge(label: "webims_epcscf_flows")
    /// Connections refused by the per-address or total cap.
    static let refused = Counter(label: "webims_epcscf_connections_refused_total")
    /// Requests for a flow from a peer that is not one of our S-CSCFs (issue 26 item 8),
    /// and requests a flow sent after its token or registration ended (item 5).
    static let foreignFlowRequests = Counter(label: "webims_epcscf_foreign_flow_requests_total")
    static let endedCredentialRequests = Counter(label: "webims_epcscf_ended_credential_requests_total")
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
    static func registerAnswered(status: Int) {
        let counter = registerCounters.withLock { table in
            if let existing = table[status] { return existing }
            let made = Counter(label: "webims_epcscf_registers_total", dimensions: [("status", String(status))])
            table[status] = made
            return made
        }
        counter.increment()
    }

    private static let registerCounters = Mutex<[Int: Counter]>([:])
}
