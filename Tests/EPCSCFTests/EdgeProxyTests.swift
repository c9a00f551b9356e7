import Crypto
import Foundation
import HSS
import NIOCore
import NIOPosix
import NIOSSL
import NIOWebSocket
import SCSCF
import SIPAuth
import SIPCore
import SIPExamples
import SIPTransport
import Storage
import Synchronization
import Testing
import Utilities
import WebIMSTesting

@testable import EPCSCF

@Suite(.serialized) struct EdgeProxyTests {
    @Test func handshakeChecks() async throws {
        try await EdgeHarness.with { h async throws in
            for (origin, protocols, expected) in [
                (EdgeHarness.origin, "sip", 101), (EdgeHarness.origin, "foo, sip", 101),
                ("https://evil.example", "sip", 403),
                (nil, "sip", 403), (EdgeHarness.origin, nil, 400), (EdgeHarness.origin, "xmpp", 400),
            ] as [(String?, String?, Int)] {
                let c = try await h.client()
                #expect(
                    try await c.handshake(origin: origin, protocols: protocols) == expected,
                    "\(origin ?? "-") \(protocols ?? "-")")
                if expected == 101 { #expect(c.responseHead.contains("Sec-WebSocket-Protocol: sip")) }
                await c.close()
            }
        }
    }

    @Test func oversizedFramesPingAndPlainTCP() async throws {
        try await EdgeHarness.with { h async throws in
            // Ping → pong with the same payload (RFC 6455 §5.5.2).
            let c = try await h.client()
            #expect(try await c.handshake(origin: EdgeHarness.origin, protocols: "sip") == 101)
            try await c.sendText("hi", opcode: 0x9)
            let pong = await c.nextFrame()
            #expect(pong?.0 == 0xA && pong?.1 == Array("hi".utf8))
            // A frame over the 64 KiB limit: the flow is closed, the server lives on.
            try await c.sendText(String(repeating: "A", count: 70_000))
            var closed = false
            for _ in 0..<200 {
                if c.isClosed {
                    closed = true
                    break
                }
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(closed)
            // Plain TCP (no TLS) to the WSS port: never upgraded (EPC-2).
            let plain = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connect(host: "127.0.0.1", port: h.wssPort).get()
            let text =
                "GET /sip HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nOrigin: \(EdgeHarness.origin)\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: sip\r\n\r\n"
            try await plain.writeAndFlush(ByteBuffer(string: text)).get()
            // The TLS handler refuses the bytes and closes; a bound keeps the test from hanging.
            let started = ContinuousClock.now
            let guardClose = plain.eventLoop.scheduleTask(in: .seconds(5)) { plain.close(promise: nil) }
            try? await plain.closeFuture.get()
            guardClose.cancel()
            #expect(ContinuousClock.now - started < .seconds(4))
            // Still serving.
            let again = try await h.client()
            #expect(try await again.handshake(origin: EdgeHarness.origin, protocols: "sip") == 101)
            await again.close()
        }
    }

    @Test func tokenRegistrationEndToEnd() async throws {
        try await EdgeHarness.with { h async throws in
            let c = try await h.client()
            #expect(try await c.handshake(origin: EdgeHarness.origin, protocols: "sip") == 101)
            let register = SpecMessages.register92.replacingOccurrences(
                of: SpecMessages.token, with: try liveToken(h.waf))
            try await c.sendText(register)
            let ok = try #require(await c.nextSIP())
            #expect(ok.statusCode == 200)
            #expect(try ok.headers.topVia.host == "df7jal23ls0d.invalid")
            #expect(try ok.headers.serviceRoute.count == 1)
            #expect(try ok.headers.pAssociatedURI.first?.uri.description == "sip:alice@ims.example.com")
            let stored = try await h.storage.bindings(aor: "sip:alice@ims.example.com", now: 0)
            #expect(stored.count == 1 && stored.first?.scheme == .trustedNode)
            #expect(stored.first?.path.first?.contains(";ob") == true)
            // A forged auth-done from the WIC is stripped: the S-CSCF challenges.
            let forged = SpecMessages.register92.replacingOccurrences(
                of: "Authorization: Bearer \(SpecMessages.token)",
                with:
                    "Authorization: Digest username=\"alice_private@ims.example.com\", realm=\"ims.example.com\", uri=\"sip:ims.example.com\", nonce=\"\", response=\"\", integrity-protected=auth-done"
            ).replacingOccurrences(of: "CSeq: 1", with: "CSeq: 2")
            try await c.sendText(forged)
            #expect(await c.nextSIP()?.statusCode == 401)
            // Garbage gets no crash: an unanswerable message is dropped, the flow stays usable.
            try await c.sendText("garbage\r\n\r\n")
            try await c.sendText(register.replacingOccurrences(of: "CSeq: 1", with: "CSeq: 3"))
            #expect(await c.nextSIP()?.statusCode == 200)
            await c.close()
        }
    }

    /// RFC 6455 §5.4: a SIP message may arrive in fragments, each with its own mask.
    @Test func aFragmentedRegisterIsReassembled() async throws {
        try await EdgeHarness.with { h async throws in
            let c = try await h.client()
            #expect(try await c.handshake(origin: EdgeHarness.origin, protocols: "sip") == 101)
            let register = Array(
                SpecMessages.register92.replacingOccurrences(of: SpecMessages.token, with: try liveToken(h.waf)).utf8)
            let cuts = [0, 13, 700, register.count]
            for i in 0..<3 {
                let piece = String(decoding: register[cuts[i]..<cuts[i + 1]], as: UTF8.self)
                try await c.sendText(
                    piece, opcode: i == 0 ? 0x1 : 0x0, fin: i == 2,
                    mask: [UInt8(i * 40 + 1), 0xA5, 0x5A, UInt8(200 - i)])
            }
            #expect(await c.nextSIP()?.statusCode == 200)
            // A continuation with no message begun is ignored; the flow stays usable.
            try await c.sendText("stray", opcode: 0x0, fin: true)
            try await c.sendText(
                String(decoding: register, as: UTF8.self).replacingOccurrences(of: "CSeq: 1", with: "CSeq: 2"))
            #expect(await c.nextSIP()?.statusCode == 200)
            await c.close()
        }
    }

    @Test func digestRegistrationOverWSS() async throws {
        try await EdgeHarness.with { h async throws in
            let c = try await h.client()
            #expect(try await c.handshake(origin: EdgeHarness.origin, protocols: "sip") == 101)
            let first = SpecMessages.register92.replacingOccurrences(
                of: "Authorization: Bearer \(SpecMessages.token)",
                with:
                    "Authorization: Digest username=\"alice_private@ims.example.com\", realm=\"ims.example.com\", uri=\"sip:ims.example.com\", nonce=\"\", response=\"\""
            )
            try await c.sendText(first)
            let challengeResponse = try #require(await c.nextSIP())
            #expect(challengeResponse.statusCode == 401)
            let challenge = try #require(try challengeResponse.headers.challenges().first { $0.algorithm == "MD5" })
            #expect(challenge.ik == nil && challenge.ck == nil)
            let nonce = try #require(challenge.nonce)
            let ha1 = DigestAlgorithm.md5.ha1(
                username: "alice_private@ims.example.com", realm: "ims.example.com",
                password: Array("alice-secret".utf8))
            let response = DigestAlgorithm.md5.response(
                ha1: ha1, nonce: nonce, nc: "00000001", cnonce: "0a4f113b", qop: "auth", method: "REGISTER",
                uri: "sip:ims.example.com")
            let second = SpecMessages.register92.replacingOccurrences(
                of: "Authorization: Bearer \(SpecMessages.token)",
                with:
                    "Authorization: Digest username=\"alice_private@ims.example.com\", realm=\"ims.example.com\", uri=\"sip:ims.example.com\", nonce=\"\(nonce)\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"0a4f113b\", response=\"\(response)\""
            ).replacingOccurrences(of: "CSeq: 1", with: "CSeq: 2")
            try await c.sendText(second)
            #expect(await c.nextSIP()?.statusCode == 200)
            await c.close()
        }
    }
}

extension EdgeProxyTests {
    /// IMS AKA over WSS with the TS 35.208 test set 1 keys (AKAv1-MD5, lab profile per
    /// spec.md WIC-7): 401 without ik/ck at the WIC, then RES from Milenage → 200.
    @Test func akaRegistrationOverWSS() async throws {
        try await EdgeHarness.with { h async throws in
            let k = bytes(hex: "465b5ce8b199b49faa5f0a2ee238a6bc") ?? []
            let opc = bytes(hex: "cd63cb71954a9f4e48a5994e37a02baf") ?? []
            let impi = "aka_private@ims.example.com"
            try await h.storage.put(
                SubscriberRecord(
                    impi: impi, realm: "ims.example.com",
                    publicIdentities: [PublicIdentity(uri: "sip:aka@ims.example.com")],
                    allowedSchemes: [.aka], akaK: k, akaOPc: opc, akaAMF: [0x80, 0x00], sqn: 0x20))
            let c = try await h.client()
            #expect(try await c.handshake(origin: EdgeHarness.origin, protocols: "sip") == 101)
            func register(cseq: Int, authorization: String) -> String {
                SpecMessages.register92.replacingOccurrences(of: "alice@ims.example.com", with: "aka@ims.example.com")
                    .replacingOccurrences(
                        of: "Authorization: Bearer \(SpecMessages.token)", with: "Authorization: " + authorization
                    ).replacingOccurrences(of: "CSeq: 1", with: "CSeq: \(cseq)")
            }
            try await c.sendText(
                register(
                    cseq: 1,
                    authorization:
                        "Digest username=\"\(impi)\", realm=\"ims.example.com\", uri=\"sip:ims.example.com\", nonce=\"\", response=\"\""
                ))
            let challengeResponse = try #require(await c.nextSIP())
            #expect(challengeResponse.statusCode == 401)
            let challenge = try #require(try challengeResponse.headers.challenges().first)
            #expect(challenge.algorithm == "AKAv1-MD5")
            // TS 24.229 5.2.2: the keys never reach the WIC.
            #expect(challenge.ik == nil && challenge.ck == nil)
            let nonce = try #require(challenge.nonce)
            let (rand, autn) = try #require(IMSAKA.split(nonce: nonce))
            let m = try Milenage(k: k, opc: opc)
            let v = try m.f2345(rand: rand)
            let sqn = zip(autn[0..<6], v.ak).map { $0 ^ $1 }
            #expect(try m.f1(rand: rand, sqn: sqn, amf: Array(autn[6..<8])).macA == Array(autn[8..<16]))
            let ha1 = DigestAlgorithm.akav1MD5.ha1(username: impi, realm: "ims.example.com", password: v.res)
            let response = DigestAlgorithm.akav1MD5.response(
                ha1: ha1, nonce: nonce, nc: "00000001", cnonce: "c1", qop: "auth", method: "REGISTER",
                uri: "sip:ims.example.com")
            try await c.sendText(
                register(
                    cseq: 2,
                    authorization:
                        "Digest username=\"\(impi)\", realm=\"ims.example.com\", uri=\"sip:ims.example.com\", nonce=\"\(nonce)\", algorithm=AKAv1-MD5, qop=auth, nc=00000001, cnonce=\"c1\", response=\"\(response)\""
                ))
            #expect(await c.nextSIP()?.statusCode == 200)
            #expect(try await h.storage.bindings(aor: "sip:aka@ims.example.com", now: 0).first?.scheme == .aka)
            await c.close()
        }
    }
}

@Suite(.serialized) struct TerminatingTests {
    @Test func aNotifyFromTheSCSCFReachesTheWICThroughItsFlow() async throws {
        try await EdgeHarness.with { h async throws in
            let c = try await h.client()
            #expect(try await c.handshake(origin: EdgeHarness.origin, protocols: "sip") == 101)
            let register = SpecMessages.register92.replacingOccurrences(
                of: SpecMessages.token, with: try liveToken(h.waf))
            // Before registering, the flow may send nothing else (EPC-34).
            let early = SpecMessages.crlf(
                """
                SUBSCRIBE sip:alice@ims.example.com SIP/2.0
                Via: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bKsub0
                Max-Forwards: 70
                From: <sip:alice@ims.example.com>;tag=s1
                To: <sip:alice@ims.example.com>
                Call-ID: sub-\(UUID().uuidString)
                CSeq: 1 SUBSCRIBE
                Contact: <sip:g8z4h2kq@df7jal23ls0d.invalid;transport=ws>
                Event: reg
                Accept: application/reginfo+xml
                Expires: 600
                Content-Length: 0


                """)
            try await c.sendText(early)
            #expect(await c.nextSIP()?.statusCode == 403)
            try await c.sendText(register)
            #expect(await c.nextSIP()?.statusCode == 200)
            try await c.sendText(early.replacingOccurrences(of: "z9hG4bKsub0", with: "z9hG4bKsub1"))
            var sawOK = false
            var notify: SIPRequest?
            for _ in 0..<2 {
                guard let (_, payload) = await c.nextFrame() else { break }
                switch try? SIPParser().parse(payload) {
                case .response(let r)?: sawOK = r.statusCode == 200
                case .request(let r)?:
                    notify = r
                    // The WIC answers its NOTIFY over the same flow.
                    try await c.sendText(SIPResponse(replyingTo: r, statusCode: 200).description)
                default: break
                }
            }
            #expect(sawOK)
            let received = try #require(notify)
            #expect(received.method == .notify)
            #expect(String(decoding: received.body, as: UTF8.self).contains("sip:g8z4h2kq@df7jal23ls0d.invalid"))
            #expect(!received.headers.contains(.route))  // our Route entry was consumed
            // The S-CSCF got the 200: its subscription is still there.
            try await Task.sleep(for: .milliseconds(200))
            #expect(h.registrar.regEventSubscriptionCount == 1)
            // The WIC's flow dies; the next change is NOTIFYd into a gone flow: 430, and the
            // S-CSCF drops the subscription.
            await c.close()
            try await Task.sleep(for: .milliseconds(100))
            let other = try await h.client()
            #expect(try await other.handshake(origin: EdgeHarness.origin, protocols: "sip") == 101)
            try await other.sendText(
                register.replacingOccurrences(of: "urn:uuid:f81d4fae", with: "urn:uuid:0000aaaa")
                    .replacingOccurrences(of: "g8z4h2kq@", with: "second@").replacingOccurrences(
                        of: "Call-ID: 9fxced76sl", with: "Call-ID: other-1"))
            #expect(await other.nextSIP()?.statusCode == 200)
            var dropped = false
            for _ in 0..<100 {
                if h.registrar.regEventSubscriptionCount == 0 {
                    dropped = true
                    break
                }
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(dropped)
            await other.close()
        }
    }
}

extension TerminatingTests {
    /// With TLS to the S-CSCF, requests towards the flows must come over TLS from a peer
    /// whose verified certificate names one of our S-CSCFs: plain TCP, TLS without a
    /// certificate or with another name, is refused before the flow is even looked up.
    @Test func withTLSUpstreamOnlyCertifiedPeersReachTheFlows() async throws {
        try await EdgeHarness.with(terminatingPeers: .certificateNames(["scscf.test"])) { h async throws in
            let notify = try #require(
                flowNotify(via: "TLS 127.0.0.1:5061", edgePort: h.toSCSCF.address(.tcp)?.port ?? 0))
            let address = try SocketAddress(ipAddress: "127.0.0.1", port: 5061)
            func peer(_ transport: SIPTransportProtocol, _ names: [String]) -> SIPPeer {
                SIPPeer(
                    transport: transport, remoteAddress: address, localAddress: nil, connection: NetworkConnection(),
                    certificateNames: names)
            }
            #expect(await h.edge.terminating(notify, from: peer(.tcp, []))?.statusCode == 403)
            #expect(await h.edge.terminating(notify, from: peer(.tls, []))?.statusCode == 403)
            #expect(await h.edge.terminating(notify, from: peer(.tls, ["rogue.test"]))?.statusCode == 403)
            // Past the check: an unknown flow is 430 (RFC 5626 §5.3).
            #expect(await h.edge.terminating(notify, from: peer(.tls, ["scscf.test"]))?.statusCode == 430)
        }
    }

    /// Issue 26 item 8: with the S-CSCF in process, nothing from outside reaches a flow, not
    /// even from loopback; only an in-process caller does.
    @Test func item08WithTheSCSCFInProcessNoNetworkPeerReachesTheFlows() async throws {
        try await EdgeHarness.with(terminatingPeers: .inProcessOnly) { h async throws in
            let notify = try #require(
                flowNotify(via: "TCP 127.0.0.1:5060", edgePort: h.toSCSCF.address(.tcp)?.port ?? 0))
            let loopback = try SocketAddress(ipAddress: "127.0.0.1", port: 5060)
            for transport in [SIPTransportProtocol.udp, .tcp, .tls] {
                let peer = SIPPeer(
                    transport: transport, remoteAddress: loopback, localAddress: nil, connection: NetworkConnection(),
                    certificateNames: transport == .tls ? ["localhost", "127.0.0.1"] : [])
                #expect(await h.edge.terminating(notify, from: peer)?.statusCode == 403, "\(transport)")
            }
            #expect(await h.edge.terminating(notify, from: .inProcess())?.statusCode == 430)
            // A Route that does not name this eP-CSCF names no flow of it.
            let elsewhere = try #require(flowNotify(via: "TCP 127.0.0.1:5060", edgePort: 1))
            #expect(await h.edge.terminating(elsewhere, from: .inProcess())?.statusCode == 404)
        }
    }
}

/// A reg-event NOTIFY routed to an unknown flow of the edge at `edgePort`, as an S-CSCF
/// would send it.
func flowNotify(via: String, edgePort: Int) -> SIPRequest? {
    let text = SpecMessages.crlf(
        """
        NOTIFY sip:g8z4h2kq@df7jal23ls0d.invalid;transport=ws SIP/2.0
        Via: SIP/2.0/\(via);branch=z9hG4bKterm\(randomToken(length: 6))
        Route: <sip:fl-unknown@127.0.0.1:\(edgePort);lr>
        Max-Forwards: 70
        From: <sip:scscf@127.0.0.1>;tag=n1
        To: <sip:alice@ims.example.com>
        Call-ID: term-\(randomToken(length: 6))
        CSeq: 1 NOTIFY
        Event: reg
        Content-Length: 0


        """)
    guard case .request(let notify)? = try? SIPParser().parse(text) else { return nil }
    return notify
}

/// A connection that stands for a socket (not in process), for peers made up in tests.
struct NetworkConnection: SIPConnection {
    var transport: SIPTransportProtocol { .tcp }
    var isActive: Bool { true }
    func write(_ message: SIPMessage, to remote: SocketAddress?) {}
    func writeRaw(_ bytes: [UInt8]) {}
    func close() {}
}

@Suite(.serialized) struct FlowCloseTests {
    func registeredClient(_ h: EdgeHarness, callID: String = "9fxced76sl") async throws -> RawWSSClient {
        let c = try await h.client()
        #expect(try await c.handshake(origin: EdgeHarness.origin, protocols: "sip") == 101)
        let register = SpecMessages.register92.replacingOccurrences(of: SpecMessages.token, with: try liveToken(h.waf))
            .replacingOccurrences(of: "Call-ID: 9fxced76sl", with: "Call-ID: \(callID)")
        try await c.sendText(register)
        #expect(await c.nextSIP()?.statusCode == 200)
        return c
    }

    func bindingCount(_ h: EdgeHarness) async throws -> Int {
        try await h.storage.bindings(aor: "sip:alice@ims.example.com", now: 0).count
    }

    /// Issue 26 item 13: one flow registering instance after instance leaves one entry in
    /// the instance table, and none once it has gone (here after a de-registration).
    @Test func item13TheInstanceTableHoldsOneEntryPerFlow() async throws {
        try await EdgeHarness.with(grace: .milliseconds(100)) { h async throws in
            let c = try await h.client()
            #expect(try await c.handshake(origin: EdgeHarness.origin, protocols: "sip") == 101)
            let token = try liveToken(h.waf)
            for i in 1...6 {
                let register = SpecMessages.register92.replacingOccurrences(of: SpecMessages.token, with: token)
                    .replacingOccurrences(
                        of: "f81d4fae-7dec-11d0-a765-00a0c91e6bf6", with: "f81d4fae-7dec-11d0-a765-0000000000\(i)0"
                    )
                    .replacingOccurrences(of: "CSeq: 1 REGISTER", with: "CSeq: \(i) REGISTER")
                    .replacingOccurrences(of: "Call-ID: 9fxced76sl", with: "Call-ID: inst-\(i)")
                try await c.sendText(register)
                #expect(await c.nextSIP()?.statusCode == 200)
            }
            #expect(h.edge.rememberedInstances == 1)
            let removal = SpecMessages.register92.replacingOccurrences(of: SpecMessages.token, with: token)
                .replacingOccurrences(
                    of: "f81d4fae-7dec-11d0-a765-00a0c91e6bf6", with: "f81d4fae-7dec-11d0-a765-000000000060"
                )
                .replacingOccurrences(of: "CSeq: 1 REGISTER", with: "CSeq: 7 REGISTER")
                .replacingOccurrences(of: "Call-ID: 9fxced76sl", with: "Call-ID: inst-6")
                .replacingOccurrences(of: "Expires: 600000", with: "Expires: 0")
            try await c.sendText(removal)
            #expect(await c.nextSIP()?.statusCode == 200)
            #expect(h.edge.rememberedInstances == 0)
            await c.close()
        }
    }

    @Test func aClosedFlowIsDeRegisteredAfterTheGracePeriod() async throws {
        try await EdgeHarness.with(grace: .milliseconds(300)) { h async throws in
            let c = try await registeredClient(h)
            #expect(try await bindingCount(h) == 1)
            await c.close()  // the tab is closed: no de-registration from the WIC
            try await Task.sleep(for: .milliseconds(100))
            #expect(try await bindingCount(h) == 1)  // still within the grace period
            var gone = false
            for _ in 0..<100 {
                if try await bindingCount(h) == 0 {
                    gone = true
                    break
                }
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(gone)
        }
    }

    /// The flow keeps its first REGISTER and, over refreshes, only their CSeq: the
    /// de-registration after the flow dies must still come after the last refresh, or the
    /// S-CSCF takes it for an old request (500 Out of Order) and the binding stays.
    @Test func aClosedFlowIsDeRegisteredAfterRefreshes() async throws {
        try await EdgeHarness.with(grace: .milliseconds(300)) { h async throws in
            let c = try await registeredClient(h)
            let refresh = SpecMessages.register92.replacingOccurrences(
                of: SpecMessages.token, with: try liveToken(h.waf))
            for cseq in [7, 8] {
                try await c.sendText(refresh.replacingOccurrences(of: "CSeq: 1", with: "CSeq: \(cseq)"))
                #expect(await c.nextSIP()?.statusCode == 200)
            }
            #expect(try await bindingCount(h) == 1)
            await c.close()
            var gone = false
            for _ in 0..<100 {
                if try await bindingCount(h) == 0 {
                    gone = true
                    break
                }
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(gone)
        }
    }

    /// What a flow keeps of its REGISTER holds no credentials and is copied out of the
    /// received message; a refresh is told from a new registration by its fields.
    @Test func theKeptRegistrationHoldsNoCredentials() throws {
        let parser = SIPParser()
        guard case .request(let upstream) = try parser.parse(SpecMessages.register92) else {
            Issue.record("not a request")
            return
        }
        let kept = KeptRegistration(upstream)
        #expect(kept.impi == nil)  // a Bearer token names no IMPI in the header
        #expect(kept.bytes.capacity - kept.bytes.count < 32)  // no slack kept for a flow's life
        let request = try #require(kept.request())
        #expect(!request.headers.contains(.authorization) && !request.headers.contains(.via))
        let wire = String(decoding: kept.bytes, as: UTF8.self)
        #expect(!wire.contains(SpecMessages.token) && !wire.contains("Via:"))
        #expect(request.headers[.contact] == upstream.headers[.contact] && request.uri == upstream.uri)
        #expect(try request.headers.cseq.sequence == upstream.headers.cseq.sequence)
        // A refresh is known by Call-ID, To, Contact and Path; a CSeq or Expires changes nothing.
        var refresh = upstream
        refresh.headers[.cseq] = "99 REGISTER"
        refresh.headers[.expires] = "300"
        #expect(KeptRegistration.refreshKey(refresh) == kept.refreshKey)
        // Names are matched as names: the compact `i:` is the same Call-ID.
        guard
            case .request(let compact) = try parser.parse(
                SpecMessages.register92.replacingOccurrences(of: "Call-ID:", with: "i:"))
        else {
            Issue.record("not a request")
            return
        }
        #expect(KeptRegistration.refreshKey(compact) == kept.refreshKey)
        var moved = upstream
        moved.headers[.contact] = "<sip:elsewhere.invalid;transport=ws>"
        #expect(KeptRegistration.refreshKey(moved) != kept.refreshKey)
        // Values split differently between fields do not hash alike.
        var pathA = upstream
        pathA.headers.append(.path, "<sip:a@x;lr>, <sip:b@x;lr>")
        var pathB = upstream
        pathB.headers.append(.path, "<sip:a@x;lr>")
        pathB.headers.append(.path, " <sip:b@x;lr>")
        #expect(KeptRegistration.refreshKey(pathA) != KeptRegistration.refreshKey(pathB))
        var digest = upstream
        digest.headers[.authorization] =
            "Digest username=\"alice_private@ims.example.com\", realm=\"ims.example.com\", uri=\"sip:ims.example.com\", nonce=\"\", response=\"\""
        #expect(KeptRegistration(digest).impi == "alice_private@ims.example.com")
        // As the eP-CSCF forwards it: its own Via on top, Path and P-Charging-Vector added.
        var forwarded = upstream
        forwarded.headers.prepend(.via, "SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKpcscf")
        forwarded.headers.prepend(.path, "<sip:flow@127.0.0.1;lr;ob>")
        forwarded.headers.append(.pChargingVector, "icid-value=\"abc\"")
        let keptForwarded = try #require(KeptRegistration(forwarded).request())
        #expect(!keptForwarded.headers.contains(.via))
        #expect(keptForwarded.headers[.path] == "<sip:flow@127.0.0.1;lr;ob>")
    }

    @Test func reRegisteringOnANewFlowKeepsTheBinding() async throws {
        try await EdgeHarness.with(grace: .milliseconds(300)) { h async throws in
            let first = try await registeredClient(h)
            await first.close()
            // Page reload: same +sip.instance, new WebSocket, within the grace period.
            let second = try await registeredClient(h, callID: "reloaded-1")
            try await Task.sleep(for: .milliseconds(800))
            #expect(try await bindingCount(h) == 1)
            await second.close()
        }
    }
}
