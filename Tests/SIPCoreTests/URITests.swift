import Foundation
import Testing

@testable import SIPCore

@Suite struct URITests {
    @Test func sipURIWithEveryPart() throws {
        let u = try SIPURI.parse(
            "sips:al%20ice:se%2Fcret@[2001:db8::1]:5061;transport=tls;lr;ob;gr=urn:x?subject=hi&priority=urgent")
        #expect(u.isSecure)
        #expect(u.user == "al%20ice")
        #expect(u.decodedUser == "al ice")
        #expect(u.password == "se%2Fcret")
        #expect(u.host == "[2001:db8::1]")
        #expect(u.port == 5061)
        #expect(u.transport == "tls")
        #expect(u.isLooseRouting)
        #expect(u.parameters.contains("ob"))
        #expect(u.parameters["gr"] == "urn:x")
        #expect(u.headers == [SIPParameter("subject", "hi"), SIPParameter("priority", "urgent")])
        #expect(
            u.description
                == "sips:al%20ice:se%2Fcret@[2001:db8::1]:5061;transport=tls;lr;ob;gr=urn:x?subject=hi&priority=urgent")
    }

    @Test(
        arguments: [
            ("sip:ims.example.com", nil, "ims.example.com", nil, nil),
            ("sip:alice@ims.example.com", "alice", "ims.example.com", nil, nil),
            ("sip:192.0.2.10:5060;transport=udp", nil, "192.0.2.10", UInt16(5060), "udp"),
            ("sip:g8z4h2kq@df7jal23ls0d.invalid;transport=ws", "g8z4h2kq", "df7jal23ls0d.invalid", nil, "ws"),
            ("sip:x@h;transport=wss", "x", "h", nil, "wss"),
            ("sip:x@h;transport=TCP", "x", "h", nil, "TCP"),
            (
                "sip:+1-555-123;phone-context=ims.example.com@example.com;user=phone",
                "+1-555-123;phone-context=ims.example.com", "example.com", nil, nil
            ),
            ("SIP:Alice@EXAMPLE.com", "Alice", "EXAMPLE.com", nil, nil),
            ("sip:[::1]", nil, "[::1]", nil, nil),
        ] as [(String, String?, String, UInt16?, String?)])
    func validSIPURIs(text: String, user: String?, host: String, port: UInt16?, transport: String?) throws {
        let u = try SIPURI.parse(text)
        #expect(u.user == user)
        #expect(u.host == host)
        #expect(u.port == port)
        #expect(u.transport == transport)
        // Re-serialized and parsed again, the URI is the same value.
        #expect(try SIPURI.parse(u.description) == u)
    }

    @Test(
        arguments: [
            ("sip:", SIPParseError.Kind.invalidHost),
            ("sip:@host", .invalidURI),
            ("sip:a@", .invalidHost),
            ("sip:a@h:99999", .invalidPort),
            ("sip:a@h:", .invalidPort),
            ("sip:a%zz@h", .invalidEscape),
            ("sip:a%2@h", .invalidEscape),
            ("sip:[2001:db8::1@h", .invalidURI),
            ("sip:[zz::1]", .invalidHost),
            ("sip:a@h;=x", .invalidParameter),
            ("sip:a@h;x=", .invalidParameter),
            ("sip:a@-h", .invalidHost),
            ("sip:a b@h", .invalidURI),
            ("sip:a@h?x", .invalidURI),
            ("nocolon", .invalidURI),
            ("1sip:a@h", .invalidURI),
            ("tel:", .invalidURI),
        ] as [(String, SIPParseError.Kind)])
    func malformedURIs(text: String, kind: SIPParseError.Kind) {
        #expect(throws: SIPParseError(kind)) { try AnyURI.parse(text) }
    }

    /// Parsed from a message, a URI's parts are ranges of the message buffer; built in
    /// code, their own bytes. Either way they read, compare, hash and change the same.
    @Test func partsFromAMessageAndFromCodeBehaveAlike() throws {
        guard case .request(let request) = try SIPParser().parse(Fixtures.register92) else {
            Issue.record("not a request")
            return
        }
        guard case .contacts(let contacts)? = try request.headers.contact, let contact = contacts.first,
            case .sip(var parsed) = contact.uri
        else {
            Issue.record("no SIP contact")
            return
        }
        let built = SIPURI(
            user: "g8z4h2kq", host: "df7jal23ls0d.invalid", parameters: [SIPParameter("transport", "ws")])
        #expect(parsed.user == "g8z4h2kq" && parsed.host == "df7jal23ls0d.invalid" && parsed.password == nil)
        #expect(parsed == built)
        #expect(parsed.hashValue == built.hashValue)
        #expect(parsed.description == "sip:g8z4h2kq@df7jal23ls0d.invalid;transport=ws")
        guard case .sip(let requestURI) = request.uri else {
            Issue.record("request URI is not sip")
            return
        }
        #expect(requestURI.host == "ims.example.com" && requestURI.user == nil)
        // Changing one part keeps the others.
        parsed.host = "192.0.2.7"
        parsed.port = 5070
        #expect(parsed.description == "sip:g8z4h2kq@192.0.2.7:5070;transport=ws")
        parsed.password = "secret"
        parsed.user = nil
        #expect(parsed.user == nil && parsed.password == "secret" && parsed.host == "192.0.2.7")
        parsed.user = "bob"
        #expect(parsed.description == "sip:bob:secret@192.0.2.7:5070;transport=ws")
        #expect(parsed != built)
        // The request still holds the message's bytes unchanged.
        #expect(try request.headers.contact.map { "\($0)" }?.contains("df7jal23ls0d.invalid") == true)
        var via = try request.headers.topVia
        #expect(via.host == "df7jal23ls0d.invalid")
        #expect(via == SIPVia(transport: "WSS", host: "df7jal23ls0d.invalid", branch: "z9hG4bK56sdasks"))
        via.host = "[2001:db8::1]"
        #expect(via.sentBy == "[2001:db8::1]")
        #expect(try request.headers.topVia.host == "df7jal23ls0d.invalid")
    }

    @Test func telURIs() throws {
        guard case .tel(let t) = try AnyURI.parse("tel:+1-555-123-4567;ext=12") else {
            Issue.record("not tel")
            return
        }
        #expect(t.isGlobal)
        #expect(t.number == "+1-555-123-4567")
        #expect(t.parameters["ext"] == "12")
        guard case .tel(let local) = try AnyURI.parse("tel:7042;phone-context=example.com") else {
            Issue.record("not tel")
            return
        }
        #expect(!local.isGlobal)
        #expect(local.parameters["phone-context"] == "example.com")
    }

    @Test func otherAbsoluteURIsAreKeptAsWritten() throws {
        #expect(try AnyURI.parse("urn:service:sos") == .other("urn:service:sos"))
        #expect(try AnyURI.parse("https://waf.ims.example.com/token") == .other("https://waf.ims.example.com/token"))
    }

    @Test func nameAddrAndAddrSpecParameterRules() throws {
        // In name-addr form the URI keeps its own parameters; the rest are header params.
        let a = try SIPAddress.parse("<sip:a@h;transport=ws>;tag=1")
        #expect(a.uri.sipURI?.transport == "ws")
        #expect(a.tag == "1")
        // In addr-spec form the parameters belong to the header (RFC 3261 §20).
        let b = try SIPAddress.parse("sip:a@h;tag=1")
        #expect(b.uri.sipURI?.parameters.isEmpty == true)
        #expect(b.tag == "1")
        #expect(b.usesAngleBrackets == false)
        #expect(b.description == "sip:a@h;tag=1")
        // Display names: tokens or quoted strings with escapes.
        let c = try SIPAddress.parse("Alice  Smith <sip:a@h>")
        #expect(c.displayName == "Alice  Smith")
        let d = try SIPAddress.parse("\"A \\\"quoted\\\" name\" <sip:a@h>")
        #expect(d.displayNameText == "A \"quoted\" name")
        #expect(d.description == "\"A \\\"quoted\\\" name\" <sip:a@h>")
        // Writing an addr-spec whose URI has params forces brackets.
        let e = SIPAddress(uri: .sip(SIPURI(host: "h", parameters: [SIPParameter("lr")])), usesAngleBrackets: false)
        #expect(e.description == "<sip:h;lr>")
    }

    @Test(arguments: [
        "<sip:a@h", "\"unterminated <sip:a@h>", "Alice sip:a@h", "<sip:a@h>;", "<sip:a@h>;tag=", "<sip:a@h> junk", "",
        "<>",
    ])
    func malformedAddresses(text: String) {
        #expect(throws: SIPParseError.self) { try SIPAddress.parse(text) }
    }
}

@Suite struct PublicIdentityTests {
    @Test func identitiesDropParametersAndFoldTheHost() throws {
        #expect(
            try AnyURI.parse("sip:alice@IMS.Example.COM;transport=ws?x=y").publicIdentity == "sip:alice@ims.example.com"
        )
        #expect(try AnyURI.parse("sips:Alice@h:5061").publicIdentity == "sips:Alice@h:5061")
        #expect(try AnyURI.parse("tel:+1-555;phone-context=x").publicIdentity == "tel:+1-555")
        #expect(try AnyURI.parse("urn:service:sos").publicIdentity == nil)
        // A user part may hold ';' (RFC 3261 user-unreserved): it stays in the identity.
        #expect(canonicalPublicIdentity("sip:+1555;npdi@H.example;user=phone") == "sip:+1555;npdi@h.example")
        #expect(canonicalPublicIdentity("not a uri") == "not a uri")
    }
}

@Suite struct CaseInsensitiveTextTests {
    @Test func equalityAndSearchIgnoreASCIICaseOnly() {
        #expect(equalsIgnoringASCIICase("Digest", "dIGEST"))
        #expect(!equalsIgnoringASCIICase("Digest", "Digests"))
        #expect(!equalsIgnoringASCIICase("a-b", "a_b"))
        #expect(equalsIgnoringASCIICase("Ärger", "Ärger"))
        #expect(containsIgnoringASCIICase("Digest integrity-protected=AUTH-DONE", "auth-done"))
        #expect(containsIgnoringASCIICase("https://wwsf.example", "://"))
        #expect(!containsIgnoringASCIICase("wwsf.example", "://"))
        #expect(!containsIgnoringASCIICase("ab", "abc"))
        #expect(containsIgnoringASCIICase("<sip:a@b>;EXPIRES=5", "expires"))
    }

    /// Host names are stepped over sixteen bytes at a time while the buffer has them; the
    /// run ends where a byte-by-byte reading ends it, for every byte at every position,
    /// with the scan's end inside, at and past a vector's reach.
    @Test func hostScanAgreesWithTheByteByByteReading() {
        let host = Array("ims-7.example.com.operator-one.net".utf8)
        for padding in [0, 5, 16] {
            for position in 0..<host.count {
                for byte in UInt8(0)...UInt8(255) {
                    var bytes = host + Array(repeating: UInt8(ascii: ">"), count: padding)
                    bytes[position] = byte
                    let expected =
                        bytes.firstIndex { !CharClass.test($0, CharClass.hostChar) } ?? bytes.count
                    let found = bytes.withUnsafeBufferPointer { buffer in
                        var scanner = ByteScanner(buffer)
                        scanner.skipHostChars()
                        return scanner.index
                    }
                    #expect(found == expected, "\(byte) at \(position), padding \(padding)")
                }
            }
        }
    }

    /// A URI has userinfo only when its `@` comes before the URI ends: an `@` further on,
    /// in a later address of a list or after LWS, belongs to something else.
    @Test func userinfoOnlyFromAnAtSignInsideTheURI() throws {
        let list = try SIPAddress.parseList("sip:ims.example.com, <sip:bob@b.example.com>, sip:c.example.com")
        #expect(list.map { $0.uri.sipURI?.user } == [nil, "bob", nil])
        #expect(list.map { $0.uri.sipURI?.host } == ["ims.example.com", "b.example.com", "c.example.com"])
        let angle = try SIPAddress.parseList("<sip:h1>,<sip:u@h2>")
        #expect(angle.map { $0.uri.sipURI?.user } == [nil, "u"])
        #expect(try SIPAddress.parse("sip:alice@a.example.com;tag=x").uri.sipURI?.user == "alice")
        #expect(throws: SIPParseError.self) { try SIPAddress.parse("<sip:h1 @h2>") }
        let folded = try SIPAddress.parseList("<sip:h1>\r\n , <sip:carol@h2>")
        #expect(folded.map { $0.uri.sipURI?.user } == [nil, "carol"])
    }
}
