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
