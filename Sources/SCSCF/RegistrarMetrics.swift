import Metrics
import SIPCore
import Synchronization

/// What operators watch at the registrar: REGISTERs by scheme and final status, and how
/// long they take (the store's durable commit included).
public enum RegistrarMetrics {
    /// Makes every fixed series and the usual outcomes, so /metrics shows them at zero
    /// before the first REGISTER.
    public static func exportAtZero() {
        _ = (duration, digestFailures, digestThrottled, untrustedAuthDone)
        for scheme in [Scheme.tna, .digest, .aka] { _ = counter(scheme: scheme, status: 200) }
        for scheme in [Scheme.digest, .aka] { _ = counter(scheme: scheme, status: 401) }
    }

    static let duration = Metrics.Timer(label: "webims_scscf_register_duration_seconds")
    /// Wrong Digest answers, and answers not checked because their IMPI had too many
    /// (issue 26 item 7).
    static let digestFailures = Counter(label: "webims_scscf_digest_failures_total")
    static let digestThrottled = Counter(label: "webims_scscf_digest_throttled_total")
    /// REGISTERs that claimed auth-done from a node that is not trusted (challenged instead).
    static let untrustedAuthDone = Counter(label: "webims_scscf_untrusted_auth_done_total")

    @inline(never)
    static func record(_ scheme: Scheme, _ response: SIPResponse, since start: ContinuousClock.Instant) {
        duration.recordInterval(since: start)
        counter(scheme: scheme, status: response.statusCode).increment()
    }

    enum Scheme: Int, CaseIterable {
        case none, tna, aka, digest, other
        var label: String { ["none", "tna", "aka", "digest", "other"][rawValue] }
    }

    /// One counter per scheme and status, made once: asking the metrics factory for it on
    /// every REGISTER costs a lookup and allocations per request.
    private static let counters = Mutex<[Int: Counter]>([:])

    static func counter(scheme: Scheme, status: Int) -> Counter {
        let key = scheme.rawValue << 16 | (status & 0xFFFF)
        return counters.withLock { table in
            if let existing = table[key] { return existing }
            let made = Counter(
                label: "webims_scscf_registrations_total",
                dimensions: [("scheme", scheme.label), ("status", String(status))])
            table[key] = made
            return made
        }
    }

    /// The label of `scheme(of:)` from the Digest credentials the registrar has parsed
    /// already, without a second scan of the header; without Digest credentials (none, or
    /// another scheme) it reads the raw header.
    static func scheme(claimedBy authorization: SIPAuthField?, in request: SIPRequest) -> Scheme {
        guard let authorization else { return scheme(of: request) }
        if let integrity = authorization.integrityProtected, equalsIgnoringASCIICase(integrity, "auth-done") {
            return .tna
        }
        if let algorithm = authorization.algorithm, equalsIgnoringASCIICase(String(algorithm.prefix(3)), "aka") {
            return .aka
        }
        return .digest
    }

    /// The scheme a REGISTER claims, from the raw Authorization bytes (no credentials:
    /// `none`); a label only, so no parse and no copy of the header.
    static func scheme(of request: SIPRequest) -> Scheme {
        request.headers.withFirstValue(.authorization) { value -> Scheme in
            if containsIgnoringASCIICase(value, "auth-done") { return .tna }
            if containsIgnoringASCIICase(value, "algorithm=aka") || containsIgnoringASCIICase(value, "algorithm=\"aka")
            {
                return .aka
            }
            guard value.count >= 6 else { return .other }
            return containsIgnoringASCIICase(UnsafeBufferPointer(rebasing: value[0..<6]), "digest") ? .digest : .other
        } ?? .none
    }
}

extension Metrics.Timer {
    func recordInterval(since start: ContinuousClock.Instant) {
        let elapsed = ContinuousClock.now - start
        recordNanoseconds(elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
    }
}
