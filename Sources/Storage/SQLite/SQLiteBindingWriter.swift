import NIOCore
import NIOPosix
// sqlite-nio's vendored SQLite, reached directly: the bindings writer shares the library
// (and so its per-file lock bookkeeping) with the connections sqlite-nio opens, but keeps
// its statements prepared, which sqlite-nio's API cannot.
import VaporCSQLite

/// Writes binding changes to an SQLite file on a connection of its own, with each
/// statement prepared once. sqlite-nio prepares every query anew; for a batch of
/// registrations, parsing the upsert cost about as much as running it.
///
/// The connection lives on a thread of its own, an event loop (`loop`) that the write
/// queue drains on: a batch is taken, committed and answered there without a hop to
/// another thread. The handle is used on that thread only, one call at a time, which is
/// what makes the `@unchecked Sendable` hold.
final class SQLiteBindingWriter: @unchecked Sendable {
    private let db: OpaquePointer
    private let statements: Statements
    private let group: MultiThreadedEventLoopGroup
    let loop: any EventLoop

    /// Every statement a batch runs, transaction control included (`sqlite3_exec` would
    /// parse BEGIN and COMMIT anew for every batch).
    private struct Statements {
        var begin: OpaquePointer
        var commit: OpaquePointer
        var rollback: OpaquePointer
        var upsert: OpaquePointer
        var delete: OpaquePointer
        var deleteVersion: OpaquePointer

        var all: [OpaquePointer] { [begin, commit, rollback, upsert, delete, deleteVersion] }
    }

    private init(db: OpaquePointer, statements: Statements, group: MultiThreadedEventLoopGroup) {
        self.db = db
        self.statements = statements
        self.group = group
        self.loop = group.next()
    }

    /// Opens the file (its schema must already be there) and prepares the statements.
    static func open(path: String) async throws -> SQLiteBindingWriter {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        do {
            return try await group.next().submit { try openHere(path: path, group: group) }.get()
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
    }

    private static func openHere(path: String, group: MultiThreadedEventLoopGroup) throws -> SQLiteBindingWriter {
        var handle: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX
        guard sqlite_nio_sqlite3_open_v2(path, &handle, flags, nil) == SQLITE_OK, let db = handle else {
            let message = handle.map { String(cString: sqlite_nio_sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite_nio_sqlite3_close(handle)
            throw SQLiteWriteError(message: "cannot open \(path): \(message)")
        }
        do {
            // Same settings as the other writer: durable at commit against a killed process
            // (WAL, NORMAL), checkpoints left to the checkpointer; a busy file is waited for.
            try exec(db, "PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=0; PRAGMA foreign_keys=ON")
            sqlite_nio_sqlite3_busy_timeout(db, 5_000)
            var prepared: [OpaquePointer] = []
            do {
                for sql in [
                    "BEGIN IMMEDIATE", "COMMIT", "ROLLBACK", BindingChange.upsertSQL,
                    "DELETE FROM bindings WHERE aor = ? AND binding_key = ?",
                    "DELETE FROM bindings WHERE aor = ? AND binding_key = ? AND call_id = ? AND cseq = ?",
                ] {
                    prepared.append(try prepare(db, sql))
                }
            } catch {
                for statement in prepared { sqlite_nio_sqlite3_finalize(statement) }
                throw error
            }
            let statements = Statements(
                begin: prepared[0], commit: prepared[1], rollback: prepared[2], upsert: prepared[3],
                delete: prepared[4],
                deleteVersion: prepared[5])
            return SQLiteBindingWriter(db: db, statements: statements, group: group)
        } catch {
            sqlite_nio_sqlite3_close(db)
            throw error
        }
    }

    /// Commits a run of changes in one transaction, on `loop` (where the write queue calls
    /// it): all of it is durable when this returns, or none of it is there. Each change's
    /// `committed` then runs, in order.
    func commitHere(_ changes: [BindingChange]) throws {
        loop.preconditionInEventLoop()
        try executeHere(BindingChange.plan(changes))
        for change in changes { change.committed() }
    }

    private func executeHere(_ plan: BindingChange.Plan) throws {
        try step(statements.begin)
        do {
            for removal in plan.deletes {
                if let version = removal.onlyIf {
                    try bind(
                        statements.deleteVersion,
                        [.text(removal.aor), .text(removal.key), .text(version.callID), .integer(Int64(version.cseq))])
                    try step(statements.deleteVersion)
                } else {
                    try bind(statements.delete, [.text(removal.aor), .text(removal.key)])
                    try step(statements.delete)
                }
            }
            for binding in plan.rows {
                try bind(statements.upsert, Self.columns(of: binding))
                try step(statements.upsert)
            }
            try step(statements.commit)
        } catch {
            try? step(statements.rollback)
            throw error
        }
    }

    func close() async {
        _ = try? await loop.submit {
            for statement in self.statements.all { sqlite_nio_sqlite3_finalize(statement) }
            sqlite_nio_sqlite3_close(self.db)
        }.get()
        try? await group.shutdownGracefully()
    }

    // MARK: statements

    enum Value {
        case text(String)
        case integer(Int64)
        case null
    }

    /// The upsert's parameters, in `BindingChange.upsertSQL`'s column order.
    static func columns(of b: Binding) -> [Value] {
        [
            .text(b.aor), .text(b.key), .text(b.contact), .text(b.contactHeader), b.instance.map { .text($0) } ?? .null,
            b.regID.map { .integer(Int64($0)) } ?? .null, .text(b.impi), .integer(b.expiresAt), .text(b.callID),
            .integer(Int64(b.cseq)), .text(b.path.joined(separator: "\n")), .text(b.scheme.rawValue),
        ]
    }

    private func bind(_ statement: OpaquePointer, _ values: [Value]) throws {
        for (offset, value) in values.enumerated() {
            let index = Int32(offset + 1)
            let status: Int32
            switch value {
            case .text(var text):
                // The string's own bytes (SQLite copies them): passed as a C string, Swift
                // made a NUL-terminated copy of every text column first.
                status = text.withUTF8 { bytes in
                    guard let base = bytes.baseAddress, !bytes.isEmpty else {
                        // An empty text, not NULL (which a nil pointer would bind).
                        return sqlite_nio_sqlite3_bind_text64(statement, index, "", 0, transient, UInt8(SQLITE_UTF8))
                    }
                    return base.withMemoryRebound(to: CChar.self, capacity: bytes.count) {
                        sqlite_nio_sqlite3_bind_text64(
                            statement, index, $0, UInt64(bytes.count), transient, UInt8(SQLITE_UTF8))
                    }
                }
            case .integer(let number):
                status = sqlite_nio_sqlite3_bind_int64(statement, index, number)
            case .null:
                status = sqlite_nio_sqlite3_bind_null(statement, index)
            }
            guard status == SQLITE_OK else { throw error(status) }
        }
    }

    private func step(_ statement: OpaquePointer) throws {
        let status = sqlite_nio_sqlite3_step(statement)
        // reset also clears the statement's hold on the transaction's read snapshot.
        sqlite_nio_sqlite3_reset(statement)
        guard status == SQLITE_DONE else { throw error(status) }
    }

    private func error(_ status: Int32) -> SQLiteWriteError {
        SQLiteWriteError(message: "\(status): \(String(cString: sqlite_nio_sqlite3_errmsg(db)))")
    }

    private static func prepare(_ db: OpaquePointer, _ sql: String) throws -> OpaquePointer {
        var statement: OpaquePointer?
        let status = sqlite_nio_sqlite3_prepare_v3(db, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, nil)
        guard status == SQLITE_OK, let statement else {
            throw SQLiteWriteError(message: "prepare: \(String(cString: sqlite_nio_sqlite3_errmsg(db)))")
        }
        return statement
    }

    private static func exec(_ db: OpaquePointer, _ sql: String) throws {
        guard sqlite_nio_sqlite3_exec(db, sql, nil, nil, nil) == SQLITE_OK else {
            throw SQLiteWriteError(message: "\(sql): \(String(cString: sqlite_nio_sqlite3_errmsg(db)))")
        }
    }
}

/// SQLite's "copy the value before returning" destructor (`SQLITE_TRANSIENT`, -1 in C).
private let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

struct SQLiteWriteError: Error, CustomStringConvertible {
    var message: String
    var description: String { "SQLite: \(message)" }
}
