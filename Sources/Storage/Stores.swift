import Logging

/// The HSS's persistent data.
public protocol SubscriberStore: Sendable {
    func subscriber(impi: String) async throws -> SubscriberRecord?
    /// The subscription that owns an IMPU (tel or sip URI as provisioned).
    func subscriber(impu: String) async throws -> SubscriberRecord?
    func allSubscribers() async throws -> [SubscriberRecord]
    /// Inserts or replaces the subscription and its IMPUs.
    func put(_ subscriber: SubscriberRecord) async throws
    /// Removes the subscription; true if it existed.
    @discardableResult func removeSubscriber(impi: String) async throws -> Bool
    /// Sets SQN_HE to `new` only if it is still `expected` (TS 33.102 Annex C): two
    /// S-CSCFs asking for vectors at once cannot hand out the same SQN.
    func compareAndSetSQN(impi: String, expected: UInt64, new: UInt64) async throws -> Bool
}

/// The S-CSCF's registrations.
public protocol BindingStore: Sendable {
    /// Unexpired bindings of an IMPU.
    func bindings(aor: String, now: Int64) async throws -> [Binding]
    /// The same from memory without suspending, when the store keeps them there; nil means
    /// ask `bindings(aor:now:)`.
    func cachedBindings(aor: String, now: Int64) -> [Binding]?
    /// Stores bindings and removes others, all in one durable commit: when it returns, a
    /// crash loses none of it. A removal with `onlyIf` leaves a row of another version.
    func apply(upserts: [Binding], removals: [BindingRemoval]) async throws
    /// Every unexpired binding (for restart and the reg event).
    func allBindings(now: Int64) async throws -> [Binding]
    /// Deletes expired bindings; returns what was deleted.
    func removeExpired(now: Int64) async throws -> [Binding]
}

extension BindingStore {
    public func cachedBindings(aor: String, now: Int64) -> [Binding]? { nil }
}

/// Both stores in one database, as `serve` and the provisioning commands open it.
public protocol DataStore: SubscriberStore, BindingStore, WebStore, SharedSecretStore {
    func close() async
}

/// Secrets every node on one database must agree on — a nonce one S-CSCF makes is checked
/// by another — made once by whichever node asks first and read by every other.
public protocol SharedSecretStore: Sendable {
    /// The secret `name`: `candidate` kept when there is none yet, else the one kept.
    func sharedSecret(named name: String, candidate: [UInt8]) async throws -> [UInt8]
}

/// Digest answers seen by any node (RFC 7616 §3.4's nonce-count, across nodes). Only a
/// store several nodes share has it (PostgreSQL); one node's tracker sees all its answers.
public protocol NonceUseStore: Sendable {
    /// Claims a nonce and nonce-count; false when some node claimed them before.
    func claimNonceUse(nonce: String, count: Int64, expiresAt: Int64) async throws -> Bool
    /// Forgets the claims whose nonce has expired.
    func pruneNonceUses(now: Int64) async throws
}

/// The WWSF's and WAF's persistent data.
public protocol WebStore: Sendable {
    func account(username: String) async throws -> WebAccount?
    func allAccounts() async throws -> [WebAccount]
    func put(_ account: WebAccount) async throws
    @discardableResult func removeAccount(username: String) async throws -> Bool

    func createSession(_ session: WebSession) async throws
    func session(idHash: String, now: Int64) async throws -> WebSession?
    func removeSession(idHash: String) async throws
    func removeSessions(username: String) async throws

    func signingKeys() async throws -> [SigningKeyRecord]
    func addSigningKey(_ key: SigningKeyRecord) async throws
    /// Marks every key except `kid` retired at `at` (if not retired yet).
    func retireSigningKeys(except kid: String, at: Int64) async throws
    /// Deletes keys retired before `before`.
    func pruneSigningKeys(retiredBefore before: Int64) async throws

    func revokeToken(id: String, expiresAt: Int64) async throws
    func revokeTokens(subject: String, issuedBefore: Int64) async throws
    func revocations(now: Int64) async throws -> RevocationList

    /// Scenario 3: the IMPU from `candidates` assigned to `username`, assigning a free one
    /// if it has none; nil when the pool is exhausted.
    func assignPoolIMPU(username: String, candidates: [String]) async throws -> String?
    func releasePoolIMPU(username: String) async throws
}

/// What a store reports beyond the engine's own errors.
public enum StorageError: Error, Sendable {
    case writeLost
    case migrationFailed(String)
    case badDatabaseURL
}

/// Opens the store a URL names: `postgres://…` for PostgreSQL, anything else is a SQLite
/// file path.
public func openDataStore(_ location: String, logger: Logger = Logger(label: "webims.storage")) async throws
    -> any DataStore
{
    if location.hasPrefix("postgres://") || location.hasPrefix("postgresql://") {
        return try await PostgresStorage.open(url: location, logger: logger)
    }
    return try await SQLiteStorage.open(path: location, logger: logger)
}
