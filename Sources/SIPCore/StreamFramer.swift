/// What the next bytes of a TCP/TLS stream hold (RFC 3261 §18.3, RFC 5626 §4.4.1).
public enum SIPStreamFrame: Sendable, Hashable {
    /// A whole message of this many bytes, ready for `SIPParser.parse(…, framing: .stream)`.
    case message(length: Int)
    /// A CRLFCRLF keep-alive ping: answer with a single CRLF pong.
    case ping
    /// A lone CRLF: a pong, or padding between messages. Consume and ignore.
    case pong
    /// Not enough bytes yet.
    case needMoreData
}

/// Finds message boundaries in a stream without parsing the message. Only the header
/// section is scanned, for Content-Length; a scan that ran out of bytes goes on from where
/// it stopped when given a `ScanState`, so framing stays linear in the bytes received
/// however thinly a peer drips them.
public struct SIPStreamFramer: Sendable {
    public var limits: SIPParserLimits

    public init(limits: SIPParserLimits = .default) { self.limits = limits }

    /// How far the bytes at the head of a stream have been scanned. Start a fresh one for
    /// every frame: reset it whenever bytes are consumed.
    public struct ScanState: Sendable, Hashable {
        var scanned = 0
        var lineStart = 0
        var contentLength: Int?

        public init() {}

        init(scanned: Int, lineStart: Int, contentLength: Int?) {
            self.scanned = scanned
            self.lineStart = lineStart
            self.contentLength = contentLength
        }
    }

    /// Looks at the start of `bytes`. Throws when the stream cannot be framed any more
    /// (too large, no Content-Length, not SIP at all): the connection should then be closed.
    public func nextFrame(_ bytes: UnsafeBufferPointer<UInt8>) throws(SIPParseError) -> SIPStreamFrame {
        var state = ScanState()
        return try nextFrame(bytes, resuming: &state)
    }

    /// Like `nextFrame(_:)`, going on from `state` — the same bytes as last time with more
    /// after them — and leaving in it how far this call got.
    public func nextFrame(_ bytes: UnsafeBufferPointer<UInt8>, resuming state: inout ScanState)
        throws(SIPParseError) -> SIPStreamFrame
    {
        let n = bytes.count
        guard n > 0 else { return .needMoreData }
        if state.scanned == 0 {
            if bytes[0] == 0x0D {
                guard n >= 2 else { return .needMoreData }
                guard bytes[1] == 0x0A else { throw SIPParseError(.malformedStartLine) }
                if n == 2 { return .needMoreData }
                if bytes[2] != 0x0D { return .pong }
                guard n >= 4 else { return .needMoreData }
                return bytes[3] == 0x0A ? .ping : .pong
            }
            if bytes[0] == 0x0A { return .pong }
            // A method or `SIP/2.0` starts every message: anything else (a TLS hello on a
            // TCP port, binary noise) is refused now, not after waiting for a line end.
            guard CharClass.test(bytes[0], CharClass.token) else { throw SIPParseError(.malformedStartLine) }
        }

        // Find the empty line that ends the headers; note Content-Length on the way.
        var lineStart = state.lineStart
        var contentLength = state.contentLength
        var i = state.scanned
        let scanLimit = min(n, limits.maxMessageSize)
        while i < scanLimit {
            let b = bytes[i]
            guard b == 0x0A else {
                // RFC 3261 §25.1: no control characters in the start line.
                if lineStart == 0, (b < 0x20 && b != 0x0D && b != 0x09) || b == 0x7F {
                    throw SIPParseError(.malformedStartLine)
                }
                i += 1
                continue
            }
            let lineEnd = (i > lineStart && bytes[i - 1] == 0x0D) ? i - 1 : i
            if lineEnd - lineStart > limits.maxHeaderLineLength { throw SIPParseError(.headerLineTooLong) }
            if lineEnd == lineStart {
                let headerLength = i + 1
                guard let contentLength else { throw SIPParseError(.missingContentLength) }
                let total = headerLength + contentLength
                guard total <= limits.maxMessageSize else { throw SIPParseError(.messageTooLarge) }
                if n >= total { return .message(length: total) }
                // Only the body is missing: next time, start at this empty line.
                state = ScanState(scanned: lineStart, lineStart: lineStart, contentLength: contentLength)
                return .needMoreData
            }
            if let value = contentLengthValue(bytes, lineStart, lineEnd) {
                guard let length = value else { throw SIPParseError(.invalidHeader, header: .contentLength) }
                if let contentLength, contentLength != length {
                    throw SIPParseError(.invalidHeader, header: .contentLength)
                }
                contentLength = length
            }
            i += 1
            lineStart = i
        }
        if n >= limits.maxMessageSize { throw SIPParseError(.messageTooLarge) }
        if i - lineStart > limits.maxHeaderLineLength { throw SIPParseError(.headerLineTooLong) }
        state = ScanState(scanned: i, lineStart: lineStart, contentLength: contentLength)
        return .needMoreData
    }

    /// nil: not a Content-Length line; .some(nil): a Content-Length line with a bad value.
    private func contentLengthValue(_ bytes: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> Int?? {
        var nameEnd = start
        while nameEnd < end, CharClass.test(bytes[nameEnd], CharClass.token) { nameEnd += 1 }
        let name = UnsafeBufferPointer(rebasing: bytes[start..<nameEnd])
        guard asciiEquals(name, "content-length") || asciiEquals(name, "l") else { return nil }
        var i = nameEnd
        while i < end, bytes[i] == 0x20 || bytes[i] == 0x09 { i += 1 }
        guard i < end, bytes[i] == UInt8(ascii: ":") else { return nil }
        i += 1
        while i < end, bytes[i] == 0x20 || bytes[i] == 0x09 { i += 1 }
        var e = end
        while e > i, bytes[e - 1] == 0x20 || bytes[e - 1] == 0x09 { e -= 1 }
        return .some(parseDecimal(bytes, i, e, max: UInt64(limits.maxMessageSize)).map { Int($0) })
    }
}
