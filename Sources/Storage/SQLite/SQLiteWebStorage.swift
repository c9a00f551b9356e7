import NIOCore
import SQLiteNIO

extension SQLiteStorage: WebStore {
    public func account(username: String) async throws -> WebAccount? {
        try await reader.query("SELECT * FROM web_accounts WHERE username = ?", [.text(username)]).first.map {
            self.account(from: $0)
        }
    }

    public func allAccounts() async throws -> [WebAccount] {
        try await reader.query("SELECT * FROM web_accounts ORDER BY username").map { self.account(from: $0) }
    }

    public func put(_ a: WebAccount) async throws {
        try await queue.write { db in
            _ = try await db.query(
                """
                INSERT INTO web_accounts (username, password_hash, impi, impus, uses_pool) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT(username) DO UPDATE SET password_hash = excluded.password_hash, impi = excluded.impi,
                    impus = excluded.impus, uses_pool = excluded.uses_pool
                """,
                [
                    .text(a.username), .text(a.passwordHash), .text(a.impi), .text(a.impus.joined(separator: "\n")),
                    .integer(a.usesIMPUPool ? 1 : 0),
                ])
        }
    }

    public func removeAccount(username: String) async throws -> Bool {
        try await queue.write { db in
            !(try await db.query("DELETE FROM web_accounts WHERE username = ? RETURNING username", [.text(username)]))
                .isEmpty
        }
    }

    public func createSession(_ s: WebSession) async throws {
        try await queue.write { db in
            _ = try await db.query(
                "INSERT INTO web_sessions (id_hash, username, csrf_token, expires_at) VALUES (?, ?, ?, ?)",
                [.text(s.idHash), .text(s.username), .text(s.csrfToken), .integer(Int(s.expiresAt))])
        }
    }

    public func session(idHash: String, now: Int64) async throws -> WebSession? {
        guard
            let row = try await reader.query(
                "SELECT * FROM web_sessions WHERE id_hash = ? AND expires_at > ?", [.text(idHash), .integer(Int(now))]
            ).first
        else { return nil }
        return WebSession(
            idHash: idHash, username: row.column("username")?.string ?? "",
            csrfToken: row.column("csrf_token")?.string ?? "", expiresAt: Int64(row.column("expires_at")?.integer ?? 0))
    }

    public func removeSession(idHash: String) async throws {
        try await queue.write { db in
            _ = try await db.query("DELETE FROM web_sessions WHERE id_hash = ?", [.text(idHash)])
        }
    }

    public func removeSessions(username: String) async throws {
        try await queue.write { db in
            _ = try await db.query("DELETE FROM web_sessions WHERE username = ?", [.text(username)])
        }
    }

    public func signingKeys() async throws -> [SigningKeyRecord] {
        try await reader.query("SELECT * FROM waf_keys ORDER BY created_at, kid").compactMap { row in
            guard let kid = row.column("kid")?.string, let key = bytes(row.column("private_key")) else { return nil }
            return SigningKeyRecord(
                kid: kid, privateKey: key, createdAt: Int64(row.column("created_at")?.integer ?? 0),
                usableFrom: Int64(row.column("usable_from")?.integer ?? 0),
                retiredAt: row.column("retired_at")?.integer.map(Int64.init))
        }
    }

    public func addSigningKey(_ k: SigningKeyRecord) async throws {
        try await queue.write { db in
            _ = try await db.query(
                "INSERT INTO waf_keys (kid, private_key, created_at, usable_from, retired_at) VALUES (?, ?, ?, ?, ?)",
                [
                    .text(k.kid), .blob(ByteBuffer(bytes: k.privateKey)), .integer(Int(k.createdAt)),
                    .integer(Int(k.usableFrom)), k.retiredAt.map { .integer(Int($0)) } ?? .null,
                ])
        }
    }

    public func retireSigningKeys(except kid: String, at: Int64) async throws {
        try await queue.write { db in
            _ = try await db.query(
                "UPDATE waf_keys SET retired_at = ? WHERE kid <> ? AND retired_at IS NULL",
                [.integer(Int(at)), .text(kid)])
        }
    }

    public func pruneSigningKeys(retiredBefore before: Int64) async throws {
        try await queue.write { db in
            _ = try await db.query("DELETE FROM waf_keys WHERE retired_at < ?", [.integer(Int(before))])
        }
    }

    public func revokeToken(id: String, expiresAt: Int64) async throws {
        try await queue.write { db in
            _ = try await db.query(
                "INSERT INTO revoked_tokens (jti, expires_at) VALUES (?, ?) ON CONFLICT(jti) DO NOTHING",
                [.text(id), .integer(Int(expiresAt))])
        }
    }

    public func revokeTokens(subject: String, issuedBefore: Int64) async throws {
        try await queue.write { db in
            _ = try await db.query(
                """
                INSERT INTO revoked_subjects (subject, issued_before) VALUES (?, ?)
                ON CONFLICT(subject) DO UPDATE SET issued_before = MAX(issued_before, excluded.issued_before)
                """, [.text(subject), .integer(Int(issuedBefore))])
        }
    }

    public func revocations(now: Int64) async throws -> RevocationList {
        var list = RevocationList()
        for row in try await reader.query("SELECT jti FROM revoked_tokens WHERE expires_at > ?", [.integer(Int(now))]) {
            if let jti = row.column("jti")?.string { list.tokenIDs.insert(jti) }
        }
        for row in try await reader.query("SELECT subject, issued_before FROM revoked_subjects") {
            if let subject = row.column("subject")?.string {
                list.subjects[subject] = Int64(row.column("issued_before")?.integer ?? 0)
            }
        }
        return list
    }

    public func assignPoolIMPU(username: String, candidates: [String]) async throws -> String? {
        try await queue.write { db -> String? in
            if let held = try await db.query("SELECT impu FROM impu_pool WHERE username = ?", [.text(username)]).first?
                .column("impu")?.string
            {
                return held
            }
            let taken = Set(try await db.query("SELECT impu FROM impu_pool").compactMap { $0.column("impu")?.string })
            guard let free = candidates.first(where: { !taken.contains($0) }) else { return nil }
            _ = try await db.query(
                "INSERT INTO impu_pool (impu, username) VALUES (?, ?)", [.text(free), .text(username)])
            return free
        }
    }

    public func releasePoolIMPU(username: String) async throws {
        try await queue.write { db in
            _ = try await db.query("DELETE FROM impu_pool WHERE username = ?", [.text(username)])
        }
    }

    private func account(from row: SQLiteRow) -> WebAccount {
        WebAccount(
            username: row.column("username")?.string ?? "", passwordHash: row.column("password_hash")?.string ?? "",
            impi: row.column("impi")?.string ?? "", impus: lines(row.column("impus")),
            usesIMPUPool: (row.column("uses_pool")?.integer ?? 0) != 0)
    }
}

extension SQLiteStorage: SharedSecretStore {
    public func sharedSecret(named name: String, candidate: [UInt8]) async throws -> [UInt8] {
        try await queue.write { db in
            _ = try await db.query(
                "INSERT INTO shared_secrets (name, value) VALUES (?, ?) ON CONFLICT(name) DO NOTHING",
                [.text(name), .blob(ByteBuffer(bytes: candidate))])
            let rows = try await db.query("SELECT value FROM shared_secrets WHERE name = ?", [.text(name)])
            guard let value = rows.first.flatMap({ bytes($0.column("value")) }) else {
                throw StorageError.writeLost
            }
            return value
        }
    }
}
