import NIOCore
import SIPCore

/// One SIP message read from a buffer, or why it could not be, with the response that
/// answers it when the bytes say enough to address one (RFC 3261 §8.2.6.2).
public enum SIPInbound: Sendable {
    case message(SIPMessage)
    case malformed(SIPParseError, answer: SIPResponse?)
}

extension SIPParser {
    /// Parses a whole message held in a ByteBuffer (a datagram, a framed stream message or
    /// a WebSocket message): what every listener does with the bytes it receives.
    public func parse(_ buffer: ByteBuffer, framing: SIPFraming) -> SIPInbound {
        buffer.withUnsafeUInt8Bytes { bytes in
            do throws(SIPParseError) {
                return .message(try parse(bytes, framing: framing))
            } catch {
                return .malformed(error, answer: SIPResponse.errorResponse(forUnparseable: bytes, error: error))
            }
        }
    }

    /// The same for a message already in an array (a reassembled WebSocket message): the
    /// parsed message keeps the array as its backing, with no copy.
    public func parseInbound(_ bytes: [UInt8], framing: SIPFraming) -> SIPInbound {
        do throws(SIPParseError) {
            return .message(try parse(bytes, framing: framing))
        } catch {
            return bytes.withUnsafeBufferPointer {
                .malformed(error, answer: SIPResponse.errorResponse(forUnparseable: $0, error: error))
            }
        }
    }
}

extension ByteBuffer {
    /// The readable bytes as UInt8s, for the byte-level parsers of SIPCore.
    func withUnsafeUInt8Bytes<R>(_ body: (UnsafeBufferPointer<UInt8>) throws -> R) rethrows -> R {
        try withUnsafeReadableBytes { raw in
            try body(UnsafeBufferPointer(start: raw.baseAddress?.assumingMemoryBound(to: UInt8.self), count: raw.count))
        }
    }
}
