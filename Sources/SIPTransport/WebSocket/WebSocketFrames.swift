import NIOCore
import NIOWebSocket

extension WebSocketFrame {
    /// Appends the frame's payload, unmasked (RFC 6455 §5.3), to `message`: one pass that
    /// XORs eight bytes at a time, where NIO's `unmaskedData` copies the payload into a new
    /// buffer and unmasks it a byte at a time — and the parser then copied it once more.
    func appendUnmaskedPayload(to message: inout [UInt8]) {
        data.withUnsafeReadableBytes { source in
            let count = source.count
            guard count > 0, let from = source.baseAddress else { return }
            guard let key = maskKey else {
                message.append(contentsOf: source)
                return
            }
            // The key's four bytes twice over, read the way the payload's words are read.
            let k = (UInt32(key[0]) | UInt32(key[1]) << 8 | UInt32(key[2]) << 16 | UInt32(key[3]) << 24).littleEndian
            let word = UInt64(k) | UInt64(k) << 32
            let start = message.count
            message.append(contentsOf: repeatElement(0, count: count))
            message.withUnsafeMutableBytes { target in
                guard let to = target.baseAddress?.advanced(by: start) else { return }
                var i = 0
                while i + 8 <= count {
                    let masked = from.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                    to.storeBytes(of: masked ^ word, toByteOffset: i, as: UInt64.self)
                    i += 8
                }
                while i < count {
                    to.storeBytes(
                        of: from.load(fromByteOffset: i, as: UInt8.self) ^ key[i & 3], toByteOffset: i, as: UInt8.self)
                    i += 1
                }
            }
        }
    }
}

/// Writes one SIP message down a flow as a text frame (RFC 7118 §5), header and payload in
/// one buffer handed to the handler below NIO's frame encoder. Through the encoder the
/// header went as a write of its own (it cannot prepend into a buffer the frame still
/// holds), so TLS sealed two records per message, one of them two bytes long.
func writeTextFrame(_ bytes: [UInt8], on channel: any Channel) {
    let frame = textFrame(bytes, allocator: channel.allocator)
    @Sendable func write() {
        // The encoder is there from the upgrade on, until the pipeline is torn down: without
        // it the flow is closing and nothing can go out (a frame written at the pipeline's
        // tail could then reach the socket unencoded).
        guard let encoder = try? channel.pipeline.syncOperations.context(handlerType: WebSocketFrameEncoder.self)
        else { return }
        encoder.writeAndFlush(NIOAny(frame), promise: nil)
    }
    if channel.eventLoop.inEventLoop { write() } else { channel.eventLoop.execute { write() } }
}

/// A final, unmasked text frame as a server sends it (RFC 6455 §5.2): FIN and opcode, the
/// length in 7, 7+16 or 7+64 bits, the payload.
func textFrame(_ payload: [UInt8], allocator: ByteBufferAllocator) -> ByteBuffer {
    var buffer = allocator.buffer(capacity: payload.count + 10)
    buffer.writeInteger(UInt8(0x81))
    if payload.count < 126 {
        buffer.writeInteger(UInt8(payload.count))
    } else if payload.count <= Int(UInt16.max) {
        buffer.writeInteger(UInt8(126))
        buffer.writeInteger(UInt16(payload.count))
    } else {
        buffer.writeInteger(UInt8(127))
        buffer.writeInteger(UInt64(payload.count))
    }
    buffer.writeBytes(payload)
    return buffer
}
