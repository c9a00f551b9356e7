import Foundation
import HSS
import Logging
import SIPAuth
import SIPCore
import SIPProxy
import SIPTransport
import Storage
import Synchronization
import Utilities

// The challenges and their answers: SIP Digest (SCS-10, SCS-11) and IMS AKA (SCS-12).
extension Registrar {
    // MARK: SIP Digest (SCS-10, SCS-11)

    @inline(never)
    func digestRegister(
        _ request: SIPRequest, subscriber: SubscriberRecord, impu: String, authorization: SIPAuthField?, callID: String,
        cseq: SIPCSeq
    ) async -> SIPResponse {
        let verified: VerifiedDigest
        switch await checkDigestAcrossNodes(authorization, subscriber: subscriber, method: "REGISTER") {
        case .success(let digest): verified = digest
        case .failure(let refusal): return digestRefusal(request, refusal, subscriber: subscriber)
        }
        var ok = await completeRegistration(
            request, impi: subscriber.impi, impu: impu, scheme: .digest, tna: nil, callID: callID, cseq: cseq.sequence)
        let auth = verified.credentials
        if ok.statusCode == 200, let nc = auth.nonceCount, let cnonce = auth.cnonce {
            let rspauth = verified.algorithm.responseAuth(
                ha1: verified.ha1, nonce: verified.nonce, nc: nc, cnonce: cnonce, qop: verified.qop, uri: auth.uri ?? ""
            )
            ok.headers.append(
                .authenticationInfo, "qop=\(verified.qop), rspauth=\"\(rspauth)\", cnonce=\"\(cnonce)\", nc=\(nc)")
        }
        return ok
    }

    /// What a Digest answer comes to (SCS-10, SCS-11), for REGISTER (Authorization) and for
    /// a phone's other requests (Proxy-Authorization, RFC 3261 §22.3) alike.
    enum DigestRefusal: Error {
        case challenge(stale: Bool)
        case refuse(Int, String, retryAfter: Int?)
    }

    /// Credentials that checked out, with what the answer's Authentication-Info needs.
    struct VerifiedDigest {
        var algorithm: DigestAlgorithm
        var ha1: String
        var nonce: String
        var qop: String
        var nonceCount: UInt32
        var credentials: SIPAuthField
    }

    /// `checkDigest`, and then, with several nodes on one database, the answer claimed in
    /// it: this node's tracker sees only the answers that came here, so an answer captured
    /// at one node could otherwise be replayed once at every other while its nonce lives.
    /// Claimed only once it verifies, so nobody can spend another's nonce-counts.
    func checkDigestAcrossNodes(_ authorization: SIPAuthField?, subscriber: SubscriberRecord, method: String) async
        -> Result<VerifiedDigest, DigestRefusal>
    {
        let result = checkDigest(authorization, subscriber: subscriber, method: method)
        guard let uses = configuration.nonceUses, case .success(let digest) = result else { return result }
        let expiresAt = Int64(clock().timeIntervalSince1970) + configuration.nonceLifetime.components.seconds + 60
        do {
            guard
                try await uses.claimNonceUse(nonce: digest.nonce, count: Int64(digest.nonceCount), expiresAt: expiresAt)
            else {
                return .failure(.challenge(stale: true))
            }
        } catch {
            logger.warning("Digest: could not claim a nonce use in the shared store: \(error)")
            return .failure(.refuse(500, "Store Unavailable", retryAfter: nil))
        }
        return result
    }

    func checkDigest(_ authorization: SIPAuthField?, subscriber: SubscriberRecord, method: String)
        -> Result<VerifiedDigest, DigestRefusal>
    {
        guard let auth = authorization, let nonce = auth.nonce, !nonce.isEmpty, let response = auth.response,
            !response.isEmpty
        else { return .failure(.challenge(stale: false)) }
        let realm = configuration.homeDomain
        switch nonces.check(nonce, realm: realm, now: clock()) {
        case .invalid: return .failure(.challenge(stale: false))
        case .stale: return .failure(.challenge(stale: true))
        case .valid: break
        }
        guard let algorithm = DigestAlgorithm(parameter: auth.algorithm), algorithm == .md5 || algorithm == .sha256,
            let ha1 = algorithm == .md5 ? subscriber.ha1MD5 : subscriber.ha1SHA256
        else { return .failure(.refuse(403, "Algorithm Not Allowed", retryAfter: nil)) }
        // Issue 26 item 7: qop=auth always, so every answer carries a nonce-count and none
        // can be replayed while its nonce lives (RFC 7616 §3.4; the challenge offers only it).
        guard let qop = auth.qop, equalsIgnoringASCIICase(qop, "auth") else {
            return .failure(.refuse(403, "Digest qop=auth Required", retryAfter: nil))
        }
        guard let ncText = auth.nonceCount, let nc = UInt32(ncText, radix: 16), auth.cnonce != nil else {
            return .failure(.refuse(400, "Missing nc or cnonce", retryAfter: nil))
        }
        // A guesser waits (before any check, so waiting costs it the nonce-count too).
        if let wait = digestWait(impi: subscriber.impi, now: clock()) {
            RegistrarMetrics.digestThrottled.increment()
            return .failure(.refuse(403, "Too Many Failed Attempts", retryAfter: wait))
        }
        // Replayed or reordered nonce-count: challenge afresh (SCS-10).
        guard nonceCounts.accept(nonce: nonce, nc: nc) else { return .failure(.challenge(stale: true)) }
        let expected = algorithm.response(
            ha1: ha1, nonce: nonce, nc: auth.nonceCount, cnonce: auth.cnonce, qop: qop, method: method,
            uri: auth.uri ?? "")
        guard constantTimeEqual(Array(expected.utf8), Array(response.lowercased().utf8)) else {
            recordDigestFailure(impi: subscriber.impi, now: clock())
            return .failure(.refuse(403, "Forbidden", retryAfter: nil))
        }
        return .success(
            VerifiedDigest(algorithm: algorithm, ha1: ha1, nonce: nonce, qop: qop, nonceCount: nc, credentials: auth))
    }

    /// The answer to a Digest check that did not verify: a challenge (401, or 407 for a
    /// proxy's), or the refusal.
    func digestRefusal(
        _ request: SIPRequest, _ refusal: DigestRefusal, subscriber: SubscriberRecord, proxy: Bool = false
    ) -> SIPResponse {
        switch refusal {
        case .challenge(let stale):
            return digestChallenge(request, subscriber: subscriber, stale: stale, proxy: proxy)
        case .refuse(let code, let reason, let wait):
            var refused = reply(request, code, reason)
            if let wait { refused.headers.append(SIPHeaderName("Retry-After"), String(wait)) }
            return refused
        }
    }

    func digestChallenge(
        _ request: SIPRequest, subscriber: SubscriberRecord, stale: Bool, proxy: Bool = false
    ) -> SIPResponse {
        var response = reply(request, proxy ? 407 : 401)
        let nonce = nonces.mint(realm: configuration.homeDomain, now: clock())
        // One challenge per algorithm the subscriber has an HA1 for, MD5 first: it is the IMS
        // default (24.229 §5.4.1.2.1B) and many SIP clients answer only the first challenge.
        // Written directly: the same text as a SIPAuthField with realm, nonce, algorithm, qop
        // and stale set in that order would print.
        for (algorithm, present) in [
            (DigestAlgorithm.md5, subscriber.ha1MD5 != nil), (.sha256, subscriber.ha1SHA256 != nil),
        ]
        where present {
            var challenge = challengeRealmPrefix
            challenge += nonce  // base64url: nothing to escape
            challenge += "\", algorithm="
            challenge += algorithm.rawValue
            challenge += ", qop=\"auth\""
            if stale { challenge += ", stale=true" }
            response.headers.append(proxy ? .proxyAuthenticate : .wwwAuthenticate, challenge)
        }
        return response
    }

    // MARK: IMS AKA (SCS-12 … SCS-14)

    @inline(never)
    func akaRegister(
        _ request: SIPRequest, impi: String, impu: String, authorization: SIPAuthField?, callID: String, cseq: SIPCSeq
    ) async -> SIPResponse {
        let now = clock()
        let pending = pendingAKA(impi: impi, callID: callID, now: now)
        guard let auth = authorization, let nonce = auth.nonce, !nonce.isEmpty, let pending, pending.nonce == nonce
        else {
            // The same request again (a retransmission, or no answer yet): the same
            // challenge, without a new vector — nothing is written for it.
            if let pending, authorization?.response.map({ $0.isEmpty }) ?? true {
                return akaChallengeResponse(request, vector: pending.vector, nonce: pending.nonce)
            }
            return await akaChallenge(request, impi: impi, vector: nil)
        }
        let algorithm = DigestAlgorithm(parameter: auth.algorithm) ?? .akav1MD5
        guard algorithm == .akav1MD5 || algorithm == .akav2MD5 else {
            return reply(request, 403, "Algorithm Not Allowed")
        }
        removePendingAKA(impi: impi, callID: callID, now: now)
        if let autsText = auth.auts {
            // SCS-14: the UE saw our SQN as out of range; resynchronise and challenge again.
            guard let auts = Data(base64Encoded: autsText).map(Array.init),
                let vector = try? await hss.resynchronise(impi: impi, rand: pending.vector.rand, auts: auts)
            else { return reply(request, 403, "Resynchronisation Failed") }
            return await akaChallenge(request, impi: impi, vector: vector)
        }
        let password = IMSAKA.password(
            algorithm: algorithm, res: pending.vector.xres, ik: pending.vector.ik, ck: pending.vector.ck)
        let realm = auth.realm ?? configuration.homeDomain
        let ha1 = algorithm.ha1(username: impi, realm: realm, password: password)
        let expected = algorithm.response(
            ha1: ha1, nonce: nonce, nc: auth.nonceCount, cnonce: auth.cnonce, qop: auth.qop, method: "REGISTER",
            uri: auth.uri ?? "")
        guard let given = auth.response, constantTimeEqual(Array(expected.utf8), Array(given.lowercased().utf8)) else {
            return reply(request, 403, "Forbidden")
        }
        return await completeRegistration(
            request, impi: impi, impu: impu, scheme: .aka, tna: nil, callID: callID, cseq: cseq.sequence)
    }

    func akaChallenge(_ request: SIPRequest, impi: String, vector: AuthVector?) async -> SIPResponse {
        let v: AuthVector
        if let vector {
            v = vector
        } else {
            do { v = try await hss.akaVector(impi: impi) } catch { return reply(request, 403, "Forbidden") }
        }
        let nonce = IMSAKA.nonce(rand: v.rand, autn: v.autn)
        let callID = (try? request.headers.callID) ?? ""
        let now = clock()
        let seconds = now.timeIntervalSince1970
        akaChallenges.withLock { table in
            var list = (table.value(for: impi, now: seconds) ?? []).filter { $0.callID != callID && !isStale($0, now) }
            // The oldest go first when a stranger keeps asking (their answers are long due).
            if list.count >= Self.akaChallengesPerIMPI { list.removeFirst(list.count - Self.akaChallengesPerIMPI + 1) }
            list.append(PendingAKA(vector: v, nonce: nonce, callID: callID, issued: now))
            _ = table.set(impi, list, now: seconds)
        }
        return akaChallengeResponse(request, vector: v, nonce: nonce)
    }

    func akaChallengeResponse(_ request: SIPRequest, vector v: AuthVector, nonce: String) -> SIPResponse {
        var challenge = SIPAuthField.digest([])
        challenge.set("realm", configuration.homeDomain, quoted: true)
        challenge.set("nonce", nonce, quoted: true)
        challenge.set("algorithm", DigestAlgorithm.akav1MD5.rawValue, quoted: false)
        challenge.set("qop", "auth", quoted: true)
        // For the P-CSCF only (24.229 §7.2A.1); the eP-CSCF strips them (EPC-12).
        challenge.set("ik", hex(v.ik), quoted: true)
        challenge.set("ck", hex(v.ck), quoted: true)
        var response = reply(request, 401)
        response.headers.append(.wwwAuthenticate, challenge.description)
        return response
    }

    func isStale(_ pending: PendingAKA, _ now: Date) -> Bool {
        now.timeIntervalSince(pending.issued) > TimeInterval(configuration.akaChallengeLifetime.components.seconds)
    }

    /// The live challenge of this IMPI and Call-ID, if any.
    func pendingAKA(impi: String, callID: String, now: Date) -> PendingAKA? {
        akaChallenges.withLock { table in
            table.value(for: impi, now: now.timeIntervalSince1970)?.last { $0.callID == callID && !isStale($0, now) }
        }
    }

    func removePendingAKA(impi: String, callID: String, now: Date) {
        let seconds = now.timeIntervalSince1970
        akaChallenges.withLock { table in
            guard var list = table.value(for: impi, now: seconds) else { return }
            list.removeAll { $0.callID == callID }
            if list.isEmpty { table.removeValue(for: impi) } else { _ = table.set(impi, list, now: seconds) }
        }
    }
}
