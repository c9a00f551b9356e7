import Foundation
import SIPAuth
import SIPCore
import Storage
import Synchronization
import Utilities

/// One IMS AKA authentication vector (TS 33.102 §6.3.2), as the HSS hands it to the S-CSCF.
public struct AuthVector: Sendable, Hashable {
    public var rand: [UInt8]
    public var autn: [UInt8]
    public var xres: [UInt8]
    public var ck: [UInt8]
    public var ik: [UInt8]
}

/// What the S-CSCF learns when it assigns itself to a registration (SAR/SAA, HSS-6).
public struct RegistrationData: Sendable, Hashable {
    public var subscriber: SubscriberRecord
    /// The registered IMPU as provisioned.
    public var impu: PublicIdentity
    /// Non-barred IMPUs of the registered IMPU's implicit registration set, default first.
    public var implicitSet: [String]
}

public enum HSSError: Error, Sendable, Equatable {
    case unknownUser
    case identitiesDontMatch
    case noAKACredentials
    case sqnConflict
}

/// The Home Subscriber Server over a SubscriberStore: Cx-style look-ups done in process.
public final class HSS: Sendable {
    public let store: any SubscriberStore
    /// Subscriber records read in the last `cacheLifetime`: a registration refresh then costs
    /// no database read. Provisioning changes (a bar, a new IMPU) apply within that time.
    let cache = Mutex<[String: CachedSubscription]>([:])
    let cacheLifetime: Duration
    /// Which IMPI owns an IMPU, read in the last `cacheLifetime`: a call looks its caller
    /// up by IMPU, twice per call with a Digest challenge (an LIR-like query).
    let owners = Mutex<[String: (impi: String, read: ContinuousClock.Instant)]>([:])

    /// A record as read, with its implicit registration set worked out once per read rather
    /// than once per REGISTER.
    final class CachedSubscription: Sendable {
        let record: SubscriberRecord
        /// Non-barred IMPUs of each implicit registration set, default first.
        let implicitSets: [Int: [String]]
        let read: ContinuousClock.Instant

        init(_ record: SubscriberRecord, read: ContinuousClock.Instant) {
            self.record = record
            var sets: [Int: [String]] = [:]
            for identity in record.publicIdentities where !identity.barred {
                sets[identity.implicitSet, default: []].append(identity.uri)
            }
            self.implicitSets = sets
            self.read = read
        }

        /// The set an IMPU registers with (issue 26 item 4: only its own).
        func implicitSet(of identity: PublicIdentity) -> [String] { implicitSets[identity.implicitSet] ?? [] }
    }

    public init(store: any SubscriberStore, cacheLifetime: Duration = .seconds(2)) {
        self.store = store
        self.cacheLifetime = cacheLifetime
    }

    /// The subscriber, from the cache when it is fresh enough.
    public func subscriber(impi: String) async throws -> SubscriberRecord? {
        try await subscription(impi: impi)?.record
    }

    /// The subscriber that owns a public identity, from the caches when they are fresh.
    public func subscriber(impu: String) async throws -> SubscriberRecord? {
        let now = ContinuousClock.now
        if let owner = owners.withLock({ $0[impu] }), now - owner.read < cacheLifetime,
            let entry = cachedSubscription(impi: owner.impi)
        {
            return entry.record
        }
        guard let record = try await store.subscriber(impu: impu) else { return nil }
        let entry = CachedSubscription(record, read: now)
        owners.withLock { table in
            if table.count > 100_000 { table.removeAll(keepingCapacity: true) }
            table[impu] = (record.impi, now)
        }
        cache.withLock { table in
            if table.count > 100_000 { table.removeAll(keepingCapacity: true) }
            table[record.impi] = entry
        }
        return record
    }

    func subscription(impi: String) async throws -> CachedSubscription? {
        if let hit = cachedSubscription(impi: impi) { return hit }
        guard let record = try await store.subscriber(impi: impi) else {
            _ = cache.withLock { $0.removeValue(forKey: impi) }
            return nil
        }
        let entry = CachedSubscription(record, read: ContinuousClock.now)
        cache.withLock { table in
            if table.count > 100_000 { table.removeAll(keepingCapacity: true) }
            table[impi] = entry
        }
        return entry
    }

    /// The cached entry while it is fresh; nil means read the store.
    func cachedSubscription(impi: String) -> CachedSubscription? {
        let now = ContinuousClock.now
        guard let hit = cache.withLock({ $0[impi] }), now - hit.read < cacheLifetime else { return nil }
        return hit
    }

    /// SAR-like: checks that the IMPU belongs to the IMPI (29.228 IDENTITIES_DONT_MATCH otherwise).
    public func registrationData(impi: String, impu: String) async throws -> RegistrationData {
        guard let entry = try await subscription(impi: impi) else { throw HSSError.unknownUser }
        return try registrationData(entry, impu: impu)
    }

    /// `registrationData(impi:impu:)` from the cache without suspending, so a refresh makes
    /// no async call for it (each costs the task a frame); nil when the subscriber is not
    /// cached.
    public func cachedRegistrationData(impi: String, impu: String) throws -> RegistrationData? {
        guard let entry = cachedSubscription(impi: impi) else { return nil }
        return try registrationData(entry, impu: impu)
    }

    func registrationData(_ entry: CachedSubscription, impu: String) throws -> RegistrationData {
        let identities = entry.record.publicIdentities
        // Provisioned IMPUs are stored canonical, and the registrar asks with a canonical
        // one: an exact match needs no URI parse.
        if let identity = identities.first(where: { $0.uri == impu }) {
            return RegistrationData(
                subscriber: entry.record, impu: identity, implicitSet: entry.implicitSet(of: identity))
        }
        let target = canonicalPublicIdentity(impu)
        guard
            let identity = identities.first(where: {
                $0.uri == target || canonicalPublicIdentity($0.uri) == target
            })
        else {
            throw HSSError.identitiesDontMatch
        }
        return RegistrationData(subscriber: entry.record, impu: identity, implicitSet: entry.implicitSet(of: identity))
    }

    /// SQNs this HSS reserved in the store and hands out from memory, by IMPI: the next one
    /// and the end of the reserved block (issue 26 item 6: a challenge costs no write).
    let sqnLeases = Mutex<[String: (next: UInt64, end: UInt64)]>([:])
    /// SEQ steps reserved with one write.
    static let sqnBlock: UInt64 = 64
    static let sqnStep: UInt64 = 32  // one SEQ step with the IND bits zero (TS 33.102 C.1.1)

    /// MAR for IMS AKA: a fresh vector with the next SQN (HSS-3). SQN_HE moves on by one
    /// SEQ step (IND bits zero, TS 33.102 Annex C.1.1). SQNs are reserved in the store a
    /// block at a time with compare-and-set, so two S-CSCFs never hand out the same SQN and a
    /// flood of challenges writes once per block, not once per REGISTER.
    public func akaVector(impi: String) async throws -> AuthVector {
        guard let entry = try await subscription(impi: impi) else { throw HSSError.unknownUser }
        guard let k = entry.record.akaK, let opc = entry.record.akaOPc else { throw HSSError.noAKACredentials }
        if let sqn = takeLeasedSQN(impi: impi) {
            return try makeVector(k: k, opc: opc, amf: entry.record.akaAMF, sqn: sqn)
        }
        for _ in 0..<8 {
            guard let s = try await store.subscriber(impi: impi) else { throw HSSError.unknownUser }
            let end = (s.sqn + Self.sqnStep * Self.sqnBlock) & 0xFFFF_FFFF_FFFF
            guard end > s.sqn, try await store.compareAndSetSQN(impi: impi, expected: s.sqn, new: end) else { continue }
            let first = s.sqn + Self.sqnStep
            sqnLeases.withLock { $0[impi] = (first + Self.sqnStep, end) }
            return try makeVector(k: k, opc: opc, amf: s.akaAMF, sqn: first)
        }
        throw HSSError.sqnConflict
    }

    func takeLeasedSQN(impi: String) -> UInt64? {
        sqnLeases.withLock { leases in
            guard let lease = leases[impi], lease.next <= lease.end else { return nil }
            leases[impi] = lease.next == lease.end ? nil : (lease.next + Self.sqnStep, lease.end)
            return lease.next
        }
    }

    /// MAR with AUTS (HSS-4): checks MAC-S, takes SQN_MS as the new base and returns a fresh
    /// vector above it; nil when AUTS does not verify (the challenge then fails, 403).
    public func resynchronise(impi: String, rand: [UInt8], auts: [UInt8]) async throws -> AuthVector? {
        guard auts.count == 14, rand.count == 16 else { return nil }
        guard let s = try await store.subscriber(impi: impi) else { throw HSSError.unknownUser }
        guard let k = s.akaK, let opc = s.akaOPc else { throw HSSError.noAKACredentials }
        let milenage = try Milenage(k: k, opc: opc)
        let akStar = try milenage.f5star(rand: rand)
        let sqnMS = zip(auts[0..<6], akStar).map { $0 ^ $1 }
        // TS 33.102 §6.3.5: MAC-S is computed with the dummy AMF 0x0000.
        let macS = try milenage.f1(rand: rand, sqn: sqnMS, amf: [0, 0]).macS
        guard constantTimeEqual(macS, Array(auts[6..<14])) else { return nil }
        let sqnValue = sqnMS.reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        let next = (sqnValue + 32) & 0xFFFF_FFFF_FFFF
        guard try await store.compareAndSetSQN(impi: impi, expected: s.sqn, new: next) else {
            throw HSSError.sqnConflict
        }
        // What was leased lies below the UE's SQN now: start afresh from the new base.
        _ = sqnLeases.withLock { $0.removeValue(forKey: impi) }
        return try makeVector(k: k, opc: opc, amf: s.akaAMF, sqn: next)
    }

    private func makeVector(k: [UInt8], opc: [UInt8], amf: [UInt8], sqn: UInt64) throws -> AuthVector {
        var generator = SystemRandomNumberGenerator()
        let rand = (0..<16).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let sqnBytes = (0..<6).map { UInt8(truncatingIfNeeded: sqn >> (8 * (5 - $0))) }
        let milenage = try Milenage(k: k, opc: opc)
        let macA = try milenage.f1(rand: rand, sqn: sqnBytes, amf: amf).macA
        let v = try milenage.f2345(rand: rand)
        return AuthVector(
            rand: rand, autn: IMSAKA.autn(sqn: sqnBytes, ak: v.ak, amf: amf, macA: macA), xres: v.res, ck: v.ck,
            ik: v.ik)
    }
}

/// Digest HA1 values for provisioning: the password itself is never stored (HSS-7).
public func digestHA1(impi: String, realm: String, password: String) -> (md5: String, sha256: String) {
    let p = Array(password.utf8)
    return (
        DigestAlgorithm.md5.ha1(username: impi, realm: realm, password: p),
        DigestAlgorithm.sha256.ha1(username: impi, realm: realm, password: p)
    )
}
