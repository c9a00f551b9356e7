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
        try await SQLiteMigrator.apply(on: writer)
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
        guard let list = bindingCacheBox.lookup(aor) else { return nil }
        // Nearly always none has expired (the sweep takes them): the list as it is, no copy.
        return list.allSatisfy { $0.expiresAt > now } ? list : list.filter { $0.expiresAt > now }
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

extension SQLiteStorage: DataStore {}
