import Testing

@testable import SIPCore

/// Issue 26 item 9: trace redaction that cannot fail open (item 2, markup escaping, is in
/// UtilitiesTests).
@Suite struct TrustBoundaryTests {
    static let token = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2VjcmV0LXNpZ25hdHVyZQ"
    static let digestResponse = "6629fae49393a05397450978507c4ef1"

    /// Forms the parser accepts but a line-by-line CRLF scan missed.
    static let secretForms: [(String, String)] = [
        (
            "bare LF line ends",
            "REGISTER sip:ims.example.com SIP/2.0\nVia: SIP/2.0/WSS a.invalid;branch=z9hG4bK1\nFrom: <sip:a@ims.example.com>;tag=1\nTo: <sip:a@ims.example.com>\nCall-ID: c1\nCSeq: 1 REGISTER\nAuthorization: Bearer \(token)\nContent-Length: 0\n\n"
        ),
        (
            "a folded Authorization line",
            "REGISTER sip:ims.example.com SIP/2.0\r\nVia: SIP/2.0/WSS a.invalid;branch=z9hG4bK2\r\nFrom: <sip:a@ims.example.com>;tag=1\r\nTo: <sip:a@ims.example.com>\r\nCall-ID: c2\r\nCSeq: 1 REGISTER\r\nAuthorization: Digest username=\"a@ims.example.com\", realm=\"ims.example.com\",\r\n response=\"\(digestResponse)\", nonce=\"n\", uri=\"sip:ims.example.com\"\r\nContent-Length: 0\r\n\r\n"
        ),
        (
            "Bearer and a TAB",
            "REGISTER sip:ims.example.com SIP/2.0\r\nVia: SIP/2.0/WSS a.invalid;branch=z9hG4bK3\r\nFrom: <sip:a@ims.example.com>;tag=1\r\nTo: <sip:a@ims.example.com>\r\nCall-ID: c3\r\nCSeq: 1 REGISTER\r\nAuthorization: Bearer\t\(token)\r\nContent-Length: 0\r\n\r\n"
        ),
        (
            "spaces before the colon and another case",
            "REGISTER sip:ims.example.com SIP/2.0\r\nVia: SIP/2.0/WSS a.invalid;branch=z9hG4bK4\r\nFrom: <sip:a@ims.example.com>;tag=1\r\nTo: <sip:a@ims.example.com>\r\nCall-ID: c4\r\nCSeq: 1 REGISTER\r\nauthorization  :  bearer \(token)\r\nContent-Length: 0\r\n\r\n"
        ),
        (
            "an unknown secret parameter and a token68 Digest",
            "SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/WSS a.invalid;branch=z9hG4bK5\r\nFrom: <sip:a@ims.example.com>;tag=1\r\nTo: <sip:a@ims.example.com>;tag=2\r\nCall-ID: c5\r\nCSeq: 1 REGISTER\r\nWWW-Authenticate: Digest realm=\"x\", nonce=\"n\", ik=\"\(digestResponse)\", ck=\(digestResponse)\r\nContent-Length: 0\r\n\r\n"
        ),
    ]

    @Test(arguments: secretForms.map(\.0))
    func item09ParsedSecretsAreRedactedWhateverTheirForm(form: String) throws {
        let text = try #require(Self.secretForms.first { $0.0 == form }?.1)
        // The parser takes the message, so the secret in it would have been used.
        #expect((try? SIPParser().parse(Array(text.utf8))) != nil)
        let redacted = SIPTraceRedaction.redact(text)
        #expect(!redacted.contains(Self.token))
        #expect(!redacted.contains(Self.digestResponse))
        #expect(!redacted.contains("c2VjcmV0"))
        #expect(redacted.contains("[redacted]"))
        // What an operator reads stays: the method or status, the Call-ID.
        #expect(redacted.contains("Call-ID: c"))
    }

    @Test func item09BytesThatDoNotParseHaveEveryCredentialLineMasked() {
        let broken = [
            "REGISTER sip:ims.example.com SIP/2.0\nAuthorization: Bearer \(Self.token)\n\tcontinued \(Self.digestResponse)\nX: y\n\n",
            "garbage\r\nProxy-Authorization : Digest response=\(Self.digestResponse)\r\n\r\n",
            "NOT SIP\rAuthorization:Bearer\t\(Self.token)\r",
            "\u{301}Authorization: \(Self.token)\u{301}\n",
        ]
        for text in broken {
            #expect((try? SIPParser().parse(Array(text.utf8))) == nil)
            let redacted = SIPTraceRedaction.redact(text)
            #expect(!redacted.contains(Self.token), "\(text)")
            #expect(!redacted.contains(Self.digestResponse), "\(text)")
        }
    }

    @Test func item09HarmlessParametersStayReadable() {
        let text =
            "REGISTER sip:ims.example.com SIP/2.0\r\nVia: SIP/2.0/WSS a.invalid;branch=z9hG4bK6\r\nFrom: <sip:a@ims.example.com>;tag=1\r\nTo: <sip:a@ims.example.com>\r\nCall-ID: c6\r\nCSeq: 1 REGISTER\r\nAuthorization: Digest username=\"alice@ims.example.com\", realm=\"ims.example.com\", nonce=\"abc\", uri=\"sip:ims.example.com\", response=\"\(Self.digestResponse)\", integrity-protected=auth-done\r\nContent-Length: 0\r\n\r\n"
        let redacted = SIPTraceRedaction.redact(text)
        #expect(redacted.contains("username=\"alice@ims.example.com\""))
        #expect(redacted.contains("integrity-protected=auth-done"))
        #expect(redacted.contains("response=\"[redacted]\""))
        #expect(!redacted.contains(Self.digestResponse))
    }
}
