#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Bounds that keep a hostile peer from costing unbounded memory or time.
public struct SIPParserLimits: Sendable, Hashable {
    public var maxMessageSize: Int
    public var maxHeaderFields: Int
    public var maxHeaderLineLength: Int

    public init(maxMessageSize: Int = 65_536, maxHeaderFields: Int = 128, maxHeaderLineLength: Int = 8_192) {
        self.maxMessageSize = maxMessageSize
        self.maxHeaderFields = maxHeaderFields
        self.maxHeaderLineLength = maxHeaderLineLength
    }

    public static let `default` = SIPParserLimits()
}

/// How the transport delimits messages, which decides what a missing Content-Length means.
public enum SIPFraming: Sendable {
    /// UDP or WebSocket: one datagram or WebSocket message is one SIP message. Without
    /// Content-Length the body is the rest of it (RFC 3261 §18.3, RFC 7118 §5).
    case message
    /// TCP or TLS: Content-Length is mandatory and says where the message ends.
    case stream
}

/// Parses SIP messages from bytes in one linear pass. Every failure is a `SIPParseError`.
/// Content-Length is framing, not content: it is checked and then dropped from the header
/// fields (serializing always writes it from the body).
public struct SIPParser: Sendable {
    public var limits: SIPParserLimits

    public init(limits: SIPParserLimits = .default) { self.limits = limits }

    public func parse(_ text: String, framing: SIPFraming = .message) throws(SIPParseError) -> SIPMessage {
        guard text.utf8.count <= limits.maxMessageSize else { throw SIPParseError(.messageTooLarge) }
        return try parse(Array(text.utf8), framing: framing)
    }

    /// Parses without copying: the header fields of the result point into `bytes`.
    public func parse(_ bytes: [UInt8], framing: SIPFraming = .message) throws(SIPParseError) -> SIPMessage {
        try bytes.withUnsafeBufferPointer { (b) throws(SIPParseError) -> SIPMessage in
            try parse(b, backing: bytes, framing: framing)
        }
    }

    public func parse(_ bytes: UnsafeBufferPointer<UInt8>, framing: SIPFraming) throws(SIPParseError)
        -> SIPMessage
    {
        guard bytes.count <= limits.maxMessageSize else { throw SIPParseError(.messageTooLarge) }
        return try parse(Array(bytes), framing: framing)
    }

    /// `bytes` are the contents of `backing`, which the parsed fields keep a reference to.
    private func parse(_ bytes: UnsafeBufferPointer<UInt8>, backing: [UInt8], framing: SIPFraming)
        throws(SIPParseError) -> SIPMessage
    {
        guard bytes.count <= limits.maxMessageSize else { throw SIPParseError(.messageTooLarge) }
        var position = 0
        // RFC 3261 §7.5: CRLFs before the start line are ignored.
        while position < bytes.count, bytes[position] == 0x0D || bytes[position] == 0x0A { position += 1 }
        guard let first = scanLine(bytes, from: position) else { throw SIPParseError(.malformedStartLine) }
        guard first.end - position <= limits.maxHeaderLineLength else { throw SIPParseError(.headerLineTooLong) }
        let startLine = try parseStartLine(bytes, position, first.end, plain: first.plain, backing: backing)
        position = first.next

        var fields: [SIPHeaderFields.Slot] = []
        fields.reserveCapacity(16)
        var unknownNames: [String] = []
        // The values unfolded from several lines (the header fields' `extra`).
        var extra: [UInt8] = []
        var contentLength: Int?
        let contentLengthID = KnownIDs.shared.contentLength
        let knownNames = KnownNameTable.shared
        var sawEnd = false
        while position < bytes.count {
            guard let line = scanLine(bytes, from: position) else { throw SIPParseError(.malformedHeaderLine) }
            let end = line.end
            if end == position {
                position = line.next
                sawEnd = true
                break
            }
            guard end - position <= limits.maxHeaderLineLength else { throw SIPParseError(.headerLineTooLong) }
            if bytes[position] == 0x20 || bytes[position] == 0x09 {
                // A continuation line with no header before it.
                throw SIPParseError(.malformedHeaderLine)
            }
            let (field, following) = try parseHeaderField(
                bytes, line: line, lineStart: position, knownNames: knownNames, unknownNames: &unknownNames,
                extra: &extra)
            position = following
            if field.code == Int32(contentLengthID) {
                let max = UInt64(limits.maxMessageSize)
                let n =
                    Int(field.end) <= bytes.count
                    ? parseDecimal(bytes, Int(field.start), Int(field.end), max: max)
                    : extra.withUnsafeBufferPointer {
                        parseDecimal($0, Int(field.start) - bytes.count, Int(field.end) - bytes.count, max: max)
                    }
                guard let n else {
                    throw SIPParseError(.invalidHeader, header: .contentLength)
                }
                if let contentLength, contentLength != Int(n) {
                    throw SIPParseError(.invalidHeader, header: .contentLength)
                }
                contentLength = Int(n)
                continue
            }
            guard fields.count < limits.maxHeaderFields else { throw SIPParseError(.tooManyHeaders) }
            fields.append(field)
        }
        // A message without the empty line that ends the headers is cut short — unless it
        // is a datagram or WebSocket message that ends right after its last header line.
        if !sawEnd, framing == .stream { throw SIPParseError(.incomplete) }

        let remaining = bytes.count - position
        var bodyLength = remaining
        if let contentLength {
            guard contentLength <= remaining else { throw SIPParseError(.contentLengthMismatch) }
            if framing == .stream, contentLength != remaining { throw SIPParseError(.contentLengthMismatch) }
            bodyLength = contentLength  // RFC 3261 §18.3: extra datagram bytes are discarded.
        } else if framing == .stream {
            throw SIPParseError(.missingContentLength)
        }
        let body = bodyLength > 0 ? Array(UnsafeBufferPointer(rebasing: bytes[position..<position + bodyLength])) : []
        let headers = SIPHeaderFields(backing: backing, extra: extra, slots: fields, unknownNames: unknownNames)

        switch consume startLine {
        case .request(let method, let uri):
            try checkMandatory(headers, isRequest: true)
            let cseq = try headers.cseq
            // RFC 3261 §8.1.1.5: the CSeq method matches the request method.
            guard cseq.method == method else { throw SIPParseError(.cseqMethodMismatch) }
            return .request(SIPRequest(method: method, uri: uri, headers: headers, body: body))
        case .response(let code, let reason):
            try checkMandatory(headers, isRequest: false)
            _ = try headers.cseq
            return .response(SIPResponse(statusCode: code, reasonPhrase: reason, headers: headers, body: body))
        }
    }

    private enum StartLine {
        case request(SIPMethod, AnyURI)
        case response(Int, String)
    }

    private func checkMandatory(_ headers: SIPHeaderFields, isRequest: Bool) throws(SIPParseError) {
        // RFC 3261 §8.1.1: To, From, CSeq, Call-ID and Via in every message; the first
        // four exactly once. One pass over the fields.
        var via = 0
        var from = 0
        var to = 0
        var callID: SIPHeaderFields.Slot?
        var callIDs = 0
        var cseq = 0
        let ids = KnownIDs.shared
        for i in headers.slots.indices {
            switch headers.slots[i].code {
            case Int32(ids.via): via += 1
            case Int32(ids.from): from += 1
            case Int32(ids.to): to += 1
            case Int32(ids.callID):
                callIDs += 1
                callID = headers.slots[i]
            case Int32(ids.cseq): cseq += 1
            default: break
            }
        }
        if via == 0 { throw SIPParseError(.missingHeader, header: .via) }
        if from != 1 { throw SIPParseError(from == 0 ? .missingHeader : .invalidHeader, header: .from) }
        if to != 1 { throw SIPParseError(to == 0 ? .missingHeader : .invalidHeader, header: .to) }
        if callIDs != 1 { throw SIPParseError(callIDs == 0 ? .missingHeader : .invalidHeader, header: .callID) }
        if cseq != 1 { throw SIPParseError(cseq == 0 ? .missingHeader : .invalidHeader, header: .cseq) }
        guard let callID,
            headers.withBytes(callID, { !$0.isEmpty && !$0.contains { $0 == 0x20 || $0 == 0x09 } })
        else { throw SIPParseError(.invalidHeader, header: .callID) }
    }

    private func parseStartLine(
        _ bytes: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int, plain: Bool, backing: [UInt8]
    ) throws(SIPParseError) -> StartLine {
        // Status-Line: SIP-Version SP Status-Code SP Reason-Phrase
        if end - start >= 8, asciiEquals(UnsafeBufferPointer(rebasing: bytes[start..<start + 4]), "SIP/") {
            guard let sp1 = firstIndex(of: 0x20, bytes, start, end) else { throw SIPParseError(.malformedStartLine) }
            guard asciiEquals(UnsafeBufferPointer(rebasing: bytes[start..<sp1]), "SIP/2.0") else {
                throw SIPParseError(.unsupportedVersion)
            }
            let codeStart = sp1 + 1
            guard codeStart + 3 <= end, let code = parseDecimal(bytes, codeStart, codeStart + 3, max: 699),
                code >= 100, codeStart + 3 == end || bytes[codeStart + 3] == 0x20
            else { throw SIPParseError(.invalidStatusCode) }
            let reasonStart = min(codeStart + 4, end)
            if !plain { try checkText(bytes, reasonStart, end) }
            return .response(Int(code), makeString(bytes, reasonStart, end))
        }
        // Request-Line: Method SP Request-URI SP SIP-Version
        guard let sp1 = firstIndex(of: 0x20, bytes, start, end), sp1 > start else {
            throw SIPParseError(.malformedStartLine)
        }
        for i in start..<sp1 where !CharClass.test(bytes[i], CharClass.token) {
            throw SIPParseError(.invalidMethod)
        }
        guard let sp2 = firstIndex(of: 0x20, bytes, sp1 + 1, end), sp2 > sp1 + 1 else {
            throw SIPParseError(.malformedStartLine)
        }
        guard asciiEquals(UnsafeBufferPointer(rebasing: bytes[sp2 + 1..<end]), "SIP/2.0") else {
            // 505 only for a version that is one; anything else (a space inside the
            // Request-URI, a trailing space) is a malformed line (RFC 4475 §3.1.2.8, §3.1.2.10).
            throw SIPParseError(isVersion(bytes, sp2 + 1, end) ? .unsupportedVersion : .malformedStartLine)
        }
        var scanner = ByteScanner(bytes, from: sp1 + 1, to: sp2, source: ByteSource(array: backing, offset: 0))
        let uri: AnyURI
        do {
            uri = try scanner.readURI(context: .complete)
        } catch {
            throw SIPParseError(.invalidURI)
        }
        guard scanner.isAtEnd else { throw SIPParseError(.invalidURI) }
        let method = UnsafeBufferPointer(rebasing: bytes[start..<sp1])
        return .request(SIPMethod(commonWord(method) ?? makeString(bytes, start, sp1)), uri)
    }

    /// `SIP/` DIGIT+ `.` DIGIT+ (RFC 3261 §25.1 SIP-Version).
    private func isVersion(_ bytes: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> Bool {
        guard end - start >= 7, asciiEquals(UnsafeBufferPointer(rebasing: bytes[start..<start + 4]), "SIP/") else {
            return false
        }
        let digits = bytes[start + 4..<end].split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        return digits.count == 2 && digits.allSatisfy { !$0.isEmpty && $0.allSatisfy { $0 >= 0x30 && $0 <= 0x39 } }
    }

    /// Parses the header field whose first line is `line`, folding in continuation lines.
    private func parseHeaderField(
        _ bytes: UnsafeBufferPointer<UInt8>, line: Line, lineStart: Int, knownNames: KnownNameTable,
        unknownNames: inout [String], extra: inout [UInt8]
    ) throws(SIPParseError) -> (SIPHeaderFields.Slot, Int) {
        let lineEnd = line.end
        // The name: its length and, for the known-name table, its first sixteen bytes
        // case-folded into two words — one vector step for nearly every name.
        let (nameEnd, key) = scanHeaderName(bytes, lineStart, lineEnd)
        guard nameEnd > lineStart else { throw SIPParseError(.malformedHeaderLine) }
        var colon = nameEnd
        while colon < lineEnd, bytes[colon] == 0x20 || bytes[colon] == 0x09 { colon += 1 }
        guard colon < lineEnd, bytes[colon] == UInt8(ascii: ":") else { throw SIPParseError(.malformedHeaderLine) }
        let nameBytes = UnsafeBufferPointer(rebasing: bytes[lineStart..<nameEnd])
        let code: Int32
        if let known = SIPHeaderName.lookupID(bytes: nameBytes, key: key, table: knownNames) {
            code = Int32(known)
        } else {
            unknownNames.append(makeString(bytes, lineStart, nameEnd))
            code = -Int32(unknownNames.count)
        }
        // The name as a value only for an error that names it.
        func name() -> SIPHeaderName { SIPHeaderFields.name(code: code, unknownNames: unknownNames) }

        let (valueStart, valueEnd) = trimmedLWS(bytes, colon + 1, lineEnd)
        // A line of printable ASCII, SP and HT needs no second look; anything else is
        // checked here, so the error names the header.
        var ascii = true
        if !line.plain {
            do { ascii = try checkText(bytes, valueStart, valueEnd) } catch {
                throw SIPParseError(error.kind, header: name())
            }
        }

        // Folding (RFC 3261 §7.3.1): following lines that start with SP or HT belong here.
        var position = line.next
        guard position < bytes.count, bytes[position] == 0x20 || bytes[position] == 0x09 else {
            if !ascii { try validateUTF8(bytes, valueStart, valueEnd, name()) }
            return (SIPHeaderFields.Slot(code: code, start: UInt32(valueStart), end: UInt32(valueEnd)), position)
        }
        // First the continuation lines are checked and measured, then joined into one
        // buffer of the right size.
        let firstContinuation = position
        var length = valueEnd - valueStart
        var foldedLines = 0
        while position < bytes.count, bytes[position] == 0x20 || bytes[position] == 0x09 {
            guard let continuation = scanLine(bytes, from: position) else { throw SIPParseError(.malformedHeaderLine) }
            let (s, e) = trimmedLWS(bytes, position, continuation.end)
            if !continuation.plain {
                do {
                    if !(try checkText(bytes, s, e)) { ascii = false }
                } catch { throw SIPParseError(error.kind, header: name()) }
            }
            if s < e { length += (length > 0 ? 1 : 0) + e - s }
            foldedLines += 1
            guard length <= limits.maxHeaderLineLength * 4, foldedLines <= limits.maxHeaderFields else {
                throw SIPParseError(.headerLineTooLong)
            }
            position = continuation.next
        }
        // The lines joined by single spaces, after any values unfolded before.
        if extra.isEmpty { extra.reserveCapacity(max(length, 128)) }
        let start = extra.count
        func put(_ s: Int, _ e: Int) {
            guard s < e else { return }
            if extra.count > start { extra.append(0x20) }
            extra.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[s..<e]))
        }
        put(valueStart, valueEnd)
        var p = firstContinuation
        while p < position, let (end, after) = lineBounds(bytes, from: p) {
            let (s, e) = trimmedLWS(bytes, p, end)
            put(s, e)
            p = after
        }
        if !ascii {
            let name = name()
            try extra.withUnsafeBufferPointer { (b) throws(SIPParseError) in
                try validateUTF8(b, start, b.count, name)
            }
        }
        // Positions in `extra` count on from the end of the message.
        return (
            SIPHeaderFields.Slot(
                code: code, start: UInt32(bytes.count + start), end: UInt32(bytes.count + extra.count)),
            position
        )
    }

    /// `start..<end` without leading and trailing SP and HT.
    @inline(__always)
    private func trimmedLWS(_ bytes: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> (Int, Int) {
        var s = start
        while s < end, bytes[s] == 0x20 || bytes[s] == 0x09 { s += 1 }
        var e = end
        while e > s, bytes[e - 1] == 0x20 || bytes[e - 1] == 0x09 { e -= 1 }
        return (s, e)
    }

    /// TEXT-UTF8 without control characters (HT is allowed). Returns whether the bytes
    /// are all ASCII. Only for lines `scanLine` did not find plain: sixteen bytes at a
    /// time, and a block with anything unusual (HT, a control byte, non-ASCII) is looked
    /// at byte by byte, so the error can name the header.
    @inline(__always)
    @discardableResult
    private func checkText(_ bytes: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) throws(SIPParseError)
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
    private func checkQuotedText(_ bytes: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int)
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
    private func isPlain(_ b: UInt8, _ ascii: inout Bool) -> Bool {
        if b >= 0x80 {
            ascii = false
            return true
        }
        return !(b < 0x20 && b != 0x09 || b == 0x7F)
    }

    @inline(__always)
    private func checkByte(_ b: UInt8, _ ascii: inout Bool) throws(SIPParseError) {
        if b >= 0x80 {
            ascii = false
        } else if b < 0x20 && b != 0x09 || b == 0x7F {
            throw SIPParseError(.malformedHeaderLine)
        }
    }

    private func validateUTF8(
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
