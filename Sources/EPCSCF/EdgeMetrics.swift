import Metrics

/// What operators watch at the eP-CSCF.
enum EdgeMetrics {
    /// Open WebSocket flows.
    static let flows = Gauge(label: "webims_epcscf_flows")
    /// Connections refused by the per-address or total cap.
    static let refused = Counter(label: "webims_epcscf_connections_refused_total")
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
}
