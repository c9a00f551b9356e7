import Foundation
import SIPExamples
import Testing

@testable import SIPCore

@Suite struct HostileInputTests {
    static let valid = Fixtures.register92

    @Test(
        arguments: [
            ("", SIPParseError.Kind.malformedStartLine),
            ("\r\n\r\n", .malformedStartLine),
            ("REGISTER sip:h SIP/2.0", .malformedStartLine),
            ("REGISTER sip:h SIP/3.0\r\n\r\n", .unsupportedVersion),
            ("REGISTER sip:h\r\n\r\n", .malformedStartLine),
            ("REG@STER sip:h SIP/2.0\r\n\r\n", .invalidMethod),
            ("REGISTER  sip:h SIP/2.0\r\n\r\n", .malformedStartLine),
            ("REGISTER sip:@@ SIP/2.0\r\n\r\n", .invalidURI),
            ("SIP/2.0 99 Low\r\n\r\n", .invalidStatusCode),
            ("SIP/2.0 2000 Long\r\n\r\n", .invalidStatusCode),
            ("SIP/2.0 abc Bad\r\n\r\n", .invalidStatusCode),
            ("SIP/1.0 200 OK\r\n\r\n", .unsupportedVersion),
        ] as [(String, SIPParseError.Kind)])
    func malformedStartLines(text: String, kind: SIPParseError.Kind) {
        #expect(throws: SIPParseError(kind)) { try SIPParser().parse(text) }
    }

    /// Header text is checked sixteen bytes at a time: a control byte is caught at every
    /// position of a block and of the tail, and HT and UTF-8 pass anywhere.
    @Test func controlBytesAreCaughtAtEveryPosition() throws {
        let value = String(repeating: "abcdefghij", count: 4) + "xyz"
        for position in 0..<value.utf8.count {
            var bytes = Array(value.utf8)
            for bad: UInt8 in [0x00, 0x01, 0x0B, 0x1F, 0x7F] {
                bytes[position] = bad
                let line = "Subject: " + String(decoding: bytes, as: UTF8.self)
                let text = Self.valid.replacingOccurrences(of: "Max-Forwards: 70", with: "Max-Forwards: 70\r\n" + line)
                #expect(
                    throws: SIPParseError(.malformedHeaderLine, header: SIPHeaderName("Subject")),
                    "\(bad) at \(position)"
                ) {
                    try SIPParser().parse(text)
                }
            }
            bytes[position] = 0x09
            let tabbed = "Subject: " + String(decoding: bytes, as: UTF8.self)
            let text = Self.valid.replacingOccurrences(
                of: "Max-Forwards: 70", with: "Max-Forwards: 70\r\n" + tabbed + " é")
            guard case .request(let request) = try SIPParser().parse(text) else {
                Issue.record("not a request")
                return
            }
            #expect(request.headers[SIPHeaderName("Subject")]?.hasSuffix(" é") == true)
        }
    }

    @Test func missingMandatoryHeadersAreNamed() {
        for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
            let text = Self.valid.split(separator: "\r\n", omittingEmptySubsequences: false)
                .filter { !$0.hasPrefix(name + ":") }.joined(separator: "\r\n")
            do {
                _ = try SIPParser().parse(text)
                Issue.record("no error without \(name)")
            } catch {
                #expect(error.kind == .missingHeader)
                #expect(error.reasonPhrase == "Missing \(name) header")
            }
        }
    }

    @Test(
        arguments: [
            ("CSeq: 1 REGISTER", "CSeq: 1 INVITE", SIPParseError(.cseqMethodMismatch)),
            ("CSeq: 1 REGISTER", "CSeq: one REGISTER", SIPParseError(.invalidHeader, header: .cseq)),
            ("Call-ID: 9fxced76sl", "Call-ID: a b", SIPParseError(.invalidHeader, header: .callID)),
            ("Call-ID: 9fxced76sl", "Call-ID:", SIPParseError(.invalidHeader, header: .callID)),
            ("Max-Forwards: 70", "Max-Forwards 70", SIPParseError(.malformedHeaderLine)),
            ("Max-Forwards: 70", ": 70", SIPParseError(.malformedHeaderLine)),
            ("Max-Forwards: 70", "Max Forwards: 70", SIPParseError(.malformedHeaderLine)),
            ("Max-Forwards: 70", "Max-Forwards: 7\u{0}0", SIPParseError(.malformedHeaderLine, header: .maxForwards)),
            ("Max-Forwards: 70", "Max-Forwards: 7\r0", SIPParseError(.malformedHeaderLine, header: .maxForwards)),
            ("Content-Length: 0", "Content-Length: -1", SIPParseError(.invalidHeader, header: .contentLength)),
            ("Content-Length: 0", "Content-Length: 10", SIPParseError(.contentLengthMismatch)),
            ("Content-Length: 0", "Content-Length: 0\r\nl: 5", SIPParseError(.invalidHeader, header: .contentLength)),
            (
                "Content-Length: 0", "Content-Length: 99999999999999999999999",
                SIPParseError(.invalidHeader, header: .contentLength)
            ),
            (
                "To: <sip:alice@ims.example.com>", "To: <sip:a@h>\r\nTo: <sip:b@h>",
                SIPParseError(.invalidHeader, header: .to)
            ),
        ] as [(String, String, SIPParseError)])
    func malformedHeaderLines(original: String, replacement: String, error: SIPParseError) {
        let text = Self.valid.replacingOccurrences(of: original, with: replacement)
        #expect(throws: error) { try SIPParser().parse(text) }
    }

    @Test func continuationLineFirstIsRejected() {
        let text = "REGISTER sip:h SIP/2.0\r\n folded\r\n\r\n"
        #expect(throws: SIPParseError(.malformedHeaderLine)) { try SIPParser().parse(text) }
    }

    @Test func invalidUTF8IsATypedError() {
        var bytes = Array(Self.valid.utf8)
        let range = try! #require(Self.valid.range(of: "tag=5pf2k7d2"))
        let offset = Self.valid.utf8.distance(from: Self.valid.startIndex, to: range.lowerBound)
        bytes[offset + 4] = 0xFF
        #expect(throws: SIPParseError(.invalidUTF8, header: .from)) { try SIPParser().parse(bytes) }
    }

    @Test func limitsAreEnforced() {
        let tiny = SIPParser(limits: SIPParserLimits(maxMessageSize: 100))
        #expect(throws: SIPParseError(.messageTooLarge)) { try tiny.parse(Self.valid) }
        let fewHeaders = SIPParser(limits: SIPParserLimits(maxHeaderFields: 5))
        #expect(throws: SIPParseError(.tooManyHeaders)) { try fewHeaders.parse(Self.valid) }
        let shortLines = SIPParser(limits: SIPParserLimits(maxHeaderLineLength: 60))
        #expect(throws: SIPParseError(.headerLineTooLong)) { try shortLines.parse(Self.valid) }
        // Many folded continuation lines cannot grow one value without bound.
        let folds = String(repeating: " x\r\n", count: 10_000)
        let text = Self.valid.replacingOccurrences(
            of: "Expires: 600000\r\n", with: "Expires: 600000\r\n" + "X-A: a\r\n" + folds)
        #expect(throws: SIPParseError.self) {
            try SIPParser(limits: SIPParserLimits(maxMessageSize: 1 << 20)).parse(text)
        }
    }

    @Test func reasonPhrasesNeverEchoInput() {
        let text = Self.valid.replacingOccurrences(of: "Max-Forwards: 70", with: "X-Evil\r\nInjected: yes: 1")
        do {
            _ = try SIPParser().parse(text)
            Issue.record("no error")
        } catch {
            #expect(!error.reasonPhrase.contains("Evil"))
            #expect(!error.reasonPhrase.contains("\r"))
        }
    }

    @Test func typedHeaderErrorsNameTheirHeader() throws {
        let text = Self.valid.replacingOccurrences(
            of: "From: <sip:alice@ims.example.com>;tag=5pf2k7d2", with: "From: <sip:alice@>;tag=1")
        let r = try Fixtures.request(text)
        do {
            _ = try r.headers.from
            Issue.record("no error")
        } catch {
            #expect(error.header == .from)
            #expect(error.reasonPhrase == "Invalid Host in From header")
        }
    }

    @Test func randomMutationsNeverCrash() {
        // A quick in-process fuzz: the libFuzzer target (Fuzz/) explores much further.
        var rng = SplitMix64(seed: 42)
        let seeds = [Fixtures.register92, Fixtures.register94, Fixtures.ok95].map { Array($0.utf8) }
        var parsed = 0
        for i in 0..<3_000 {
            var bytes = seeds[i % seeds.count]
            for _ in 0..<(1 + Int(rng.next() % 8)) {
                let pos = Int(rng.next() % UInt64(bytes.count))
                switch rng.next() % 4 {
                case 0: bytes[pos] = UInt8(truncatingIfNeeded: rng.next())
                case 1: bytes.remove(at: pos)
                case 2:
                    let specials = Array(";,<>\"\\:@ \r\n%[]=*".utf8)
                    bytes.insert(specials[Int(rng.next() % UInt64(specials.count))], at: pos)
                default: bytes.insert(contentsOf: bytes[pos..<min(bytes.count, pos + 16)], at: pos)
                }
            }
            if let message = try? SIPParser().parse(bytes) {
                parsed += 1
                exerciseTypedViews(message)
                _ = message.serialized()
            }
            var framed = bytes
            framed.withUnsafeMutableBufferPointer { b in
                _ = try? SIPStreamFramer().nextFrame(UnsafeBufferPointer(b))
            }
        }
        #expect(parsed > 0)
    }
}

/// Deterministic random numbers for generated tests.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
