import Foundation
import SIPCore
import SIPExamples
import SIPTransport
import Testing
import Utilities
import WebIMSTesting

@testable import EPCSCF

/// Issue 28, the eP-CSCF's half of calls: what it adds and removes on the way up from a
/// flow and on the way down to one. A WIC calls its own identity, so the one flow sees both
/// sides: the INVITE goes eP-CSCF → S-CSCF → eP-CSCF and comes down the same WebSocket.
@Suite(.serialized) struct EdgeSessionTests {
    func registered(_ h: EdgeHarness) async throws -> RawWSSClient {
        let c = try await h.client()
        #expect(try await c.handshake(origin: EdgeHarness.origin, protocols: "sip") == 101)
        try await c.sendText(
            SpecMessages.register92.replacingOccurrences(of: SpecMessages.token, with: try liveToken(h.waf)))
        #expect(await c.nextSIP()?.statusCode == 200)
        return c
    }

    func invite(_ extra: String, branch: String) -> String {
        "INVITE sip:alice@ims.example.com SIP/2.0\r\nVia: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bK\(branch)\r\n"
            + "Max-Forwards: 70\r\nRoute: <sip:somewhere.example;lr>\r\n"
            + "From: <sip:alice@ims.example.com>;tag=a1\r\nTo: <sip:alice@ims.example.com>\r\n"
            + "Call-ID: call-\(branch)\r\nCSeq: 1 INVITE\r\nContact: <sip:g8z4h2kq@df7jal23ls0d.invalid;transport=ws;ob>\r\n"
            + extra + "Content-Length: 0\r\n\r\n"
    }

    /// Sends `text` and returns the INVITE that comes down the flow (answered 486, so the
    /// caller's side ends) and the caller's final answer.
    func roundTrip(_ c: RawWSSClient, _ text: String) async throws -> (SIPRequest, SIPResponse) {
        try await c.sendText(text)
        var down: SIPRequest?
        var final: SIPResponse?
        while down == nil || final == nil {
            guard let (_, payload) = await c.nextFrame() else { break }
            switch try SIPParser().parse(payload) {
            case .request(let request) where request.method == .invite:
                down = request
                try await c.sendText(
                    SIPResponse(replyingTo: request, statusCode: 486, toTag: "busy").serialized().asString)
            case .response(let response) where response.statusCode >= 200:
                final = response
            default: continue
            }
        }
        return (try #require(down), try #require(final))
    }

    /// TS 24.229 5.2.6.3.3: a P-Preferred-Identity the flow did not register is not
    /// asserted (the default IMPU is), the WIC's own P-Asserted-Identity and token go, its Route is
    /// replaced by the Service-Route, a fresh icid is charged, and the Record-Route names the
    /// flow on both sides.
    @Test func whatTheEdgeAssertsAndRoutes() async throws {
        try await EdgeHarness.with { h async throws in
            let c = try await registered(h)
            let (down, final) = try await roundTrip(
                c,
                invite(
                    "P-Preferred-Identity: <sip:bob@ims.example.com>\r\nP-Asserted-Identity: <sip:mallory@ims.example.com>\r\n"
                        + "Authorization: Bearer \(try liveToken(h.waf))\r\n",
                    branch: "i1"))
            #expect(final.statusCode == 486)
            #expect(down.headers.values(.pAssertedIdentity) == ["<sip:alice@ims.example.com>"])
            #expect(!down.headers.contains(.pPreferredIdentity))
            // TS 24.371 7.2.1: the token the WIC sends with each request stops at the edge.
            #expect(!down.headers.contains(.authorization))
            #expect(down.headers.values(.pCalledPartyID) == ["<sip:alice@ims.example.com>"])
            #expect(down.headers[.pChargingVector]?.contains("icid-value=\"ep-") == true)
            #expect(!down.headers.contains(.route))
            let recordRoutes = try down.headers.recordRoute
            #expect(recordRoutes.first?.uri.sipURI?.user?.hasPrefix("fl-") == true)  // terminating side
            #expect(recordRoutes.last?.uri.sipURI?.user?.hasPrefix("fl-") == true)  // originating side
            #expect(recordRoutes.count >= 3)  // and the S-CSCF between them
            await c.close()
        }
    }

    /// RFC 3325: with Privacy: id the asserted identity does not reach the called WIC; a
    /// request from a flow that never registered is refused before it goes anywhere.
    @Test func privacyAndUnregisteredFlows() async throws {
        try await EdgeHarness.with { h async throws in
            let stranger = try await h.client()
            #expect(try await stranger.handshake(origin: EdgeHarness.origin, protocols: "sip") == 101)
            try await stranger.sendText(invite("", branch: "s1"))
            let refused = await stranger.nextSIP()
            #expect(refused?.statusCode == 403)
            let c = try await registered(h)
            let (down, _) = try await roundTrip(c, invite("Privacy: id\r\n", branch: "p1"))
            #expect(!down.headers.contains(.pAssertedIdentity))
            #expect(EdgeProxy.asksIDPrivacy("header; id"))
            #expect(!EdgeProxy.asksIDPrivacy("none"))
            await c.close()
            await stranger.close()
        }
    }
}

extension [UInt8] {
    fileprivate var asString: String { String(decoding: self, as: UTF8.self) }
}
