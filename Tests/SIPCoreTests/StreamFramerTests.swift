import Foundation
import Testing

@testable import SIPCore

@Suite struct StreamFramerTests {
    func frame(_ text: String, limits: SIPParserLimits = .default) throws -> SIPStreamFrame {
        var bytes = Array(text.utf8)
        return try bytes.withUnsafeMutableBufferPointer { b in
            try SIPStreamFramer(limits: limits).nextFrame(UnsafeBufferPointer(b))
        }
    }

    @Test func keepAlivesPerRFC5626() throws {
        #expect(try frame("\r\n\r\n") == .ping)
        #expect(try frame("\r\nREGISTER") == .pong)
        #expect(try frame("\r\n") == .needMoreData)
        #expect(try frame("\r\n\r") == .needMoreData)
        #expect(try frame("") == .needMoreData)
        #expect(throws: SIPParseError.self) { try frame("\rX") }
    }

    @Test func messagesEndAtContentLength() throws {
        let msg = Fixtures.register92
        let n = msg.utf8.count
        #expect(try frame(msg) == .message(length: n))
        #expect(try frame(msg + "OPTIONS sip:x SIP/2.0\r\n") == .message(length: n))
        #expect(try frame(String(msg.prefix(100))) == .needMoreData)
        let withBody = msg.replacingOccurrences(of: "Content-Length: 0", with: "l: 4")
        #expect(try frame(withBody) == .needMoreData)
        #expect(try frame(withBody + "abcd") == .message(length: withBody.utf8.count + 4))
    }

    @Test func streamsWithoutContentLengthOrTooLargeAreRejected() {
        let noCL = Fixtures.register92.replacingOccurrences(of: "Content-Length: 0\r\n", with: "")
        #expect(throws: SIPParseError(.missingContentLength)) { try frame(noCL) }
        let huge = Fixtures.register92.replacingOccurrences(of: "Content-Length: 0", with: "Content-Length: 65536")
        #expect(throws: SIPParseError.self) { try frame(huge) }
        #expect(throws: SIPParseError(.messageTooLarge)) {
            try frame(
                "OPTIONS sip:x SIP/2.0\r\n" + String(repeating: "X-A: b\r\n", count: 20),
                limits: SIPParserLimits(maxMessageSize: 64))
        }
        #expect(throws: SIPParseError(.headerLineTooLong)) {
            try frame("OPTIONS sip:x SIP/2.0\r\nX: " + String(repeating: "a", count: 9000))
        }
    }

    /// What cannot start a SIP message is refused at once, before any line end: a TLS
    /// ClientHello sent to a TCP port, binary noise, a control character in the start line.
    @Test func notSIPIsRefusedWithoutWaitingForALineEnd() throws {
        for head in [[0x16, 0x03, 0x01, 0x02, 0x00], [0x00], [0x20, 0x41], [0x80, 0x41]] as [[UInt8]] {
            #expect(throws: SIPParseError(.malformedStartLine), "\(head)") {
                try head.withUnsafeBufferPointer { try SIPStreamFramer().nextFrame($0) }
            }
        }
        #expect(throws: SIPParseError(.malformedStartLine)) { try frame("OPTIONS sip:x\u{01}") }
        #expect(throws: SIPParseError(.malformedStartLine)) { try frame("OPTIONS sip:x\u{7F}") }
        // Header lines may hold what the parser judges later; only the start line is checked here.
        #expect(try frame("OPTIONS sip:x SIP/2.0\r\nX: \u{01}") == .needMoreData)
    }

    /// A scan that ran out of bytes goes on where it stopped: fed one byte at a time, or in
    /// any other pieces, the frames found are those of the whole stream at once — and each
    /// byte is looked at a bounded number of times, not once per arrival.
    @Test func resumedScansFindTheSameFrames() throws {
        let withBody = Fixtures.register92.replacingOccurrences(of: "Content-Length: 0", with: "l: 4") + "abcd"
        let bytes = Array(withBody.utf8)
        let framer = SIPStreamFramer()
        var state = SIPStreamFramer.ScanState()
        var frames: [SIPStreamFrame] = []
        var scannedBefore = 0
        for end in 1...bytes.count {
            let frame = try bytes[..<end].withUnsafeBufferPointer { try framer.nextFrame($0, resuming: &state) }
            frames.append(frame)
            if frame == .needMoreData {
                // The header section is scanned up to the last byte given, and only the empty
                // line's two bytes are read again while the body arrives.
                if end < bytes.count - 4 { #expect(state.scanned == end) }
                #expect(state.scanned >= scannedBefore - 2)
                scannedBefore = state.scanned
            }
        }
        #expect(frames.last == .message(length: bytes.count))
        #expect(frames.dropLast().allSatisfy { $0 == .needMoreData })
        var random = SystemRandomNumberGenerator()
        for _ in 0..<50 {
            var state = SIPStreamFramer.ScanState()
            var end = 0
            var last = SIPStreamFrame.needMoreData
            while end < bytes.count {
                end = min(bytes.count, end + Int.random(in: 1...200, using: &random))
                last = try bytes[..<end].withUnsafeBufferPointer { try framer.nextFrame($0, resuming: &state) }
            }
            #expect(last == .message(length: bytes.count))
        }
    }
}
