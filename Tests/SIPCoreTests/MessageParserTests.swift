import Foundation
import Testing

@testable import SIPCore

@Suite struct MessageParserTests {
    @Test func parsesTheTokenRegisterOfSpec92() throws {
        let r = try Fixtures.request(Fixtures.register92)
        #expect(r.method == .register)
        #expect(r.uri == .sip(SIPURI(host: "ims.example.com")))
        let via = try r.headers.topVia
        #expect(via.transport == "WSS")
        #expect(via.host == "df7jal23ls0d.invalid")
        #expect(via.branch == "z9hG4bK56sdasks")
        #expect(try r.headers.maxForwards == 70)
        #expect(try r.headers.from.tag == "5pf2k7d2")
        #expect(try r.headers.from.uri.sipURI?.user == "alice")
        #expect(try r.headers.to.tag == nil)
        #expect(try r.headers.callID == "9fxced76sl")
        #expect(try r.headers.cseq == SIPCSeq(1, .register))
        guard case .contacts(let contacts) = try r.headers.contact else {
            Issue.record("expected contacts")
            return
        }
        #expect(contacts.count == 1)
        #expect(contacts[0].instance == "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6")
        #expect(contacts[0].regID == 1)
        #expect(contacts[0].uri.sipURI?.transport == "ws")
        #expect(r.headers.supported == ["path", "outbound", "gruu"])
        let auth = try r.headers.authorizations()
        #expect(auth.count == 1)
        #expect(auth[0].isBearer)
        #expect(auth[0].bearerToken == Fixtures.token)
        #expect(try r.headers.expires == 600_000)
        #expect(r.body.isEmpty)
        // Content-Length is framing: checked, then dropped from the fields.
        #expect(!r.headers.contains(.contentLength))
    }

    /// Typed views of a parsed message point into its bytes; the same text parsed on its
    /// own makes the values at once. Both must be equal, hash alike and edit alike.
    @Test func viewsIntoTheMessageEqualViewsOfTheSameText() throws {
        let r = try Fixtures.request(Fixtures.register92)
        let via = try r.headers.topVia
        let viaAlone = try SIPVia.parse(r.headers[.via] ?? "")
        #expect(via == viaAlone)
        #expect(via.hashValue == viaAlone.hashValue)
        let from = try r.headers.from
        #expect(from == (try SIPAddress.parse(r.headers[.from] ?? "")))
        guard case .contacts(let contacts) = try r.headers.contact,
            case .contacts(let alone) = try SIPContactValue.parse(fieldValues: r.headers.fieldValues(.contact))
        else {
            Issue.record("expected contacts")
            return
        }
        #expect(contacts == alone)
        #expect(contacts[0].address.parameters.count == 2)
        #expect(contacts[0].address.parameters.rawValue("+sip.instance") != nil)
        #expect(contacts[0].address.parameters["REG-ID"] == "1")
        let auth = try r.headers.authorizations()
        #expect(auth == [try SIPAuthField.parse(r.headers[.authorization] ?? "")])

        // Editing a parsed list keeps the other parameters and their order.
        var edited = contacts[0].address.parameters
        edited.set("expires", "600")
        edited.set("reg-id", "2")
        #expect(edited.elements.map(\.name) == ["+sip.instance", "reg-id", "expires"])
        #expect(
            edited.description
                == ";+sip.instance=\"<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>\";reg-id=2;expires=600")
        var token = auth[0]
        token.token68 = "abc"
        #expect(token.bearerToken == "abc")
        #expect(auth[0].bearerToken == Fixtures.token)
    }

    @Test func foldedContactIsUnfoldedToOneValue() throws {
        let r = try Fixtures.request(Fixtures.register92)
        let value = try #require(r.headers[.contact])
        #expect(!value.contains("\r") && !value.contains("\n"))
        #expect(value.contains("transport=ws> ;+sip.instance"))
    }

    @Test func parsesTheTNARegisterOfSpec94() throws {
        let r = try Fixtures.request(Fixtures.register94)
        let vias = try r.headers.vias
        #expect(vias.count == 2)
        #expect(vias[0].port == 5061)
        #expect(vias[1].received == "198.51.100.23")
        #expect(vias[1].rport == .value(52111))
        let path = try r.headers.path
        #expect(path.count == 1)
        #expect(path[0].uri.sipURI?.user == "fl-7Hk2q9")
        #expect(path[0].uri.sipURI?.isLooseRouting == true)
        #expect(path[0].uri.sipURI?.parameters.contains("ob") == true)
        #expect(r.headers.require == ["path"])
        #expect(r.headers.pVisitedNetworkIDs == ["ims.example.com"])
        let pcv = try #require(try r.headers.pChargingVector)
        #expect(pcv["icid-value"] == "epcscf-1700000000-000001")
        #expect(pcv["orig-ioi"] == "ims.example.com")
        let auth = try r.headers.authorizations()[0]
        #expect(auth.isDigest)
        #expect(auth.username == "alice_private@ims.example.com")
        #expect(auth.realm == "ims.example.com")
        #expect(auth.uri == "sip:ims.example.com")
        #expect(auth.nonce == "")
        #expect(auth.response == "")
        #expect(auth.integrityProtected == "auth-done")
    }

    @Test func parsesThe200OKOfSpec95() throws {
        let r = try Fixtures.response(Fixtures.ok95)
        #expect(r.statusCode == 200)
        #expect(r.reasonPhrase == "OK")
        #expect(try r.headers.serviceRoute.first?.uri.description == "sip:orig-3f9a@scscf.ims.example.com;lr")
        let pau = try r.headers.pAssociatedURI
        #expect(pau.map(\.uri.description) == ["sip:alice@ims.example.com", "tel:+15551234567"])
        #expect(pau[1].uri.telURI?.isGlobal == true)
        #expect(try r.headers.to.tag == "sc-41a7")
        guard case .contacts(let c) = try r.headers.contact else {
            Issue.record("expected contacts")
            return
        }
        #expect(c[0].expires == 3600)
        #expect(
            c[0].address.parameters["pub-gruu"]
                == "sip:alice@ims.example.com;gr=urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6")
        #expect(try r.headers.pChargingVector?["term-ioi"] == "ims.example.com")
    }

    @Test func compactFormsExpandToTheirFullNames() throws {
        let text = Fixtures.crlf(
            """
            OPTIONS sip:b@example.com SIP/2.0
            v: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKx;rport
            f: "Bob B" <sip:bob@example.com>;tag=1
            t: sip:b@example.com
            i: abc@192.0.2.1
            CSeq: 7 OPTIONS
            m: *
            k: path
            l: 5
            c: text/plain
            o: reg
            s: hi
            u: reg
            e: gzip
            r: <sip:c@example.com>
            b: <sip:d@example.com>
            x: 90
            j: *;x
            y: abc
            a: *;audio

            hello
            """)
        let r = try Fixtures.request(text)
        #expect(try r.headers.topVia.rport == .requested)
        #expect(try r.headers.from.displayNameText == "Bob B")
        #expect(try r.headers.to.uri.sipURI?.user == "b")
        #expect(try r.headers.to.usesAngleBrackets == false)
        #expect(try r.headers.callID == "abc@192.0.2.1")
        #expect(try r.headers.contact == .wildcard)
        #expect(r.headers.supported == ["path"])
        #expect(r.headers.contentType == "text/plain")
        #expect(r.body == Array("hello".utf8))
        for name: SIPHeaderName in [
            .event, .subject, .allowEvents, .contentEncoding, .referTo, .referredBy, .sessionExpires,
            .rejectContact, .identity, .acceptContact,
        ] {
            #expect(r.headers.contains(name), "\(name)")
        }
    }

    @Test func headerNamesAreCaseInsensitive() throws {
        let text = Fixtures.register92.replacingOccurrences(of: "Call-ID:", with: "call-id:")
            .replacingOccurrences(of: "CSeq:", with: "CSEQ :")
        let r = try Fixtures.request(text)
        #expect(try r.headers.callID == "9fxced76sl")
        #expect(SIPHeaderName("CALL-ID") == .callID)
        #expect(SIPHeaderName("i") == .callID)
        #expect(SIPHeaderName("X-Custom") == SIPHeaderName("x-custom"))
    }

    @Test func unknownHeadersArePreservedByteExact() throws {
        let text = Fixtures.register92.replacingOccurrences(
            of: "Expires: 600000", with: "X-WeIrD-Name: a,b;c=\"d, e\"  <f>\r\nExpires: 600000")
        let r = try Fixtures.request(text)
        let field = try #require(r.headers.first { $0.name.canonicalName == "X-WeIrD-Name" })
        #expect(field.value == "a,b;c=\"d, e\"  <f>")
        let wire = String(decoding: r.serialized(), as: UTF8.self)
        #expect(wire.contains("\r\nX-WeIrD-Name: a,b;c=\"d, e\"  <f>\r\n"))
    }

    /// Fields carry their name as a number (known names) or an index into the message's
    /// unknown names: spellings stay byte-exact, look-ups ignore case, and editing a
    /// parsed message keeps names and values in step.
    @Test func unknownNamesInParsedAndEditedMessages() throws {
        let text = Fixtures.register92.replacingOccurrences(
            of: "Expires: 600000", with: "X-Foo: 1\r\nx-foo: 2\r\nX-Bar: 3\r\nExpires: 600000")
        var r = try Fixtures.request(text)
        #expect(r.headers.fieldValues(SIPHeaderName("X-FOO")) == ["1", "2"])
        #expect(r.headers[SIPHeaderName("x-bar")] == "3")
        #expect(r.headers.positions(of: SIPHeaderName("X-Foo")).count == 2)
        #expect(r.headers.contains(.expires) && r.headers.contains(.authorization))
        r.headers.prepend(SIPHeaderName("X-New"), "n")
        r.headers[SIPHeaderName("X-FOO")] = "one"
        r.headers.removeAll(SIPHeaderName("X-BAR"))
        r.headers.append(SIPHeaderName("X-Foo"), "again")
        #expect(r.headers.fieldValues(SIPHeaderName("x-foo")) == ["one", "again"])
        #expect(r.headers[SIPHeaderName("X-Bar")] == nil)
        let wire = String(decoding: r.serialized(), as: UTF8.self)
        #expect(wire.contains("\r\nX-Foo: one\r\n"))
        #expect(!wire.contains("x-foo: 2"))
        #expect(wire.contains("\r\nX-New: n\r\n") && wire.contains("\r\nX-Foo: again\r\n"))
        // Every field reads back with its own name; known ones with their canonical spelling.
        let names = r.headers.map(\.name.canonicalName)
        #expect(names.contains("X-New") && names.contains("Authorization") && names.contains("Call-ID"))
        let reparsed = try Fixtures.request(wire)
        #expect(reparsed.headers == r.headers)
        #expect(SIPHeaderName.all.enumerated().allSatisfy { $0.element.knownID == $0.offset })
    }

    /// Header names are scanned sixteen bytes at a time into the known-name table's key;
    /// that path and the byte-by-byte one (names at the very end of a message) agree on
    /// every known name in any case, on lookalikes, and on names longer than sixteen bytes.
    @Test func headerNameScanAgreesWithTheByteByBytePath() throws {
        let table = KnownNameTable.shared
        var spellings: [String] = []
        for name in SIPHeaderName.all {
            spellings += [name.canonicalName, name.canonicalName.lowercased(), name.canonicalName.uppercased()]
            spellings += [name.canonicalName + "x", String(name.canonicalName.dropLast()) + "~"]
        }
        spellings += [
            "v", "F", "i", "X-Custom", "P-Visited-Network-IE", "P-Visited-Network-IDs", "Call_ID", "a!%*_+`'~.-9",
        ]
        for spelling in spellings {
            let line = Array((spelling + " : value\r\n" + String(repeating: " ", count: 16)).utf8)
            let (end, key) = line.withUnsafeBufferPointer { scanHeaderName($0, 0, spelling.utf8.count + 8) }
            #expect(end == spelling.utf8.count, "\(spelling)")
            let bytes = Array(spelling.utf8)
            let reference = bytes.withUnsafeBufferPointer { KnownNameTable.Key($0) }
            #expect(key.low == reference.low && key.high == reference.high && key.count == reference.count)
            let found = bytes.withUnsafeBufferPointer { SIPHeaderName.lookupID(bytes: $0, key: key, table: table) }
            let expected =
                SIPHeaderName.all.firstIndex { equalsIgnoringASCIICase($0.canonicalName, spelling) }
                ?? (spelling.count == 1
                    ? SIPHeaderName.compactForms[Array(spelling.lowercased().utf8)[0]].map { Int($0.knownID) } : nil)
            #expect(found == expected, "\(spelling)")
        }
        // A name that stops at a non-token byte, and the last line of a message (too close
        // to the end for a sixteen-byte load).
        let stop = Array("Via;x: 1\r\n                ".utf8)
        #expect(stop.withUnsafeBufferPointer { scanHeaderName($0, 0, 8).0 } == 3)
        let text = Fixtures.register92.replacingOccurrences(of: "Content-Length: 0\r\n\r\n", with: "i: 9fxced76sl\r\n")
            .replacingOccurrences(of: "Call-ID: 9fxced76sl\r\n", with: "")
        let r = try SIPParser().parse(text, framing: .message)
        guard case .request(let request) = r else {
            Issue.record("not a request")
            return
        }
        #expect(try request.headers.callID == "9fxced76sl")
    }

    /// Common words come back as literals picked by their packed bytes: each maps to
    /// itself, and near misses (case, length, one byte off) to nothing.
    @Test func commonWordsMapToThemselves() {
        let words = [
            "SIP", "2.0", "UDP", "TCP", "TLS", "WS", "WSS", "SCTP", "Digest", "Bearer", "REGISTER", "INVITE", "ACK",
            "BYE", "CANCEL", "OPTIONS", "SUBSCRIBE", "NOTIFY", "MESSAGE", "INFO",
        ]
        for word in words {
            #expect(Array(word.utf8).withUnsafeBufferPointer { commonWord($0) } == word)
            let misses = [word.lowercased(), word + "X", String(word.dropLast()), String(word.dropFirst()) + "Z"]
            for miss in misses where !words.contains(miss) {
                #expect(Array(miss.utf8).withUnsafeBufferPointer { commonWord($0) } == nil, "\(miss)")
            }
        }
        #expect([UInt8]().withUnsafeBufferPointer { commonWord($0) } == nil)
        // readWord packs the first eight bytes into the key while it scans: a word reads
        // as itself at every length around that boundary, common or not.
        for word in words + ["REGISTERX", "REGISTE", "SUBSCRIBEX", "SUBSCRIB", "A", "2.0.1", "Bearer1"] {
            let read = Array((word + " rest").utf8).withUnsafeBufferPointer { bytes in
                var scanner = ByteScanner(bytes)
                return scanner.readWord(CharClass.token)
            }
            #expect(read == word)
        }
    }

    @Test func multiValuedHeadersSplitOutsideQuotesAndBrackets() throws {
        var headers = SIPHeaderFields()
        headers.append(.route, "<sip:a@x;lr>, <sip:b@y;lr>")
        headers.append(.route, "\"q, r\" <sip:c@z;lr>")
        #expect(try headers.route.map { $0.uri.sipURI?.user } == ["a", "b", "c"])
        #expect(headers.values(.route).count == 3)
        // Auth headers carry commas between their parameters: never split.
        headers.append(.authorization, "Digest username=\"a\", realm=\"b\"")
        #expect(headers.values(.authorization).count == 1)
    }

    @Test func bodyIsBoundedByContentLengthOnStreams() throws {
        let text = Fixtures.crlf(
            """
            MESSAGE sip:b@example.com SIP/2.0
            Via: SIP/2.0/TCP h;branch=z9hG4bK1
            From: <sip:a@example.com>;tag=1
            To: <sip:b@example.com>
            Call-ID: c1
            CSeq: 1 MESSAGE
            Content-Type: text/plain
            Content-Length: 3

            abc
            """)
        guard case .request(let r) = try SIPParser().parse(text, framing: .stream) else {
            Issue.record("not a request")
            return
        }
        #expect(r.body == Array("abc".utf8))
        // A longer body than Content-Length on a stream is a framing error.
        #expect(throws: SIPParseError(.contentLengthMismatch)) {
            try SIPParser().parse(text + "X", framing: .stream)
        }
        // In a datagram the extra bytes are discarded (RFC 3261 §18.3).
        guard case .request(let d) = try SIPParser().parse(text + "XYZ", framing: .message) else {
            Issue.record("not a request")
            return
        }
        #expect(d.body == Array("abc".utf8))
    }

    @Test func missingContentLengthMeansRestOfMessageOnMessageTransports() throws {
        let text = Fixtures.crlf(
            """
            MESSAGE sip:b@example.com SIP/2.0
            Via: SIP/2.0/WSS h.invalid;branch=z9hG4bK1
            From: <sip:a@example.com>;tag=1
            To: <sip:b@example.com>
            Call-ID: c1
            CSeq: 1 MESSAGE

            whole rest
            of the message
            """)
        guard case .request(let r) = try SIPParser().parse(text, framing: .message) else {
            Issue.record("not a request")
            return
        }
        #expect(String(decoding: r.body, as: UTF8.self) == "whole rest\r\nof the message")
        #expect(throws: SIPParseError(.missingContentLength)) {
            try SIPParser().parse(text, framing: .stream)
        }
    }

    @Test func leadingCRLFsAndBareLFsAreAccepted() throws {
        let text = "\r\n\r\n" + Fixtures.register92.replacingOccurrences(of: "\r\n", with: "\n")
        let r = try Fixtures.request(text)
        #expect(try r.headers.callID == "9fxced76sl")
    }

    @Test func utf8DisplayNamesAndReasonPhrases() throws {
        let text = Fixtures.crlf(
            """
            SIP/2.0 486 Beschäftigt – später
            Via: SIP/2.0/UDP h;branch=z9hG4bK1
            From: "Jürgen Müller" <sip:j@example.com>;tag=1
            To: <sip:b@example.com>;tag=2
            Call-ID: c1
            CSeq: 1 INVITE
            Content-Length: 0


            """)
        let r = try Fixtures.response(text)
        #expect(r.reasonPhrase == "Beschäftigt – später")
        #expect(try r.headers.from.displayNameText == "Jürgen Müller")
    }

    /// Lines are found and checked in one pass sixteen bytes at a time; it agrees with a
    /// byte-by-byte reading for every special byte at every position, near and across
    /// the vector boundaries and in the short tail at the end of a buffer.
    @Test func lineScanAgreesWithTheByteByByteReading() {
        func reference(_ b: [UInt8], from start: Int) -> (Int, Int, Bool)? {
            guard let lf = b[start...].firstIndex(of: 0x0A) else { return nil }
            let end = lf > start && b[lf - 1] == 0x0D ? lf - 1 : lf
            return (end, lf + 1, b[start..<end].allSatisfy { $0 == 0x09 || ($0 >= 0x20 && $0 < 0x7F) })
        }
        let specials: [UInt8] = [0x00, 0x09, 0x0A, 0x0D, 0x1F, 0x20, 0x7E, 0x7F, 0x80, 0xC3, 0xFE, 0xFF]
        for length in [0, 1, 5, 15, 16, 17, 31, 40] {
            for tail in [0, 3, 20] {
                let base =
                    Array(repeating: UInt8(ascii: "a"), count: length) + [0x0D, 0x0A]
                    + Array(repeating: UInt8(ascii: "b"), count: tail)
                for start in [0, min(2, length)] {
                    for position in start..<base.count {
                        for special in specials {
                            var b = base
                            b[position] = special
                            let found = b.withUnsafeBufferPointer { scanLine($0, from: start) }
                            let expected = reference(b, from: start)
                            #expect(
                                found.map { [$0.end, $0.next, $0.plain ? 1 : 0] }
                                    == expected.map { [$0.0, $0.1, $0.2 ? 1 : 0] },
                                "length \(length) tail \(tail) start \(start): \(special) at \(position)")
                        }
                    }
                }
            }
        }
    }

    /// Continuation lines are checked and measured first, then joined into one buffer;
    /// the joined value, and the errors, are those of reading line by line.
    @Test func foldedValuesAreJoinedAndChecked() throws {
        func message(_ field: String) -> String {
            Fixtures.register92.replacingOccurrences(of: "Expires: 600000\r\n", with: "Expires: 600000\r\n" + field)
        }
        let joined = try Fixtures.request(message("X-A: a\r\n \t b \r\n\t\r\n  c;d=\"é\"\r\n"))
        #expect(joined.headers[SIPHeaderName("X-A")] == "a b c;d=\"é\"")
        let empty = try Fixtures.request(message("X-A:\r\n  \r\n x\r\n"))
        #expect(empty.headers[SIPHeaderName("X-A")] == "x")
        for bad in ["\u{01}", "\u{7F}", "\r"] {
            #expect(throws: SIPParseError(.malformedHeaderLine, header: SIPHeaderName("X-A")), "\(bad.utf8.first ?? 0)")
            {
                try SIPParser().parse(message("X-A: a\r\n b\r\n c" + bad + "d\r\n"))
            }
        }
        var invalidUTF8 = Array(message("X-A: a\r\n b\r\n c#d\r\n").utf8)
        let x = try #require(invalidUTF8.lastIndex(of: UInt8(ascii: "#")))
        invalidUTF8[x] = 0xC3
        #expect(throws: SIPParseError(.invalidUTF8, header: SIPHeaderName("X-A"))) {
            try SIPParser().parse(invalidUTF8)
        }
    }

    /// A field set over and over keeps its latest value and does not grow the message
    /// without bound: replaced values are dropped from the buffer once they are most of it.
    @Test func fieldsSetOverAndOverStayBounded() throws {
        var request = try Fixtures.request(Fixtures.register92)
        let long = String(repeating: "v", count: 100)
        for i in 0..<20_000 {
            request.headers[SIPHeaderName("X-Counter")] = long + String(i)
            request.headers[.expires] = String(i)
        }
        // The transport's stamp rewrites the top Via the same way, on its own path.
        var stamped = try Fixtures.request(Fixtures.register92)
        for i in 0..<20_000 {
            _ = try stamped.headers.updateTopVia { via in
                via.received = "192.0.2.\(i % 250)"
                return true
            }
        }
        #expect(try stamped.headers.topVia.received == "192.0.2.249")
        #expect(stamped.headers.extra.count < 16_384)
        #expect(request.headers[SIPHeaderName("X-Counter")] == long + "19999")
        #expect(request.headers[.expires] == "19999")
        #expect(request.headers.extra.count < 16_384)
        #expect(try request.headers.contact == Fixtures.request(Fixtures.register92).headers.contact)
        let reparsed = try Fixtures.request(String(decoding: request.serialized(), as: UTF8.self))
        #expect(reparsed.headers == request.headers)
    }

    /// Every value lies in one buffer per message: the message as received, then the values
    /// unfolded or set in code. Several folded fields (Content-Length among them) read back
    /// right; edits leave a copy taken before them alone; replaced values do not come back.
    @Test func foldedAndEditedValuesShareTheMessageBuffer() throws {
        let text =
            Fixtures.register92.replacingOccurrences(
                of: "Expires: 600000\r\nContent-Length: 0\r\n",
                with: "X-A: a\r\n b\r\nExpires: 600000\r\nX-B: c\r\n\td\r\nContent-Length:\r\n 3\r\n") + "abc"
        guard case .request(let original) = try SIPParser().parse(Array(text.utf8), framing: .stream) else {
            Issue.record("not a request")
            return
        }
        #expect(original.body == Array("abc".utf8))
        #expect(original.headers[SIPHeaderName("X-A")] == "a b" && original.headers[SIPHeaderName("X-B")] == "c d")
        var edited = original
        edited.headers[.expires] = "300"
        edited.headers[.expires] = "0"
        _ = try edited.headers.updateTopVia { via in
            via.received = "192.0.2.1"
            return true
        }
        edited.headers.prepend(
            .via, "SIP/2.0/UDP p.example.com;branch=z9hG4bKp, SIP/2.0/UDP q.example.com;branch=z9hG4bKq")
        try edited.headers.removeTopVia()
        #expect(try edited.headers.topVia.host == "q.example.com")
        try edited.headers.removeTopVia()
        #expect(original.headers[.expires] == "600000" && edited.headers[.expires] == "0")
        #expect(try original.headers.topVia.received == nil && edited.headers.topVia.received == "192.0.2.1")
        #expect(try edited.headers.contact == original.headers.contact)
        #expect(edited.headers[SIPHeaderName("X-B")] == "c d")
        let wire = String(decoding: edited.serialized(), as: UTF8.self)
        #expect(
            !wire.contains("600000") && !wire.contains("Expires: 300") && !wire.contains("example.com;branch=z9hG4bKp"))
        let reparsed = try Fixtures.request(wire)
        #expect(reparsed.headers == edited.headers && reparsed.body == Array("abc".utf8))
    }
}
