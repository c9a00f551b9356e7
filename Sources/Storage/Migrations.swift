import SQLiteNIO

/// Versioned schema changes, applied in order at start; each version once.
enum Migrations {
    static let steps: [[String]] = [
        // 1: subscribers, their public identities, bindings.
        [
            """
            CREATE TABLE subscribers (
                impi TEXT PRIMARY KEY, realm TEXT NOT NULL, schemes TEXT NOT NULL,
                ha1_md5 TEXT, ha1_sha256 TEXT, aka_k BLOB, aka_opc BLOB, aka_amf BLOB,
                sqn INTEGER NOT NULL DEFAULT 0, allowed_wafs TEXT NOT NULL DEFAULT '',
                allowed_wwsfs TEXT NOT NULL DEFAULT '')
            """,
            """
            CREATE TABLE public_identities (
                impu TEXT PRIMARY KEY, impi TEXT NOT NULL REFERENCES subscribers(impi) ON DELETE CASCADE,
                position INTEGER NOT NULL, barred INTEGER NOT NULL DEFAULT 0)
            """,
            "CREATE INDEX public_identities_impi ON public_identities(impi)",
            """
            CREATE TABLE bindings (
                aor TEXT NOT NULL, binding_key TEXT NOT NULL, contact TEXT NOT NULL, contact_header TEXT NOT NULL,
                instance TEXT, reg_id INTEGER, impi TEXT NOT NULL, expires_at INTEGER NOT NULL,
                call_id TEXT NOT NULL, cseq INTEGER NOT NULL, path TEXT NOT NULL, scheme TEXT NOT NULL,
                PRIMARY KEY (aor, binding_key))
            """,
            "CREATE INDEX bindings_expiry ON bindings(expires_at)",
        ],
        // 2: the WWSF's accounts and sessions, the WAF's keys and revocations.
        webSchema(blob: "BLOB"),
        // 3: implicit registration sets.
        implicitSets,
    ]

    /// Each IMPU's implicit registration set (the same for both engines).
    static let implicitSets = ["ALTER TABLE public_identities ADD COLUMN implicit_set INTEGER NOT NULL DEFAULT 0"]

    /// The same tables for SQLite and PostgreSQL (only the byte type differs).
    /// `web_accounts.failed_logins` and `locked_until` are no longer read or written: the
    /// login lockout is kept per user name and source prefix by `AccountService`.
    static func webSchema(blob: String) -> [String] {
        [
            """
            CREATE TABLE web_accounts (
                username TEXT PRIMARY KEY, password_hash TEXT NOT NULL, impi TEXT NOT NULL,
                impus TEXT NOT NULL DEFAULT '', uses_pool INTEGER NOT NULL DEFAULT 0,
                failed_logins INTEGER NOT NULL DEFAULT 0, locked_until BIGINT NOT NULL DEFAULT 0)
            """,
            """
            CREATE TABLE web_sessions (
                id_hash TEXT PRIMARY KEY, username TEXT NOT NULL REFERENCES web_accounts(username) ON DELETE CASCADE,
                csrf_token TEXT NOT NULL, expires_at BIGINT NOT NULL)
            """,
            "CREATE INDEX web_sessions_user ON web_sessions(username)",
            """
            CREATE TABLE waf_keys (
                kid TEXT PRIMARY KEY, private_key \(blob) NOT NULL, created_at BIGINT NOT NULL,
                usable_from BIGINT NOT NULL, retired_at BIGINT)
            """,
            "CREATE TABLE revoked_tokens (jti TEXT PRIMARY KEY, expires_at BIGINT NOT NULL)",
            "CREATE TABLE revoked_subjects (subject TEXT PRIMARY KEY, issued_before BIGINT NOT NULL)",
            """
            CREATE TABLE impu_pool (
                impu TEXT PRIMARY KEY,
                username TEXT NOT NULL UNIQUE REFERENCES web_accounts(username) ON DELETE CASCADE)
            """,
        ]
    }

    static func apply(on db: SQLiteConnection) async throws {
        _ = try await db.query("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        let rows = try await db.query("SELECT MAX(version) AS v FROM schema_version")
        let current = rows.first?.column("v")?.integer ?? 0
        for (index, step) in steps.enumerated() where index + 1 > current {
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
