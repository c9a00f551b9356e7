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
}
