/// `name-addr` or `addr-spec` with header parameters: the value of From, To, Contact,
/// Route, Record-Route, Path, Service-Route, P-Associated-URI (RFC 3261 §20.10, §25.1).
public struct SIPAddress: Sendable, Hashable, CustomStringConvertible {
    /// The display name as written: a quoted-string (with quotes) or a run of tokens.
    public var displayName: String?
    public var uri: AnyURI
    /// Header parameters after the address (`tag`, `expires`, `+sip.instance`, `lr` on
    /// Path entries is inside the URI, not here).
    public var parameters: SIPParameters
    /// Whether it was written as `<uri>`. Serialization uses brackets whenever they are
    /// needed, so setting this to false is only a preference.
    public var usesAngleBrackets: Bool
}

// The initializers live in an extension so the parser can use the memberwise one: the
// optimizer built this large value through a stack copy in a written-out initializer and
// left a retain and release of every field behind.
extension SIPAddress {
    public init(
        uri: AnyURI, displayName: String? = nil, parameters: SIPParameters = [],
        usesAngleBrackets: Bool = true
    ) {
        self.init(displayName: displayName, uri: uri, parameters: parameters, usesAngleBrackets: usesAngleBrackets)
    }

    public init(_ uri: SIPURI, parameters: SIPParameters = []) {
        self.init(uri: .sip(uri), parameters: parameters)
    }

    /// The display name without quotes or escapes.
    public var displayNameText: String? { displayName.map(unquote) }
    public var tag: String? {
        get { parameters["tag"] }
        set { parameters.set("tag", newValue) }
    }

    public var description: String {
        var out = ""
        let needsBrackets: Bool
        switch uri {
        case .sip(let u):
            needsBrackets =
                !u.parameters.isEmpty || !u.headers.isEmpty
                || u.user.map { $0.utf8.contains { $0 == 0x3B || $0 == 0x3F || $0 == 0x2C } } ?? false
        case .tel(let t): needsBrackets = !t.parameters.isEmpty
        case .other(let s): needsBrackets = s.utf8.contains { $0 == 0x3B || $0 == 0x3F || $0 == 0x2C }
        }
        if let displayName {
            out += displayName
            out += " "
        }
        if usesAngleBrackets || needsBrackets || displayName != nil {
            out += "<"
            out += uri.description
            out += ">"
        } else {
            out += uri.description
        }
        out += parameters.description
        return out
    }

    /// Parses one address; nothing may follow it.
    public static func parse(_ text: String) throws(SIPParseError) -> SIPAddress {
        try withUTF8Bytes(text) { (bytes) throws(SIPParseError) -> SIPAddress in try parse(bytes: bytes, source: nil) }
    }

    static func parse(bytes: UnsafeBufferPointer<UInt8>, source: ByteSource?) throws(SIPParseError) -> SIPAddress {
        var scanner = ByteScanner(bytes, source: source)
        scanner.skipLWS()
        let address = try scanner.readAddress()
        scanner.skipLWS()
        guard scanner.isAtEnd else { throw SIPParseError(.invalidHeader) }
        return address
    }

    /// Parses a comma-separated list of addresses (Route, Path, P-Associated-URI, Contact).
    public static func parseList(_ text: String) throws(SIPParseError) -> [SIPAddress] {
        try withUTF8Bytes(text) { (bytes) throws(SIPParseError) -> [SIPAddress] in
            var result: [SIPAddress] = []
            try parseList(bytes: bytes, source: nil) { result.append($0) }
            return result
        }
    }

    static func parseList(bytes: UnsafeBufferPointer<UInt8>, source: ByteSource?, _ each: (SIPAddress) -> Void)
        throws(SIPParseError)
    {
        var scanner = ByteScanner(bytes, source: source)
        scanner.skipLWS()
        repeat {
            each(try scanner.readAddress())
        } while scanner.consumeSeparator(UInt8(ascii: ","))
        scanner.skipLWS()
        guard scanner.isAtEnd else { throw SIPParseError(.invalidHeader) }
    }
}

extension ByteScanner {
    mutating func readAddress() throws(SIPParseError) -> SIPAddress {
        var displayName: String?
        if peek() == UInt8(ascii: "\"") {
            displayName = try readQuotedRaw()
            skipLWS()
        } else if peek() != UInt8(ascii: "<") {
            // A run of tokens followed by `<` is a display name; anything else an addr-spec.
            let start = index
            var lastTokenEnd = index
            while let b = peek(), isClass(b, CharClass.token) || b == 0x20 || b == 0x09 {
                index += 1
                if b != 0x20 && b != 0x09 { lastTokenEnd = index }
            }
            if peek() == UInt8(ascii: "<"), lastTokenEnd > start {
                displayName = string(start, lastTokenEnd)
            } else {
                index = start
            }
        }
        // One construction for both forms: separate ones made the optimizer copy the
        // finished value into the return slot and destroy the original.
        let angle = consume(UInt8(ascii: "<"))
        guard angle || displayName == nil else { throw SIPParseError(.invalidHeader) }
        let uri = try readURI(context: angle ? .angle : .addrSpec)
        if angle, !consume(UInt8(ascii: ">")) { throw SIPParseError(.invalidURI) }
        let params = try readHeaderParameters()
        return SIPAddress(displayName: displayName, uri: uri, parameters: params, usesAngleBrackets: angle)
    }
}

/// One Contact entry with the RFC 3261/3840/5626 parameters read for you.
public struct SIPContact: Sendable, Hashable, CustomStringConvertible {
    public var address: SIPAddress

    public init(_ address: SIPAddress) { self.address = address }

    public var uri: AnyURI { address.uri }
    public var expires: UInt32? {
        address.parameters["expires"].flatMap { parseDecimal($0) }.map { UInt32($0) }
    }
    /// `q` as written (0 to 1, up to three decimals).
    public var q: String? { address.parameters["q"] }
    /// `+sip.instance` without quotes and angle brackets, e.g. `urn:uuid:…`.
    public var instance: String? {
        guard var v = address.parameters["+sip.instance"] else { return nil }
        return v.withUTF8 { bytes in
            guard bytes.count >= 2, bytes[0] == UInt8(ascii: "<"), bytes[bytes.count - 1] == UInt8(ascii: ">")
            else { return nil }
            return makeString(bytes, 1, bytes.count - 1)
        } ?? v
    }
    public var regID: UInt32? {
        address.parameters["reg-id"].flatMap { parseDecimal($0) }.map { UInt32($0) }
    }
    public var description: String { address.description }
}

/// A Contact header: `*` or a list of contacts (RFC 3261 §20.10).
public enum SIPContactValue: Sendable, Hashable {
    case wildcard
    case contacts([SIPContact])

    /// Parses all Contact field values of a message together.
    public static func parse(fieldValues: [String]) throws(SIPParseError) -> SIPContactValue {
        var parser = Accumulator()
        for value in fieldValues {
            try withUTF8Bytes(value) { (bytes) throws(SIPParseError) in try parser.add(bytes, source: nil) }
        }
        return try parser.finish()
    }

    /// Collects the contacts of one or more field values.
    struct Accumulator {
        var contacts: [SIPContact] = []
        var sawWildcard = false
        var fields = 0

        mutating func add(_ bytes: UnsafeBufferPointer<UInt8>, source: ByteSource?) throws(SIPParseError) {
            fields += 1
            var s = 0
            var e = bytes.count
            while s < e, isLWS(bytes[s]) { s += 1 }
            while e > s, isLWS(bytes[e - 1]) { e -= 1 }
            if e - s == 1, bytes[s] == UInt8(ascii: "*") {
                sawWildcard = true
                return
            }
            if contacts.isEmpty { contacts.reserveCapacity(2) }
            try SIPAddress.parseList(bytes: bytes, source: source) { contacts.append(SIPContact($0)) }
        }

        func finish() throws(SIPParseError) -> SIPContactValue {
            if sawWildcard {
                // RFC 3261 §10.2.2: `*` stands alone.
                guard contacts.isEmpty, fields == 1 else { throw SIPParseError(.invalidHeader) }
                return .wildcard
            }
            return .contacts(contacts)
        }
    }
}

extension String {
    func trimmingLWS() -> Substring {
        var s = self[...]
        while let f = s.utf8.first, isLWS(f) { s = s.dropFirst() }
        while let l = s.utf8.last, isLWS(l) { s = s.dropLast() }
        return s
    }
}
