import LoadGenerator
import NIOCore
import Testing

@testable import SIPTransport

/// Flows write their frames themselves (one TLS record per SIP message): each length form of
/// RFC 6455 §5.2, unmasked, FIN set.
@Test func serverFramesHaveEachLengthForm() {
    for (count, header) in [
        (0, [0x81, 0x00]), (125, [0x81, 0x7D]), (126, [0x81, 0x7E, 0x00, 0x7E]),
        (65_535, [0x81, 0x7E, 0xFF, 0xFF]), (65_536, [0x81, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00]),
    ] as [(Int, [UInt8])] {
        let payload = (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let frame = serverFrame(WebSocketOpcode.text, payload, allocator: ByteBufferAllocator())
        let bytes = frame.getBytes(at: frame.readerIndex, length: frame.readableBytes) ?? []
        #expect(Array(bytes.prefix(header.count)) == header, "\(count) bytes")
        #expect(Array(bytes.dropFirst(header.count)) == payload, "\(count) bytes")
    }
    let close = closeFrame(WebSocketCloseCode.messageTooLarge, allocator: ByteBufferAllocator())
    #expect(Array(close.readableBytesView) == [0x88, 0x02, 0x03, 0xF1])
}

@Suite struct ClientFrameTests {
    static func read(_ frame: [UInt8], max: Int = 65_536) -> ClientFrameHeader.Reading {
        frame.withUnsafeBytes { ClientFrameHeader.read($0, maxPayload: max) }
    }

    /// Every payload length around the eight-byte steps and each length form, several keys,
    /// appended after earlier bytes: what the load generator's byte-by-byte masking sent.
    @Test func framesAreReadAndUnmasked() throws {
        var generator = SystemRandomNumberGenerator()
        let keys: [[UInt8]] = [[0, 0, 0, 0], [0xFF, 0x01, 0x80, 0x7F], (0..<4).map { _ in .random(in: 0...255) }]
        for key in keys {
            for length in Array(0...40) + [125, 126, 127, 65_535, 65_536] {
                let payload = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
                let frame = ClientFrames.masked(payload, opcode: 0x2, fin: length % 2 == 0, mask: key)
                guard case .frame(let header) = Self.read(frame) else {
                    Issue.record("length \(length): not read")
                    continue
                }
                #expect(header.opcode == 0x2 && header.fin == (length % 2 == 0))
                #expect(header.headerLength + header.payloadLength == frame.count)
                var message: [UInt8] = [1, 2, 3]
                frame.withUnsafeBytes {
                    appendUnmasked(
                        UnsafeRawBufferPointer(rebasing: $0[header.headerLength...]), key: header.maskKey, to: &message)
                }
                #expect(message == [1, 2, 3] + payload, "length \(length), key \(key)")
            }
        }
    }

    /// A header cut short anywhere waits for more; the payload is not needed to read it.
    @Test func aShortHeaderWaits() {
        let frame = ClientFrames.masked(Array(repeating: 7, count: 300), mask: [1, 2, 3, 4])
        for cut in 0..<8 { #expect(Self.read(Array(frame.prefix(cut))) == .needMore, "\(cut) bytes") }
        guard case .frame(let header) = Self.read(Array(frame.prefix(8))) else {
            Issue.record("a whole header was not read")
            return
        }
        #expect(header.payloadLength == 300 && header.headerLength == 8)
    }

    /// What RFC 6455 forbids a client: 1002; a payload over the limit: 1009, from the header.
    @Test func forbiddenFramesAreRefused() {
        let masked = ClientFrames.masked(Array("x".utf8), mask: [1, 2, 3, 4])
        var unmasked = masked
        unmasked[1] &= 0x7F
        #expect(Self.read(unmasked) == .refuse(1002))  // §5.1: unmasked
        var reserved = masked
        reserved[0] |= 0x40
        #expect(Self.read(reserved) == .refuse(1002))  // §5.2: RSV1 without an extension
        // An unknown opcode; a fragmented control frame (§5.5); one over 125 bytes.
        #expect(Self.read(ClientFrames.masked([], opcode: 0x3, mask: [0, 0, 0, 0])) == .refuse(1002))
        #expect(Self.read(ClientFrames.masked([], opcode: 0x9, fin: false, mask: [0, 0, 0, 0])) == .refuse(1002))
        #expect(
            Self.read(ClientFrames.masked(Array(repeating: 0, count: 126), opcode: 0x9, mask: [0, 0, 0, 0]))
                == .refuse(1002))
        #expect(
            Self.read(ClientFrames.masked(Array(repeating: 0, count: 200), mask: [0, 0, 0, 0]), max: 199)
                == .refuse(1009))
        // A 64-bit length is refused before any of its payload arrives.
        #expect(Self.read([0x81, 0xFF, 0, 0, 0, 1, 0, 0, 0, 0]) == .refuse(1009))
        #expect(Self.read([0x81, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0]) == .refuse(1009))
    }

    /// Random bytes, as a hostile client may send: the reader never reads past what it was
    /// given, and what it calls a frame is one its header describes.
    @Test func randomBytesAreReadSafely() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<20_000 {
            let count = Int.random(in: 0...24, using: &generator)
            var bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
            if count > 1, Bool.random(using: &generator) { bytes[1] |= 0x80 }  // masked, to go further
            let limit = Int.random(in: 0...70_000, using: &generator)
            switch Self.read(bytes, max: limit) {
            case .needMore, .refuse(1002), .refuse(1009): break
            case .refuse(let code): Issue.record("unexpected close code \(code)")
            case .frame(let header):
                #expect(header.headerLength <= bytes.count && [6, 8, 14].contains(header.headerLength))
                #expect(header.payloadLength <= limit)
                #expect(header.opcode & 0x7 <= 2 || (header.fin && header.payloadLength <= 125))
            }
        }
    }

    /// RFC 6455 §1.3's own example of the handshake's accept value.
    @Test func theAcceptValueIsRFC6455s() {
        #expect(SIPWebSocketUpgrader.accept(key: "dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    }
}
