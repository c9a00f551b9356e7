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
}
