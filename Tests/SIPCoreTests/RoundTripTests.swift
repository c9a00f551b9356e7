import Foundation
import Testing

@testable import SIPCore

/// Property: for generated messages, parse(serialize(m)) == m, and parse → serialize →
/// parse gives the same message for texts written in other (non-canonical) spellings.
@Suite struct RoundTripTests {
    @Test func specMessagesRoundTrip() throws {
        for text in [Fixtures.register92, Fixtures.register94, Fixtures.ok95] {
            let first = try SIPParser().parse(text)
            let second = try SIPParser().parse(first.serialized())
            #expect(first == second)
            #expect(second.serialized() == first.serialized())
        }
    }

    @Test func generatedMessagesRoundTrip() throws {
        var rng = SplitMix64(seed: 7)
        for _ in 0..<1_000 {
            let message = MessageGenerator.message(&rng)
            let wire = message.serialized()
            let parsed: SIPMessage
            do {
                parsed = try SIPParser().parse(wire, framing: .stream)
            } catch {
                Issue.record("generated message did not parse: \(error)\n\(message)")
                return
            }
            #expect(parsed == message, "\(message)")
            // Every typed view of a generated message parses and writes back the same value.
            let h = parsed.headers
            for via in try h.vias { #expect(try SIPVia.parse(via.description) == via) }
            #expect(try SIPAddress.parse(h.from.description) == h.from)
            #expect(try SIPAddress.parse(h.to.description) == h.to)
            if case .contacts(let cs)? = try h.contact {
                for c in cs { #expect(try SIPAddress.parse(c.description) == c.address) }
            }
            for a in try h.authorizations() { #expect(try SIPAuthField.parse(a.description) == a) }
        }
    }
}

enum MessageGenerator {
    static func pick<T>(_ items: [T], _ rng: inout SplitMix64) -> T { items[Int(rng.next() % UInt64(items.count))] }
    static func token(_ rng: inout SplitMix64, _ n: Int = 8) -> String {
        let chars = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")
        return String((0..<(1 + Int(rng.next() % UInt64(n)))).map { _ in pick(chars, &rng) })
    }
    static func word(_ rng: inout SplitMix64) -> String {
        let chars = Array("abcdefghijklmnopqrstuvwxyz0123456789")
        return String((0..<(1 + Int(rng.next() % 10))).map { _ in pick(chars, &rng) })
    }
    static func host(_ rng: inout SplitMix64) -> String {
        switch rng.next() % 4 {
        case 0: return "\(rng.next() % 256).\(rng.next() % 256).\(rng.next() % 256).\(rng.next() % 256)"
        case 1: return "[2001:db8::\(rng.next() % 9999)]"
        case 2: return word(&rng) + ".invalid"
        default: return word(&rng) + "." + word(&rng) + ".example.com"
        }
    }
    static func sipURI(_ rng: inout SplitMix64, params: Bool) -> SIPURI {
        var u = SIPURI(isSecure: rng.next() % 5 == 0, host: host(&rng))
        if rng.next() % 3 != 0 { u.user = pick(["alice", "+15551234567", "a%20b", "x.y_z", "001010000000001"], &rng) }
        if rng.next() % 3 == 0 { u.port = UInt16(rng.next() % 65536) }
        if params {
            for _ in 0..<(rng.next() % 4) {
                u.parameters.elements.append(
                    pick(
                        [
                            SIPParameter("lr"), SIPParameter("ob"),
                            SIPParameter("transport", pick(["ws", "wss", "tcp", "udp", "tls"], &rng)),
                            SIPParameter(word(&rng), word(&rng)),
                        ], &rng))
            }
            if rng.next() % 8 == 0 { u.headers = [SIPParameter("subject", word(&rng))] }
        }
        return u
    }
    static func uri(_ rng: inout SplitMix64, params: Bool = true) -> AnyURI {
        switch rng.next() % 6 {
        case 0:
            return .tel(
                TelURI(
                    number: "+1555\(rng.next() % 100000)",
                    parameters: params && rng.next() % 2 == 0 ? [SIPParameter("ext", "1")] : []))
        default: return .sip(sipURI(&rng, params: params))
        }
    }
    static func address(_ rng: inout SplitMix64, tag: Bool) -> SIPAddress {
        var a = SIPAddress(uri: uri(&rng))
        switch rng.next() % 4 {
        case 0: a.displayName = quote(pick(["Alice", "Bob \"B\"", "Jürgen", "a, b", "x\\y"], &rng))
        case 1: a.displayName = pick(["Alice", "Bob Smith"], &rng)
        default: break
        }
        if tag { a.parameters.set("tag", token(&rng)) }
        if rng.next() % 3 == 0 {
            a.parameters.set(word(&rng), rng.next() % 2 == 0 ? nil : quote("<urn:uuid:\(word(&rng))>"))
        }
        return a
    }
    static func via(_ rng: inout SplitMix64) -> SIPVia {
        var v = SIPVia(
            transport: pick(["UDP", "TCP", "TLS", "WS", "WSS"], &rng), host: host(&rng),
            port: rng.next() % 2 == 0 ? UInt16(rng.next() % 65536) : nil, branch: SIPVia.magicCookie + token(&rng))
        switch rng.next() % 3 {
        case 0: v.rport = .requested
        case 1: v.rport = .value(UInt16(rng.next() % 65536))
        default: break
        }
        if rng.next() % 2 == 0 { v.received = pick(["198.51.100.23", "2001:db8::1"], &rng) }
        return v
    }
    static func auth(_ rng: inout SplitMix64) -> SIPAuthField {
        if rng.next() % 3 == 0 {
            return .bearer(token: word(&rng) + "." + word(&rng) + "-_~+/" + pick(["", "=", "=="], &rng))
        }
        var a = SIPAuthField.digest([])
        a.set("username", "alice_private@ims.example.com", quoted: true)
        a.set("realm", "ims.example.com", quoted: true)
        a.set("nonce", pick(["", "I1U8vpY3qJ0hiuZNrke/NVXzKLQ1d7m5Sp/6w1Tfr7M="], &rng), quoted: true)
        a.set("uri", "sip:ims.example.com", quoted: true)
        a.set("response", pick(["", "701d8b75d7b420c7a2646ea676424729"], &rng), quoted: true)
        if rng.next() % 2 == 0 {
            a.set("integrity-protected", pick(["auth-done", "tls-yes"], &rng), quoted: rng.next() % 2 == 0)
        }
        return a
    }
    static func message(_ rng: inout SplitMix64) -> SIPMessage {
        var h = SIPHeaderFields()
        for _ in 0..<(1 + rng.next() % 3) { h.append(.via, via(&rng).description) }
        h.append(.maxForwards, String(rng.next() % 71))
        h.append(.from, address(&rng, tag: true).description)
        h.append(.to, address(&rng, tag: rng.next() % 2 == 0).description)
        h.append(.callID, token(&rng, 20) + "@" + word(&rng))
        let method = pick([SIPMethod.register, .options, .subscribe, .notify, .message, SIPMethod("FOO")], &rng)
        h.append(.cseq, SIPCSeq(UInt32(rng.next() % 100000), method).description)
        if rng.next() % 2 == 0 {
            h.append(
                .contact,
                (0..<(1 + rng.next() % 2)).map { _ in address(&rng, tag: false).description }.joined(separator: ", "))
        }
        if rng.next() % 2 == 0 { h.append(.path, "<" + sipURI(&rng, params: true).description + ">") }
        if rng.next() % 2 == 0 { h.append(.authorization, auth(&rng).description) }
        if rng.next() % 3 == 0 {
            h.append(SIPHeaderName("X-" + word(&rng)), pick(["a, b", "\"q\" <x>", "ünïcödé", ""], &rng))
        }
        if rng.next() % 2 == 0 { h.append(.supported, "path, outbound") }
        let body: [UInt8] = rng.next() % 3 == 0 ? Array("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n".utf8) : []
        if !body.isEmpty { h.append(.contentType, "application/sdp") }
        if rng.next() % 2 == 0 {
            return .response(
                SIPResponse(
                    statusCode: pick([100, 200, 401, 403, 423, 439, 500, 603], &rng),
                    reasonPhrase: pick(["OK", "Whatever", "Ünïcode reason", ""], &rng), headers: h, body: body))
        }
        return .request(SIPRequest(method: method, uri: uri(&rng), headers: h, body: body))
    }
}

@Suite struct BuildingMessagesTests {
    @Test func aRegisterBuiltInCodeIsCanonicalText() throws {
        var contact = SIPAddress(
            SIPURI(user: "g8z4h2kq", host: "df7jal23ls0d.invalid", parameters: [SIPParameter("transport", "ws")]))
        contact.parameters.set("+sip.instance", quote("<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>"))
        contact.parameters.set("reg-id", "1")
        var from = SIPAddress(SIPURI(user: "alice", host: "ims.example.com"))
        from.tag = "5pf2k7d2"
        var auth = SIPAuthField.digest([])
        auth.set("username", "alice_private@ims.example.com", quoted: true)
        auth.set("realm", "ims.example.com", quoted: true)
        auth.set("uri", "sip:ims.example.com", quoted: true)
        auth.set("nonce", "", quoted: true)
        auth.set("response", "", quoted: true)
        auth.set("integrity-protected", "auth-done", quoted: false)
        let request = SIPRequest(
            method: .register, uri: .sip(SIPURI(host: "ims.example.com")),
            headers: [
                .via: SIPVia(transport: "WSS", host: "df7jal23ls0d.invalid", branch: "z9hG4bK56sdasks").description,
                .maxForwards: "70",
                .from: from.description,
                .to: SIPAddress(SIPURI(user: "alice", host: "ims.example.com")).description,
                .callID: "9fxced76sl",
                .cseq: SIPCSeq(1, .register).description,
                .contact: contact.description,
                .authorization: auth.description,
                .expires: "3600",
            ])
        let expected = Fixtures.crlf(
            """
            REGISTER sip:ims.example.com SIP/2.0
            Via: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bK56sdasks
            Max-Forwards: 70
            From: <sip:alice@ims.example.com>;tag=5pf2k7d2
            To: <sip:alice@ims.example.com>
            Call-ID: 9fxced76sl
            CSeq: 1 REGISTER
            Contact: <sip:g8z4h2kq@df7jal23ls0d.invalid;transport=ws>;+sip.instance="<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>";reg-id=1
            Authorization: Digest username="alice_private@ims.example.com", realm="ims.example.com", uri="sip:ims.example.com", nonce="", response="", integrity-protected=auth-done
            Expires: 3600
            Content-Length: 0


            """)
        #expect(String(decoding: request.serialized(), as: UTF8.self) == expected)
        #expect(try SIPParser().parse(request.serialized()) == .request(request))
    }

    @Test func responsesCopyTheRequestHeadersOfRFC3261Section8_2_6() throws {
        let request = try Fixtures.request(Fixtures.register92)
        let response = SIPResponse(replyingTo: request, statusCode: 423, toTag: "x1")
        #expect(response.reasonPhrase == "Interval Too Brief")
        #expect(response.headers.map(\.name) == [.via, .from, .to, .callID, .cseq])
        #expect(try response.headers.to.tag == "x1")
        // A body set in code gets its Content-Length written.
        var withBody = response
        withBody.body = Array("abc".utf8)
        #expect(String(decoding: withBody.serialized(), as: UTF8.self).hasSuffix("Content-Length: 3\r\n\r\nabc"))
        // A value built with a line break cannot split the message.
        var injected = response
        injected.headers.append(SIPHeaderName("X-Note"), "a\r\nVia: evil")
        let wire = String(decoding: injected.serialized(), as: UTF8.self)
        #expect(wire.contains("X-Note: aVia: evil\r\n"))
    }

    /// Every Via (in order), From, Call-ID and CSeq are copied as written, compact names
    /// included; To gets our tag unless it has one, and a 100 gets none.
    @Test func copiedHeadersKeepTheirTextAndOrder() throws {
        let request = try Fixtures.request(
            Fixtures.crlf(
                """
                OPTIONS sip:b@example.com SIP/2.0
                v: SIP/2.0/UDP a.example.com;branch=z9hG4bK1 , SIP/2.0/TCP  b.example.com;branch=z9hG4bK2
                X-Other: kept out
                Via: SIP/2.0/UDP c.example.com;branch=z9hG4bK3
                f: "A, B" <sip:a@example.com>;tag=9
                t:  <sip:b@example.com>
                i: call-1
                CSeq: 7 OPTIONS
                Max-Forwards: 70
                Content-Length: 0


                """))
        let ok = SIPResponse(replyingTo: request, statusCode: 200, toTag: "srv")
        #expect(ok.headers.map(\.name) == [.via, .via, .from, .to, .callID, .cseq])
        #expect(
            ok.headers.fieldValues(.via) == [
                "SIP/2.0/UDP a.example.com;branch=z9hG4bK1 , SIP/2.0/TCP  b.example.com;branch=z9hG4bK2",
                "SIP/2.0/UDP c.example.com;branch=z9hG4bK3",
            ])
        #expect(ok.headers[.from] == "\"A, B\" <sip:a@example.com>;tag=9")
        #expect(ok.headers[.to] == "<sip:b@example.com>;tag=srv")
        #expect(ok.headers[.callID] == "call-1")
        #expect(ok.headers[.cseq] == "7 OPTIONS")
        #expect(SIPResponse(replyingTo: request, statusCode: 100, toTag: "srv").headers[.to] == "<sip:b@example.com>")
        var tagged = request
        tagged.headers[.to] = "<sip:b@example.com>;tag=theirs"
        #expect(
            SIPResponse(replyingTo: tagged, statusCode: 486, toTag: "srv").headers[.to]
                == "<sip:b@example.com>;tag=theirs")
        // The response reads back as the same message, and holds only the copied bytes.
        #expect(try SIPParser().parse(ok.serialized()) == .response(ok))
        #expect(ok.headers.backing.count < request.headers.backing.count)
        #expect(!String(decoding: ok.headers.backing, as: UTF8.self).contains("kept out"))
    }

    @Test func proxyAuthHeadersUseTheSameViews() throws {
        let h: SIPHeaderFields = [
            .proxyAuthenticate: "Bearer realm=\"ims.example.com\", authz_server=\"https://waf.example\"",
            .proxyAuthorization: "Bearer abc.def.ghi",
        ]
        #expect(try h.challenges(.proxyAuthenticate).first?["authz_server"] == "https://waf.example")
        #expect(try h.authorizations(.proxyAuthorization).first?.bearerToken == "abc.def.ghi")
    }
}
