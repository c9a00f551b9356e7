import SQLiteNIO

/// Brings a SQLite file's schema up to date: each `Schema` step once, in order, each in
/// its own transaction.
enum SQLiteMigrator {
    static func apply(on db: SQLiteConnection) async throws {
        _ = try await db.query("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        let rows = try await db.query("SELECT MAX(version) AS v FROM schema_version")
        let current = rows.first?.column("v")?.integer ?? 0
        for (index, step) in Schema.steps(.sqlite).enumerated() where index + 1 > current {
            _ = try await db.query("BEGIN IMMEDIATE")
            do {
                for sql in step { _ = try await db.query(sql) }
                _ = try await db.query("INSERT INTO schema_version (version) VALUES (?)", [.integer(index + 1)])
                _ = try await db.query("COMMIT")
            } catch {
                _ = try? await db.query("ROLLBACK")
                throw StorageError.migrationFailed("version \(index + 1): \(error)")
            }
        }
    }
}
