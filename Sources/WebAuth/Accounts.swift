import Crypto
import Foundation
import NIOPosix
import SIPAuth
import Storage
import Synchronization

/// Why a login was refused. The answer to the browser never says which of user name or
/// password was wrong.
public enum LoginFailure: Error, Sendable, Equatable {
    case invalidCredentials
    /// Too many failures for this account: locked until the given Unix time.
    case locked(until: Int64)
    /// Too many attempts from this address.
    case rateLimited(retryAfter: Int64)
}

/// Web accounts, logins and sessions, shared by the WWSF and the WAF's login form.
public final class AccountService: Sendable {
    public let store: any WebStore
    let subscribers: any SubscriberStore
    let hasher: PasswordHasher
    /// Failed logins before the account locks, and for how long.
    public let lockAfter: Int
    public let lockSeconds: Int64
    public let sessionLifetime: Int64
    let attemptsPerSource: RateLimiter

    public init(
        store: any WebStore, subscribers: any SubscriberStore, hasher: PasswordHasher = PasswordHasher(),
        lockAfter: Int = 5, lockSeconds: Int64 = 900, sessionLifetime: Int64 = 12 * 3_600,
        attemptsPerSourcePerMinute: Int = 20
    ) {
        self.store = store
        self.subscribers = subscribers
        self.hasher = hasher
        self.lockAfter = lockAfter
        self.lockSeconds = lockSeconds
        self.sessionLifetime = sessionLifetime
        self.attemptsPerSource = RateLimiter(limit: attemptsPerSourcePerMinute, window: 60)
    }

    /// Checks a user name and password (PBKDF2 runs on NIO's thread pool, not the
    /// cooperative pool).
    public func authenticate(username: String, password: String, source: String?, now: Int64) async
        -> Result<WebAccount, LoginFailure>
    {
        if let source, let wait = attemptsPerSource.hit(source, now: now) {
            return .failure(.rateLimited(retryAfter: wait))
        }
        guard username.utf8.count <= 256, password.utf8.count <= 1_024,
            let account = try? await store.account(username: username)
        else {
            await offload { self.hasher.verifyNothing(password) }
            return .failure(.invalidCredentials)
        }
        if account.lockedUntil > now { return .failure(.locked(until: account.lockedUntil)) }
        let hasher = self.hasher
        let matches = await offload { hasher.verify(password, against: account.passwordHash) }
        guard matches else {
            let updated = try? await store.recordFailedLogin(
                username: username, lockAfter: lockAfter, lockUntil: now + lockSeconds)
            if let updated, updated.lockedUntil > now { return .failure(.locked(until: updated.lockedUntil)) }
            return .failure(.invalidCredentials)
        }
        if account.failedLogins > 0 { try? await store.resetFailedLogins(username: username) }
        return .success(account)
    }

    /// Creates a session; returns the cookie value (only its hash is stored).
    public func startSession(username: String, now: Int64) async throws -> (cookie: String, session: WebSession) {
        let cookie = randomSecret()
        let session = WebSession(
            idHash: Self.hash(cookie), username: username, csrfToken: randomSecret(),
            expiresAt: now + sessionLifetime)
        try await store.createSession(session)
        return (cookie, session)
    }

    public func session(cookie: String, now: Int64) async -> WebSession? {
        guard cookie.utf8.count <= 128 else { return nil }
        return try? await store.session(idHash: Self.hash(cookie), now: now)
    }

    public func endSession(cookie: String) async {
        try? await store.removeSession(idHash: Self.hash(cookie))
    }

    /// The IMPI and the IMPUs a token for this account carries: the account's own list, or
    /// the IMPI's unbarred implicit set from the HSS, or (scenario 3, WWSF-5) one IMPU the
    /// WWSF assigns from its pool.
    public func identities(of account: WebAccount) async throws -> (impi: String, impus: [String]) {
        let subscriber = try await subscribers.subscriber(impi: account.impi)
        let unbarred = subscriber?.publicIdentities.filter { !$0.barred }.map(\.uri) ?? []
        if account.usesIMPUPool {
            guard let impu = try await store.assignPoolIMPU(username: account.username, candidates: unbarred) else {
                throw WebAuthError.badConfiguration("the IMPU pool of \(account.impi) is exhausted")
            }
            return (account.impi, [impu])
        }
        if !account.impus.isEmpty { return (account.impi, account.impus) }
        return (account.impi, unbarred)
    }

    static func hash(_ secret: String) -> String {
        SHA256.hash(data: Array(secret.utf8)).map { String(format: "%02x", $0) }.joined()
    }
}

/// 32 random bytes, base64url: session cookies, CSRF tokens, authorization codes.
func randomSecret() -> String {
    var generator = SystemRandomNumberGenerator()
    return base64URLEncode((0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) })
}

/// Runs CPU-heavy work (PBKDF2) off the cooperative pool.
func offload<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
    (try? await NIOThreadPool.singleton.runIfActive { work() }) ?? work()
}

/// A fixed-window counter per key (source address): at most `limit` hits per `window`
/// seconds. The table is bounded so a flood of addresses cannot grow it without end.
final class RateLimiter: Sendable {
    let limit: Int
    let window: Int64
    /// Counters live one window at least (an older one starts afresh anyway); a flood of
    /// more addresses than fit drops the oldest counters whole.
    let table: Mutex<AgedTable<String, (start: Int64, count: Int)>>

    init(limit: Int, window: Int64, capacity: Int = 100_000) {
        self.limit = limit
        self.window = window
        self.table = Mutex(AgedTable(capacity: capacity, lifetime: Double(window)))
    }

    /// Counts a hit; returns the seconds to wait when over the limit.
    func hit(_ key: String, now: Int64) -> Int64? {
        table.withLock { table in
            var entry = table.value(for: key, now: Double(now)) ?? (now, 0)
            if now - entry.start >= window { entry = (now, 0) }
            entry.count += 1
            table.set(key, entry, now: Double(now))
            return entry.count > limit ? entry.start + window - now : nil
        }
    }
}
