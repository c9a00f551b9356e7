import Foundation
import Logging
import NIOCore
import SQLiteNIO
import Synchronization

/// Subscribers and bindings in one SQLite file (WAL). Reads use their own connection; every
/// write goes through one writer connection that commits whatever is queued together
/// (group commit); a failed write is retried alone so it spoils no other.
///
/// Durability: WAL with `synchronous=NORMAL` — a committed transaction survives the
/// process being killed (SIGKILL); it may be lost only if the OS itself crashes.
public final class SQLiteStorage: SubscriberStore, BindingStore, Sendable {
    let reader: SQLiteConnection
    let writer: SQLiteConnection
    let queue: WriteQueue
    let checkpointer: SQLiteCheckpointer
    public let path: String
    /// Every binding by AOR, in insertion order: the file is this process's alone (SQLite
    /// is the single-node store), so reads of the registrar are served from memory and
    /// every committed write updates it. An AOR missing here is read from the file.
    let bindingCacheBox = BindingCache()

    /// Opens (creating if needed) the database file and brings its schema up to date.
    public static func open(path: String, logger: Logger = Logger(label: "webims.storage")) async throws
        -> SQLiteStorage
    {
        let writer = try await SQLiteConnection.open(storage: .file(path: path), logger: logger)
        for pragma in [
            "PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA busy_timeout=5000",
            "PRAGMA foreign_keys=ON",
            // Checkpoints (which copy the WAL into the file and fsync it) run beside the
            // writer, not inside whichever commit crosses 1,000 pages: that commit, and every
            // registration waiting on it, would wait for the disk.
            "PRAGMA wal_autocheckpoint=0",
        ] {
            _ = try await writer.query(pragma)
        }
        try await Migrations.apply(on: writer)
        let reader = try await SQLiteConnection.open(storage: .file(path: path), logger: logger)
        for pragma in ["PRAGMA busy_timeout=5000", "PRAGMA foreign_keys=ON"] { _ = try await reader.query(pragma) }
        let bindingWriter = try await SQLiteBindingWriter.open(path: path)
        let checkpointer = try await SQLiteCheckpointer.start(path: path, logger: logger)
        return SQLiteStorage(
            path: path, reader: reader, writer: writer, bindingWriter: bindingWriter, checkpointer: checkpointer)
    }

    init(
        path: String, reader: SQLiteConnection, writer: SQLiteConnection, bindingWriter: SQLiteBindingWriter,
        checkpointer: SQLiteCheckpointer
    ) {
        self.path = path
        self.reader = reader
        self.writer = writer
        self.queue = WriteQueue(connection: writer, bindingWriter: bindingWriter)
        self.checkpointer = checkpointer
    }

    public func close() async {
        await checkpointer.stop()
        await queue.close()
        try? await reader.close()
        try? await writer.close()
    }

    // MARK: SubscriberStore

    public func subscriber(impi: String) async throws -> SubscriberRecord? {
        let rows = try await reader.query("SELECT * FROM subscribers WHERE impi = ?", [.text(impi)])
        guard let row = rows.first else { return nil }
        return try await record(from: row)
    }

    public func subscriber(impu: String) async throws -> SubscriberRecord? {
        let rows = try await reader.query(
            "SELECT s.* FROM subscribers s JOIN public_identities p ON p.impi = s.impi WHERE p.impu = ?", [.text(impu)])
        guard let row = rows.first else { return nil }
        return try await record(from: row)
    }

    public func allSubscribers() async throws -> [SubscriberRecord] {
        var result: [SubscriberRecord] = []
        for row in try await reader.query("SELECT * FROM subscribers ORDER BY impi") {
            result.append(try await record(from: row))
        }
        return result
    }

    public func put(_ s: SubscriberRecord) async throws {
        try await queue.write { db in
            _ = try await db.query(
                """
                INSERT INTO subscribers (impi, realm, schemes, ha1_md5, ha1_sha256, aka_k, aka_opc, aka_amf, sqn,
                    allowed_wafs, allowed_wwsfs)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT(impi) DO UPDATE SET realm = excluded.realm, schemes = excluded.schemes,
                    ha1_md5 = excluded.ha1_md5, ha1_sha256 = excluded.ha1_sha256, aka_k = excluded.aka_k,
                    aka_opc = excluded.aka_opc, aka_amf = excluded.aka_amf, sqn = excluded.sqn,
                    allowed_wafs = excluded.allowed_wafs, allowed_wwsfs = excluded.allowed_wwsfs
                """,
                [
                    .text(s.impi), .text(s.realm),
                    .text(s.allowedSchemes.map(\.rawValue).sorted().joined(separator: ",")),
                    text(s.ha1MD5), text(s.ha1SHA256), blob(s.akaK), blob(s.akaOPc), .blob(ByteBuffer(bytes: s.akaAMF)),
                    .integer(Int(s.sqn)), .text(s.allowedWAFs.joined(separator: "\n")),
                    .text(s.allowedWWSFs.joined(separator: "\n")),
                ])
            _ = try await db.query("DELETE FROM public_identities WHERE impi = ?", [.text(s.impi)])
            for (position, identity) in s.publicIdentities.enumerated() {
                _ = try await db.query(
                    "INSERT INTO public_identities (impu, impi, position, barred, implicit_set) VALUES (?, ?, ?, ?, ?)",
                    [
                        .text(identity.uri), .text(s.impi), .integer(position), .integer(identity.barred ? 1 : 0),
                        .integer(identity.implicitSet),
                    ])
            }
        }
    }

    public func removeSubscriber(impi: String) async throws -> Bool {
        try await queue.write { db in
            !(try await db.query("DELETE FROM subscribers WHERE impi = ? RETURNING impi", [.text(impi)])).isEmpty
        }
    }

    public func compareAndSetSQN(impi: String, expected: UInt64, new: UInt64) async throws -> Bool {
        try await queue.write { db in
            !(try await db.query(
                "UPDATE subscribers SET sqn = ? WHERE impi = ? AND sqn = ? RETURNING impi",
                [.integer(Int(new)), .text(impi), .integer(Int(expected))])).isEmpty
        }
    }

    private func record(from row: SQLiteRow) async throws -> SubscriberRecord {
        let impi = row.column("impi")?.string ?? ""
        let identities = try await reader.query(
            "SELECT impu, barred, implicit_set FROM public_identities WHERE impi = ? ORDER BY position", [.text(impi)])
        return SubscriberRecord(
            impi: impi,
            realm: row.column("realm")?.string ?? "",
            publicIdentities: identities.map {
                PublicIdentity(
                    uri: $0.column("impu")?.string ?? "", barred: ($0.column("barred")?.integer ?? 0) != 0,
                    implicitSet: $0.column("implicit_set")?.integer ?? 0)
            },
            allowedSchemes: Set(
                (row.column("schemes")?.string ?? "").split(separator: ",").compactMap {
                    AuthScheme(rawValue: String($0))
                }),
            ha1MD5: row.column("ha1_md5")?.string,
            ha1SHA256: row.column("ha1_sha256")?.string,
            akaK: bytes(row.column("aka_k")),
            akaOPc: bytes(row.column("aka_opc")),
            akaAMF: bytes(row.column("aka_amf")) ?? [0x80, 0x00],
            sqn: UInt64(max(0, row.column("sqn")?.integer ?? 0)),
            allowedWAFs: lines(row.column("allowed_wafs")),
            allowedWWSFs: lines(row.column("allowed_wwsfs")))
    }

    // MARK: BindingStore

    public func cachedBindings(aor: String, now: Int64) -> [Binding]? {
        bindingCacheBox.lookup(aor)?.filter { $0.expiresAt > now }
    }

    public func bindings(aor: String, now: Int64) async throws -> [Binding] {
        if let cached = cachedBindings(aor: aor, now: now) { return cached }
        let writesBefore = bindingCacheBox.writeCount(aor)
        let rows = try await reader.query(
            "SELECT * FROM bindings WHERE aor = ? ORDER BY rowid", [.text(aor)]
        )
        .compactMap(binding(from:))
        bindingCacheBox.fill(aor, rows, writesBefore: writesBefore)
        return rows.filter { $0.expiresAt > now }
    }

    public func allBindings(now: Int64) async throws -> [Binding] {
        try await reader.query("SELECT * FROM bindings WHERE expires_at > ? ORDER BY rowid", [.integer(Int(now))])
            .compactMap(binding(from:))
    }

    public func apply(upserts: [Binding], removals: [BindingRemoval]) async throws {
        let touched = Set(upserts.map(\.aor) + removals.map(\.aor))
        do {
            try await write(upserts: upserts, removals: removals)
        } catch {
            // Whatever the cache holds for these AORs may now be ahead of the file.
            bindingCacheBox.evict(touched)
            throw error
        }
    }

    private func write(upserts: [Binding], removals: [BindingRemoval]) async throws {
        let cache = bindingCacheBox
        try await queue.writeBindings(
            BindingChange(
                upserts: upserts, removals: removals,
                // In commit order (the write queue's), so the cache follows the file.
                committed: { cache.apply(upserts: upserts, removals: removals) }))
    }

    public func removeExpired(now: Int64) async throws -> [Binding] {
        let cache = bindingCacheBox
        return try await queue.write { db in
            let rows = try await db.query(
                "DELETE FROM bindings WHERE expires_at <= ? RETURNING *", [.integer(Int(now))])
            cache.removeExpired(now: now)
            return rows
        }.compactMap(binding(from:))
    }

    private func binding(from row: SQLiteRow) -> Binding? {
        guard let aor = row.column("aor")?.string, let contact = row.column("contact")?.string,
            let impi = row.column("impi")?.string, let scheme = row.column("scheme")?.string.flatMap(AuthScheme.init)
        else { return nil }
        return Binding(
            aor: aor, contact: contact, contactHeader: row.column("contact_header")?.string ?? contact,
            instance: row.column("instance")?.string, regID: row.column("reg_id")?.integer.map { UInt32(clamping: $0) },
            impi: impi, expiresAt: Int64(row.column("expires_at")?.integer ?? 0),
            callID: row.column("call_id")?.string ?? "", cseq: UInt32(clamping: row.column("cseq")?.integer ?? 0),
            path: lines(row.column("path")), scheme: scheme)
    }
}

/// The in-memory copy of the bindings table (see `SQLiteStorage.bindingCacheBox`).
final class BindingCache: Sendable {
    struct State {
        var table: [String: [Binding]] = [:]
        /// Writes seen per AOR, so rows read from the file before a write are not kept.
        var writes: [String: UInt64] = [:]
    }
    let state = Mutex(State())

    /// The AOR's bindings if known here.
    func lookup(_ aor: String) -> [Binding]? { state.withLock { $0.table[aor] } }

    func writeCount(_ aor: String) -> UInt64 { state.withLock { $0.writes[aor, default: 0] } }

    /// Keeps rows read from the file, unless a write touched the AOR since the read began.
    func fill(_ aor: String, _ rows: [Binding], writesBefore: UInt64) {
        state.withLock { state in
            if state.table[aor] == nil, state.writes[aor, default: 0] == writesBefore { state.table[aor] = rows }
        }
    }

    func evict(_ aors: Set<String>) {
        state.withLock { state in
            for aor in aors {
                state.table[aor] = nil
                state.writes[aor, default: 0] &+= 1
            }
        }
    }

    func apply(upserts: [Binding], removals: [BindingRemoval]) {
        state.withLock { state in
            for removal in removals {
                state.writes[removal.aor, default: 0] &+= 1
                state.table[removal.aor]?.removeAll { removal.takes($0) }
            }
            for binding in upserts {
                state.writes[binding.aor, default: 0] &+= 1
                // Only AORs already known here; others are read from the file when asked.
                guard var list = state.table[binding.aor] else { continue }
                if let index = list.firstIndex(where: { $0.key == binding.key }) {
                    list[index] = binding
                } else {
                    list.append(binding)
                }
                state.table[binding.aor] = list
            }
        }
    }

    func removeExpired(now: Int64) {
        state.withLock { state in
            for (aor, list) in state.table where list.contains(where: { $0.expiresAt <= now }) {
                state.table[aor] = list.filter { $0.expiresAt > now }
            }
        }
    }
}

/// One registration's change to the bindings table. The write queue commits the changes of
/// a batch together (`SQLiteBindingWriter.commit`).
struct BindingChange: Sendable {
    var upserts: [Binding]
    var removals: [BindingRemoval]
    /// Runs once the change is committed, in commit order.
    var committed: @Sendable () -> Void

    /// What a run of changes comes to: the deletes, run in order, then the rows to upsert.
    struct Plan {
        var deletes: [BindingRemoval]
        var rows: [Binding]
    }

    /// The statements for a run of changes, with the same outcome as running them one by
    /// one: the last word on each (aor, key) wins; a binding removed and added again in the
    /// run is deleted first, so it gets a fresh rowid (the table's order is insertion order);
    /// new rows are inserted in the order they were first added. A conditional removal of a
    /// row the run itself upserts is decided here, against that row's version.
    static func plan(_ changes: [BindingChange]) -> Plan {
        struct Key: Hashable {
            var aor: String
            var key: String
        }
        struct Final {
            var binding: Binding?
            var created: Int
        }
        var finals: [Key: Final] = [:]
        var deletes: [BindingRemoval] = []
        var sequence = 0
        for change in changes {
            for removal in change.removals {
                let key = Key(aor: removal.aor, key: removal.key)
                if let pending = finals[key]?.binding {
                    guard removal.onlyIf.map({ $0 == pending.version }) ?? true else { continue }
                    // Whatever the file holds under this key, the run's own row replaced it.
                    deletes.append(BindingRemoval(aor: removal.aor, key: removal.key))
                } else {
                    deletes.append(removal)  // the file's row: its version is checked there
                }
                finals[key] = Final(binding: nil, created: 0)
            }
            for binding in change.upserts {
                let key = Key(aor: binding.aor, key: binding.key)
                if finals[key]?.binding != nil {
                    finals[key]?.binding = binding
                } else {
                    sequence += 1
                    finals[key] = Final(binding: binding, created: sequence)
                }
            }
        }
        let rows = finals.values.compactMap { final in final.binding.map { (final.created, $0) } }
            .sorted { $0.0 < $1.0 }.map(\.1)
        return Plan(deletes: deletes, rows: rows)
    }

    static let upsertSQL = """
        INSERT INTO bindings (aor, binding_key, contact, contact_header, instance, reg_id, impi, expires_at,
            call_id, cseq, path, scheme)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT(aor, binding_key) DO UPDATE SET contact = excluded.contact,
            contact_header = excluded.contact_header, impi = excluded.impi,
            expires_at = excluded.expires_at, call_id = excluded.call_id, cseq = excluded.cseq,
            path = excluded.path, scheme = excluded.scheme
        """
}

/// Runs writes one batch at a time: the binding changes queued when a batch starts commit
/// together in one transaction on the bindings writer; any other write runs alone, in
/// queue order, on the general writer connection. The queue is what keeps the two
/// connections from ever writing at once.
///
/// It drains in turns on the bindings writer's event loop, so a batch is taken, committed
/// and its waiters resumed on that one thread (no hop through the global executor or a
/// thread pool: two thread wake-ups a batch instead of four).
final class WriteQueue: Sendable {
    typealias Work = @Sendable (SQLiteConnection) async throws -> Void
    enum Item: Sendable {
        case work(Work)
        case bindings(BindingChange)
    }
    private typealias Entry = (Item, CheckedContinuation<Void, any Error>)
    private struct State {
        var pending: [Entry] = []
        var draining = false
        var closed = false
        /// Closers waiting for the drain to end.
        var closers: [CheckedContinuation<Void, Never>] = []
        /// When the last batch was committed.
        var lastCommit = NIODeadline.uptimeNanoseconds(0)
    }
    private let state = Mutex(State())
    private let connection: SQLiteConnection
    let bindingWriter: SQLiteBindingWriter
    static let gatherWhenWaiting = 4
    static let gatherWindow: TimeAmount = .milliseconds(2)

    init(connection: SQLiteConnection, bindingWriter: SQLiteBindingWriter) {
        self.connection = connection
        self.bindingWriter = bindingWriter
    }

    func write<T: Sendable>(_ body: @escaping @Sendable (SQLiteConnection) async throws -> T) async throws -> T {
        let result = Mutex<T?>(nil)
        try await enqueue(
            .work { db in
                let value = try await body(db)
                result.withLock { $0 = value }
            })
        guard let value = result.withLock({ $0 }) else { throw StorageError.writeLost }
        return value
    }

    func writeBindings(_ change: BindingChange) async throws {
        try await enqueue(.bindings(change))
    }

    private func enqueue(_ item: Item) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let start = state.withLock { state -> Bool? in
                if state.closed { return nil }
                state.pending.append((item, continuation))
                if state.draining { return false }
                state.draining = true
                return true
            }
            switch start {
            case nil: continuation.resume(throwing: StorageError.writeLost)
            case true?: bindingWriter.loop.execute { self.drainTurn(gathered: false) }
            case false?: break
            }
        }
    }

    /// Takes no more writes, waits for those queued to be written, and closes the writer.
    func close() async {
        await withCheckedContinuation { (closer: CheckedContinuation<Void, Never>) in
            let idle = state.withLock { state -> Bool in
                state.closed = true
                if !state.draining { return true }
                state.closers.append(closer)
                return false
            }
            if idle { closer.resume() }
        }
        await bindingWriter.close()
    }

    /// One turn of the drain, on the writer's loop: takes what is pending and writes it,
    /// then goes again until nothing is left.
    private func drainTurn(gathered: Bool) {
        let loop = bindingWriter.loop
        // A commit has a fixed cost that its batch shares (locks, WAL index, thread wake-ups;
        // ~150 µs of CPU on the project VM, estimated from a profile). Under load — several
        // changes already waiting, or a batch committed moments ago — gather a little longer
        // so more share it; a lone registration is committed at once. (Testing only what
        // waits, the few that arrived during a commit went alone: 3 a commit, not 7.)
        if !gathered {
            let now = NIODeadline.now()
            let (waiting, lastCommit) = state.withLock { ($0.pending.count, $0.lastCommit) }
            // Many waiting: the full window. A few, just after a commit: half of it, which
            // at moderate load takes ~0.9 ms off the median registration and costs the
            // S-CSCF's loaded batches nothing (BENCHMARKS.md, fourth 2026-12-02 session).
            let window: TimeAmount?
            if waiting >= Self.gatherWhenWaiting {
                window = Self.gatherWindow
            } else if waiting > 0 && now - lastCommit < Self.gatherWindow * 2 {
                window = .nanoseconds(Self.gatherWindow.nanoseconds / 2)
            } else {
                window = nil
            }
            if let window {
                loop.scheduleTask(in: window) { self.drainTurn(gathered: true) }
                return
            }
        }
        let (batch, closers) = state.withLock { state -> ([Entry], [CheckedContinuation<Void, Never>]) in
            let batch = state.pending
            state.pending.removeAll()
            if !batch.isEmpty { return (batch, []) }
            state.draining = false
            defer { state.closers.removeAll() }
            return ([], state.closers)
        }
        if batch.isEmpty {
            for closer in closers { closer.resume() }
            return
        }
        var changes: [(BindingChange, CheckedContinuation<Void, any Error>)] = []
        for (index, (item, continuation)) in batch.enumerated() {
            switch item {
            case .bindings(let change):
                changes.append((change, continuation))
            case .work(let work):
                // Queue order: the binding changes before it commit first. The work itself
                // runs on sqlite-nio's connection (async); the rest of the batch waits for it.
                commit(changes)
                let rest = batch[(index + 1)...]
                Task {
                    continuation.resume(with: await self.run(work))
                    self.state.withLock { $0.pending.insert(contentsOf: rest, at: 0) }
                    loop.execute { self.drainTurn(gathered: true) }
                }
                return
            }
        }
        commit(changes)
        loop.execute { self.drainTurn(gathered: false) }
    }

    /// Commits binding changes together. If the batch fails, each change is tried alone,
    /// so one bad change spoils no other.
    private func commit(_ changes: [(BindingChange, CheckedContinuation<Void, any Error>)]) {
        if changes.isEmpty { return }
        defer { state.withLock { $0.lastCommit = .now() } }
        do {
            try bindingWriter.commitHere(changes.map(\.0))
            for (_, continuation) in changes { continuation.resume() }
        } catch {
            if changes.count == 1 {
                changes[0].1.resume(throwing: error)
                return
            }
            for (change, continuation) in changes {
                do {
                    try bindingWriter.commitHere([change])
                    continuation.resume()
                } catch {
                    continuation.resume(throwing: error)
                }
            }
        }
    }

    private func run(_ work: Work) async -> Result<Void, any Error> {
        do {
            _ = try await connection.query("BEGIN IMMEDIATE")
            do {
                try await work(connection)
                _ = try await connection.query("COMMIT")
                return .success(())
            } catch {
                _ = try? await connection.query("ROLLBACK")
                return .failure(error)
            }
        } catch {
            return .failure(error)
        }
    }
}

public enum StorageError: Error, Sendable {
    case writeLost
    case migrationFailed(String)
    case badDatabaseURL
}

func text(_ value: String?) -> SQLiteData { value.map { .text($0) } ?? .null }
func blob(_ value: [UInt8]?) -> SQLiteData { value.map { .blob(ByteBuffer(bytes: $0)) } ?? .null }
func bytes(_ data: SQLiteData?) -> [UInt8]? {
    if case .blob(let buffer)? = data { return Array(buffer.readableBytesView) }
    return nil
}
func lines(_ data: SQLiteData?) -> [String] {
    (data?.string ?? "").split(separator: "\n").map(String.init)
}
