import Foundation
import Testing

@testable import SIPCore

@Suite struct HeaderViewTests {
    /// Quoted-strings (RFC 3261 §25.1): `"` and `\` escaped, CR and LF dropped; appending in
    /// place gives what `quote` gives, after whatever the string held.
    @Test func quotedStrings() {
        for (text, quoted) in [
            ("plain", "\"plain\""), ("", "\"\""), ("a\"b\\c", "\"a\\\"b\\\\c\""), ("x\r\ny", "\"xy\""),
            ("Jürgen", "\"Jürgen\""),
            (String(repeating: "long value ", count: 8), "\"" + String(repeating: "long value ", count: 8) + "\""),
        ] {
            #expect(quote(text) == quoted)
            var out = "k="
            out.appendQuoted(text)
            #expect(out == "k=" + quoted)
            var inner = "<"
            inner.appendQuotedStringContent(text)
            #expect(inner == "<" + quoted.dropFirst().dropLast())
        }
    }

    @Test func viaForms() throws {
        let v = try SIPVia.parse(
            "SIP / 2.0 / UDP [2001:db8::9] : 5070 ;branch=z9hG4bKabc;received=2001:db8::1;rport=1234;maddr=224.2.0.1;ttl=16"
        )
        #expect(v.transport == "UDP")
        #expect(v.host == "[2001:db8::9]")
        #expect(v.port == 5070)
        #expect(v.branch == "z9hG4bKabc")
        #expect(v.received == "2001:db8::1")
        #expect(v.rport == .value(1234))
        #expect(v.parameters["ttl"] == "16")
        var w = try SIPVia.parse("SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bK56sdasks;rport")
        #expect(w.rport == .requested)
        w.received = "198.51.100.23"
        w.rport = .value(52111)
        #expect(
            w.description
                == "SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bK56sdasks;rport=52111;received=198.51.100.23")
        #expect(try SIPVia.parseList("SIP/2.0/UDP a;branch=1, SIP/2.0/TCP b:5060;branch=2").map(\.host) == ["a", "b"])
        // "SIP/2.0/" is matched as one word; LWS after it and other spellings take the long way.
        for text in ["SIP/2.0/UDP h", "SIP/2.0/ UDP h", "SIP/2.0/\tUDP h", "SIP /2.0/UDP h", "sip/2.0/udp h"] {
            let parsed = try SIPVia.parse(text)
            #expect(
                [parsed.protocolName.uppercased(), parsed.protocolVersion, parsed.transport.uppercased(), parsed.host]
                    == ["SIP", "2.0", "UDP", "h"], "\(text)")
        }
        let built = SIPVia(transport: "TCP", host: "127.0.0.1", port: 5060, branch: "z9hG4bK1")
        #expect(built.description == "SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bK1")
    }

    @Test(arguments: [
        "SIP/2.0", "SIP/2.0/", "SIP/2.0/ ", "SIP/2.0/ h", "SIP/2.0/UDP", "SIP/2.0/UDP ", "SIP/2.0/UDPhost",
        "SIP/2.0/UDP h:70000", "SIP/2.0/UDP h;",
        "SIP/2.0/UDP h, ", "SIP/2.0/UDP h;branch=\"x",
    ])
    func malformedVias(text: String) {
        #expect(throws: SIPParseError.self) { try SIPVia.parseList(text) }
    }

    @Test func malformedViaErrorNamesTheHeader() {
        do {
            _ = try SIPVia.parseList("garbage")
            Issue.record("no error")
        } catch {
            #expect(error.header == .via)
            #expect(error.reasonPhrase == "Malformed Via header")
        }
    }

    /// Only the top entry is rewritten or removed; the rest of the list stays byte for byte,
    /// in the same field and in later Via fields — for fields set in code and parsed ones.
    @Test(arguments: [false, true])
    func topViaIsReplacedOrRemovedAndTheRestKeptAsWritten(parsed: Bool) throws {
        var headers = SIPHeaderFields()
        headers.append(
            .via, "SIP/2.0/UDP a.example.com;branch=z9hG4bK1 ,  SIP/2.0/TCP  b.example.com:5070 ;branch=z9hG4bK2")
        headers.append(.callID, "c")
        headers.append(.via, "SIP/2.0/WSS c.invalid;branch=z9hG4bK3")
        if parsed {
            var text = "OPTIONS sip:x SIP/2.0\r\n"
            for field in headers { text += "\(field.name.canonicalName): \(field.value)\r\n" }
            text += "From: <sip:a@x>;tag=1\r\nTo: <sip:x>\r\nCSeq: 1 OPTIONS\r\n\r\n"
            let message = try SIPParser().parse(text)
            guard case .request(let request) = message else { throw SIPParseError(.malformedStartLine) }
            headers = request.headers
        }
        let top = try headers.updateTopVia { top in
            top.received = "192.0.2.1"
            return true
        }
        #expect(top.received == "192.0.2.1")
        #expect(
            headers[0].value
                == "SIP/2.0/UDP a.example.com;branch=z9hG4bK1;received=192.0.2.1 ,  SIP/2.0/TCP  b.example.com:5070 ;branch=z9hG4bK2"
        )
        try headers.removeTopVia()
        #expect(headers[0].value == "SIP/2.0/TCP  b.example.com:5070 ;branch=z9hG4bK2")
        try headers.removeTopVia()
        // The emptied field is gone; the next Via field is now the top.
        #expect(headers.fieldValues(.via) == ["SIP/2.0/WSS c.invalid;branch=z9hG4bK3"])
        #expect(headers[0].name == .callID)
        try headers.removeTopVia()
        #expect(!headers.contains(.via))
        #expect(throws: SIPParseError.self) { try headers.removeTopVia() }
    }

    @Test func aMalformedEntryBelowTheTopIsAnError() {
        var headers = SIPHeaderFields()
        headers.append(.via, "SIP/2.0/UDP a.example.com;branch=z9hG4bK1, garbage")
        let top = SIPVia(transport: "UDP", host: "a.example.com", port: nil, branch: "z9hG4bK9")
        #expect(throws: SIPParseError.self) {
            _ = try headers.updateTopVia { via in
                via = top
                return true
            }
        }
        #expect(throws: SIPParseError.self) { try headers.removeTopVia() }
        #expect(headers[0].value == "SIP/2.0/UDP a.example.com;branch=z9hG4bK1, garbage")
    }

    @Test func cseqForms() throws {
        #expect(try SIPCSeq.parse("4711 INVITE") == SIPCSeq(4711, .invite))
        #expect(try SIPCSeq.parse("  1\tREGISTER ") == SIPCSeq(1, .register))
        for bad in ["", "REGISTER", "1", "x REGISTER", "1REGISTER", "2147483648 REGISTER", "1 REG ISTER", "-1 BYE"] {
            #expect(throws: SIPParseError.self, "\(bad)") { try SIPCSeq.parse(bad) }
        }
    }

    @Test func contactForms() throws {
        let value = try SIPContactValue.parse(fieldValues: [
            "<sip:a@h;transport=ws>;expires=600;q=0.7;+sip.instance=\"<urn:uuid:1>\";reg-id=2, sip:b@h2",
            "\"Carol\" <tel:+1234>",
        ])
        guard case .contacts(let c) = value else {
            Issue.record("expected contacts")
            return
        }
        #expect(c.count == 3)
        #expect(c[0].expires == 600)
        #expect(c[0].q == "0.7")
        #expect(c[0].instance == "urn:uuid:1")
        #expect(c[0].regID == 2)
        #expect(c[1].uri.sipURI?.host == "h2")
        #expect(c[2].address.displayNameText == "Carol")
        #expect(try SIPContactValue.parse(fieldValues: [" * "]) == .wildcard)
        #expect(throws: SIPParseError.self) { try SIPContactValue.parse(fieldValues: ["*", "<sip:a@h>"]) }
        #expect(throws: SIPParseError.self) { try SIPContactValue.parse(fieldValues: ["*, <sip:a@h>"]) }
    }

    @Test func numericHeaders() throws {
        var h: SIPHeaderFields = [.expires: "3600", .minExpires: "600", .maxForwards: "70"]
        #expect(try h.expires == 3600)
        #expect(try h.minExpires == 600)
        #expect(try h.maxForwards == 70)
        h[.expires] = "soon"
        #expect(throws: SIPParseError(.invalidHeader, header: .expires)) { try h.expires }
        h[.expires] = "99999999999"
        #expect(throws: SIPParseError.self) { try h.expires }
        h[.expires] = nil
        #expect(try h.expires == nil)
    }

    @Test func optionTagsAndPHeaders() throws {
        let h: SIPHeaderFields = [
            .require: "path, outbound", .supported: "gruu", .unsupported: "foo",
            .pVisitedNetworkID: "\"ims.example.com\", other.example;x=1",
            .pChargingVector: "icid-value=\"a b\";orig-ioi=home;term-ioi=\"t\"",
        ]
        #expect(h.require == ["path", "outbound"])
        #expect(h.supported == ["gruu"])
        #expect(h.unsupported == ["foo"])
        #expect(h.pVisitedNetworkIDs == ["ims.example.com", "other.example"])
        let pcv = try #require(try h.pChargingVector)
        #expect(pcv["icid-value"] == "a b")
        #expect(pcv["term-ioi"] == "t")
        let bad: SIPHeaderFields = [.pChargingVector: "orig-ioi=x"]
        #expect(throws: SIPParseError.self) { try bad.pChargingVector }
    }

    @Test func digestCredentialsWithEveryParameter() throws {
        let a = try SIPAuthField.parse(
            "Digest username=\"001010000000001@ims.mnc001.mcc001.3gppnetwork.org\", realm=\"ims.mnc001.mcc001.3gppnetwork.org\", uri=\"sip:ims.mnc001.mcc001.3gppnetwork.org\", nonce=\"I1U8vpY3qJ0hiuZNrke/NVXzKLQ1d7m5Sp/6w1Tfr7M=\", algorithm=AKAv1-MD5, qop=auth, nc=00000001, cnonce=\"0a4f113b\", response=\"402ab8df9f3a4d63a9f47c2f90e02938\", auts=\"RR6L7KQagBJeyoiEtWo=\", integrity-protected=\"tls-pending\""
        )
        #expect(a.isDigest)
        #expect(a.nonce == "I1U8vpY3qJ0hiuZNrke/NVXzKLQ1d7m5Sp/6w1Tfr7M=")
        #expect(a.algorithm == "AKAv1-MD5")
        #expect(a.qop == "auth")
        #expect(a.nonceCount == "00000001")
        #expect(a.cnonce == "0a4f113b")
        #expect(a.response == "402ab8df9f3a4d63a9f47c2f90e02938")
        #expect(a.auts == "RR6L7KQagBJeyoiEtWo=")
        // Quoted and bare integrity-protected read the same (spec.md §13).
        #expect(a.integrityProtected == "tls-pending")
        #expect(
            try SIPAuthField.parse("Digest username=\"u\", integrity-protected=tls-yes").integrityProtected == "tls-yes"
        )
        // Round trip keeps quoting as written.
        #expect(try SIPAuthField.parse(a.description) == a)
    }

    @Test func digestChallengeWithAKAKeys() throws {
        let c = try SIPAuthField.parse(
            "Digest realm=\"ims.mnc001.mcc001.3gppnetwork.org\", nonce=\"I1U8vpY3qJ0hiuZNrke/NVXzKLQ1d7m5Sp/6w1Tfr7M=\", algorithm=AKAv1-MD5, qop=\"auth\", ik=\"f769bcd751044604127672711c6d3441\", ck=\"b40ba9a3c58b2a05bbf0d987b21bf8cb\", stale=TRUE",
            header: .wwwAuthenticate)
        #expect(c.ik == "f769bcd751044604127672711c6d3441")
        #expect(c.ck == "b40ba9a3c58b2a05bbf0d987b21bf8cb")
        #expect(c.stale)
        var stripped = c
        stripped.remove("ik")
        stripped.remove("ck")
        #expect(!stripped.description.contains("ik="))
        #expect(stripped.description.hasPrefix("Digest realm=\"ims.mnc001.mcc001.3gppnetwork.org\", nonce="))
    }

    @Test func bearerInBothForms() throws {
        let t = try SIPAuthField.parse("Bearer \(Fixtures.token)")
        #expect(t.token68 == Fixtures.token)
        #expect(t.bearerToken == Fixtures.token)
        #expect(t.description == "Bearer \(Fixtures.token)")
        let p = try SIPAuthField.parse("Bearer access_token=\"O91G451HZ0V83opz6udiSEjchPynd2Ss9\"")
        #expect(p.token68 == nil)
        #expect(p.bearerToken == "O91G451HZ0V83opz6udiSEjchPynd2Ss9")
        // A base64 token68 may end in '='.
        #expect(try SIPAuthField.parse("Bearer abc+/de==").bearerToken == "abc+/de==")
        let challenge = try SIPAuthField.parse(
            "Bearer realm=\"ims.example.com\", scope=\"ims-register\", authz_server=\"https://waf.ims.example.com/token\", error=\"invalid_token\"",
            header: .wwwAuthenticate)
        #expect(challenge["authz_server"] == "https://waf.ims.example.com/token")
        #expect(challenge["error"] == "invalid_token")
        #expect(challenge.bearerToken == nil)
    }

    /// Quoted strings are skipped sixteen bytes at a time up to the first quote,
    /// backslash, CR, LF or NUL: an escape or the closing quote is found at every
    /// position, and a line break or NUL inside is refused wherever it stands.
    @Test func quotedStringsAtEveryPosition() throws {
        for length in 0..<40 {
            let plain = String(repeating: "a", count: length)
            let address = try SIPAddress.parse("\"\(plain)\" <sip:a@h>;x=\"\(plain)\"")
            #expect(address.displayName == "\"\(plain)\"")
            #expect(address.parameters["x"] == plain)
            for position in 0...length {
                var chars = Array(plain)
                chars.insert(contentsOf: ["\\", "\""], at: position)
                let escaped = String(chars)
                #expect(try SIPAddress.parse("\"\(escaped)\" <sip:a@h>").displayNameText?.count == length + 1)
                for bad in ["\r", "\n", "\u{0}"] {
                    var broken = Array(plain)
                    broken.insert(Character(bad), at: position)
                    let text = "\"\(String(broken))\" <sip:a@h>"
                    #expect(throws: SIPParseError.self) { try SIPAddress.parse(text) }
                }
            }
            #expect(throws: SIPParseError.self) { try SIPAddress.parse("\"\(plain) <sip:a@h>") }
        }
    }

    /// The token68 scan classifies sixteen bytes at a time: every token68 character is
    /// accepted at every position of a block and of the tail, and a character outside
    /// the set is caught wherever it stands.
    @Test func bearerTokenCharactersAtEveryPosition() throws {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/")
        let token = String((0..<70).map { alphabet[$0 % alphabet.count] })
        #expect(try SIPAuthField.parse("Bearer \(token)").token68 == token)
        for position in 0..<token.count {
            // Every printable ASCII byte outside token68 (`=` is padding), and beyond.
            let outside = (0x21...0x7E).map { String(UnicodeScalar(UInt8($0))) }
                .filter { !alphabet.contains(Character($0)) && $0 != "=" }
            for bad in outside + ["\u{7F}", "é"] {
                var chars = Array(token)
                chars[position] = Character(bad)
                let text = "Bearer " + String(chars)
                #expect(throws: SIPParseError.self, "\(bad) at \(position)") { try SIPAuthField.parse(text) }
            }
        }
    }

    @Test(arguments: [
        "", "Digest username", "Digest username=", "Digest a=\"b", "Digest a=b c=d", "Digest a=b,", "Bearer a b",
        "Digest ,a=b", "Bearer \"x\"",
    ])
    func malformedAuthHeaders(text: String) {
        #expect(throws: SIPParseError.self) { try SIPAuthField.parse(text) }
    }

    @Test func headerFieldsEditing() {
        var h = SIPHeaderFields()
        h.append(.via, "SIP/2.0/UDP a;branch=z9hG4bK1")
        h.append(.to, "<sip:b@h>")
        h.prepend(.via, "SIP/2.0/TCP p;branch=z9hG4bK2")
        #expect(h.fieldValues(.via) == ["SIP/2.0/TCP p;branch=z9hG4bK2", "SIP/2.0/UDP a;branch=z9hG4bK1"])
        h.prepend(.path, "<sip:p;lr>")
        #expect(h.first?.name == .path)
        h[.via] = "SIP/2.0/UDP only"
        #expect(h.fieldValues(.via) == ["SIP/2.0/UDP only"])
        h.removeAll(.via)
        #expect(!h.contains(.via))
    }
}

@Suite struct HeaderNameTests {
    @Test func knownNamesAreNumberedInTableOrder() {
        for (i, name) in SIPHeaderName.all.enumerated() {
            #expect(Int(name.knownID) == i, "\(name)")
            #expect(SIPHeaderName(name.canonicalName.uppercased()) == name)
        }
    }

    @Test func unknownNamesCompareByLowercasedSpelling() {
        #expect(SIPHeaderName("X-Foo") == SIPHeaderName("x-FOO"))
        #expect(SIPHeaderName("X-Foo") != .via)
        #expect(SIPHeaderName("X-Foo").canonicalName == "X-Foo")
        #expect(Set([SIPHeaderName("Via"), .via, SIPHeaderName("v")]).count == 1)
    }
}
