import Metrics

/// What operators watch at the WWSF and WAF.
public enum WebMetrics {
    static let tokensIssued = Counter(label: "webims_waf_tokens_issued_total")

    /// Makes every series, so /metrics shows them at zero before the first login.
    public static func exportAtZero() {
        _ = tokensIssued
        for failure in [nil, .invalidCredentials, .locked(until: 0), .rateLimited(retryAfter: 0)] as [LoginFailure?] {
            _ = loginCounter(failure)
        }
    }

    static func login(_ failure: LoginFailure?) { loginCounter(failure).increment() }

    private static func loginCounter(_ failure: LoginFailure?) -> Counter {
        let result: String
        switch failure {
        case nil: result = "ok"
        case .invalidCredentials: result = "invalid_credentials"
        case .locked: result = "locked"
        case .rateLimited: result = "rate_limited"
        }
        return Counter(label: "webims_wwsf_logins_total", dimensions: [("result", result)])
    }
}
