import Foundation
import Testing
import WebIMSTesting

@testable import Storage

/// The WWSF/WAF tables on every back-end.
@Suite struct WebStoreTests {
    @Test(arguments: StoreBackend.available)
    func accountsAndSessions(backend: StoreBackend) async throws {
        let (db, _) = try await backend.makeFreshStore()
        let account = WebAccount(
            username: "bob", passwordHash: "pbkdf2-sha256$1$AA$AA", impi: "bob@ims.example.com",
            impus: ["sip:bob@ims.example.com", "tel:+1555"])
        try await db.put(account)
        #expect(try await db.account(username: "bob") == account)
        #expect(try await db.allAccounts() == [account])
        // Sessions: found until they expire; removed with the account.
        try await db.createSession(WebSession(idHash: "h1", username: "bob", csrfToken: "c1", expiresAt: 1_000))
        #expect(try await db.session(idHash: "h1", now: 999)?.csrfToken == "c1")
        #expect(try await db.session(idHash: "h1", now: 1_000) == nil)
        try await db.createSession(WebSession(idHash: "h2", username: "bob", csrfToken: "c2", expiresAt: 9_000))
        try await db.removeSession(idHash: "h2")
        #expect(try await db.session(idHash: "h2", now: 1) == nil)
        try await db.createSession(WebSession(idHash: "h3", username: "bob", csrfToken: "c3", expiresAt: 9_000))
        #expect(try await db.removeAccount(username: "bob"))
        #expect(try await db.session(idHash: "h3", now: 1) == nil)
        #expect(try await db.removeAccount(username: "bob") == false)
        await db.close()
    }

    /// Issue 32: the secret the first node keeps is every node's (the nonce key).
    @Test(arguments: StoreBackend.available)
    func aSharedSecretIsMadeOnceAndReadByEveryNode(backend: StoreBackend) async throws {
        let (first, location) = try await backend.makeFreshStore()
        #expect(try await first.sharedSecret(named: "nonce.key", candidate: [1, 2, 3]) == [1, 2, 3])
        let second = try await openDataStore(location)
        #expect(try await second.sharedSecret(named: "nonce.key", candidate: [9, 9, 9]) == [1, 2, 3])
        #expect(try await second.sharedSecret(named: "other", candidate: [7]) == [7])
        #expect(try await first.sharedSecret(named: "other", candidate: [8]) == [7])
        await second.close()
        await first.close()
    }

    /// Issue 32: a Digest answer is claimed once across every node on the database — a
    /// shared one: one SQLite node keeps its claims in memory.
    @Test(arguments: StoreBackend.available)
    func aNonceUseIsClaimedOnce(backend: StoreBackend) async throws {
        let (store, _) = try await backend.makeFreshStore()
        guard let db = store as? any NonceUseStore else {
            #expect(backend == .sqlite)
            await store.close()
            return
        }
        #expect(try await db.claimNonceUse(nonce: "n1", count: 1, expiresAt: 100))
        #expect(try await db.claimNonceUse(nonce: "n1", count: 1, expiresAt: 100) == false)
        #expect(try await db.claimNonceUse(nonce: "n1", count: 2, expiresAt: 100))
        #expect(try await db.claimNonceUse(nonce: "n2", count: 1, expiresAt: 200))
        try await db.pruneNonceUses(now: 150)
        // The expired nonce's claims are gone (a stale nonce is refused before this anyway).
        #expect(try await db.claimNonceUse(nonce: "n1", count: 1, expiresAt: 100))
        #expect(try await db.claimNonceUse(nonce: "n2", count: 1, expiresAt: 200) == false)
        await store.close()
    }

    @Test(arguments: StoreBackend.available)
    func signingKeysRotateAndPrune(backend: StoreBackend) async throws {
        let (db, _) = try await backend.makeFreshStore()
        try await db.addSigningKey(SigningKeyRecord(kid: "k1", privateKey: [1, 2, 3], createdAt: 10, usableFrom: 10))
        try await db.addSigningKey(SigningKeyRecord(kid: "k2", privateKey: [4, 5, 6], createdAt: 20, usableFrom: 80))
        try await db.retireSigningKeys(except: "k2", at: 80)
        let keys = try await db.signingKeys()
        #expect(keys.map(\.kid) == ["k1", "k2"])
        #expect(keys[0].retiredAt == 80 && keys[1].retiredAt == nil)
        #expect(keys[0].privateKey == [1, 2, 3])
        try await db.pruneSigningKeys(retiredBefore: 80)
        #expect(try await db.signingKeys().count == 2)
        try await db.pruneSigningKeys(retiredBefore: 81)
        #expect(try await db.signingKeys().map(\.kid) == ["k2"])
        await db.close()
    }

    @Test(arguments: StoreBackend.available)
    func revocationsAndThePool(backend: StoreBackend) async throws {
        let (db, _) = try await backend.makeFreshStore()
        try await db.revokeToken(id: "j1", expiresAt: 100)
        try await db.revokeToken(id: "j1", expiresAt: 100)
        try await db.revokeTokens(subject: "s", issuedBefore: 50)
        try await db.revokeTokens(subject: "s", issuedBefore: 40)  // never moves back
        let list = try await db.revocations(now: 10)
        #expect(list.tokenIDs == ["j1"])
        #expect(list.subjects == ["s": 50])
        #expect(list.isRevoked(tokenID: nil, subject: "s", issuedAt: 50))
        #expect(!list.isRevoked(tokenID: nil, subject: "s", issuedAt: 51))
        #expect(try await db.revocations(now: 100).tokenIDs.isEmpty)  // expired entries drop out

        for name in ["p1", "p2", "p3"] {
            try await db.put(WebAccount(username: name, passwordHash: "x", impi: "pool@ims", usesIMPUPool: true))
        }
        let pool = ["sip:u1@ims", "sip:u2@ims"]
        let first = try await db.assignPoolIMPU(username: "p1", candidates: pool)
        #expect(first == "sip:u1@ims")
        #expect(try await db.assignPoolIMPU(username: "p1", candidates: pool) == first)  // sticky
        #expect(try await db.assignPoolIMPU(username: "p2", candidates: pool) == "sip:u2@ims")
        #expect(try await db.assignPoolIMPU(username: "p3", candidates: pool) == nil)  // exhausted
        try await db.releasePoolIMPU(username: "p1")
        #expect(try await db.assignPoolIMPU(username: "p3", candidates: pool) == "sip:u1@ims")
        await db.close()
    }
}
