#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

// The byte-level scanning under the parser: header names, lines, SIMD lane tests, and
// the text checks of header values (control characters, quoted-pairs, UTF-8).

extension SIPParser {

    /// TEXT-UTF8 without control characters (HT is allowed). Returns whether the bytes
    /// are all ASCII. Only for lines `scanLine` did not find plain: sixteen bytes at a
    /// time, and a block with anything unusual (HT, a control byte, non-ASCII) is looked
    /// at byte by byte, so the error can name the header.
    @inline(__always)
    @discardableResult
    func checkText(_ bytes: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) throws(SIPParseError)
        -> Bool
    {
        guard let base = bytes.baseAddress else { return true }
        var ascii = true
        var i = start
        // Sixteen bytes at a time: any byte below SP (HT included) or from DEL up sends
        // that block through the byte-by-byte check.
        let space = SIMD16<UInt8>(repeating: 0x20)
        let del = SIMD16<UInt8>(repeating: 0x7F)
        while i + 16 <= end {
            let x = UnsafeRawPointer(base + i).loadUnaligned(as: SIMD16<UInt8>.self)
            if anyLane((x .< space) .| (x .>= del)) {
                for j in i..<i + 16 where !isPlain(base[j], &ascii) {
                    return try checkQuotedText(bytes, start, end)
                }
            }
            i += 16
        }
        while i < end {
            if !isPlain(base[i], &ascii) { return try checkQuotedText(bytes, start, end) }
            i += 1
        }
        return ascii
    }

    /// The slow path, for a value with a control character: one is allowed only as a
    /// quoted-pair inside a quoted string (RFC 3261 §25.1: `"\" (%x00-09 / %x0B-0C /
    /// %x0E-7F)`; RFC 4475 §3.1.1.2 has `\<NUL>`).
    func checkQuotedText(_ bytes: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int)
        throws(SIPParseError) -> Bool
    {
        var ascii = true
        var quoted = false
        var i = start
        while i < end {
            let b = bytes[i]
            if quoted, b == UInt8(ascii: "\\"), i + 1 < end, bytes[i + 1] != 0x0A, bytes[i + 1] != 0x0D {
                if bytes[i + 1] >= 0x80 { ascii = false }
                i += 2
                continue
            }
            if b == UInt8(ascii: "\"") { quoted.toggle() }
            try checkByte(b, &ascii)
            i += 1
        }
        return ascii
    }

    @inline(__always)
    func isPlain(_ b: UInt8, _ ascii: inout Bool) -> Bool {
        if b >= 0x80 {
            ascii = false
            return true
        }
        return !(b < 0x20 && b != 0x09 || b == 0x7F)
    }

    @inline(__always)
    func checkByte(_ b: UInt8, _ ascii: inout Bool) throws(SIPParseError) {
        if b >= 0x80 {
            ascii = false
        } else if b < 0x20 && b != 0x09 || b == 0x7F {
            throw SIPParseError(.malformedHeaderLine)
        }
    }

    func validateUTF8(
        _ bytes: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int, _ name: SIPHeaderName
    ) throws(SIPParseError) {
        guard String(validating: UnsafeBufferPointer(rebasing: bytes[start..<end]), as: UTF8.self) != nil else {
            throw SIPParseError(.invalidUTF8, header: name)
        }
    }
}

/// The end of the header name (a token, RFC 3261 §25.1) starting at `start`, and its
/// known-name table key. Sixteen bytes are classified at once when the message has them;
/// a longer name or one at the very end of the buffer is finished byte by byte.
@inline(__always)
func scanHeaderName(_ bytes: UnsafeBufferPointer<UInt8>, _ start: Int, _ lineEnd: Int) -> (Int, KnownNameTable.Key) {
    guard let base = bytes.baseAddress, start + 16 <= bytes.count else {
        var end = start
        while end < lineEnd, CharClass.test(bytes[end], CharClass.token) { end += 1 }
        return (end, KnownNameTable.Key(UnsafeBufferPointer(rebasing: bytes[start..<end])))
    }
    typealias Bytes = SIMD16<UInt8>
    let v = UnsafeRawPointer(base + start).loadUnaligned(as: Bytes.self)
    let folded = v | Bytes(repeating: 0x20)
    // token: ALPHA DIGIT - . ! % * _ + ` ' ~
    let letter = lanes(folded, from: 0x61, count: 26)
    let digit = lanes(v, from: 0x30, count: 10)
    let dashDot = lanes(v, from: 0x2D, count: 2)
    let starPlus = lanes(v, from: 0x2A, count: 2)
    let bang = v .== Bytes(repeating: 0x21)
    let percent = v .== Bytes(repeating: 0x25)
    let underscore = v .== Bytes(repeating: 0x5F)
    let backtick = v .== Bytes(repeating: 0x60)
    let apostrophe = v .== Bytes(repeating: 0x27)
    let tilde = v .== Bytes(repeating: 0x7E)
    let other = bang .| percent .| underscore .| backtick .| apostrophe .| tilde
    let token = letter .| digit .| dashDot .| starPlus .| other
    var end: Int
    if let lane = firstLane(.!token) {
        end = min(start + lane, lineEnd)
    } else {
        end = min(start + 16, lineEnd)
        while end < lineEnd, CharClass.test(bytes[end], CharClass.token) { end += 1 }
    }
    let words = unsafeBitCast(folded, to: SIMD2<UInt64>.self)
    let n = min(end - start, 16)
    // Keep the first n bytes (lane k is byte k of the two little-endian words).
    let low = n >= 8 ? words[0] : words[0] & ((1 << (8 * UInt64(n))) &- 1)
    let high = n >= 16 ? words[1] : n <= 8 ? 0 : words[1] & ((1 << (8 * UInt64(n - 8))) &- 1)
    return (end, KnownNameTable.Key(low: low, high: high, count: end - start))
}

/// The lanes of `v` in `first..<first + count` (count below 128): one add and one signed
/// compare, where an unsigned range check takes an add, a minimum and a compare on x86-64.
/// Adding 0x80 - first moves the range to the bottom of the signed bytes.
@inline(__always)
func lanes(_ v: SIMD16<UInt8>, from first: UInt8, count: UInt8) -> SIMDMask<SIMD16<Int8>> {
    let moved = unsafeBitCast(v &+ SIMD16<UInt8>(repeating: 0x80 &- first), to: SIMD16<Int8>.self)
    return moved .< SIMD16<Int8>(repeating: Int8(bitPattern: 0x80 &+ count))
}

/// Whether any lane of a sixteen-byte mask is set. The standard library's `any` reduces
/// through an unspecialized generic `max` (about twenty instructions per call); a mask's
/// lanes are all-ones or zero, so two 64-bit words answer it.
@inline(__always)
func anyLane(_ mask: SIMDMask<SIMD16<Int8>>) -> Bool {
    let words = unsafeBitCast(mask, to: SIMD2<UInt64>.self)
    return words[0] | words[1] != 0
}

/// The first set lane of a sixteen-byte mask, or nil when none is (see `anyLane`).
/// Lane 0 is the lowest byte of the first word: little-endian, as on every platform
/// Swift on Linux runs on.
@inline(__always)
func firstLane(_ mask: SIMDMask<SIMD16<Int8>>) -> Int? {
    let words = unsafeBitCast(mask, to: SIMD2<UInt64>.self)
    if words[0] != 0 { return words[0].trailingZeroBitCount / 8 }
    if words[1] != 0 { return 8 + words[1].trailingZeroBitCount / 8 }
    return nil
}

/// Whether every lane of a sixteen-byte mask is set (see `anyLane`).
@inline(__always)
func allLanes(_ mask: SIMDMask<SIMD16<Int8>>) -> Bool {
    let words = unsafeBitCast(mask, to: SIMD2<UInt64>.self)
    return words[0] & words[1] == .max
}

/// A line of a message: where it ends (before CRLF or a bare LF), where the next line
/// starts, and whether every byte of it is printable ASCII, SP or HT.
struct Line {
    var end: Int
    var next: Int
    var plain: Bool
}

/// The line starting at `start`, found and checked in one pass sixteen bytes at a time:
/// only bytes below SP or from DEL up (CR and LF among them, so once or twice a line) are
/// looked at one by one. nil when no line terminator follows.
@inline(__always)
func scanLine(_ bytes: UnsafeBufferPointer<UInt8>, from start: Int) -> Line? {
    guard let base = bytes.baseAddress else { return nil }
    let count = bytes.count
    var plain = true
    var i = start
    while let j = firstUnprintable(base, from: i, count: count) {
        let b = base[j]
        if b == 0x0A { return Line(end: j > start && base[j - 1] == 0x0D ? j - 1 : j, next: j + 1, plain: plain) }
        if b == 0x0D, j + 1 < count, base[j + 1] == 0x0A { return Line(end: j, next: j + 2, plain: plain) }
        if b != 0x09 { plain = false }
        i = j + 1
    }
    return nil
}

/// The index of the first byte from `start` that is below SP or from DEL up, or nil.
/// Adding one maps exactly those bytes to signed values below 0x21 (0x7F–0xFE wrap to
/// negatives, 0xFF to zero), so sixteen bytes cost one add and one signed compare.
@inline(__always)
func firstUnprintable(_ base: UnsafePointer<UInt8>, from start: Int, count: Int) -> Int? {
    let one = SIMD16<UInt8>(repeating: 1)
    let limit = SIMD16<Int8>(repeating: 0x21)
    var i = start
    while i &+ 16 <= count {
        let x = UnsafeRawPointer(base + i).loadUnaligned(as: SIMD16<UInt8>.self)
        let unprintable = unsafeBitCast(x &+ one, to: SIMD16<Int8>.self) .< limit
        let words = unsafeBitCast(unprintable, to: SIMD2<UInt64>.self)
        if words[0] | words[1] != 0 {
            return i + (words[0] != 0 ? words[0].trailingZeroBitCount : 64 + words[1].trailingZeroBitCount) / 8
        }
        i &+= 16
    }
    while i < count {
        if Int8(bitPattern: base[i] &+ 1) < 0x21 { return i }
        i += 1
    }
    return nil
}

/// The end of the line starting at `start` (before CRLF or bare LF) and where the next
/// line starts; nil when there is no line terminator.
@inline(__always)
func lineBounds(_ bytes: UnsafeBufferPointer<UInt8>, from start: Int) -> (end: Int, next: Int)? {
    guard start < bytes.count, let base = bytes.baseAddress,
        let hit = memchr(base + start, 0x0A, bytes.count - start)
    else { return nil }
    let i = UnsafeRawPointer(hit).assumingMemoryBound(to: UInt8.self) - base
    let end = (i > start && bytes[i - 1] == 0x0D) ? i - 1 : i
    return (end, i + 1)
}

@inline(__always)
func firstIndex(of byte: UInt8, _ bytes: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> Int? {
    guard start < end, end <= bytes.count, let base = bytes.baseAddress,
        let hit = memchr(base + start, Int32(byte), end - start)
    else { return nil }
    return UnsafeRawPointer(hit).assumingMemoryBound(to: UInt8.self) - base
}

@inline(__always)
func containsLineBreak(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
    guard let base = bytes.baseAddress, !bytes.isEmpty else { return false }
    return memchr(base, 0x0A, bytes.count) != nil || memchr(base, 0x0D, bytes.count) != nil
}

/// Known-name numbers read once per parse instead of through lazy globals per field.
final class KnownIDs: Sendable {
    static let shared = KnownIDs()
    let via = SIPHeaderName.via.knownID
    let from = SIPHeaderName.from.knownID
    let to = SIPHeaderName.to.knownID
    let callID = SIPHeaderName.callID.knownID
    let cseq = SIPHeaderName.cseq.knownID
    let contentLength = SIPHeaderName.contentLength.knownID
}
