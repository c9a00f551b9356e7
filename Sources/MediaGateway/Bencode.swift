/// A bencoded value (BitTorrent's encoding, which rtpengine's ng protocol carries):
/// integers, byte strings, lists and dictionaries with byte-string keys.
public enum Bencode: Sendable, Hashable {
    case integer(Int)
    case bytes([UInt8])
    case list([Bencode])
    /// Keys are written sorted as raw bytes, as bencode requires.
    case dictionary([String: Bencode])

    public static func string(_ text: String) -> Bencode { .bytes(Array(text.utf8)) }

    /// The value as text when it is a byte string of UTF-8.
    public var text: String? {
        guard case .bytes(let bytes) = self else { return nil }
        return String(validating: bytes, as: UTF8.self)
    }

    public var integer: Int? {
        if case .integer(let value) = self { return value }
        return nil
    }

    public var list: [Bencode]? {
        if case .list(let items) = self { return items }
        return nil
    }

    public var dictionary: [String: Bencode]? {
        if case .dictionary(let entries) = self { return entries }
        return nil
    }

    public subscript(key: String) -> Bencode? { dictionary?[key] }

    // MARK: writing

    public var encoded: [UInt8] {
        var out = [UInt8]()
        append(to: &out)
        return out
    }

    public func append(to out: inout [UInt8]) {
        switch self {
        case .integer(let value):
            out.append(UInt8(ascii: "i"))
            out.append(contentsOf: String(value).utf8)
            out.append(UInt8(ascii: "e"))
        case .bytes(let bytes):
            Self.appendBytes(bytes, to: &out)
        case .list(let items):
            out.append(UInt8(ascii: "l"))
            for item in items { item.append(to: &out) }
            out.append(UInt8(ascii: "e"))
        case .dictionary(let entries):
            out.append(UInt8(ascii: "d"))
            // Sorted as raw strings (bencode's rule), not by Swift's Unicode ordering.
            for key in entries.keys.sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }) {
                Self.appendBytes(Array(key.utf8), to: &out)
                entries[key]?.append(to: &out)
            }
            out.append(UInt8(ascii: "e"))
        }
    }

    private static func appendBytes(_ bytes: [UInt8], to out: inout [UInt8]) {
        out.append(contentsOf: String(bytes.count).utf8)
        out.append(UInt8(ascii: ":"))
        out.append(contentsOf: bytes)
    }

    // MARK: reading

    /// Reads one value that fills `bytes` exactly. Nesting deeper than `maxDepth` and
    /// anything malformed (a length past the end, a non-text key, leading zeros, `-0`)
    /// is an error, never a trap: replies come from the network.
    public init(decoding bytes: some Collection<UInt8>, maxDepth: Int = 32) throws(BencodeError) {
        var reader = BencodeReader(bytes: Array(bytes), maxDepth: maxDepth)
        self = try reader.value(depth: 0)
        guard reader.offset == reader.bytes.count else { throw .trailingBytes(at: reader.offset) }
    }
}

public enum BencodeError: Error, Equatable, Sendable {
    case truncated
    case unexpectedByte(UInt8, at: Int)
    case badInteger(at: Int)
    case badLength(at: Int)
    case keyNotText(at: Int)
    case tooDeep
    case trailingBytes(at: Int)
}

private struct BencodeReader {
    let bytes: [UInt8]
    let maxDepth: Int
    var offset = 0

    init(bytes: [UInt8], maxDepth: Int) {
        self.bytes = bytes
        self.maxDepth = maxDepth
    }

    mutating func value(depth: Int) throws(BencodeError) -> Bencode {
        guard depth <= maxDepth else { throw .tooDeep }
        guard offset < bytes.count else { throw .truncated }
        let byte = bytes[offset]
        switch byte {
        case UInt8(ascii: "i"):
            offset += 1
            let value = try number(until: UInt8(ascii: "e"), signed: true)
            return .integer(value)
        case UInt8(ascii: "l"):
            offset += 1
            var items = [Bencode]()
            while try peek() != UInt8(ascii: "e") { items.append(try value(depth: depth + 1)) }
            offset += 1
            return .list(items)
        case UInt8(ascii: "d"):
            offset += 1
            var entries = [String: Bencode]()
            while case let next = try peek(), next != UInt8(ascii: "e") {
                let keyAt = offset
                guard next >= UInt8(ascii: "0"), next <= UInt8(ascii: "9") else {
                    throw .unexpectedByte(next, at: offset)
                }
                guard let key = String(validating: try byteString(), as: UTF8.self) else {
                    throw .keyNotText(at: keyAt)
                }
                entries[key] = try value(depth: depth + 1)
            }
            offset += 1
            return .dictionary(entries)
        case UInt8(ascii: "0")...UInt8(ascii: "9"):
            return .bytes(try byteString())
        default:
            throw .unexpectedByte(byte, at: offset)
        }
    }

    private func peek() throws(BencodeError) -> UInt8 {
        guard offset < bytes.count else { throw .truncated }
        return bytes[offset]
    }

    private mutating func byteString() throws(BencodeError) -> [UInt8] {
        let at = offset
        let length = try number(until: UInt8(ascii: ":"), signed: false)
        guard length <= bytes.count - offset else { throw .badLength(at: at) }
        defer { offset += length }
        return Array(bytes[offset..<offset + length])
    }

    /// Decimal digits up to `terminator`; no leading zeros, no `-0`, no overflow.
    private mutating func number(until terminator: UInt8, signed: Bool) throws(BencodeError) -> Int {
        let start = offset
        var negative = false
        if signed, offset < bytes.count, bytes[offset] == UInt8(ascii: "-") {
            negative = true
            offset += 1
        }
        let digitsStart = offset
        var value = 0
        while offset < bytes.count, bytes[offset] != terminator {
            let byte = bytes[offset]
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { throw .badInteger(at: start) }
            let (times, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times.addingReportingOverflow(Int(byte - UInt8(ascii: "0")))
            guard !overflow1, !overflow2 else { throw .badInteger(at: start) }
            value = sum
            offset += 1
        }
        guard offset < bytes.count else { throw .truncated }
        let digits = offset - digitsStart
        guard digits > 0 else { throw .badInteger(at: start) }
        if digits > 1, bytes[digitsStart] == UInt8(ascii: "0") { throw .badInteger(at: start) }
        if negative, value == 0 { throw .badInteger(at: start) }
        offset += 1  // the terminator
        return negative ? -value : value
    }
}
