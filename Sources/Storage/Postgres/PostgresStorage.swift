import Foundation
import Logging
import NIOCore
import PostgresNIO

/// Subscribers and bindings in PostgreSQL, for several S-CSCF / HSS nodes sharing one
/// database. Every write is one transaction; PostgreSQL's own commit batching plays the
/// role SQLite's write queue plays. `compareAndSetSQN` is a conditional UPDATE, so two
/// nodes never hand out the same SQN.
public final class PostgresStorage: SubscriberStore, BindingStore, Sendable {
    let client: PostgresClient
    let runner: Task<Void, Never>
    let logger: Logger

    /// Connects (`postgres://user[:password]@host[:port]/database`) and migrates the schema.
    public static func open(url: String, logger: Logger = Logger(label: "webims.storage")) async throws
        -> PostgresStorage
    {
        guard let parts = PostgresURL(url) else { throw StorageError.badDatabaseURL }
        let configuration = PostgresClient.Configuration(
            host: parts.host, port: parts.port, username: parts.user, password: parts.password,
            database: parts.database, tls: .disable)
        // The pool's own chatter (a lease racing run(), a connection closed at shutdown) is
        // not ours to report; errors still are.
        var poolLogger = logger
        poolLogger.logLevel = .error
        let client = PostgresClient(configuration: configuration, backgroundLogger: poolLogger)
        let runner = Task { await client.run() }
        let storage = PostgresStorage(client: client, runner: runner, logger: logger)
        do {
            try await storage.migrate()
        } catch {
            runner.cancel()
            throw error
        }
        return storage
    }

    init(client: PostgresClient, runner: Task<Void, Never>, logger: Logger) {
        self.client = client
        self.runner = runner
        self.logger = logger
    }

    public func close() async {
        runner.cancel()
        _ = await runner.value
    }

    func migrate() async throws {
        try await client.withTransaction(logger: logger) { db in
            // One migrator at a time across nodes.
            try await db.query("SELECT pg_advisory_xact_lock(872346)", logger: logger)
            try await db.query("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)", logger: logger)
            var current = 0
            for try await (version) in try await db.query(
                "SELECT COALESCE(MAX(version), 0) FROM schema_version", logger: logger
            )
            .decode(Int.self) {
                current = version
            }
            for (index, step) in Schema.steps(.postgres).enumerated() where index + 1 > current {
                for sql in step { try await db.query(PostgresQuery(unsafeSQL: sql), logger: logger) }
                try await db.query("INSERT INTO schema_version (version) VALUES (\(index + 1))", logger: logger)
            }
        }
    }

    // MARK: SubscriberStore

    static let subscriberColumns =
        "s.impi, s.realm, s.schemes, s.ha1_md5, s.ha1_sha256, s.aka_k, s.aka_opc, s.aka_amf, s.sqn, s.allowed_wafs, s.allowed_wwsfs"

    public func subscriber(impi: String) async throws -> SubscriberRecord? {
        try await subscribers("SELECT \(unescaped: Self.subscriberColumns) FROM subscribers s WHERE s.impi = \(impi)")
            .first
    }

    public func subscriber(impu: String) async throws -> SubscriberRecord? {
        try await subscribers(
            "SELECT \(unescaped: Self.subscriberColumns) FROM subscribers s JOIN public_identities p ON p.impi = s.impi WHERE p.impu = \(impu)"
        ).first
    }

    public func allSubscribers() async throws -> [SubscriberRecord] {
        try await subscribers("SELECT \(unescaped: Self.subscriberColumns) FROM subscribers s ORDER BY s.impi")
    }

    private func subscribers(_ query: PostgresQuery) async throws -> [SubscriberRecord] {
        var result: [SubscriberRecord] = []
        let rows = try await client.query(query, logger: logger)
        for try await row in rows {
            let r = row.makeRandomAccess()
            let impi = try r["impi"].decode(String.self)
            var record = SubscriberRecord(
                impi: impi, realm: try r["realm"].decode(String.self), publicIdentities: [],
                allowedSchemes: Set(
                    try r["schemes"].decode(String.self).split(separator: ",").compactMap {
                        AuthScheme(rawValue: String($0))
                    }),
                ha1MD5: try r["ha1_md5"].decode(String?.self), ha1SHA256: try r["ha1_sha256"].decode(String?.self),
                akaK: try r["aka_k"].decode(ByteBuffer?.self).map { Array($0.readableBytesView) },
                akaOPc: try r["aka_opc"].decode(ByteBuffer?.self).map { Array($0.readableBytesView) },
                akaAMF: try r["aka_amf"].decode(ByteBuffer?.self).map { Array($0.readableBytesView) } ?? [0x80, 0x00],
                sqn: UInt64(max(0, try r["sqn"].decode(Int64.self))),
                allowedWAFs: lines(try r["allowed_wafs"].decode(String.self)),
                allowedWWSFs: lines(try r["allowed_wwsfs"].decode(String.self)))
            record.publicIdentities = try await identities(impi: impi)
            result.append(record)
        }
        return result
    }

    private func identities(impi: String) async throws -> [PublicIdentity] {
        var result: [PublicIdentity] = []
        let rows = try await client.query(
            "SELECT impu, barred, implicit_set FROM public_identities WHERE impi = \(impi) ORDER BY position",
            logger: logger)
        for try await (impu, barred, set) in rows.decode((String, Bool, Int).self) {
            result.append(PublicIdentity(uri: impu, barred: barred, implicitSet: set))
        }
        return result
    }

    public func put(_ s: SubscriberRecord) async throws {
        let schemes = s.allowedSchemes.map(\.rawValue).sorted().joined(separator: ",")
        let k = s.akaK.map { ByteBuffer(bytes: $0) }
        let opc = s.akaOPc.map { ByteBuffer(bytes: $0) }
        let amf = ByteBuffer(bytes: s.akaAMF)
        let sqn = Int64(s.sqn)
        let wafs = s.allowedWAFs.joined(separator: "\n")
        let wwsfs = s.allowedWWSFs.joined(separator: "\n")
        try await client.withTransaction(logger: logger) { db in
            try await db.query(
                """
                INSERT INTO subscribers (impi, realm, schemes, ha1_md5, ha1_sha256, aka_k, aka_opc, aka_amf, sqn,
                    allowed_wafs, allowed_wwsfs)
                VALUES (\(s.impi), \(s.realm), \(schemes), \(s.ha1MD5), \(s.ha1SHA256), \(k), \(opc), \(amf), \(sqn), \(wafs), \(wwsfs))
                ON CONFLICT (impi) DO UPDATE SET realm = excluded.realm, schemes = excluded.schemes,
                    ha1_md5 = excluded.ha1_md5, ha1_sha256 = excluded.ha1_sha256, aka_k = excluded.aka_k,
                    aka_opc = excluded.aka_opc, aka_amf = excluded.aka_amf, sqn = excluded.sqn,
                    allowed_wafs = excluded.allowed_wafs, allowed_wwsfs = excluded.allowed_wwsfs
                """, logger: logger)
            try await db.query("DELETE FROM public_identities WHERE impi = \(s.impi)", logger: logger)
            for (position, identity) in s.publicIdentities.enumerated() {
                try await db.query(
                    "INSERT INTO public_identities (impu, impi, position, barred, implicit_set) VALUES (\(identity.uri), \(s.impi), \(position), \(identity.barred), \(identity.implicitSet))",
                    logger: logger)
            }
        }
    }

    public func removeSubscriber(impi: String) async throws -> Bool {
        try await exists(client.query("DELETE FROM subscribers WHERE impi = \(impi) RETURNING impi", logger: logger))
    }

    public func compareAndSetSQN(impi: String, expected: UInt64, new: UInt64) async throws -> Bool {
        let e = Int64(expected)
        let n = Int64(new)
        return try await exists(
            client.query(
                "UPDATE subscribers SET sqn = \(n) WHERE impi = \(impi) AND sqn = \(e) RETURNING impi", logger: logger))
    }

    // MARK: BindingStore

    static let bindingColumns =
        "aor, contact, contact_header, instance, reg_id, impi, expires_at, call_id, cseq, path, scheme"

    public func bindings(aor: String, now: Int64) async throws -> [Binding] {
        try await bindingRows(
            "SELECT \(unescaped: Self.bindingColumns) FROM bindings WHERE aor = \(aor) AND expires_at > \(now) ORDER BY seq"
        )
    }

    public func allBindings(now: Int64) async throws -> [Binding] {
        try await bindingRows(
            "SELECT \(unescaped: Self.bindingColumns) FROM bindings WHERE expires_at > \(now) ORDER BY seq")
    }

    public func apply(upserts: [Binding], removals: [BindingRemoval]) async throws {
        try await client.withTransaction(logger: logger) { db in
            for r in removals {
                if let version = r.onlyIf {
                    // Read committed: the condition is checked on the row as it stands once
                    // any other node's write to it has committed.
                    try await db.query(
                        """
                        DELETE FROM bindings WHERE aor = \(r.aor) AND binding_key = \(r.key)
                            AND call_id = \(version.callID) AND cseq = \(Int64(version.cseq))
                        """, logger: logger)
                } else {
                    try await db.query(
                        "DELETE FROM bindings WHERE aor = \(r.aor) AND binding_key = \(r.key)", logger: logger)
                }
            }
            for b in upserts {
                let regID = b.regID.map(Int64.init)
                let path = b.path.joined(separator: "\n")
                try await db.query(
                    """
                    INSERT INTO bindings (aor, binding_key, contact, contact_header, instance, reg_id, impi, expires_at,
                        call_id, cseq, path, scheme)
                    VALUES (\(b.aor), \(b.key), \(b.contact), \(b.contactHeader), \(b.instance), \(regID), \(b.impi),
                        \(b.expiresAt), \(b.callID), \(Int64(b.cseq)), \(path), \(b.scheme.rawValue))
                    ON CONFLICT (aor, binding_key) DO UPDATE SET contact = excluded.contact,
                        contact_header = excluded.contact_header, impi = excluded.impi, expires_at = excluded.expires_at,
                        call_id = excluded.call_id, cseq = excluded.cseq, path = excluded.path, scheme = excluded.scheme
                    """, logger: logger)
            }
        }
    }

    public func removeExpired(now: Int64) async throws -> [Binding] {
        try await bindingRows(
            "DELETE FROM bindings WHERE expires_at <= \(now) RETURNING \(unescaped: Self.bindingColumns)")
    }

    private func bindingRows(_ query: PostgresQuery) async throws -> [Binding] {
        var result: [Binding] = []
        for try await row in try await client.query(query, logger: logger) {
            let r = row.makeRandomAccess()
            guard let scheme = AuthScheme(rawValue: try r["scheme"].decode(String.self)) else { continue }
            result.append(
                Binding(
                    aor: try r["aor"].decode(String.self), contact: try r["contact"].decode(String.self),
                    contactHeader: try r["contact_header"].decode(String.self),
                    instance: try r["instance"].decode(String?.self),
                    regID: try r["reg_id"].decode(Int64?.self).map { UInt32(clamping: $0) },
                    impi: try r["impi"].decode(String.self),
                    expiresAt: try r["expires_at"].decode(Int64.self), callID: try r["call_id"].decode(String.self),
                    cseq: UInt32(clamping: try r["cseq"].decode(Int64.self)),
                    path: lines(try r["path"].decode(String.self)),
                    scheme: scheme))
        }
        return result
    }

    func exists(_ rows: PostgresRowSequence) async throws -> Bool {
        for try await _ in rows { return true }
        return false
    }
}

private func lines(_ text: String) -> [String] { text.split(separator: "\n").map(String.init) }

extension PostgresStorage: DataStore {}
