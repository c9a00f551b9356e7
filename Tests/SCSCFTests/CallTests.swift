import Foundation
import HSS
import SIPAuth
import SIPCore
import SIPTransport
import Storage
import Synchronization
import Testing
import Utilities
import WebIMSTesting

@testable import SCSCF

/// A callee: a UDP endpoint that rings, then answers with `final` (issue 28, the S-CSCF's
/// half of calls between phones).
struct Callee {
    let endpoint: SIPEndpoint
    let seen = Seen<SIPRequest>()

    /// `final` nil: it rings until cancelled, then answers 487 (RFC 3261 §9.2).
    init(final: Int? = 200) async throws {
        var config = SIPEndpointConfiguration()
        config.udpPort = 0
        let seen = self.seen
        let contactPort = Mutex(0)
        endpoint = try SIPEndpoint(configuration: config) { request, transaction in
            seen.append(request)
            guard request.method == .invite else { return }
            transaction.respond(SIPResponse(replyingTo: request, statusCode: 180, toTag: "callee"))
            guard let final else {
                transaction.whenCancelled {
                    transaction.respond(SIPResponse(replyingTo: request, statusCode: 487, toTag: "callee"))
                }
                return
            }
            var answer = SIPResponse(replyingTo: request, statusCode: final, toTag: "callee")
            if final == 200 {
                answer.headers.append(.contact, "<sip:carol@127.0.0.1:\(contactPort.withLock { $0 })>")
            }
            transaction.respond(answer)
        }
        try await endpoint.start()
        let bound = endpoint.address(.udp)?.port ?? 0
        contactPort.withLock { $0 = bound }
    }

    var port: Int { endpoint.address(.udp)?.port ?? 0 }
}

/// A binding as the registrar stores it, valid for an hour from the harness clock's start.
func binding(_ aor: String, impi: String, contact: String) -> Binding {
    Binding(
        aor: aor, contact: contact, contactHeader: "<\(contact)>", impi: impi, expiresAt: 1_893_453_000 + 3_600,
        callID: "c-\(aor)", cseq: 1, scheme: .digest)
}

let carolIMPI = "carol@ims.example.com"
let carolIMPU = "sip:carol@ims.example.com"

/// Carol as a subscriber, registered at `callee`.
func addCarol(_ h: Harness, at callee: Callee?) async throws {
    let ha1 = digestHA1(impi: carolIMPI, realm: home, password: "carol-secret")
    try await h.storage.put(
        SubscriberRecord(
            impi: carolIMPI, realm: home, publicIdentities: [PublicIdentity(uri: carolIMPU)], allowedSchemes: [.digest],
            ha1MD5: ha1.md5, ha1SHA256: ha1.sha256))
    if let callee {
        try await h.storage.apply(
            upserts: [binding(carolIMPU, impi: carolIMPI, contact: "sip:carol@127.0.0.1:\(callee.port)")],
            removals: [])
    }
}

func invite(to target: String, from caller: String = aliceIMPU, proxyAuthorization: String? = nil) throws
    -> SIPRequest
{
    var text = "INVITE \(target) SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:1;branch=z9hG4bKx\r\nMax-Forwards: 70\r\n"
    text += "From: <\(caller)>;tag=caller\r\nTo: <\(target)>\r\nCall-ID: call-\(randomToken())\r\nCSeq: 1 INVITE\r\n"
    text += "Contact: <sip:alice@127.0.0.2:5060>\r\n"
    if let proxyAuthorization { text += "Proxy-Authorization: \(proxyAuthorization)\r\n" }
    text += "Content-Length: 0\r\n\r\n"
    guard case .request(var request) = try SIPParser().parse(Array(text.utf8)) else { throw CancellationError() }
    try request.headers.removeTopVia()  // the endpoint puts its own
    return request
}

/// An INVITE as the trusted node (the eP-CSCF's place) sends it: asserting alice.
func asserted(_ target: String) throws -> SIPRequest {
    var request = try invite(to: target)
    request.headers.append(.pAssertedIdentity, "<\(aliceIMPU)>")
    return request
}

/// The final response and every status the caller saw, for one INVITE.
func call(_ h: Harness, _ request: SIPRequest) async -> (SIPResponse?, [Int]) {
    let seen = Seen<SIPResponse>()
    await h.client.start(request, to: h.destination()) { seen.append($0) }
    let final = await seen.first(timeout: .seconds(10)) { $0.statusCode >= 200 }
    return (final, seen.all.map(\.statusCode))
}

@Suite(.serialized) struct CallTests {
    /// RFC 3261 §22.3, TS 24.229 5.4.3.2: a phone's INVITE is challenged with 407; answered
    /// with its Digest credentials it reaches the callee, ringing then answered, asserted as
    /// the caller and without the credentials.
    @Test func aPhonesInviteIsChallengedThenReachesTheCallee() async throws {
        let callee = try await Callee()
        try await Harness.with(clientHost: "127.0.0.2") { h async throws in
            try await addCarol(h, at: callee)
            try await h.storage.apply(
                upserts: [binding(aliceIMPU, impi: aliceIMPI, contact: "sip:alice@127.0.0.2:5060")], removals: [])
            let (challenged, _) = await call(h, try invite(to: carolIMPU))
            #expect(challenged?.statusCode == 407)
            let challenge = try #require(try challenged?.headers.authorizations(.proxyAuthenticate).first)
            let nonce = try #require(challenge.nonce)
            let ha1 = DigestAlgorithm.md5.ha1(username: aliceIMPI, realm: home, password: Array("alice-secret".utf8))
            let answer = DigestAlgorithm.md5.response(
                ha1: ha1, nonce: nonce, nc: "00000001", cnonce: "c1", qop: "auth", method: "INVITE", uri: carolIMPU)
            let credentials =
                "Digest username=\"\(aliceIMPI)\", realm=\"\(home)\", uri=\"\(carolIMPU)\", nonce=\"\(nonce)\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"c1\", response=\"\(answer)\""
            let (final, statuses) = await call(h, try invite(to: carolIMPU, proxyAuthorization: credentials))
            #expect(final?.statusCode == 200)
            #expect(statuses.contains(180))
            let atCallee = try #require(await callee.seen.first { $0.method == .invite })
            #expect(atCallee.headers.values(.pAssertedIdentity) == ["<\(aliceIMPU)>"])
            #expect(!atCallee.headers.contains(.proxyAuthorization))
            #expect(atCallee.uri.description == "sip:carol@127.0.0.1:\(callee.port)")
            // A wrong password is refused, not forwarded.
            let wrong = credentials.replacingOccurrences(of: answer, with: String(repeating: "0", count: 32))
                .replacingOccurrences(of: "nc=00000001", with: "nc=00000002")
            let (refused, _) = await call(h, try invite(to: carolIMPU, proxyAuthorization: wrong))
            #expect(refused?.statusCode == 403)
        }
        await callee.endpoint.shutdown()
    }

    /// TS 24.229 5.4.3.3: 480 for a subscriber with no contact, 404 for nobody, 404 outside
    /// the home domain; a busy callee's 486 comes back.
    @Test func unreachableUnknownAndBusyCallees() async throws {
        let busy = try await Callee(final: 486)
        try await Harness.with { h async throws in
            // From the trusted node (the eP-CSCF's place): the asserted identity must be registered.
            try await h.storage.apply(
                upserts: [binding(aliceIMPU, impi: aliceIMPI, contact: "sip:alice@127.0.0.1:5060")], removals: [])
            try await addCarol(h, at: nil)
            #expect(await call(h, try asserted(carolIMPU)).0?.statusCode == 480)
            #expect(await call(h, try asserted("sip:nobody@ims.example.com")).0?.statusCode == 404)
            #expect(await call(h, try asserted("sip:bob@elsewhere.example")).0?.statusCode == 404)
            // Without `orig` a trusted node's INVITE is terminating: routed whoever calls
            // (480: carol has no contact); with `orig` it must name its caller (403).
            #expect(await call(h, try invite(to: carolIMPU)).0?.statusCode == 480)
            var originating = try invite(to: carolIMPU)
            originating.headers.prepend(.route, "<sip:orig@127.0.0.1:\(h.destination().port);lr>")
            #expect(await call(h, originating).0?.statusCode == 403)
            try await h.storage.apply(
                upserts: [binding(carolIMPU, impi: carolIMPI, contact: "sip:carol@127.0.0.1:\(busy.port)")],
                removals: [])
            let (final, statuses) = await call(h, try asserted(carolIMPU))
            #expect(final?.statusCode == 486)
            #expect(statuses.contains(180))
        }
        await busy.endpoint.shutdown()
    }

    /// A CANCEL from the caller reaches the ringing callee, whose 487 comes back.
    @Test func aCancelledCallEndsIn487AtBothEnds() async throws {
        let ringing = try await Callee(final: nil)
        try await Harness.with { h async throws in
            try await addCarol(h, at: ringing)
            try await h.storage.apply(
                upserts: [binding(aliceIMPU, impi: aliceIMPI, contact: "sip:alice@127.0.0.1:5060")], removals: [])
            var request = try invite(to: carolIMPU)
            request.headers.append(.pAssertedIdentity, "<\(aliceIMPU)>")
            let seen = Seen<SIPResponse>()
            let transaction = await h.client.start(request, to: h.destination()) { seen.append($0) }
            #expect(await seen.first { $0.statusCode == 180 } != nil)
            transaction.cancel()
            // The callee's own 487 (its To tag): the CANCEL reached it, not just the S-CSCF.
            let final = await seen.first { $0.statusCode >= 200 }
            #expect(final?.statusCode == 487)
            #expect(final?.headers[.to]?.contains("tag=callee") == true)
        }
        await ringing.endpoint.shutdown()
    }

    /// `--peer`: a target in another domain goes to that domain's peer, a tel: number no
    /// subscriber has to the default one (a trunk); a domain with no peer stays 404.
    @Test func otherNetworksGoToTheirPeers() async throws {
        let network = try await Callee()
        let trunk = try await Callee()
        try await Harness.with(configure: { config in
            config.peers["other.example"] = SIPURI(host: "127.0.0.1", port: UInt16(network.port))
            config.peers[""] = SIPURI(host: "127.0.0.1", port: UInt16(trunk.port))
        }) { h async throws in
            try await h.storage.apply(
                upserts: [binding(aliceIMPU, impi: aliceIMPI, contact: "sip:alice@127.0.0.1:5060")], removals: [])
            #expect(await call(h, try asserted("sip:bob@other.example")).0?.statusCode == 200)
            let there = try #require(await network.seen.first { $0.method == .invite })
            #expect(there.uri.description == "sip:bob@other.example")
            #expect(await call(h, try asserted("tel:+15559999")).0?.statusCode == 200)
            #expect(await trunk.seen.first { $0.uri.description == "tel:+15559999" } != nil)
            #expect(await call(h, try asserted("sip:bob@third.example")).0?.statusCode == 200)
            #expect(await trunk.seen.first { $0.uri.description == "sip:bob@third.example" } != nil)
        }
        await network.endpoint.shutdown()
        await trunk.endpoint.shutdown()
    }

    /// RFC 5627: a GRUU names one instance of the identity — only its contact rings, where
    /// the AOR forks to both.
    @Test func aGRUUReachesOneInstance() async throws {
        let laptop = try await Callee()
        let phone = try await Callee()
        try await Harness.with { h async throws in
            try await addCarol(h, at: nil)
            try await h.storage.apply(
                upserts: [binding(aliceIMPU, impi: aliceIMPI, contact: "sip:alice@127.0.0.1:5060")], removals: [])
            var bindings: [Binding] = []
            for (callee, instance) in [(laptop, "urn:uuid:laptop"), (phone, "urn:uuid:phone")] {
                let contact = "sip:carol@127.0.0.1:\(callee.port)"
                bindings.append(
                    Binding(
                        aor: carolIMPU, contact: contact, contactHeader: "<\(contact)>", instance: instance, regID: 1,
                        impi: carolIMPI, expiresAt: 1_893_453_000 + 3_600, callID: "c-\(instance)", cseq: 1,
                        scheme: .digest))
            }
            try await h.storage.apply(upserts: bindings, removals: [])
            var request = try invite(to: carolIMPU + ";gr=urn:uuid:phone")
            request.headers.append(.pAssertedIdentity, "<\(aliceIMPU)>")
            #expect(await call(h, request).0?.statusCode == 200)
            #expect(await phone.seen.first { $0.method == .invite } != nil)
            try await Task.sleep(for: .milliseconds(200))
            #expect(laptop.seen.all.isEmpty)
        }
        await laptop.endpoint.shutdown()
        await phone.endpoint.shutdown()
    }
}
