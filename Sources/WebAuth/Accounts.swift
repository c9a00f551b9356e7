import Crypto
import Foundation
import NIOPosix
import Storage
import Synchronization
import Utilities

#if canImport(Glibc)
    import Glibc
#endif

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
    /// Failed logins by user name and source prefix (known user names or not).
    let failedLogins: Mutex<AgedTable<String, FailedLogins>>

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
        self.failedLogins = Mutex(AgedTable(capacity: 100_000, lifetime: Double(lockSeconds)))
    }

    /// Checks a user name and password (PBKDF2 runs on NIO's thread pool, not the
    /// cooperative pool). Issue 26 item 12: a known and an unknown user name get the same
    /// answers after the same work — wrong, then locked after `lockAfter` failures — and
    /// the lock is per user name *and source prefix* (IPv4 address, IPv6 /64), so a third
    /// party cannot lock the owner out from the owner's own network. A new password set by
    /// the operator lifts it.
    public func authenticate(username: String, password: String, source: String?, now: Int64) async
        -> Result<WebAccount, LoginFailure>
    {
        let prefix = source.map(sourcePrefix) ?? "-"
        if let wait = attemptsPerSource.hit(prefix, now: now) {
            return .failure(.rateLimited(retryAfter: wait))
        }
        let known =
            username.utf8.count <= 256 && password.utf8.count <= 1_024
            ? (try? await store.account(username: username)) ?? nil : nil
        let hasher = self.hasher
        let matches = await offload {
            guard let known else {
                hasher.verifyNothing(password)
                return false
            }
            return hasher.verify(password, against: known.passwordHash)
        }
        let key = username + "\u{0}" + prefix
        let hash = known?.passwordHash ?? ""
        let lockedUntil = failedLogins.withLock { table -> Int64? in
            guard let entry = table.value(for: key, now: Double(now)) else { return nil }
            // The operator's new password lifts the lock.
            if entry.passwordHash != hash {
                table.removeValue(for: key)
                return nil
            }
            return entry.lockedUntil > now ? entry.lockedUntil : nil
        }
        if let lockedUntil { return .failure(.locked(until: lockedUntil)) }
        guard let account = known, matches else {
            let until = failedLogins.withLock { table -> Int64 in
                var entry = table.value(for: key, now: Double(now)) ?? FailedLogins(passwordHash: hash)
                entry.count += 1
                if entry.count >= lockAfter { entry.lockedUntil = now + lockSeconds }
                table.set(key, entry, now: Double(now))
                return entry.lockedUntil
            }
            return until > now ? .failure(.locked(until: until)) : .failure(.invalidCredentials)
        }
        _ = failedLogins.withLock { $0.removeValue(for: key) }
        return .success(account)
    }

    struct FailedLogins: Sendable {
        var passwordHash: String
        var count = 0
        var lockedUntil: Int64 = 0
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
            // An IMPU whose tokens were revoked this very second (its last user logged out)
            // goes last: a token issued now for it would fall under that revocation too.
            let now = Int64(Date().timeIntervalSince1970)
            let revoked = (try? await store.revocations(now: now))?.subjects ?? [:]
            let candidates =
                unbarred.filter { (revoked[$0] ?? .min) < now } + unbarred.filter { (revoked[$0] ?? .min) >= now }
            guard let impu = try await store.assignPoolIMPU(username: account.username, candidates: candidates) else {
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

/// The part of a source address one network owns: an IPv4 address whole, an IPv6
/// address's /64 (one host typically has a whole /64 to pick addresses from).
func sourcePrefix(_ address: String) -> String {
    var v6 = in6_addr()
    guard address.contains(":"), inet_pton(AF_INET6, address, &v6) == 1 else { return address }
    let bytes = withUnsafeBytes(of: &v6) { Array($0.prefix(8)) }
    if bytes.allSatisfy({ $0 == 0 }) {
        // ::ffff:a.b.c.d and the like: an IPv4 source in IPv6 clothing, whole.
        return address
    }
    return bytes.map { String(format: "%02x", $0) }.joined() + "::/64"
}

/// 32 random bytes, base64url: session cookies, CSRF tokens, authorization codes.
func randomSecret() -> String {
    base64URLEncode(randomBytes(32))
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
