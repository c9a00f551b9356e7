/// The one schema both engines hold, as versioned steps applied in order, each once
/// (`SQLiteMigrator`, `PostgresStorage.migrate`). Only column types differ between the
/// engines; `SQLDialect` names them.
enum Schema {
    static func steps(_ sql: SQLDialect) -> [[String]] {
        [subscribersAndBindings(sql), web(sql), implicitSets, sharedSecrets(sql), nonceUses]
    }

    /// 1: subscribers, their public identities, bindings.
    static func subscribersAndBindings(_ sql: SQLDialect) -> [String] {
        [
            """
            CREATE TABLE subscribers (
                impi TEXT PRIMARY KEY, realm TEXT NOT NULL, schemes TEXT NOT NULL,
                ha1_md5 TEXT, ha1_sha256 TEXT, aka_k \(sql.bytes), aka_opc \(sql.bytes), aka_amf \(sql.bytes),
                sqn \(sql.int64) NOT NULL DEFAULT 0, allowed_wafs TEXT NOT NULL DEFAULT '',
                allowed_wwsfs TEXT NOT NULL DEFAULT '')
            """,
            """
            CREATE TABLE public_identities (
                impu TEXT PRIMARY KEY, impi TEXT NOT NULL REFERENCES subscribers(impi) ON DELETE CASCADE,
                position INTEGER NOT NULL, barred \(sql.boolean) NOT NULL DEFAULT \(sql.falseValue))
            """,
            "CREATE INDEX public_identities_impi ON public_identities(impi)",
            // SQLite keeps rows in rowid order; PostgreSQL needs a sequence for the
            // bindings' insertion order.
            """
            CREATE TABLE bindings (
                aor TEXT NOT NULL, binding_key TEXT NOT NULL, contact TEXT NOT NULL, contact_header TEXT NOT NULL,
                instance TEXT, reg_id \(sql.int64), impi TEXT NOT NULL, expires_at \(sql.int64) NOT NULL,
                call_id TEXT NOT NULL, cseq \(sql.int64) NOT NULL, path TEXT NOT NULL, scheme TEXT NOT NULL,
                \(sql.insertionOrderColumn.map { "\($0), " } ?? "")PRIMARY KEY (aor, binding_key))
            """,
            "CREATE INDEX bindings_expiry ON bindings(expires_at)",
        ]
    }

    /// 2: the WWSF's accounts and sessions, the WAF's keys and revocations.
    /// `web_accounts.failed_logins` and `locked_until` are no longer read or written: the
    /// login lockout is kept per user name and source prefix by `AccountService`.
    static func web(_ sql: SQLDialect) -> [String] {
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
                kid TEXT PRIMARY KEY, private_key \(sql.bytes) NOT NULL, created_at BIGINT NOT NULL,
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

    /// 3: each IMPU's implicit registration set.
    static let implicitSets = ["ALTER TABLE public_identities ADD COLUMN implicit_set INTEGER NOT NULL DEFAULT 0"]

    /// 4: secrets every node sharing the database must agree on (the S-CSCF's nonce key).
    static func sharedSecrets(_ sql: SQLDialect) -> [String] {
        ["CREATE TABLE shared_secrets (name TEXT PRIMARY KEY, value \(sql.bytes) NOT NULL)"]
    }

    /// 5: Digest answers claimed across nodes (nonce and nonce-count), so one captured at a
    /// node cannot be replayed at another while its nonce lives. Used by PostgreSQL only
    /// (`NonceUseStore`); in SQLite the table stays empty, the schema being one.
    static let nonceUses = [
        "CREATE TABLE nonce_uses (nonce TEXT NOT NULL, nc BIGINT NOT NULL, expires_at BIGINT NOT NULL, PRIMARY KEY (nonce, nc))",
        "CREATE INDEX nonce_uses_expiry ON nonce_uses(expires_at)",
    ]
}

/// The column types that differ between the engines.
struct SQLDialect: Sendable {
    var bytes: String
    var int64: String
    var boolean: String
    var falseValue: String
    /// A column that numbers rows in insertion order, where the engine has none of its own.
    var insertionOrderColumn: String?

    /// SQLite's INTEGER is 64-bit, and its rowid keeps insertion order.
    static let sqlite = SQLDialect(
        bytes: "BLOB", int64: "INTEGER", boolean: "INTEGER", falseValue: "0", insertionOrderColumn: nil)
    static let postgres = SQLDialect(
        bytes: "BYTEA", int64: "BIGINT", boolean: "BOOLEAN", falseValue: "FALSE", insertionOrderColumn: "seq BIGSERIAL")
}
