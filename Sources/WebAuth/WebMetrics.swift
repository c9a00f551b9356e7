import Metrics

/// What operators watch at the WWSF and WAF.
enum WebMetrics {
    static let tokensIssued = Counter(label: "webims_waf_tokens_issued_total")

    static func login(_ failure: LoginFailure?) {
        let result: String
        switch failure {
        case nil: result = "ok"
        case .invalidCredentials: result = "invalid_credentials"
        case .locked: result = "locked"
        case .rateLimited: result = "rate_limited"
        }
        Counter(label: "webims_wwsf_logins_total", dimensions: [("result", result)]).increment()
    }
}
