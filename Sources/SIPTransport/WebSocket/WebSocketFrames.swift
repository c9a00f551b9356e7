import NIOCore

/// RFC 6455 framing as the flow handler reads and writes it, on the bytes TLS hands up and
/// down: no frame codec handlers of NIO's in the pipeline. Each of those cost an idle flow
/// its object, context and buffers (~0.8 KB over three) and each message a hop through
/// `NIOAny` and a `WebSocketFrame` value.
enum WebSocketOpcode {
    static let continuation: UInt8 = 0x0
    static let text: UInt8 = 0x1
    static let binary: UInt8 = 0x2
    static let close: UInt8 = 0x8
    static let ping: UInt8 = 0x9
    static let pong: UInt8 = 0xA
}

/// Close status codes the server sends (RFC 6455 §7.4.1).
enum WebSocketCloseCode {
    static let goingAway: UInt16 = 1001
    static let protocolError: UInt16 = 1002
    static let policyViolation: UInt16 = 1008
    static let messageTooLarge: UInt16 = 1009
}

/// One client frame's header (RFC 6455 §5.2), read from the front of the bytes received.
struct ClientFrameHeader: Equatable {
    var fin: Bool
    var opcode: UInt8
    /// The masking key as the payload's bytes are read in little-endian words.
    var maskKey: UInt32
    /// Header bytes, payload bytes.
    var headerLength: Int
    var payloadLength: Int

    enum Reading: Equatable {
        case needMore
        case frame(ClientFrameHeader)
        /// The flow must be closed with this code.
        case refuse(UInt16)
    }

    /// Reads a header and checks what RFC 6455 demands of a client's frame: reserved bits
    /// clear (§5.2, no extension was agreed), masked (§5.1), a known opcode (§5.2), control
    /// frames whole and at most 125 bytes (§5.5), and no payload over `maxPayload` — refused
    /// from the header alone, before any of it is buffered.
    static func read(_ bytes: UnsafeRawBufferPointer, maxPayload: Int) -> Reading {
        guard bytes.count >= 2 else { return .needMore }
        let first = bytes[0]
        let second = bytes[1]
        let opcode = first & 0x0F
        let fin = first & 0x80 != 0
        guard first & 0x70 == 0, second & 0x80 != 0 else { return .refuse(WebSocketCloseCode.protocolError) }
        switch opcode {
        case WebSocketOpcode.continuation, WebSocketOpcode.text, WebSocketOpcode.binary: break
        case WebSocketOpcode.close, WebSocketOpcode.ping, WebSocketOpcode.pong:
            guard fin, second & 0x7F <= 125 else { return .refuse(WebSocketCloseCode.protocolError) }
        default: return .refuse(WebSocketCloseCode.protocolError)
        }
        var length = Int(second & 0x7F)
        var offset = 2
        if length == 126 {
            guard bytes.count >= 4 else { return .needMore }
            length = Int(bytes[2]) << 8 | Int(bytes[3])
            offset = 4
        } else if length == 127 {
            guard bytes.count >= 10 else { return .needMore }
            // The most significant bit must be 0 (§5.2); anything near it is over any limit.
            guard bytes[2] == 0 else { return .refuse(WebSocketCloseCode.messageTooLarge) }
            var value: UInt64 = 0
            for i in 2..<10 { value = value << 8 | UInt64(bytes[i]) }
            guard value <= UInt64(maxPayload) else { return .refuse(WebSocketCloseCode.messageTooLarge) }
            length = Int(value)
            offset = 10
        }
        guard length <= maxPayload else { return .refuse(WebSocketCloseCode.messageTooLarge) }
        guard bytes.count >= offset + 4 else { return .needMore }
        let key = bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self)
        return .frame(
            ClientFrameHeader(fin: fin, opcode: opcode, maskKey: key, headerLength: offset + 4, payloadLength: length))
    }
}

/// Appends `payload` to `message`, unmasked (RFC 6455 §5.3) with `key` as
/// `ClientFrameHeader` read it: eight bytes at a time, one pass, no copy in between.
func appendUnmasked(_ payload: UnsafeRawBufferPointer, key: UInt32, to message: inout [UInt8]) {
    let count = payload.count
    guard count > 0, let from = payload.baseAddress else { return }
    // The key's four bytes twice over, as the payload's words are loaded (native order on
    // both sides, so the XOR lines up byte for byte).
    let word = UInt64(key) | UInt64(key) << 32
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
        // Byte j of the key in memory is the j-th byte up of its little-endian value.
        let ordered = key.littleEndian
        while i < count {
            let keyByte = UInt8(truncatingIfNeeded: ordered >> (8 * UInt32(i & 3)))
            to.storeBytes(of: from.load(fromByteOffset: i, as: UInt8.self) ^ keyByte, toByteOffset: i, as: UInt8.self)
            i += 1
        }
    }
}

/// A final, unmasked frame as a server sends it (RFC 6455 §5.2): FIN and opcode, the length
/// in 7, 7+16 or 7+64 bits, the payload — header and payload in one buffer, so TLS seals
/// one record per message.
func serverFrame(_ opcode: UInt8, _ payload: some Collection<UInt8>, allocator: ByteBufferAllocator) -> ByteBuffer {
    let count = payload.count
    var buffer = allocator.buffer(capacity: count + 10)
    buffer.writeInteger(UInt8(0x80 | opcode))
    if count < 126 {
        buffer.writeInteger(UInt8(count))
    } else if count <= Int(UInt16.max) {
        buffer.writeInteger(UInt8(126))
        buffer.writeInteger(UInt16(count))
    } else {
        buffer.writeInteger(UInt8(127))
        buffer.writeInteger(UInt64(count))
    }
    buffer.writeBytes(payload)
    return buffer
}

/// A close frame with its status code (RFC 6455 §5.5.1).
func closeFrame(_ code: UInt16, allocator: ByteBufferAllocator) -> ByteBuffer {
    serverFrame(WebSocketOpcode.close, [UInt8(code >> 8), UInt8(code & 0xFF)], allocator: allocator)
}

/// Writes one SIP message down a flow as a text frame (RFC 7118 §5).
func writeTextFrame(_ bytes: [UInt8], on channel: any Channel) {
    writeFrame(serverFrame(WebSocketOpcode.text, bytes, allocator: channel.allocator), on: channel)
}

/// Writes a frame down a flow from the flow handler's place in the pipeline, on the flow's
/// loop. The handler is there from the upgrade on, until the pipeline is torn down: without
/// it the flow is closing and nothing can go out (a frame written at the pipeline's tail
/// could then reach the socket past TLS).
func writeFrame(_ frame: ByteBuffer, on channel: any Channel) {
    @Sendable func write() {
        guard let flow = try? channel.pipeline.syncOperations.context(handlerType: SIPWebSocketHandler.self)
        else { return }
        flow.writeAndFlush(NIOAny(frame), promise: nil)
    }
    if channel.eventLoop.inEventLoop { write() } else { channel.eventLoop.execute { write() } }
}
