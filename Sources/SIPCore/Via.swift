/// One Via entry (RFC 3261 §20.42): `SIP/2.0/WSS host:port;branch=…;received=…;rport`.
public struct SIPVia: Sendable, Hashable, CustomStringConvertible {
    public var protocolName: String
    public var protocolVersion: String
    /// `UDP`, `TCP`, `TLS`, `SCTP`, `WS`, `WSS` (RFC 7118 §5.1), upper-cased as written.
    public var transport: String
    public var port: UInt16?
    public var parameters: SIPParameters
    /// The host as a range of the message it was parsed from (its own bytes when set in
    /// code), like `SIPURI`'s parts.
    var source: [UInt8]
    var hostSpan: TextSpan

    public init(
        transport: String, host: String, port: UInt16? = nil, branch: String? = nil,
        parameters: SIPParameters = []
    ) {
        self.protocolName = "SIP"
        self.protocolVersion = "2.0"
        self.transport = transport
        self.source = Array(host.utf8)
        self.hostSpan = TextSpan(0, source.count)
        self.port = port
        self.parameters = parameters
        if let branch { self.parameters.set("branch", branch) }
    }

    init(
        protocolName: String, protocolVersion: String, transport: String, source: [UInt8], host: TextSpan,
        port: UInt16?, parameters: SIPParameters
    ) {
        self.protocolName = protocolName
        self.protocolVersion = protocolVersion
        self.transport = transport
        self.source = source
        self.hostSpan = host
        self.port = port
        self.parameters = parameters
    }

    public var host: String {
        get { hostSpan.string(in: source) ?? "" }
        set {
            source = Array(newValue.utf8)
            hostSpan = TextSpan(0, source.count)
        }
    }

    public static func == (lhs: SIPVia, rhs: SIPVia) -> Bool {
        lhs.protocolName == rhs.protocolName && lhs.protocolVersion == rhs.protocolVersion
            && lhs.transport == rhs.transport && lhs.port == rhs.port
            && TextSpan.equal(lhs.hostSpan, lhs.source, rhs.hostSpan, rhs.source) && lhs.parameters == rhs.parameters
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(protocolName)
        hasher.combine(protocolVersion)
        hasher.combine(transport)
        hasher.combine(port)
        hostSpan.hash(in: source, into: &hasher)
        hasher.combine(parameters)
    }

    /// RFC 3261 §8.1.1.7: branches of RFC 3261 elements start with this cookie.
    public static let magicCookie = "z9hG4bK"

    public var branch: String? {
        get { parameters["branch"] }
        set { parameters.set("branch", newValue) }
    }
    public var received: String? {
        get { parameters["received"] }
        set { parameters.set("received", newValue) }
    }

    /// RFC 3581: absent, asked for (`;rport`), or filled in (`;rport=5060`).
    public enum RPort: Sendable, Hashable {
        case absent
        case requested
        case value(UInt16)
    }

    public var rport: RPort {
        get {
            guard let raw = parameters.rawValue("rport") else { return .absent }
            guard let value = raw, let port = parseDecimal(value, max: 65535) else { return .requested }
            return .value(UInt16(port))
        }
        set {
            switch newValue {
            case .absent: parameters.remove("rport")
            case .requested: parameters.set("rport", nil)
            case .value(let p): parameters.set("rport", String(p))
            }
        }
    }

    /// `host[:port]` as the sent-by of this entry.
    public var sentBy: String { port.map { "\(host):\($0)" } ?? host }

    public var description: String {
        var out: [UInt8] = []
        out.reserveCapacity(96)
        append(to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Writes the entry's wire form to `out`. A transport stamps `received` and `rport` on
    /// every request that comes over UDP (RFC 3581), and the entry is written again each
    /// time: as bytes, not as a String per part (a call's Via stamps made ~40 mallocs).
    func append(to out: inout [UInt8]) {
        out.append(contentsOf: protocolName.utf8)
        out.append(UInt8(ascii: "/"))
        out.append(contentsOf: protocolVersion.utf8)
        out.append(UInt8(ascii: "/"))
        out.append(contentsOf: transport.utf8)
        out.append(0x20)
        hostSpan.withBytes(in: source) { out.append(contentsOf: $0) }
        if let port {
            out.append(UInt8(ascii: ":"))
            out.append(contentsOf: String(port).utf8)
        }
        parameters.appendNormalized(to: &out)
    }

    public static func parse(_ text: String) throws(SIPParseError) -> SIPVia {
        let list = try parseList(text)
        guard list.count == 1 else { throw SIPParseError(.invalidHeader, header: .via) }
        return list[0]
    }

    /// Parses a Via field value, which may hold several comma-separated entries.
    public static func parseList(_ text: String) throws(SIPParseError) -> [SIPVia] {
        try withUTF8Bytes(text) { (bytes) throws(SIPParseError) -> [SIPVia] in
            var result: [SIPVia] = []
            try parseList(bytes: bytes, source: nil, into: &result)
            return result
        }
    }

    static func parseList(bytes: UnsafeBufferPointer<UInt8>, source: ByteSource?, into result: inout [SIPVia])
        throws(SIPParseError)
    {
        do throws(SIPParseError) {
            var scanner = ByteScanner(bytes, source: source)
            scanner.skipLWS()
            repeat {
                result.append(try scanner.readVia())
            } while scanner.consumeSeparator(UInt8(ascii: ","))
            scanner.skipLWS()
            guard scanner.isAtEnd else { throw SIPParseError(.invalidHeader) }
        } catch {
            throw error.in(.via)
        }
    }

    /// The first entry of a Via field value; the rest of the list is checked too.
    static func parseFirst(bytes: UnsafeBufferPointer<UInt8>, source: ByteSource?) throws(SIPParseError) -> SIPVia {
        try parseFirstAndEnd(bytes: bytes, source: source).via
    }

    /// The first entry and the offset where it ends; the rest of the list is checked too.
    @inline(__always)
    static func parseFirstAndEnd(bytes: UnsafeBufferPointer<UInt8>, source: ByteSource?) throws(SIPParseError) -> (
        via: SIPVia, end: Int
    ) {
        do throws(SIPParseError) {
            var scanner = ByteScanner(bytes, source: source)
            scanner.skipLWS()
            let first = try scanner.readVia()
            let end = scanner.index
            while scanner.consumeSeparator(UInt8(ascii: ",")) { _ = try scanner.readVia() }
            scanner.skipLWS()
            guard scanner.isAtEnd else { throw SIPParseError(.invalidHeader) }
            return (first, end)
        } catch {
            throw error.in(.via)
        }
    }
}

extension ByteScanner {
    mutating func readVia() throws(SIPParseError) -> SIPVia {
        let name: String
        let version: String
        if let base = bytes.baseAddress, index + 8 <= end,
            UnsafeRawPointer(base + index).loadUnaligned(as: UInt64.self) == 0x2F30_2E32_2F50_4953  // "SIP/2.0/"
        {
            // Every Via in practice: one compare instead of two words and two separators.
            name = "SIP"
            version = "2.0"
            index += 8
            skipLWS()
        } else {
            guard let n = readWord(CharClass.token), consumeSeparator(UInt8(ascii: "/")),
                let v = readWord(CharClass.token), consumeSeparator(UInt8(ascii: "/"))
            else { throw SIPParseError(.invalidHeader) }
            name = n
            version = v
        }
        guard let transport = readWord(CharClass.token) else { throw SIPParseError(.invalidHeader) }
        let beforeSpace = index
        skipLWS()
        guard index > beforeSpace else { throw SIPParseError(.invalidHeader) }
        let hostStart = index
        try skipHost()
        let hostEnd = index
        let port = try readPortLWS()
        let params = try readHeaderParameters()
        let (array, offset) = sourceArray()
        return SIPVia(
            protocolName: name, protocolVersion: version, transport: transport, source: array,
            host: TextSpan(hostStart, hostEnd).shifted(by: offset), port: port, parameters: params)
    }

    /// `[ COLON port ]` where LWS may surround the colon (RFC 3261 HCOLON-like leniency).
    private mutating func readPortLWS() throws(SIPParseError) -> UInt16? {
        let saved = index
        skipLWS()
        guard consume(UInt8(ascii: ":")) else {
            index = saved
            return nil
        }
        skipLWS()
        let start = index
        while let b = peek(), isClass(b, CharClass.digit) { index += 1 }
        guard let value = parseDecimal(bytes, start, index, max: 65535) else {
            throw SIPParseError(.invalidPort)
        }
        return UInt16(value)
    }
}

/// `CSeq: 4711 REGISTER` (RFC 3261 §20.16).
public struct SIPCSeq: Sendable, Hashable, CustomStringConvertible {
    public var sequence: UInt32
    public var method: SIPMethod

    public init(_ sequence: UInt32, _ method: SIPMethod) {
        self.sequence = sequence
        self.method = method
    }

    public var description: String { "\(sequence) \(method.rawValue)" }

    public static func parse(_ text: String) throws(SIPParseError) -> SIPCSeq {
        try withUTF8Bytes(text) { (bytes) throws(SIPParseError) -> SIPCSeq in try parse(bytes: bytes) }
    }

    static func parse(bytes: UnsafeBufferPointer<UInt8>) throws(SIPParseError) -> SIPCSeq {
        do {
            var scanner = ByteScanner(bytes)
            scanner.skipLWS()
            let start = scanner.index
            while let b = scanner.peek(), CharClass.test(b, CharClass.digit) { scanner.index += 1 }
            // RFC 3261 §8.1.1.5: the sequence number is below 2**31.
            guard let number = parseDecimal(bytes, start, scanner.index, max: UInt64(Int32.max)),
                let b = scanner.peek(), b == 0x20 || b == 0x09
            else { throw SIPParseError(.invalidHeader, header: .cseq) }
            scanner.skipLWS()
            guard let method = scanner.readWord(CharClass.token) else {
                throw SIPParseError(.invalidHeader, header: .cseq)
            }
            scanner.skipLWS()
            guard scanner.isAtEnd else { throw SIPParseError(.invalidHeader, header: .cseq) }
            return SIPCSeq(UInt32(number), SIPMethod(method))
        }
    }
}

extension SIPHeaderFields {
    /// Reads the top Via entry and lets `update` change it in one pass over the field: when
    /// `update` returns true the changed entry replaces the old one, and the entries below
    /// it stay as written (the transport stamps only the top entry: RFC 3261 §18.2.1,
    /// RFC 3581 §4). Returns the entry as it now stands.
    public mutating func updateTopVia(_ update: (inout SIPVia) -> Bool) throws(SIPParseError) -> SIPVia {
        guard let index = firstIndex(named: .via) else { throw SIPParseError(.missingHeader, header: .via) }
        compactExtraIfLarge()  // before `old` is read: compacting moves values
        let old = slots[index]
        let (first, end) = try withSource(old, SIPVia.parseFirstAndEnd)
        var via = first
        guard update(&via) else { return via }
        // The new entry, then the rest of the list as written, at the end of `extra`.
        let start = extraEnd
        via.append(to: &extra)
        let restCount = UInt32(Int(old.end - old.start) - end)
        if restCount > 0 {
            // Copied out first: the rest may lie in `extra` itself, which cannot be appended
            // to itself in place. (One entry per field, the usual case, has no rest.)
            let rest = withBytes(Slot(code: old.code, start: old.end - restCount, end: old.end)) { Array($0) }
            extra.append(contentsOf: rest)
        }
        slots[index] = Slot(code: old.code, start: start, end: extraEnd, setInCode: true)
        return via
    }

    /// Removes the top Via entry (a response leaving the element that sent the request,
    /// RFC 3261 §18.1.2): the rest of its field's list stays as written; an emptied field goes.
    public mutating func removeTopVia() throws(SIPParseError) {
        guard let index = firstIndex(named: .via) else { throw SIPParseError(.missingHeader, header: .via) }
        let rest = try withSource(slots[index]) { (bytes, source) throws(SIPParseError) -> Int? in
            var scanner = ByteScanner(bytes, source: nil)
            scanner.index = try SIPVia.parseFirstAndEnd(bytes: bytes, source: source).end
            guard scanner.consumeSeparator(UInt8(ascii: ",")) else { return nil }
            return scanner.index
        }
        if let rest {
            // The rest of the list is already in the buffer: the field just starts later.
            slots[index].start += UInt32(rest)
        } else {
            slots.remove(at: index)
        }
    }
}
