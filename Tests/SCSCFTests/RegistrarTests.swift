import Foundation
import HSS
import NIOCore
import SIPAuth
import SIPCore
import SIPTransport
import Storage
import Synchronization
import Testing
import Utilities
import WebIMSTesting

@testable import SCSCF

let home = RegistrarHarness.home
let aliceIMPI = RegistrarHarness.aliceIMPI
let aliceIMPU = RegistrarHarness.aliceIMPU
let bobIMPI = RegistrarHarness.bobIMPI
let bobIMPU = RegistrarHarness.bobIMPU
let setOneK = RegistrarHarness.setOneK
let setOneOPc = RegistrarHarness.setOneOPc
typealias Harness = RegistrarHarness

/// A REGISTER as a UE or the eP-CSCF would send it.
struct UA {
    var impu = aliceIMPU
    var impi = aliceIMPI
    var callID = UUID().uuidString
    var cseq: UInt32 = 1
    var contact =
        "<sip:g8z4h2kq@df7jal23ls0d.invalid;transport=ws>;+sip.instance=\"<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>\";reg-id=1"
    var path: String? = "<sip:fl-1@127.0.0.1;lr;ob>"

    mutating func register(
        authorization: String? = nil, expires: UInt32? = 3600, contact: String? = nil,
        extra: [(SIPHeaderName, String)] = []
    )
        -> SIPRequest
    {
        var h = SIPHeaderFields()
        h.append(.from, "<\(impu)>;tag=ua1")
        h.append(.to, "<\(impu)>")
        h.append(.callID, callID)
        h.append(.cseq, SIPCSeq(cseq, .register).description)
        cseq += 1
        h.append(.contact, contact ?? self.contact)
        if let path { h.append(.path, path) }
        h.append(.supported, "path, outbound, gruu")
        if let expires { h.append(.expires, String(expires)) }
        if let authorization { h.append(.authorization, authorization) }
        for (name, value) in extra { h.append(name, value) }
        return SIPRequest(method: .register, uri: .sip(SIPURI(host: home)), headers: h)
    }

    func digestAnswer(to challenge: SIPAuthField, password: String, nc: String = "00000001") -> String {
        let algorithm = DigestAlgorithm(parameter: challenge.algorithm) ?? .md5
        let ha1 = algorithm.ha1(username: impi, realm: challenge.realm ?? "", password: Array(password.utf8))
        let uri = "sip:\(home)"
        let response = algorithm.response(
            ha1: ha1, nonce: challenge.nonce ?? "", nc: nc, cnonce: "0a4f113b", qop: "auth", method: "REGISTER",
            uri: uri)
        return
            "Digest username=\"\(impi)\", realm=\"\(challenge.realm ?? "")\", uri=\"\(uri)\", nonce=\"\(challenge.nonce ?? "")\", algorithm=\(algorithm.rawValue), qop=auth, nc=\(nc), cnonce=\"0a4f113b\", response=\"\(response)\""
    }

    var tna: String {
        TrustedNodeAuthorization(impi: impi, realm: home, uri: "sip:\(home)").field.description
    }
}

func challenges(_ r: SIPResponse) -> [SIPAuthField] { (try? r.headers.challenges()) ?? [] }

@Suite(.serialized) struct DigestRegistrationTests {
    @Test(arguments: StoreBackend.available, ["MD5", "SHA-256"])
    func registerChallengeAnswer200(backend: StoreBackend, algorithm: String) async throws {
        try await Harness.with(backend) { h async throws in
            var ua = UA()
            let first = await h.send(
                ua.register(
                    authorization:
                        "Digest username=\"\(aliceIMPI)\", realm=\"\(home)\", uri=\"sip:\(home)\", nonce=\"\", response=\"\""
                ))
            #expect(first.statusCode == 401)
            let offered = challenges(first)
            #expect(offered.map { $0.algorithm ?? "" } == ["MD5", "SHA-256"])
            let challenge = try #require(offered.first { $0.algorithm == algorithm })
            #expect(challenge.qop == "auth" && challenge.realm == home)
            // The registrar writes the challenge text directly: it is what SIPAuthField prints.
            var built = SIPAuthField.digest([])
            built.set("realm", home, quoted: true)
            built.set("nonce", challenge.nonce ?? "", quoted: true)
            built.set("algorithm", algorithm, quoted: false)
            built.set("qop", "auth", quoted: true)
            #expect(first.headers.values(.wwwAuthenticate).contains(built.description))
            let ok = await h.send(ua.register(authorization: ua.digestAnswer(to: challenge, password: "alice-secret")))
            #expect(ok.statusCode == 200)
            guard case .contacts(let contacts)? = try ok.headers.contact else {
                Issue.record("no contacts")
                return
            }
            #expect(contacts.count == 1)
            #expect(contacts[0].expires == 3600)
            #expect(
                contacts[0].address.parameters["pub-gruu"]
                    == "\(aliceIMPU);gr=urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6")
            #expect(try ok.headers.serviceRoute.count == 1)
            #expect(try ok.headers.pAssociatedURI.map(\.uri.description) == [aliceIMPU, "tel:+15551234567"])
            #expect(try ok.headers.path.first?.uri.sipURI?.user == "fl-1")
            #expect(ok.headers.require == ["outbound"])
            let info = try SIPAuthField.parse("x " + (ok.headers[.authenticationInfo] ?? ""))
            #expect(info["rspauth"]?.count == (algorithm == "MD5" ? 32 : 64))
            // Stored before the 200 went out; the implicit set is registered too.
            #expect(try await h.storage.bindings(aor: aliceIMPU, now: 0).count == 1)
            #expect(try await h.storage.bindings(aor: "tel:+15551234567", now: 0).count == 1)
        }
    }

    /// Issue 26 item 7: an answer without qop has no nonce-count, so it could be replayed
    /// while its nonce lives: refused, even with the right password.
    @Test func item07AnAnswerWithoutQopIsRefused() async throws {
        try await Harness.with { h async throws in
            var ua = UA()
            let challenge = try #require(challenges(await h.send(ua.register())).first)
            let ha1 = DigestAlgorithm.md5.ha1(username: aliceIMPI, realm: home, password: Array("alice-secret".utf8))
            let response = DigestAlgorithm.md5.response(
                ha1: ha1, nonce: challenge.nonce ?? "", nc: nil, cnonce: nil, qop: nil, method: "REGISTER",
                uri: "sip:\(home)")
            let answer =
                "Digest username=\"\(aliceIMPI)\", realm=\"\(home)\", uri=\"sip:\(home)\", nonce=\"\(challenge.nonce ?? "")\", algorithm=MD5, response=\"\(response)\""
            let refused = await h.send(ua.register(authorization: answer))
            #expect(refused.statusCode == 403)
            #expect(refused.reasonPhrase.contains("qop"))
            #expect(try await h.storage.bindings(aor: aliceIMPU, now: 0).isEmpty)
        }
    }

    /// Issue 26 item 7: after five wrong answers a guesser waits, longer each time, and its
    /// answers are not even checked meanwhile (the right password too); TNA is untouched;
    /// after the wait the real password works; the failures are counted.
    @Test func item07DigestGuessingIsThrottledPerIMPIButNotTokenRegistration() async throws {
        try await Harness.with { h async throws in
            var ua = UA()
            for _ in 0..<5 {
                let challenge = try #require(challenges(await h.send(ua.register())).first)
                let wrong = await h.send(ua.register(authorization: ua.digestAnswer(to: challenge, password: "guess")))
                #expect(wrong.statusCode == 403)
            }
            var challenge = try #require(challenges(await h.send(ua.register())).first)
            let held = await h.send(
                ua.register(authorization: ua.digestAnswer(to: challenge, password: "alice-secret")))
            #expect(held.statusCode == 403)
            #expect(held.reasonPhrase == "Too Many Failed Attempts")
            #expect(held.headers[SIPHeaderName("Retry-After")] == "1")
            // Token registration through the trusted node goes on.
            var tokenUA = UA()
            tokenUA.callID = "tna-during-throttle"
            #expect(await h.send(tokenUA.register(authorization: tokenUA.tna)).statusCode == 200)
            // After the wait, the right password registers.
            h.clock.advance(2)
            challenge = try #require(challenges(await h.send(ua.register())).first)
            let ok = await h.send(ua.register(authorization: ua.digestAnswer(to: challenge, password: "alice-secret")))
            #expect(ok.statusCode == 200)
            #expect(h.registrar.digestFailures.withLock { $0.value(for: aliceIMPI, now: 0)?.count } == 5)
        }
    }

    @Test(arguments: StoreBackend.available)
    func wrongPasswordIs403AndNothingIsStored(backend: StoreBackend) async throws {
        try await Harness.with(backend) { h async throws in
            var ua = UA()
            let challenge = try #require(challenges(await h.send(ua.register())).first)
            let response = await h.send(ua.register(authorization: ua.digestAnswer(to: challenge, password: "wrong")))
            #expect(response.statusCode == 403)
            #expect(try await h.storage.bindings(aor: aliceIMPU, now: 0).isEmpty)
        }
    }

    @Test(arguments: StoreBackend.available)
    func staleNonceAndReplayedNonceCountGetStaleChallenges(backend: StoreBackend) async throws {
        try await Harness.with(backend) { h async throws in
            var ua = UA()
            let challenge = try #require(challenges(await h.send(ua.register())).first)
            h.clock.advance(301)
            let stale = await h.send(
                ua.register(authorization: ua.digestAnswer(to: challenge, password: "alice-secret")))
            #expect(stale.statusCode == 401)
            #expect(challenges(stale).first?.stale == true)
            let fresh = try #require(challenges(stale).first)
            #expect(
                await h.send(ua.register(authorization: ua.digestAnswer(to: fresh, password: "alice-secret")))
                    .statusCode
                    == 200)
            // The same nc again is a replay.
            let replay = await h.send(ua.register(authorization: ua.digestAnswer(to: fresh, password: "alice-secret")))
            #expect(replay.statusCode == 401)
            #expect(challenges(replay).first?.stale == true)
            // A forged nonce is simply challenged again, not stale.
            var forged = fresh
            forged.set("nonce", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", quoted: true)
            let answer = await h.send(ua.register(authorization: ua.digestAnswer(to: forged, password: "alice-secret")))
            #expect(answer.statusCode == 401 && challenges(answer).first?.stale == false)
        }
    }

    @Test(arguments: StoreBackend.available)
    func unknownUserAndBarredIdentityAre403(backend: StoreBackend) async throws {
        try await Harness.with(backend) { h async throws in
            var stranger = UA(impu: "sip:nobody@ims.example.com", impi: "nobody@ims.example.com")
            #expect(await h.send(stranger.register()).statusCode == 403)
            var barred = UA(impu: "sip:alice-barred@ims.example.com")
            #expect(await h.send(barred.register(authorization: barred.tna)).statusCode == 403)
        }
    }
}

@Suite(.serialized) struct TrustedNodeTests {
    @Test(arguments: StoreBackend.available)
    func authDoneFromATrustedNodeRegistersWithoutChallenge(backend: StoreBackend) async throws {
        try await Harness.with(backend) { h async throws in
            var ua = UA()
            let ok = await h.send(
                ua.register(
                    authorization: ua.tna, extra: [(.pChargingVector, "icid-value=\"ep-1\";orig-ioi=ims.example.com")]))
            #expect(ok.statusCode == 200)
            #expect(try ok.headers.pChargingVector?["term-ioi"] == "ims.example.com")
            let stored = try await h.storage.bindings(aor: aliceIMPU, now: 0)
            #expect(stored.first?.scheme == .trustedNode)
            #expect(stored.first?.path == ["<sip:fl-1@127.0.0.1;lr;ob>"])
        }
    }

    @Test(arguments: StoreBackend.available)
    func authDoneFromAnUntrustedAddressIsIgnored(backend: StoreBackend) async throws {
        try await Harness.with(backend, clientHost: "127.0.0.2") { h async throws in
            var ua = UA()
            let response = await h.send(ua.register(authorization: ua.tna))
            #expect(response.statusCode == 401)  // treated as unauthenticated: challenged
            #expect(try await h.storage.bindings(aor: aliceIMPU, now: 0).isEmpty)
        }
    }

    /// Issue 26 item 1: out of lab mode, a listed address over UDP is no trusted node — one
    /// datagram from any local process claiming auth-done is challenged, nothing is bound.
    @Test(arguments: StoreBackend.available)
    func item01AuthDoneOverPlainUDPFromATrustedAddressIsIgnored(backend: StoreBackend) async throws {
        try await Harness.with(backend, lab: false) { h async throws in
            var ua = UA()
            let response = await h.send(ua.register(authorization: ua.tna))
            #expect(response.statusCode == 401)
            #expect(try await h.storage.bindings(aor: aliceIMPU, now: 0).isEmpty)
        }
    }

    @Test func authDoneNeedsATrustedVisitedNetworkWhenAListIsSet() async throws {
        try await Harness.with(networkIDs: ["ims.example.com"]) { h async throws in
            var ua = UA()
            let missing = await h.send(ua.register(authorization: ua.tna))
            #expect(missing.statusCode == 401)  // no P-Visited-Network-ID: challenged as any UE
            let foreign = await h.send(
                ua.register(authorization: ua.tna, extra: [(.pVisitedNetworkID, "\"other.net\"")]))
            #expect(foreign.statusCode == 401)
            #expect(try await h.storage.bindings(aor: aliceIMPU, now: 0).isEmpty)
            let ours = await h.send(
                ua.register(authorization: ua.tna, extra: [(.pVisitedNetworkID, "\"ims.example.com\"")]))
            #expect(ours.statusCode == 200)
        }
    }

    @Test(arguments: StoreBackend.available)
    func thirdPartyAuthorizationEntityMustBeAllowed(backend: StoreBackend) async throws {
        try await Harness.with(backend) { h async throws in
            var ua = UA()
            // Issue 26 item 14: the whole issuer is compared, not its host; and the WWSF too.
            for (waf, wwsf, status) in [
                ("https://waf.partner.example", nil, 200), ("https://waf.evil.example", nil, 403),
                ("https://waf.partner.example:9999", nil, 403), (nil, "https://wwsf.partner.example", 200),
                (nil, "https://wwsf.evil.example", 403),
            ] as [(String?, String?, Int)] {
                let tna = TrustedNodeAuthorization(
                    impi: aliceIMPI, realm: home, uri: "sip:\(home)", wafID: waf, wwsfID: wwsf)
                #expect(await h.send(ua.register(authorization: tna.field.description)).statusCode == status)
            }
        }
    }
}

@Suite(.serialized) struct ContactLimitTests {
    /// Issue 26 item 13, SCS-20: an identity holds at most `maxContactsPerAOR` bindings; one
    /// more is 403 and nothing is stored, while refreshing one that is there still works.
    @Test func item13AnAORHoldsAtMostTheConfiguredContacts() async throws {
        try await Harness.with(configure: { $0.maxContactsPerAOR = 3 }) { h async throws in
            var uas: [UA] = []
            for i in 0..<3 {
                var ua = UA()
                ua.contact = "<sip:c\(i)@df7jal23ls0d.invalid;transport=ws>"
                #expect(await h.send(ua.register(authorization: ua.tna)).statusCode == 200)
                uas.append(ua)
            }
            var fourth = UA()
            fourth.contact = "<sip:c3@df7jal23ls0d.invalid;transport=ws>"
            let refused = await h.send(fourth.register(authorization: fourth.tna))
            #expect(refused.statusCode == 403)
            #expect(refused.reasonPhrase == "Too Many Contacts")
            #expect(try await h.storage.bindings(aor: aliceIMPU, now: 0).count == 3)
            #expect(await h.send(uas[0].register(authorization: uas[0].tna)).statusCode == 200)
            // Once one is removed, another fits.
            #expect(await h.send(uas[1].register(authorization: uas[1].tna, expires: 0)).statusCode == 200)
            #expect(await h.send(fourth.register(authorization: fourth.tna)).statusCode == 200)
        }
    }
}

@Suite(.serialized) struct BindingLifecycleTests {
    @Test(arguments: StoreBackend.available)
    func reRegisterDeRegisterWildcardAndExpiry(backend: StoreBackend) async throws {
        try await Harness.with(backend) { h async throws in
            var ua = UA()
            #expect(await h.send(ua.register(authorization: ua.tna)).statusCode == 200)
            // Refresh on the same Call-ID with a higher CSeq: still one binding.
            let refreshed = await h.send(ua.register(authorization: ua.tna, expires: 600))
            #expect(refreshed.statusCode == 200)
            if case .contacts(let c)? = try refreshed.headers.contact { #expect(c.count == 1 && c[0].expires == 600) }
            // A second device (other instance) adds a binding.
            var other = UA(
                contact:
                    "<sip:x@other.invalid;transport=ws>;+sip.instance=\"<urn:uuid:22222222-0000-0000-0000-000000000000>\";reg-id=1"
            )
            #expect(await h.send(other.register(authorization: other.tna)).statusCode == 200)
            #expect(try await h.storage.bindings(aor: aliceIMPU, now: 0).count == 2)
            // Expires 0 for one contact removes just that one.
            let removed = await h.send(ua.register(authorization: ua.tna, expires: 0))
            #expect(removed.statusCode == 200)
            #expect(try await h.storage.bindings(aor: aliceIMPU, now: 0).count == 1)
            // Removing it again: no such binding.
            #expect(await h.send(ua.register(authorization: ua.tna, expires: 0)).statusCode == 481)
            // Contact: * with Expires: 0 removes the rest.
            #expect(await h.send(other.register(authorization: other.tna, expires: 0, contact: "*")).statusCode == 200)
            #expect(try await h.storage.bindings(aor: aliceIMPU, now: 0).isEmpty)
            // Expiry: a binding is gone once its time has passed.
            var short = UA()
            #expect(await h.send(short.register(authorization: short.tna, expires: 60)).statusCode == 200)
            let now = Int64(h.clock.read().timeIntervalSince1970)
            #expect(try await h.storage.bindings(aor: aliceIMPU, now: now + 59).count == 1)
            #expect(try await h.storage.bindings(aor: aliceIMPU, now: now + 61).isEmpty)
        }
    }

    @Test(arguments: StoreBackend.available)
    func intervalTooBriefOutOfOrderAndOutbound(backend: StoreBackend) async throws {
        try await Harness.with(backend) { h async throws in
            var ua = UA()
            let brief = await h.send(ua.register(authorization: ua.tna, expires: 10))
            #expect(brief.statusCode == 423)
            #expect(try brief.headers.minExpires == 60)
            // reg-id with a first Path lacking `ob`: 439 (RFC 5626 §6).
            var noOB = UA(path: "<sip:fl-1@127.0.0.1;lr>")
            #expect(await h.send(noOB.register(authorization: noOB.tna)).statusCode == 439)
            // Older CSeq on the same Call-ID after a newer one: refused.
            ua.cseq = 10
            #expect(await h.send(ua.register(authorization: ua.tna)).statusCode == 200)
            ua.cseq = 5
            #expect(await h.send(ua.register(authorization: ua.tna)).statusCode == 500)
            // Require with an extension we do not know: 420 with Unsupported.
            var strict = UA()
            let bad = await h.send(strict.register(authorization: strict.tna, extra: [(.require, "path, foo")]))
            #expect(bad.statusCode == 420)
            #expect(bad.headers.unsupported == ["foo"])
        }
    }

    /// The eP-CSCF's flow-close removal (old Call-ID, old Path) is still committing when the
    /// page reload's REGISTER for the same instance arrives over the new flow. Interleaved,
    /// the reload would read the old binding, store its own, and then lose it to the
    /// removal's commit; in turn, the reload's binding stays.
    @Test func aRemovalStillCommittingDoesNotTakeTheNextRegistrationsBinding() async throws {
        try await Harness.with(wrapBindings: { SlowRemovals(wrapping: $0, delay: .milliseconds(400)) }) {
            h async throws in
            var first = UA(path: "<sip:fl-1@127.0.0.1;lr;ob>")
            #expect(await h.send(first.register(authorization: first.tna)).statusCode == 200)
            let removal = first.register(authorization: first.tna, expires: 0)
            var reload = UA(path: "<sip:fl-2@127.0.0.1;lr;ob>")
            let registration = reload.register(authorization: reload.tna)
            async let removed = h.send(removal)
            try await Task.sleep(for: .milliseconds(100))  // the removal has read and is committing
            let registered = await h.send(registration)
            #expect(await removed.statusCode == 200)
            #expect(registered.statusCode == 200)
            let stored = try await h.storage.bindings(aor: aliceIMPU, now: 0)
            #expect(stored.map(\.callID) == [reload.callID])
        }
    }

    /// Two S-CSCFs on one database. The flow-close removal goes to one, which reads the old
    /// binding and decides to remove it; before it commits, the page reload's REGISTER
    /// for the same instance goes through the other node and stores a new registration
    /// under that key. Each node's turns are its own, so only the store can tell: the
    /// removal names the version it read, and the reload's binding stays.
    @Test(arguments: StoreBackend.available)
    func aRemovalDecidedOnAnOldReadLeavesAnotherNodesNewBinding(backend: StoreBackend) async throws {
        let h = try await Harness.start(
            backend, wrapBindings: { SlowRemovals(wrapping: $0, delay: .milliseconds(400)) })
        let otherNode = Registrar(
            configuration: h.registrar.configuration, hss: HSS(store: h.storage), bindings: h.storage,
            clock: h.clock.read)
        var otherConfig = SIPEndpointConfiguration()
        otherConfig.udpPort = 0
        otherConfig.tcpPort = 0
        let otherServer = try SIPEndpoint(configuration: otherConfig, handler: otherNode.handler)
        try await otherServer.start()
        var first = UA(path: "<sip:fl-1@127.0.0.1;lr;ob>")
        #expect(await h.send(first.register(authorization: first.tna)).statusCode == 200)
        let removal = first.register(authorization: first.tna, expires: 0)
        var reload = UA(path: "<sip:fl-2@127.0.0.1;lr;ob>")
        let registration = reload.register(authorization: reload.tna)
        async let removed = h.send(removal)
        try await Task.sleep(for: .milliseconds(100))  // the removal has read and is committing
        let registered = await h.client.send(
            registration,
            to: SIPDestination(transport: .udp, host: "127.0.0.1", port: otherServer.address(.udp)?.port ?? 0))
        #expect(await removed.statusCode == 200)
        #expect(registered.statusCode == 200)
        let stored = try await h.storage.allBindings(now: 0).filter { $0.aor == aliceIMPU }
        #expect(stored.map(\.callID) == [reload.callID])
        await otherServer.shutdown()
        await h.stop()
    }

    @Test(arguments: StoreBackend.available)
    func registrationsSurviveARestart(backend: StoreBackend) async throws {
        let h = try await Harness.start(backend)
        var ua = UA()
        #expect(await h.send(ua.register(authorization: ua.tna), over: .tcp).statusCode == 200)
        await h.server.shutdown()
        await h.storage.close()
        let reopened = try await openDataStore(h.location)
        #expect(try await reopened.bindings(aor: aliceIMPU, now: 0).count == 1)
        await reopened.close()
        await h.client.shutdown()
        if !h.location.hasPrefix("postgres") { try? FileManager.default.removeItem(atPath: h.location) }
    }
}

@Suite(.serialized) struct AKARegistrationTests {
    /// What a UE (ISIM) does with a challenge: check AUTN, compute RES (TS 33.102 §6.3.3).
    func ueAnswer(_ challenge: SIPAuthField, ua: UA, sqnMS: UInt64? = nil) throws -> String {
        let nonce = try #require(challenge.nonce)
        let (rand, autn) = try #require(IMSAKA.split(nonce: nonce))
        let m = try Milenage(k: setOneK, opc: setOneOPc)
        let v = try m.f2345(rand: rand)
        let sqn = zip(autn[0..<6], v.ak).map { $0 ^ $1 }
        let mac = try m.f1(rand: rand, sqn: sqn, amf: Array(autn[6..<8])).macA
        #expect(mac == Array(autn[8..<16]), "network authentication failed")
        let uri = "sip:\(home)"
        if let sqnMS {
            // Out of range: answer with AUTS and an empty password (RFC 3310 §3.4).
            let sqnBytes = (0..<6).map { UInt8(truncatingIfNeeded: sqnMS >> (8 * (5 - $0))) }
            let akStar = try m.f5star(rand: rand)
            let macS = try m.f1(rand: rand, sqn: sqnBytes, amf: [0, 0]).macS
            let auts = Data(zip(sqnBytes, akStar).map { $0 ^ $1 } + macS).base64EncodedString()
            let ha1 = DigestAlgorithm.akav1MD5.ha1(username: ua.impi, realm: home, password: [])
            let response = DigestAlgorithm.akav1MD5.response(
                ha1: ha1, nonce: nonce, nc: "00000001", cnonce: "c1", qop: "auth", method: "REGISTER", uri: uri)
            return
                "Digest username=\"\(ua.impi)\", realm=\"\(home)\", uri=\"\(uri)\", nonce=\"\(nonce)\", algorithm=AKAv1-MD5, qop=auth, nc=00000001, cnonce=\"c1\", auts=\"\(auts)\", response=\"\(response)\""
        }
        let ha1 = DigestAlgorithm.akav1MD5.ha1(username: ua.impi, realm: home, password: v.res)
        let response = DigestAlgorithm.akav1MD5.response(
            ha1: ha1, nonce: nonce, nc: "00000001", cnonce: "c1", qop: "auth", method: "REGISTER", uri: uri)
        return
            "Digest username=\"\(ua.impi)\", realm=\"\(home)\", uri=\"\(uri)\", nonce=\"\(nonce)\", algorithm=AKAv1-MD5, qop=auth, nc=00000001, cnonce=\"c1\", response=\"\(response)\""
    }

    @Test(arguments: StoreBackend.available)
    func akaChallengeAnswerAndResync(backend: StoreBackend) async throws {
        try await Harness.with(backend) { h async throws in
            var ua = UA(impu: bobIMPU, impi: bobIMPI)
            let first = await h.send(
                ua.register(
                    authorization:
                        "Digest username=\"\(bobIMPI)\", realm=\"\(home)\", uri=\"sip:\(home)\", nonce=\"\", response=\"\""
                )
            )
            #expect(first.statusCode == 401)
            let challenge = try #require(challenges(first).first)
            #expect(challenge.algorithm == "AKAv1-MD5")
            #expect(challenge.ik?.count == 32 && challenge.ck?.count == 32)
            #expect(await h.send(ua.register(authorization: try ueAnswer(challenge, ua: ua))).statusCode == 200)
            // A wrong RES is refused.
            let again = try #require(challenges(await h.send(ua.register())).first)
            var wrong = try ueAnswer(again, ua: ua)
            wrong = wrong.replacingOccurrences(of: "response=\"", with: "response=\"0")
            #expect(await h.send(ua.register(authorization: wrong)).statusCode == 403)
            // Resync: the UE's SQN is far ahead; the HSS takes it and challenges again.
            let third = try #require(challenges(await h.send(ua.register())).first)
            let resync = await h.send(ua.register(authorization: try ueAnswer(third, ua: ua, sqnMS: 0x1000)))
            #expect(resync.statusCode == 401)
            let fresh = try #require(challenges(resync).first)
            #expect(fresh.nonce != third.nonce)
            #expect(await h.send(ua.register(authorization: try ueAnswer(fresh, ua: ua))).statusCode == 200)
            #expect(try await h.storage.subscriber(impi: bobIMPI)?.sqn ?? 0 > 0x1000)
        }
    }

    /// Issue 26 item 6: a stranger's credential-less REGISTERs for the victim's IMPI, one
    /// between the victim's challenge and its answer and twenty in all, neither replace the
    /// victim's challenge (each Call-ID has its own) nor write the SQN per request; the
    /// victim registers; the table keeps at most eight per IMPI.
    @Test func item06AChallengeFloodDoesNotLockTheVictimOut() async throws {
        try await Harness.with { h async throws in
            let before = try await h.storage.subscriber(impi: bobIMPI)?.sqn ?? 0
            var victim = UA(impu: bobIMPU, impi: bobIMPI)
            let challenge = try #require(challenges(await h.send(victim.register())).first)
            for i in 0..<20 {
                var stranger = UA(impu: bobIMPU, impi: bobIMPI)
                stranger.callID = "flood-\(i)"
                #expect(await h.send(stranger.register()).statusCode == 401)
                if i == 0 {
                    // The victim answers now, after one stranger's request.
                    #expect(
                        await h.send(victim.register(authorization: try ueAnswer(challenge, ua: victim))).statusCode
                            == 200)
                }
            }
            let after = try await h.storage.subscriber(impi: bobIMPI)?.sqn ?? 0
            // 22 vectors handed out, one write of a 64-SQN block (32 per SEQ step).
            #expect(after - before == 32 * 64)
            let held = h.registrar.akaChallenges.withLock { $0.value(for: bobIMPI, now: 0)?.count ?? 0 }
            #expect(held == Registrar.akaChallengesPerIMPI)
            // A retransmitted credential-less REGISTER gets the same challenge, no new vector.
            var retry = UA(impu: bobIMPU, impi: bobIMPI)
            retry.callID = "retransmitted"
            let one = try #require(challenges(await h.send(retry.register())).first)
            retry.cseq -= 1
            let two = try #require(challenges(await h.send(retry.register())).first)
            #expect(one.nonce == two.nonce)
        }
    }
}

@Suite struct OKContactTests {
    /// The 200 OK Contact written directly must read exactly as the one made by parsing
    /// the stored Contact and setting its parameters.
    @Test func directContactEqualsTheParsedOne() async throws {
        try await Harness.with { harness async throws in
            let now: Int64 = 1_893_453_000
            let cases: [Binding] = [
                Binding(
                    aor: aliceIMPU, contact: "sip:g8z4h2kq@df7jal23ls0d.invalid;transport=ws",
                    contactHeader: "<sip:g8z4h2kq@df7jal23ls0d.invalid;transport=ws>",
                    instance: "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6", regID: 1, impi: aliceIMPI,
                    expiresAt: now + 600, callID: "c", cseq: 1, scheme: .trustedNode),
                Binding(
                    aor: aliceIMPU, contact: "sip:alice@192.0.2.1:5060", contactHeader: "<sip:alice@192.0.2.1:5060>",
                    impi: aliceIMPI, expiresAt: now - 5, callID: "c", cseq: 1, scheme: .digest),
                Binding(
                    aor: aliceIMPU, contact: "sip:[2001:db8::1];lr", contactHeader: "<sip:[2001:db8::1];lr?x=y>",
                    instance: "<odd \"instance\">", impi: aliceIMPI, expiresAt: now + 1, callID: "c", cseq: 1,
                    scheme: .digest),
            ]
            for b in cases {
                #expect(Registrar.isPlainContact(b))
                var bytes: [UInt8] = []
                Registrar.writeContact(b, impu: aliceIMPU, now: now, to: &bytes)
                let direct = String(decoding: bytes, as: UTF8.self)
                #expect(direct == harness.registrar.contactByParsing(b, impu: aliceIMPU, now: now))
            }
            // A stored Contact with a display name or parameters takes the general path.
            var other = cases[1]
            other.contactHeader = "\"Alice\" <sip:alice@192.0.2.1>"
            #expect(!Registrar.isPlainContact(other))
        }
    }
}

@Suite struct RegistrarMetricsTests {
    /// The scheme label of `webims_scscf_registrations_total`, read from the raw header.
    @Test func schemeLabels() {
        func scheme(_ authorization: String?) -> String {
            var ua = UA()
            return RegistrarMetrics.scheme(of: ua.register(authorization: authorization)).label
        }
        #expect(scheme(nil) == "none")
        #expect(scheme(UA().tna) == "tna")
        #expect(scheme("Digest username=\"a\", algorithm=AKAv1-MD5, nonce=\"\"") == "aka")
        #expect(scheme("Digest username=\"a\", algorithm=\"akav2-md5\"") == "aka")
        #expect(scheme("digest username=\"a\", realm=\"r\", nonce=\"n\", response=\"x\"") == "digest")
        #expect(scheme("Bearer abc") == "other")
        #expect(scheme("Dig") == "other")
    }

    /// The registrar labels from the credentials it parsed: the same label as the raw read.
    @Test func parsedCredentialsGiveTheRawLabel() throws {
        for authorization in [
            UA().tna, "Digest username=\"a\", algorithm=AKAv1-MD5, nonce=\"\"",
            "Digest username=\"a\", algorithm=\"akav2-md5\"",
            "digest username=\"a\", realm=\"r\", nonce=\"n\", response=\"x\"",
            "Digest username=\"a\", integrity-protected=\"auth-done\", nonce=\"\", response=\"\"",
            "Digest username=\"a\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"c\", response=\"r\"",
        ] {
            var ua = UA()
            let request = ua.register(authorization: authorization)
            let parsed = try request.headers.authorizations().first { $0.isDigest }
            #expect(parsed != nil)
            #expect(
                RegistrarMetrics.scheme(claimedBy: parsed, in: request) == RegistrarMetrics.scheme(of: request),
                "\(authorization)")
        }
        var ua = UA()
        let none = ua.register(authorization: nil)
        #expect(RegistrarMetrics.scheme(claimedBy: nil, in: none) == .none)
    }
}

/// A binding store whose removal-only commits take a while, as a busy database's would.
/// A subscriber store that counts its owner look-ups (`subscriber(impu:)`).
final class CountingOwnerReads: SubscriberStore {
    let wrapping: any SubscriberStore
    let ownerReads = Mutex(0)

    init(wrapping: any SubscriberStore) { self.wrapping = wrapping }

    func subscriber(impi: String) async throws -> SubscriberRecord? { try await wrapping.subscriber(impi: impi) }
    func subscriber(impu: String) async throws -> SubscriberRecord? {
        ownerReads.withLock { $0 += 1 }
        return try await wrapping.subscriber(impu: impu)
    }
    func allSubscribers() async throws -> [SubscriberRecord] { try await wrapping.allSubscribers() }
    func put(_ subscriber: SubscriberRecord) async throws { try await wrapping.put(subscriber) }
    func removeSubscriber(impi: String) async throws -> Bool { try await wrapping.removeSubscriber(impi: impi) }
    func compareAndSetSQN(impi: String, expected: UInt64, new: UInt64) async throws -> Bool {
        try await wrapping.compareAndSetSQN(impi: impi, expected: expected, new: new)
    }
}

@Suite struct ChallengeReadTests {
    /// A REGISTER without credentials (what most clients send first) is challenged for the
    /// IMPU's owner: read once, then from the HSS's cache, not the store each time (a SQL
    /// statement per challenge was 8.8 % of a Digest load's CPU).
    @Test func challengesFindTheOwnerInTheHSSCache() async throws {
        let counting = Mutex<CountingOwnerReads?>(nil)
        try await Harness.with(wrapSubscribers: { store in
            let wrapper = CountingOwnerReads(wrapping: store)
            counting.withLock { $0 = wrapper }
            return wrapper
        }) { h async throws in
            var ua = UA()
            for _ in 0..<3 { #expect(await h.send(ua.register()).statusCode == 401) }
            let store = try #require(counting.withLock { $0 })
            #expect(store.ownerReads.withLock { $0 } == 1)
        }
    }
}

struct SlowRemovals: BindingStore {
    let wrapping: any BindingStore
    let delay: Duration

    func bindings(aor: String, now: Int64) async throws -> [Binding] {
        try await wrapping.bindings(aor: aor, now: now)
    }
    func apply(upserts: [Binding], removals: [BindingRemoval]) async throws {
        if upserts.isEmpty && !removals.isEmpty { try await Task.sleep(for: delay) }
        try await wrapping.apply(upserts: upserts, removals: removals)
    }
    func allBindings(now: Int64) async throws -> [Binding] { try await wrapping.allBindings(now: now) }
    func removeExpired(now: Int64) async throws -> [Binding] { try await wrapping.removeExpired(now: now) }
}
