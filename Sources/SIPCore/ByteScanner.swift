#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

// Byte-level helpers shared by every parser in SIPCore. SIP's grammar is ASCII at the
// delimiters, so scanning UTF-8 bytes and slicing at ASCII bytes keeps slices valid UTF-8.

@inline(__always)
func withUTF8Bytes<R, E: Error>(
    _ string: some StringProtocol, _ body: (UnsafeBufferPointer<UInt8>) throws(E) -> R
) throws(E) -> R {
    // The standard library's closures rethrow untyped errors; carry the typed one across.
    var result: Result<R, E>?
    _ = string.utf8.withContiguousStorageIfAvailable { buffer in
        result = Result { () throws(E) -> R in try body(buffer) }
    }
    if result == nil {
        var copy = String(string)
        copy.withUTF8 { buffer in result = Result { () throws(E) -> R in try body(buffer) } }
    }
    switch result {
    case .success(let value)?: return value
    case .failure(let error)?: throw error
    case nil: preconditionFailure("withUTF8 always calls its closure")
    }
}

@inline(__always)
func makeString(_ bytes: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> String {
    String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<end]), as: UTF8.self)
}

@inline(__always)
func isLWS(_ b: UInt8) -> Bool {
    b == 0x20 || b == 0x09 || b == 0x0D || b == 0x0A
}

/// Character classes of RFC 3261 §25.1, as a 256-entry bit table.
enum CharClass {
    static let token: UInt16 = 1
    static let unreserved: UInt16 = 2  // alphanum / mark
    static let userUnreserved: UInt16 = 4  // & = + $ , ; ? /
    static let passwordExtra: UInt16 = 8  // & = + $ ,
    static let paramUnreserved: UInt16 = 16  // [ ] / : & + $
    static let headerUnreserved: UInt16 = 32  // [ ] / ? : + $
    static let hostChar: UInt16 = 64  // alphanum - .
    static let digit: UInt16 = 128
    static let hex: UInt16 = 256
    static let telChar: UInt16 = 512  // digits, hex, * # + - . ( ) visual separators
    static let ipv6Char: UInt16 = 1024  // hex : .
    static let token68: UInt16 = 2048  // RFC 7235 token68 body

    /// Built once and never freed: a raw pointer avoids the lazy-global check and the
    /// bounds check that an Array would cost on every byte.
    /// Written once inside the initializer, read-only afterwards: safe to share.
    nonisolated(unsafe) static let table: UnsafePointer<UInt16> = {
        let t = UnsafeMutablePointer<UInt16>.allocate(capacity: 256)
        t.initialize(repeating: 0, count: 256)
        func add(_ chars: String, _ bit: UInt16) {
            for c in chars.utf8 { t[Int(c)] |= bit }
        }
        let alpha = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
        let digits = "0123456789"
        add(alpha + digits + "-.!%*_+`'~", token)
        add(alpha + digits + "-_.!~*'()", unreserved)
        add("&=+$,;?/", userUnreserved)
        add("&=+$,", passwordExtra)
        add("[]/:&+$", paramUnreserved)
        add("[]/?:+$", headerUnreserved)
        add(alpha + digits + "-.", hostChar)
        add(digits, digit)
        add(digits + "abcdefABCDEF", hex)
        add(digits + "abcdefABCDEF*#+-.()pwPW", telChar)
        add(digits + "abcdefABCDEF:.", ipv6Char)
        add(alpha + digits + "-._~+/", token68)
        return UnsafePointer(t)
    }()

    @inline(__always)
    static func test(_ b: UInt8, _ bit: UInt16) -> Bool { table[Int(b)] & bit != 0 }
}

/// A cursor over UTF-8 bytes. Every read is bounds-checked against `end`.
struct ByteScanner {
    let bytes: UnsafeBufferPointer<UInt8>
    var index: Int
    let end: Int
    let classes: UnsafePointer<UInt16>
    /// The array `bytes` lives in, when there is one: values may then point into it.
    let source: ByteSource?

    init(_ bytes: UnsafeBufferPointer<UInt8>, from start: Int = 0, to end: Int? = nil, source: ByteSource? = nil) {
        self.bytes = bytes
        self.index = start
        self.end = end ?? bytes.count
        self.classes = CharClass.table
        self.source = source
    }

    @inline(__always)
    func isClass(_ b: UInt8, _ bit: UInt16) -> Bool { classes[Int(b)] & bit != 0 }

    var isAtEnd: Bool { index >= end }

    @inline(__always)
    func peek() -> UInt8? { index < end ? bytes[index] : nil }

    @inline(__always)
    mutating func consume(_ b: UInt8) -> Bool {
        if index < end, bytes[index] == b {
            index += 1
            return true
        }
        return false
    }

    /// Skips linear white space, including folded line breaks already unfolded or not.
    @inline(__always)
    mutating func skipLWS() {
        while index < end, isLWS(bytes[index]) { index += 1 }
    }

    /// `LWS? sep LWS?`: true when the separator was there.
    mutating func consumeSeparator(_ b: UInt8) -> Bool {
        let saved = index
        skipLWS()
        if consume(b) {
            skipLWS()
            return true
        }
        index = saved
        return false
    }

    /// Reads one or more bytes of the class; nil when none.
    mutating func read(_ bit: UInt16) -> String? {
        let start = index
        while index < end, isClass(bytes[index], bit) { index += 1 }
        return index > start ? makeString(bytes, start, index) : nil
    }

    /// Like `read`, for words that are nearly always one of a few: those come back as
    /// literals (no `String` made, no reference counting).
    mutating func readWord(_ bit: UInt16) -> String? {
        let start = index
        // The first eight bytes are packed into the common-word key on the way.
        var key: UInt64 = 0
        var shift: UInt64 = 0
        while index < end {
            let b = bytes[index]
            guard isClass(b, bit) else { break }
            if shift < 64 {
                key |= UInt64(b) << shift
                shift += 8
            }
            index += 1
        }
        guard index > start else { return nil }
        let word =
            index - start <= 8 ? commonWord(key: key) : commonWord(UnsafeBufferPointer(rebasing: bytes[start..<index]))
        return word ?? makeString(bytes, start, index)
    }

    /// Reads bytes that are in `bit` or are a valid `%HH` escape (RFC 3261 `escaped`).
    mutating func readEscaped(_ bits: UInt16) throws(SIPParseError) -> String? {
        let start = index
        try skipEscaped(bits)
        return index > start ? makeString(bytes, start, index) : nil
    }

    /// Steps over bytes that are in `bit` or are a valid `%HH` escape.
    mutating func skipEscaped(_ bits: UInt16) throws(SIPParseError) {
        while index < end {
            let b = bytes[index]
            if isClass(b, bits) {
                index += 1
            } else if b == UInt8(ascii: "%") {
                guard index + 2 < end,
                    isClass(bytes[index + 1], CharClass.hex),
                    isClass(bytes[index + 2], CharClass.hex)
                else { throw SIPParseError(.invalidEscape) }
                index += 3
            } else {
                break
            }
        }
    }

    /// Reads a quoted-string and returns it with its quotes and escapes as written.
    mutating func readQuotedRaw() throws(SIPParseError) -> String {
        let start = index
        try skipQuoted()
        return makeString(bytes, start, index)
    }

    /// Steps over a quoted-string, checking it.
    mutating func skipQuoted() throws(SIPParseError) {
        guard consume(UInt8(ascii: "\"")) else { throw SIPParseError(.unterminatedQuote) }
        let quote = SIMD16<UInt8>(repeating: 0x22)
        let backslash = SIMD16<UInt8>(repeating: 0x5C)
        let cr = SIMD16<UInt8>(repeating: 0x0D)
        let lf = SIMD16<UInt8>(repeating: 0x0A)
        let nul = SIMD16<UInt8>(repeating: 0x00)
        while index < end {
            // Sixteen bytes at a time past plain text: only a quote, a backslash, CR, LF
            // or NUL needs the byte-by-byte steps below.
            if index + 16 <= end, let base = bytes.baseAddress {
                let v = UnsafeRawPointer(base + index).loadUnaligned(as: SIMD16<UInt8>.self)
                let special = (v .== quote) .| (v .== backslash) .| (v .== cr) .| (v .== lf) .| (v .== nul)
                guard let lane = firstLane(special) else {
                    index += 16
                    continue
                }
                index += lane
            }
            let b = bytes[index]
            if b == UInt8(ascii: "\\") {
                // quoted-pair excludes CR and LF (RFC 3261 §25.1).
                guard index + 1 < end, bytes[index + 1] != 0x0D, bytes[index + 1] != 0x0A else {
                    throw SIPParseError(.unterminatedQuote)
                }
                index += 2
            } else if b == UInt8(ascii: "\"") {
                index += 1
                return
            } else if b == 0x0D || b == 0x0A || b == 0 {
                throw SIPParseError(.unterminatedQuote)
            } else {
                index += 1
            }
        }
        throw SIPParseError(.unterminatedQuote)
    }

    func string(_ start: Int, _ stop: Int) -> String { makeString(bytes, start, stop) }

    /// The array the scanned bytes live in and where they start in it, for values that
    /// keep ranges (`TextSpan`) of it: the message's when there is a source, else a copy.
    func sourceArray() -> (array: [UInt8], offset: Int) {
        source.map { ($0.array, $0.offset) } ?? (Array(bytes), 0)
    }
}

/// Removes the quotes and backslash escapes of a quoted-string; returns other text as is.
public func unquote(_ text: String) -> String {
    withUTF8Bytes(text) { bytes in
        guard bytes.count >= 2, bytes[0] == UInt8(ascii: "\""), bytes[bytes.count - 1] == UInt8(ascii: "\"")
        else { return text }
        let inner = UnsafeBufferPointer(rebasing: bytes[1..<bytes.count - 1])
        guard inner.contains(UInt8(ascii: "\\")) else { return String(decoding: inner, as: UTF8.self) }
        var out: [UInt8] = []
        out.reserveCapacity(inner.count)
        var escaped = false
        for b in inner {
            if escaped {
                out.append(b)
                escaped = false
            } else if b == UInt8(ascii: "\\") {
                escaped = true
            } else {
                out.append(b)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// Writes `text` as a quoted-string, escaping `"` and `\`.
public func quote(_ text: String) -> String {
    var out = ""
    out.reserveCapacity(text.utf8.count + 2)
    out.appendQuoted(text)
    return out
}

extension String {
    /// Appends `text` as a quoted-string (`self += quote(text)`), in place: no string of its
    /// own for the quoted text (two allocations each, and hot headers quote several values).
    public mutating func appendQuoted(_ text: String) {
        append("\"")
        appendQuotedStringContent(text)
        append("\"")
    }

    /// Appends `text` as the inside of a quoted-string: `"` and `\` escaped, CR and LF left
    /// out (a quoted-string cannot carry them; dropping them keeps the framing).
    public mutating func appendQuotedStringContent(_ text: String) {
        // Most values need no escaping: append them as they are.
        if !needsQuotedStringEscape(text) {
            append(text)
            return
        }
        for ch in text.unicodeScalars {
            if ch == "\"" || ch == "\\" { append("\\") }
            if ch == "\r" || ch == "\n" { continue }
            unicodeScalars.append(ch)
        }
    }
}

@inline(__always)
func parseDecimal(_ bytes: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int, max: UInt64)
    -> UInt64?
{
    guard start < end, end - start <= 20 else { return nil }
    var value: UInt64 = 0
    for i in start..<end {
        let b = bytes[i]
        guard b >= 0x30, b <= 0x39 else { return nil }
        value = value * 10 + UInt64(b - 0x30)
        if value > max { return nil }
    }
    return value
}

/// Parses a decimal number made of ASCII digits only, no sign, no white space.
public func parseDecimal(_ text: some StringProtocol, max: UInt64 = UInt64(UInt32.max)) -> UInt64? {
    withUTF8Bytes(text) { parseDecimal($0, 0, $0.count, max: max) }
}

/// ASCII case-insensitive equality of two strings, without allocating. (A concrete
/// overload: the generic one below is not specialized across modules.)
public func equalsIgnoringASCIICase(_ a: String, _ b: String) -> Bool {
    guard a.utf8.count == b.utf8.count else { return false }
    return withUTF8Bytes(a) { x in withUTF8Bytes(b) { y in equalsIgnoringASCIICase(x, y) } }
}

/// ASCII case-insensitive equality, without allocating.
@inline(__always)
public func equalsIgnoringASCIICase(_ a: some StringProtocol, _ b: some StringProtocol) -> Bool {
    guard a.utf8.count == b.utf8.count else { return false }
    return withUTF8Bytes(a) { x in withUTF8Bytes(b) { y in equalsIgnoringASCIICase(x, y) } }
}

@inline(__always)
func equalsIgnoringASCIICase(_ a: UnsafeBufferPointer<UInt8>, _ b: UnsafeBufferPointer<UInt8>) -> Bool {
    guard a.count == b.count else { return false }
    for i in 0..<a.count where a[i] != b[i] {
        if asciiLower(a[i]) != asciiLower(b[i]) { return false }
    }
    return true
}

/// Whether `text` contains `needle`, ASCII letters compared without case — a byte search
/// instead of Foundation's locale-aware one.
public func containsIgnoringASCIICase(_ text: String, _ needle: StaticString) -> Bool {
    withUTF8Bytes(text) { containsIgnoringASCIICase($0, needle) }
}

/// Whether `bytes` contain `needle`, ASCII letters compared without case.
public func containsIgnoringASCIICase(_ bytes: UnsafeBufferPointer<UInt8>, _ needle: StaticString) -> Bool {
    let n = needle.utf8CodeUnitCount
    let p = needle.utf8Start
    guard n > 0 else { return true }
    guard bytes.count >= n else { return false }
    let first = asciiLower(p[0])
    for start in 0...(bytes.count - n) where asciiLower(bytes[start]) == first {
        var i = 1
        while i < n, asciiLower(bytes[start + i]) == asciiLower(p[i]) { i += 1 }
        if i == n { return true }
    }
    return false
}

@inline(__always)
func asciiLower(_ b: UInt8) -> UInt8 { (b >= 0x41 && b <= 0x5A) ? b | 0x20 : b }

/// The words of SIP's grammar that come up in nearly every message, as `String`
/// literals (immortal, never copied): the word's bytes packed little-endian into one
/// integer pick the literal in a single switch.
@inline(__always)
func commonWord(_ bytes: UnsafeBufferPointer<UInt8>) -> String? {
    guard let base = bytes.baseAddress else { return nil }
    if bytes.count == 9 {
        return memcmp(base, "SUBSCRIBE", 9) == 0 ? "SUBSCRIBE" : nil
    }
    guard bytes.count <= 8 else { return nil }
    var key: UInt64 = 0
    for i in 0..<bytes.count { key |= UInt64(base[i]) << (8 * UInt64(i)) }
    return commonWord(key: key)
}

/// The common word whose bytes, packed little-endian, are `key` (see `commonWord(_:)`).
@inline(__always)
func commonWord(key: UInt64) -> String? {
    switch key {
    case 0x504953: return "SIP"
    case 0x302E32: return "2.0"
    case 0x504455: return "UDP"
    case 0x504354: return "TCP"
    case 0x534C54: return "TLS"
    case 0x5357: return "WS"
    case 0x535357: return "WSS"
    case 0x50544353: return "SCTP"
    case 0x747365676944: return "Digest"
    case 0x726572616542: return "Bearer"
    case 0x5245545349474552: return "REGISTER"
    case 0x455449564E49: return "INVITE"
    case 0x4B4341: return "ACK"
    case 0x455942: return "BYE"
    case 0x4C45434E4143: return "CANCEL"
    case 0x534E4F4954504F: return "OPTIONS"
    case 0x594649544F4E: return "NOTIFY"
    case 0x4547415353454D: return "MESSAGE"
    case 0x4F464E49: return "INFO"
    default: return nil
    }
}

extension [UInt8] {
    /// `String.appendQuotedStringContent` for a value written as bytes.
    public mutating func appendQuotedStringContent(_ text: String) {
        if !needsQuotedStringEscape(text) {
            append(contentsOf: text.utf8)
            return
        }
        for b in text.utf8 where b != 0x0D && b != 0x0A {
            if b == 0x22 || b == 0x5C { append(0x5C) }
            append(b)
        }
    }
}

/// Whether `text` has a byte a quoted-string's content must escape (`"`, `\`) or leave out
/// (CR, LF).
func needsQuotedStringEscape(_ text: String) -> Bool {
    withUTF8Bytes(text) { bytes in bytes.contains { $0 == 0x22 || $0 == 0x5C || $0 == 0x0D || $0 == 0x0A } }
}
