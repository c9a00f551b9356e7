import NIOCore
import NIOWebSocket
import Testing

@testable import SIPTransport

/// Flows write their text frames themselves (one TLS record per SIP message): each length
/// form of RFC 6455 §5.2, unmasked, FIN set.
@Test func textFramesHaveEachLengthForm() {
    for (count, header) in [
        (0, [0x81, 0x00]), (125, [0x81, 0x7D]), (126, [0x81, 0x7E, 0x00, 0x7E]),
        (65_535, [0x81, 0x7E, 0xFF, 0xFF]), (65_536, [0x81, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00]),
    ] as [(Int, [UInt8])] {
        let payload = (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let frame = textFrame(payload, allocator: ByteBufferAllocator())
        let bytes = frame.getBytes(at: frame.readerIndex, length: frame.readableBytes) ?? []
        #expect(Array(bytes.prefix(header.count)) == header, "\(count) bytes")
        #expect(Array(bytes.dropFirst(header.count)) == payload, "\(count) bytes")
    }
}

@Suite struct WebSocketMaskingTests {
    /// Every payload length around the eight-byte steps, several keys, masked and not, and
    /// appended after earlier bytes: the same bytes as NIO's own unmasking.
    @Test func unmaskingMatchesNIOs() throws {
        var generator = SystemRandomNumberGenerator()
        let keys: [WebSocketMaskingKey?] = [nil, [0, 0, 0, 0], [0xFF, 0x01, 0x80, 0x7F], .random(using: &generator)]
        for key in keys {
            for length in 0...40 {
                let payload = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
                var masked = ByteBuffer(bytes: payload)
                if let key { masked.webSocketMask(key) }
                let frame = WebSocketFrame(fin: true, opcode: .text, maskKey: key, data: masked)
                var message: [UInt8] = [1, 2, 3]
                frame.appendUnmaskedPayload(to: &message)
                #expect(message == [1, 2, 3] + payload, "length \(length), key \(String(describing: key))")
                #expect(Array(frame.unmaskedData.readableBytesView) == payload)
            }
        }
    }
}
