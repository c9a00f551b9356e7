/// The client's side of RFC 6455 framing, written out by hand: the load generator and the
/// tests' WebSocket client send what a browser sends without depending on the transport
/// they measure or test.
public enum ClientFrames {
    /// One masked frame (RFC 6455 §5.2, §5.3): FIN and opcode, the length in 7, 7+16 or
    /// 7+64 bits, the key, the masked payload.
    public static func masked(_ payload: [UInt8], opcode: UInt8 = 0x1, fin: Bool = true, mask: [UInt8]) -> [UInt8] {
        var frame: [UInt8] = [(fin ? 0x80 : 0) | opcode]
        frame.reserveCapacity(payload.count + 14)
        if payload.count < 126 {
            frame.append(0x80 | UInt8(payload.count))
        } else if payload.count < 65536 {
            frame.append(0x80 | 126)
            frame += [UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
        } else {
            frame.append(0x80 | 127)
            frame += (0..<8).map { UInt8(truncatingIfNeeded: UInt64(payload.count) >> (8 * (7 - $0))) }
        }
        frame += mask
        for (offset, byte) in payload.enumerated() { frame.append(byte ^ mask[offset & 3]) }
        return frame
    }

    /// A random masking key (RFC 6455 §5.3: unpredictable per frame).
    public static func randomMask() -> [UInt8] { (0..<4).map { _ in UInt8.random(in: 0...255) } }

    /// Takes the first whole server frame off the front of `buffer`: (opcode, payload), or
    /// nil while it is incomplete.
    public static func take(from buffer: inout [UInt8]) -> (opcode: UInt8, payload: [UInt8])? {
        guard buffer.count >= 2 else { return nil }
        var length = Int(buffer[1] & 0x7F)
        var offset = 2
        if length == 126 {
            guard buffer.count >= 4 else { return nil }
            length = Int(buffer[2]) << 8 | Int(buffer[3])
            offset = 4
        } else if length == 127 {
            guard buffer.count >= 10 else { return nil }
            length = buffer[2..<10].reduce(0) { $0 << 8 | Int($1) }
            offset = 10
        }
        guard buffer.count >= offset + length else { return nil }
        let frame = (buffer[0] & 0x0F, Array(buffer[offset..<offset + length]))
        buffer.removeFirst(offset + length)
        return frame
    }

    /// Where the HTTP head ends (the index of its CRLF CRLF), nil while it has not.
    public static func headEnd(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4 else { return nil }
        for i in 0...(bytes.count - 4)
        where bytes[i] == 13 && bytes[i + 1] == 10 && bytes[i + 2] == 13 && bytes[i + 3] == 10 {
            return i
        }
        return nil
    }
}
