/// base64url without padding (RFC 7515 §2); nil on anything else, including padding,
/// a length no encoding has, and leftover bits that are not zero (RFC 4648 §3.5).
/// Written out over bytes: it decodes every bearer token and Digest nonce.
public func base64URLDecode(_ text: String) -> [UInt8]? {
    var text = text
    return text.withUTF8 { base64URLDecode($0) }
}

/// base64url as `base64URLDecode(_:)` reads it, from bytes (a part of a token in place).
public func base64URLDecode(_ input: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
    let n = input.count
    guard n % 4 != 1 else { return nil }
    let values = Base64URL.values
    var out = [UInt8]()
    out.reserveCapacity(n * 3 / 4)
    var i = 0
    while i + 4 <= n {
        let a = values[Int(input[i])]
        let b = values[Int(input[i + 1])]
        let c = values[Int(input[i + 2])]
        let d = values[Int(input[i + 3])]
        guard a | b | c | d < 64 else { return nil }
        let v = UInt32(a) << 18 | UInt32(b) << 12 | UInt32(c) << 6 | UInt32(d)
        out.append(UInt8(truncatingIfNeeded: v >> 16))
        out.append(UInt8(truncatingIfNeeded: v >> 8))
        out.append(UInt8(truncatingIfNeeded: v))
        i += 4
    }
    switch n - i {
    case 2:
        let a = values[Int(input[i])]
        let b = values[Int(input[i + 1])]
        guard a | b < 64, b & 0x0F == 0 else { return nil }
        out.append(a << 2 | b >> 4)
    case 3:
        let a = values[Int(input[i])]
        let b = values[Int(input[i + 1])]
        let c = values[Int(input[i + 2])]
        guard a | b | c < 64, c & 0x03 == 0 else { return nil }
        out.append(a << 2 | b >> 4)
        out.append(b << 4 | c >> 2)
    default:
        break
    }
    return out
}

public func base64URLEncode(_ bytes: [UInt8]) -> String {
    let n = bytes.count
    let length = (n * 4 + 2) / 3
    let alphabet = Base64URL.alphabet
    var out = [UInt8](repeating: 0, count: length)
    var i = 0
    var o = 0
    while i + 3 <= n {
        let v = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
        out[o] = alphabet[Int(v >> 18)]
        out[o + 1] = alphabet[Int(v >> 12 & 63)]
        out[o + 2] = alphabet[Int(v >> 6 & 63)]
        out[o + 3] = alphabet[Int(v & 63)]
        i += 3
        o += 4
    }
    switch n - i {
    case 1:
        let v = UInt32(bytes[i]) << 16
        out[o] = alphabet[Int(v >> 18)]
        out[o + 1] = alphabet[Int(v >> 12 & 63)]
    case 2:
        let v = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8
        out[o] = alphabet[Int(v >> 18)]
        out[o + 1] = alphabet[Int(v >> 12 & 63)]
        out[o + 2] = alphabet[Int(v >> 6 & 63)]
    default:
        break
    }
    return String(decoding: out, as: UTF8.self)
}

private enum Base64URL {
    static let alphabet: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
    /// Byte → its 6-bit value; 0xFF for bytes outside the alphabet.
    static let values: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (value, byte) in alphabet.enumerated() { table[Int(byte)] = UInt8(value) }
        return table
    }()
}
