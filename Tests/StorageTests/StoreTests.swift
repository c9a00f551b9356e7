import Foundation
import Synchronization
import Testing
import WebIMSTesting

@testable import Storage

func alice(sqn: UInt64 = 0) -> SubscriberRecord {
    SubscriberRecord(
        impi: "alice_private@ims.example.com", realm: "ims.example.com",
        publicIdentities: [
            PublicIdentity(uri: "sip:alice@ims.example.com"), PublicIdentity(uri: "tel:+15551234567", barred: true),
            PublicIdentity(uri: "sip:alice-pool@ims.example.com", implicitSet: 7),
        ],
        allowedSchemes: [.digest, .trustedNode], ha1MD5: "fcd23ea1fb2e90c5b07a225f556d81c3",
        akaK: Array(repeating: 1, count: 16), akaOPc: Array(repeating: 2, count: 16), sqn: sqn,
        allowedWAFs: ["https://waf.third.example"])
}

func binding(_ aor: String, contact: String, instance: String? = nil, regID: UInt32? = nil, expiresAt: Int64) -> Binding
{
    Binding(
        aor: aor, contact: contact, contactHeader: "<\(contact)>", instance: instance, regID: regID,
        impi: "alice_private@ims.example.com", expiresAt: expiresAt, callID: "c1", cseq: 1,
        path: ["<sip:fl-1@epcscf;lr;ob>"], scheme: .trustedNode)
}

/// The same suite against every back-end: SQLite always, PostgreSQL when the test command
/// started a server.
@Suite struct StoreTests {
    @Test(arguments: StoreBackend.available)
    func subscribersRoundTripAndAreFoundByEveryIMPU(backend: StoreBackend) async throws {
        let (db, _) = try await backend.makeFreshStore()
        try await db.put(alice())
        #expect(try await db.subscriber(impi: "alice_private@ims.example.com") == alice())
        #expect(try await db.subscriber(impu: "tel:+15551234567")?.impi == "alice_private@ims.example.com")
        #expect(try await db.subscriber(impu: "sip:nobody@ims.example.com") == nil)
        var changed = alice()
        changed.publicIdentities = [PublicIdentity(uri: "sip:alice2@ims.example.com")]
        try await db.put(changed)
        #expect(try await db.subscriber(impu: "sip:alice@ims.example.com") == nil)
        #expect(try await db.allSubscribers() == [changed])
        #expect(try await db.removeSubscriber(impi: changed.impi))
        #expect(try await db.removeSubscriber(impi: changed.impi) == false)
        #expect(try await db.allSubscribers().isEmpty)
        await db.close()
    }

    @Test(arguments: StoreBackend.available)
    func sqnAdvancesOnlyFromTheExpectedValue(backend: StoreBackend) async throws {
        let (db, _) = try await backend.makeFreshStore()
        try await db.put(alice(sqn: 32))
        #expect(try await db.compareAndSetSQN(impi: alice().impi, expected: 32, new: 64))
        #expect(try await db.compareAndSetSQN(impi: alice().impi, expected: 32, new: 96) == false)
        #expect(try await db.subscriber(impi: alice().impi)?.sqn == 64)
        await db.close()
    }

    @Test(arguments: StoreBackend.available)
    func aFailedWriteSpoilsNoOtherWriteInTheSameBatch(backend: StoreBackend) async throws {
        let (db, _) = try await backend.makeFreshStore()
        try await db.put(alice())
        // Bob claims alice's IMPU: a primary-key violation, in the same batch as good writes.
        let bob = SubscriberRecord(
            impi: "bob@ims.example.com", realm: "ims.example.com",
            publicIdentities: [PublicIdentity(uri: "sip:alice@ims.example.com")],
            allowedSchemes: [.digest])
        let results = await withTaskGroup(of: Bool.self) { group in
            group.addTask { (try? await db.put(bob)) != nil }
            for i in 0..<20 {
                group.addTask {
                    (try? await db.apply(
                        upserts: [
                            binding("sip:alice@ims.example.com", contact: "sip:c\(i)@h", expiresAt: 2_000_000_000)
                        ], removals: [])) != nil
                }
            }
            return await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(results.filter { !$0 }.count == 1)
        #expect(try await db.bindings(aor: "sip:alice@ims.example.com", now: 0).count == 20)
        // Bob's subscriber row was rolled back with his failed IMPU.
        #expect(try await db.subscriber(impi: "bob@ims.example.com") == nil)
        #expect(try await db.subscriber(impu: "sip:alice@ims.example.com")?.impi == alice().impi)
        await db.close()
    }

    @Test(arguments: StoreBackend.available)
    func bindingsAreKeyedByFlowAndExpire(backend: StoreBackend) async throws {
        let (db, _) = try await backend.makeFreshStore()
        let aor = "sip:alice@ims.example.com"
        try await db.apply(
            upserts: [
                binding(aor, contact: "sip:a@x.invalid", instance: "urn:uuid:1", regID: 1, expiresAt: 1_000),
                binding(aor, contact: "sip:b@y.invalid", expiresAt: 2_000),
            ], removals: [])
        // Same (instance, reg-id), new contact: replaces the flow (RFC 5626 §6).
        try await db.apply(
            upserts: [binding(aor, contact: "sip:a2@z.invalid", instance: "urn:uuid:1", regID: 1, expiresAt: 1_500)],
            removals: [])
        var current = try await db.bindings(aor: aor, now: 0)
        #expect(Set(current.map(\.contact)) == ["sip:a2@z.invalid", "sip:b@y.invalid"])
        #expect(try await db.bindings(aor: aor, now: 1_600).map(\.contact) == ["sip:b@y.invalid"])
        let expired = try await db.removeExpired(now: 1_600)
        #expect(expired.map(\.contact) == ["sip:a2@z.invalid"])
        try await db.apply(upserts: [], removals: [BindingRemoval(aor: aor, key: "sip:b@y.invalid")])
        current = try await db.bindings(aor: aor, now: 0)
        #expect(current.isEmpty)
        await db.close()
    }

    /// A removal names the version it read; if another S-CSCF stored a new registration
    /// under the same key meanwhile, the removal leaves it (two nodes on one database).
    @Test(arguments: StoreBackend.available)
    func aRemovalOfAVersionNoLongerStoredLeavesTheRow(backend: StoreBackend) async throws {
        let (db, _) = try await backend.makeFreshStore()
        let aor = "sip:alice@ims.example.com"
        var old = binding(aor, contact: "sip:a@x.invalid", instance: "urn:uuid:1", regID: 1, expiresAt: 1_000)
        try await db.apply(upserts: [old], removals: [])
        let read = try await db.bindings(aor: aor, now: 0)  // also fills SQLite's cache
        #expect(read == [old])
        var new = old
        new.callID = "c2"
        new.path = ["<sip:fl-2@epcscf;lr;ob>"]
        try await db.apply(upserts: [new], removals: [])
        let key = old.key
        try await db.apply(upserts: [], removals: [BindingRemoval(aor: aor, key: key, onlyIf: old.version)])
        #expect(try await db.bindings(aor: aor, now: 0) == [new])
        #expect(try await db.allBindings(now: 0) == [new])
        try await db.apply(upserts: [], removals: [BindingRemoval(aor: aor, key: key, onlyIf: new.version)])
        #expect(try await db.bindings(aor: aor, now: 0).isEmpty)
        #expect(try await db.allBindings(now: 0).isEmpty)
        old.cseq = 7
        try await db.apply(upserts: [old], removals: [])
        try await db.apply(upserts: [], removals: [BindingRemoval(aor: aor, key: key)])  // unconditional
        #expect(try await db.allBindings(now: 0).isEmpty)
        await db.close()
    }

    @Test(arguments: StoreBackend.available)
    func everythingCommittedIsThereAfterReopening(backend: StoreBackend) async throws {
        let (first, location) = try await backend.makeFreshStore()
        try await first.put(alice())
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<200 {
                group.addTask {
                    try await first.apply(
                        upserts: [binding("sip:u\(i)@ims.example.com", contact: "sip:c@h", expiresAt: 2_000_000_000)],
                        removals: [])
                }
            }
            try await group.waitForAll()
        }
        await first.close()
        let db = try await openDataStore(location)  // migrations run again: a no-op
        #expect(try await db.allBindings(now: 0).count == 200)
        #expect(try await db.subscriber(impi: alice().impi) == alice())
        await db.close()
    }
}

@Suite struct MergedBindingWriteTests {
    /// A batch's binding changes run as one DELETE run and one upsert run; the table
    /// must end exactly as if each change had committed alone — contents and row order.
    @Test func mergedChangesEndLikeSequentialOnes() async throws {
        let aor = "sip:alice@ims.example.com"
        let bob = "sip:bob@ims.example.com"
        func b(_ who: String, _ contact: String, _ expires: Int64, callID: String = "c1") -> Binding {
            var made = binding(who, contact: contact, expiresAt: expires)
            made.callID = callID
            return made
        }
        func rm(_ who: String, _ key: String, onlyIf callID: String? = nil) -> BindingRemoval {
            BindingRemoval(aor: who, key: key, onlyIf: callID.map { BindingVersion(callID: $0, cseq: 1) })
        }
        let before: [Binding] = [
            b(aor, "sip:x@h", 100), b(aor, "sip:y@h", 100), b(bob, "sip:z@h", 100), b(aor, "sip:w@h", 100),
        ]
        let script: [(upserts: [Binding], removals: [BindingRemoval])] = [
            ([b(aor, "sip:a1@h", 200), b(bob, "sip:b1@h", 200), b(aor, "sip:a2@h", 200)], []),
            ([b(aor, "sip:a1@h", 300), b(aor, "sip:x@h", 300)], []),  // updates keep their place
            ([], [rm(bob, "sip:b1@h"), rm(aor, "sip:y@h")]),
            ([b(bob, "sip:b1@h", 400)], []),  // removed and added again: goes last
            ([], [rm(aor, "sip:a2@h"), rm(bob, "sip:nothing@h")]),
            ([b(aor, "sip:y@h", 500), b(bob, "sip:c1@h", 500)], [rm(bob, "sip:z@h")]),
            ([b(bob, "sip:z2@h", 600, callID: "c2")], []),
            // Removals of versions no longer there: of rows this run upserted (z2, a1) and
            // of a row only the file holds (w). All three stay.
            (
                [],
                [
                    rm(bob, "sip:z2@h", onlyIf: "c1"), rm(aor, "sip:w@h", onlyIf: "other"),
                    rm(aor, "sip:a1@h", onlyIf: "c9"),
                ]
            ),
            ([], [rm(aor, "sip:x@h", onlyIf: "c1")]),  // the version the run stored: goes
        ]

        let (one, oneLocation) = try await StoreBackend.sqlite.makeFreshStore()
        try await one.apply(upserts: before, removals: [])
        for step in script { try await one.apply(upserts: step.upserts, removals: step.removals) }
        let sequential = try await one.allBindings(now: 0)
        await one.close()

        let merged = try await SQLiteStorage.open(path: oneLocation + "-merged")
        try await merged.apply(upserts: before, removals: [])
        let committed = Mutex(0)
        let changes = script.map { step in
            BindingChange(
                upserts: step.upserts, removals: step.removals, committed: { committed.withLock { $0 += 1 } })
        }
        let writer = merged.queue.bindingWriter
        try await writer.loop.submit { try writer.commitHere(changes) }.get()
        #expect(committed.withLock { $0 } == script.count)
        let reopened = try await SQLiteStorage.open(path: oneLocation + "-merged")
        let result = try await reopened.allBindings(now: 0)
        #expect(
            result.map { "\($0.aor) \($0.contact) \($0.expiresAt)" }
                == sequential.map { "\($0.aor) \($0.contact) \($0.expiresAt)" })
        #expect(result.map(\.contact) == ["sip:w@h", "sip:a1@h", "sip:b1@h", "sip:y@h", "sip:c1@h", "sip:z2@h"])
        await merged.close()
        await reopened.close()
        for path in [oneLocation, oneLocation + "-merged"] {
            for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
        }
    }
}

@Suite struct WriteQueueTests {
    /// Binding changes (batched on the bindings writer) and other writes (alone, on the
    /// general connection) from many tasks at once, with the store closed while they
    /// arrive: every write either succeeds and is in the file after a reopen, or is
    /// refused with `writeLost` and is not there. None is lost silently or half-written.
    @Test func aWriteIsEitherDurableOrRefusedWhenTheStoreClosesUnderLoad() async throws {
        let (store, location) = try await StoreBackend.sqlite.makeFreshStore()
        let outcomes = await withTaskGroup(of: (Int, Bool).self) { group in
            for i in 0..<400 {
                group.addTask {
                    do {
                        if i % 2 == 0 {
                            try await store.apply(
                                upserts: [binding("sip:u\(i)@h", contact: "sip:u\(i)@c", expiresAt: 9_999_999_999)],
                                removals: [])
                        } else {
                            var subscriber = alice()
                            subscriber.impi = "u\(i)@h"
                            subscriber.publicIdentities = [PublicIdentity(uri: "sip:u\(i)@h")]
                            try await store.put(subscriber)
                        }
                        return (i, true)
                    } catch StorageError.writeLost {
                        return (i, false)
                    } catch {
                        Issue.record("write \(i): \(error)")
                        return (i, false)
                    }
                }
                if i == 300 {
                    group.addTask {
                        await store.close(); return (-1, true)
                    }
                }
            }
            var outcomes: [Int: Bool] = [:]
            for await (i, ok) in group where i >= 0 { outcomes[i] = ok }
            return outcomes
        }
        let reopened = try await SQLiteStorage.open(path: location)
        let bindings = Set(try await reopened.allBindings(now: 0).map(\.aor))
        let subscribers = Set(try await reopened.allSubscribers().map(\.impi))
        for (i, ok) in outcomes {
            let stored = i % 2 == 0 ? bindings.contains("sip:u\(i)@h") : subscribers.contains("u\(i)@h")
            #expect(stored == ok, "write \(i)")
        }
        #expect(outcomes.values.contains(true))
        await reopened.close()
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: location + suffix) }
    }
}

@Suite struct CheckpointTests {
    /// Commits never checkpoint (wal_autocheckpoint=0); a background checkpoint copies the
    /// WAL into the database file about once a second, so the file takes the data while
    /// the store stays open and the WAL does not grow without end.
    @Test func theWALIsCopiedIntoTheFileInTheBackground() async throws {
        let (store, location) = try await StoreBackend.sqlite.makeFreshStore()
        let fileSize = { (try? FileManager.default.attributesOfItem(atPath: location)[.size] as? Int) ?? 0 }
        let before = fileSize()
        let upserts = (0..<2_000).map {
            binding("sip:u\($0)@ims.example.com", contact: "sip:c\($0)@h.invalid", expiresAt: 2_000_000_000)
        }
        try await store.apply(upserts: upserts, removals: [])
        var grown = false
        for _ in 0..<40 where !grown {
            try await Task.sleep(for: .milliseconds(100))
            grown = fileSize() > before + 100_000
        }
        #expect(grown, "the database file stayed at \(fileSize()) bytes")
        await store.close()
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: location + suffix) }
    }
}

/// A `Binding` shares its fields between copies: setting a field on one copy must leave
/// every other copy as it was, and equal values must hash alike however they were made.
@Suite struct BindingValueTests {
    @Test func settingAFieldOfACopyLeavesTheOriginal() {
        let original = Binding(
            aor: "sip:alice@ims.example.com", contact: "sip:a@x.invalid", contactHeader: "<sip:a@x.invalid>",
            instance: "<urn:uuid:1>", regID: 1, impi: "alice@ims.example.com", expiresAt: 100, callID: "c",
            cseq: 1, path: ["<sip:p;lr>"], scheme: .trustedNode)
        var copy = original
        #expect(copy == original)
        copy.expiresAt = 200
        copy.aor = "tel:+15551234"
        copy.path.append("<sip:q;lr>")
        #expect(original.expiresAt == 100 && original.aor == "sip:alice@ims.example.com")
        #expect(original.path == ["<sip:p;lr>"])
        #expect(copy.expiresAt == 200 && copy.aor == "tel:+15551234" && copy.path.count == 2)
        #expect(copy != original)
        var rebuilt = copy
        rebuilt.expiresAt = 100
        rebuilt.aor = original.aor
        rebuilt.path = original.path
        #expect(rebuilt == original)
        #expect(Set([rebuilt, original]).count == 1)
        var array = [original, original]
        array[1].cseq = 2
        #expect(array[0].cseq == 1 && array[1].cseq == 2)
    }
}

/// RFC 5626 §6: a binding's key follows the fields it comes from, set at creation or later,
/// and a copy changed keeps the original's key as it was.
@Test func bindingKeyFollowsInstanceRegIDAndContact() {
    var b = Binding(
        aor: "sip:a@h", contact: "sip:a@1.2.3.4", contactHeader: "<sip:a@1.2.3.4>", impi: "a@h", expiresAt: 0,
        callID: "c", cseq: 1, scheme: .digest)
    #expect(b.key == "sip:a@1.2.3.4")
    let original = b
    b.contact = "sip:a@5.6.7.8"
    #expect(b.key == "sip:a@5.6.7.8" && original.key == "sip:a@1.2.3.4")
    b.instance = "<urn:uuid:1>"
    #expect(b.key == "<urn:uuid:1>")
    b.regID = 2
    #expect(b.key == "<urn:uuid:1>|2")
    b.instance = nil
    #expect(b.key == "sip:a@5.6.7.8")
}
