import NIOCore
import PostgresNIO

extension PostgresStorage: WebStore {
    static let accountColumns = "username, password_hash, impi, impus, uses_pool"

    public func account(username: String) async throws -> WebAccount? {
        try await accounts("SELECT \(unescaped: Self.accountColumns) FROM web_accounts WHERE username = \(username)")
            .first
    }

    public func allAccounts() async throws -> [WebAccount] {
        try await accounts("SELECT \(unescaped: Self.accountColumns) FROM web_accounts ORDER BY username")
    }

    public func put(_ a: WebAccount) async throws {
        let impus = a.impus.joined(separator: "\n")
        let pool = a.usesIMPUPool ? 1 : 0
        try await client.query(
            """
            INSERT INTO web_accounts (username, password_hash, impi, impus, uses_pool)
            VALUES (\(a.username), \(a.passwordHash), \(a.impi), \(impus), \(pool))
            ON CONFLICT (username) DO UPDATE SET password_hash = excluded.password_hash, impi = excluded.impi,
                impus = excluded.impus, uses_pool = excluded.uses_pool
            """, logger: logger)
    }

    public func removeAccount(username: String) async throws -> Bool {
        try await exists(
            client.query("DELETE FROM web_accounts WHERE username = \(username) RETURNING username", logger: logger))
    }

    private func accounts(_ query: PostgresQuery) async throws -> [WebAccount] {
        var result: [WebAccount] = []
        for try await (username, hash, impi, impus, pool) in try await client.query(query, logger: logger)
            .decode((String, String, String, String, Int).self)
        {
            result.append(
                WebAccount(
                    username: username, passwordHash: hash, impi: impi,
                    impus: impus.split(separator: "\n").map(String.init), usesIMPUPool: pool != 0))
        }
        return result
    }

    public func createSession(_ s: WebSession) async throws {
        try await client.query(
            """
            INSERT INTO web_sessions (id_hash, username, csrf_token, expires_at)
            VALUES (\(s.idHash), \(s.username), \(s.csrfToken), \(s.expiresAt))
            """, logger: logger)
    }

    public func session(idHash: String, now: Int64) async throws -> WebSession? {
        for try await (username, csrf, expires) in try await client.query(
            "SELECT username, csrf_token, expires_at FROM web_sessions WHERE id_hash = \(idHash) AND expires_at > \(now)",
            logger: logger
        ).decode((String, String, Int64).self) {
            return WebSession(idHash: idHash, username: username, csrfToken: csrf, expiresAt: expires)
        }
        return nil
    }

    public func removeSession(idHash: String) async throws {
        try await client.query("DELETE FROM web_sessions WHERE id_hash = \(idHash)", logger: logger)
    }

    public func removeSessions(username: String) async throws {
        try await client.query("DELETE FROM web_sessions WHERE username = \(username)", logger: logger)
    }

    public func signingKeys() async throws -> [SigningKeyRecord] {
        var result: [SigningKeyRecord] = []
        for try await (kid, key, created, usable, retired) in try await client.query(
            "SELECT kid, private_key, created_at, usable_from, retired_at FROM waf_keys ORDER BY created_at, kid",
            logger: logger
        ).decode((String, ByteBuffer, Int64, Int64, Int64?).self) {
            result.append(
                SigningKeyRecord(
                    kid: kid, privateKey: Array(key.readableBytesView), createdAt: created, usableFrom: usable,
                    retiredAt: retired))
        }
        return result
    }

    public func addSigningKey(_ k: SigningKeyRecord) async throws {
        let key = ByteBuffer(bytes: k.privateKey)
        try await client.query(
            """
            INSERT INTO waf_keys (kid, private_key, created_at, usable_from, retired_at)
            VALUES (\(k.kid), \(key), \(k.createdAt), \(k.usableFrom), \(k.retiredAt))
            """, logger: logger)
    }

    public func retireSigningKeys(except kid: String, at: Int64) async throws {
        try await client.query(
            "UPDATE waf_keys SET retired_at = \(at) WHERE kid <> \(kid) AND retired_at IS NULL", logger: logger)
    }

    public func pruneSigningKeys(retiredBefore before: Int64) async throws {
        try await client.query("DELETE FROM waf_keys WHERE retired_at < \(before)", logger: logger)
    }

    public func revokeToken(id: String, expiresAt: Int64) async throws {
        try await client.query(
            "INSERT INTO revoked_tokens (jti, expires_at) VALUES (\(id), \(expiresAt)) ON CONFLICT (jti) DO NOTHING",
            logger: logger)
    }

    public func revokeTokens(subject: String, issuedBefore: Int64) async throws {
        try await client.query(
            """
            INSERT INTO revoked_subjects (subject, issued_before) VALUES (\(subject), \(issuedBefore))
            ON CONFLICT (subject) DO UPDATE SET
                issued_before = GREATEST(revoked_subjects.issued_before, excluded.issued_before)
            """, logger: logger)
    }

    public func revocations(now: Int64) async throws -> RevocationList {
        var list = RevocationList()
        for try await jti in try await client.query(
            "SELECT jti FROM revoked_tokens WHERE expires_at > \(now)", logger: logger
        ).decode(String.self) {
            list.tokenIDs.insert(jti)
        }
        for try await (subject, before) in try await client.query(
            "SELECT subject, issued_before FROM revoked_subjects", logger: logger
        ).decode((String, Int64).self) {
            list.subjects[subject] = before
        }
        return list
    }

    public func assignPoolIMPU(username: String, candidates: [String]) async throws -> String? {
        try await client.withTransaction(logger: logger) { db -> String? in
            // One assigner at a time across nodes, so two accounts never share an IMPU.
            try await db.query("SELECT pg_advisory_xact_lock(872347)", logger: logger)
            for try await held in try await db.query(
                "SELECT impu FROM impu_pool WHERE username = \(username)", logger: logger
            ).decode(String.self) {
                return held
            }
            var taken = Set<String>()
            for try await impu in try await db.query("SELECT impu FROM impu_pool", logger: logger).decode(String.self) {
                taken.insert(impu)
            }
            guard let free = candidates.first(where: { !taken.contains($0) }) else { return nil }
            try await db.query("INSERT INTO impu_pool (impu, username) VALUES (\(free), \(username))", logger: logger)
            return free
        }
    }

    public func releasePoolIMPU(username: String) async throws {
        try await client.query("DELETE FROM impu_pool WHERE username = \(username)", logger: logger)
    }
}

extension PostgresStorage: SharedSecretStore {
    public func sharedSecret(named name: String, candidate: [UInt8]) async throws -> [UInt8] {
        // Two nodes starting at once: one insert wins, both read the winner's.
        let value = ByteBuffer(bytes: candidate)
        try await client.query(
            "INSERT INTO shared_secrets (name, value) VALUES (\(name), \(value)) ON CONFLICT (name) DO NOTHING",
            logger: logger)
        for try await stored in try await client.query(
            "SELECT value FROM shared_secrets WHERE name = \(name)", logger: logger
        ).decode(ByteBuffer.self) {
            return Array(stored.readableBytesView)
        }
        throw StorageError.writeLost
    }
}

extension PostgresStorage: NonceUseStore {
    public func claimNonceUse(nonce: String, count: Int64, expiresAt: Int64) async throws -> Bool {
        let rows = try await client.query(
            """
            INSERT INTO nonce_uses (nonce, nc, expires_at) VALUES (\(nonce), \(count), \(expiresAt))
            ON CONFLICT DO NOTHING RETURNING nc
            """, logger: logger)
        for try await _ in rows.decode(Int64.self) { return true }
        return false
    }

    public func pruneNonceUses(now: Int64) async throws {
        try await client.query("DELETE FROM nonce_uses WHERE expires_at < \(now)", logger: logger)
    }
}
