extension SIPResponse {
    /// Builds a response to a request that was received (RFC 3261 §8.2.6.2): Via, From,
    /// To (with a tag when it had none), Call-ID and CSeq copied from it.
    public init(replyingTo request: SIPRequest, statusCode: Int, reasonPhrase: String? = nil, toTag: String? = nil) {
        // RFC 3261 §8.2.6.2: Via, From, Call-ID and CSeq copied, To too (with our tag).
        // Their bytes go into one buffer of the reply's own: no String per field, and the
        // reply (kept 32 s for retransmissions over UDP) does not hold the whole request.
        let source = request.headers
        var headers = SIPHeaderFields()
        headers.slots.reserveCapacity(8)
        // Sized once: grown by appending, the buffer was reallocated at every doubling.
        var bytes = toTag.map { $0.utf8.count + 5 } ?? 0
        for slot in source.slots where Self.copiedCodes.contains(slot.code) { bytes += Int(slot.end - slot.start) }
        headers.extra.reserveCapacity(bytes)
        for slot in source.slots where Self.copiedCodes.contains(slot.code) {
            var copy = slot
            copy.start = headers.extraEnd
            source.withBytes(slot) { headers.extra.append(contentsOf: $0) }
            if slot.code == Self.toCode, statusCode > 100, let toTag {
                let address = try? source.withSource(slot, SIPAddress.parse(bytes:source:))
                if address?.tag == nil {
                    // RFC 3261 §8.2.6.2: our tag on a To that had none.
                    headers.extra.append(contentsOf: ";tag=".utf8)
                    headers.extra.append(contentsOf: toTag.utf8)
                    copy.setInCode = true
                }
            }
            copy.end = headers.extraEnd
            headers.slots.append(copy)
        }
        self.init(statusCode: statusCode, reasonPhrase: reasonPhrase, headers: headers)
    }

    private static let toCode = Int32(SIPHeaderName.to.knownID)
    private static let copiedCodes: [Int32] = [SIPHeaderName.via, .from, .to, .callID, .cseq].map {
        Int32($0.knownID)
    }

    /// The response to a request that failed to parse, when enough of it can be read to
    /// address one: a request start line and raw Via, From, To, Call-ID and CSeq lines.
    /// 513 for a message too large, 505 for another SIP version, else 400 with the
    /// error's reason phrase. nil when no response can be built: the sender is unknown.
    public static func errorResponse(forUnparseable bytes: UnsafeBufferPointer<UInt8>, error: SIPParseError)
        -> SIPResponse?
    {
        guard let salvaged = salvageHeaders(bytes) else { return nil }
        let code: Int
        switch error.kind {
        case .messageTooLarge: code = 513
        case .unsupportedVersion: code = 505
        default: code = 400
        }
        var headers = salvaged
        if var to = headers[.to], !to.contains(";tag=") && !to.contains(";TAG=") {
            to += ";tag=e400"
            headers[.to] = to
        }
        return SIPResponse(
            statusCode: code,
            reasonPhrase: code == 400 ? error.reasonPhrase : nil,
            headers: headers)
    }

    /// Reads just the headers needed to answer, leniently, from the first 8 KiB.
    static func salvageHeaders(_ bytes: UnsafeBufferPointer<UInt8>) -> SIPHeaderFields? {
        let limit = min(bytes.count, 8_192)
        let window = UnsafeBufferPointer(rebasing: bytes[0..<limit])
        var position = 0
        while position < limit, window[position] == 0x0D || window[position] == 0x0A { position += 1 }
        guard let (startEnd, next) = lineBounds(window, from: position), startEnd > position else { return nil }
        // Only requests get responses; a broken response is dropped.
        let startLine = UnsafeBufferPointer(rebasing: window[position..<startEnd])
        if startLine.count >= 4, asciiEquals(UnsafeBufferPointer(rebasing: startLine[0..<4]), "SIP/") { return nil }
        var headers = SIPHeaderFields()
        position = next
        while let (end, after) = lineBounds(window, from: position), end > position {
            var nameEnd = position
            while nameEnd < end, CharClass.test(window[nameEnd], CharClass.token) { nameEnd += 1 }
            var colon = nameEnd
            while colon < end, window[colon] == 0x20 || window[colon] == 0x09 { colon += 1 }
            if nameEnd > position, colon < end, window[colon] == UInt8(ascii: ":"),
                let name = SIPHeaderName.lookup(bytes: UnsafeBufferPointer(rebasing: window[position..<nameEnd])),
                [SIPHeaderName.via, .from, .to, .callID, .cseq].contains(name)
            {
                var s = colon + 1
                while s < end, window[s] == 0x20 || window[s] == 0x09 { s += 1 }
                let raw = UnsafeBufferPointer(rebasing: window[s..<end])
                // Copy only printable ASCII: these bytes go back out on the wire.
                if !raw.isEmpty, raw.allSatisfy({ $0 >= 0x20 && $0 < 0x7F || $0 == 0x09 }) {
                    if name == .via || !headers.contains(name) {
                        headers.append(name, String(decoding: raw, as: UTF8.self))
                    }
                }
            }
            position = after
        }
        for name in [SIPHeaderName.via, .from, .to, .callID, .cseq] where !headers.contains(name) { return nil }
        // The Via must be readable to route the answer back.
        guard (try? headers.topVia) != nil else { return nil }
        return headers
    }
}
