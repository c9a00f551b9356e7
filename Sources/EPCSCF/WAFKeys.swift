import Crypto
import Foundation
import HTTPSClient
import Logging
import Synchronization

/// Keeps a remote WAF's signing keys current in the validator (EPC-16, WAF-5): reads the
/// issuer's RFC 8414 metadata for `jwks_uri`, fetches the JWKS over HTTPS, refreshes it
/// periodically, and again when a token names an unknown `kid` — at most once per
/// `minimumInterval`, so forged kids cannot make us hammer the WAF.
public final class WAFKeyFetcher: Sendable {
    public let issuer: String
    let validator: TokenValidator
    let trust: HTTPSTrust
    let minimumInterval: Duration
    let logger: Logger
    /// When a token with an unknown kid last made us fetch (the periodic refresh does not count).
    let lastOnDemand = Mutex<ContinuousClock.Instant?>(nil)

    public init(
        issuer: String, validator: TokenValidator, trust: HTTPSTrust = .system,
        minimumInterval: Duration = .seconds(10), logger: Logger
    ) {
        self.issuer = issuer.hasSuffix("/") ? String(issuer.dropLast()) : issuer
        self.validator = validator
        self.trust = trust
        self.minimumInterval = minimumInterval
        self.logger = logger
    }

    /// Fetches metadata and JWKS now; returns the number of keys installed.
    @discardableResult public func refresh() async throws -> Int {
        let metadata = try await HTTPSClient.json(issuer + "/.well-known/oauth-authorization-server", trust: trust)
        // RFC 8414 §3.3: the metadata must name the issuer we asked.
        guard metadata["issuer"] as? String == issuer, let jwksURI = metadata["jwks_uri"] as? String,
            jwksURI.hasPrefix("https://")
        else { throw HTTPSClientError.badDocument("metadata of \(issuer)") }
        let (status, body) = try await HTTPSClient.fetch(jwksURI, trust: trust)
        guard status == 200 else { throw HTTPSClientError.status(status) }
        let keys = TrustedIssuer.keys(fromJWKS: Data(body))
        guard !keys.isEmpty else { throw HTTPSClientError.badDocument("JWKS of \(issuer)") }
        validator.setKeys(keys, issuer: issuer)
        return keys.count
    }

    /// A refresh for a token naming an unknown kid, unless one was made for that reason
    /// within the minimum interval.
    public func refreshForUnknownKey() async {
        let due = lastOnDemand.withLock { last in
            guard let last, ContinuousClock.now - last < minimumInterval else {
                last = .now
                return true
            }
            return false
        }
        guard due else { return }
        await refreshLogged()
    }

    func refreshLogged() async {
        do {
            let count = try await refresh()
            logger.info("WAF keys of \(issuer) refreshed: \(count) keys")
        } catch {
            logger.warning("WAF keys of \(issuer) not refreshed: \(error)")
        }
    }

    /// Refreshes every `period` until cancelled (first at once).
    public func run(period: Duration = .seconds(300)) async {
        while !Task.isCancelled {
            await refreshLogged()
            try? await Task.sleep(for: period)
        }
    }
}
