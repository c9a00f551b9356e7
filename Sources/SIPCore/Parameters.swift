/// One `;name=value` parameter. `value` is kept as written (a quoted value keeps its quotes)
/// so a parsed message re-serializes byte-exact; `SIPParameters[name]` gives it unquoted.
public struct SIPParameter: Sendable, Hashable {
    public var name: String
    public var value: String?

    public init(_ name: String, _ value: String? = nil) {
        self.name = name
        self.value = value
    }
}

/// An ordered list of parameters with case-insensitive names (RFC 3261 §19.1.4, §20).
public struct SIPParameters: Sendable, Hashable, RandomAccessCollection, ExpressibleByArrayLiteral,
    CustomStringConvertible
{
    public var elements: [SIPParameter]

    public init() { elements = [] }
    public init(_ elements: [SIPParameter]) { self.elements = elements }
    public init(arrayLiteral elements: SIPParameter...) { self.elements = elements }

    public var startIndex: Int { elements.startIndex }
    public var endIndex: Int { elements.endIndex }
    public subscript(position: Int) -> SIPParameter { elements[position] }

    func index(of name: String) -> Int? {
        elements.firstIndex { equalsIgnoringASCIICase($0.name, name) }
    }

    public func contains(_ name: String) -> Bool { index(of: name) != nil }

    /// The value, unquoted; `nil` when the parameter is absent or has no value.
    public subscript(_ name: String) -> String? {
        get { index(of: name).flatMap { elements[$0].value }.map(unquote) }
    }

    /// The value as written, quotes included.
    public func rawValue(_ name: String) -> String?? {
        index(of: name).map { elements[$0].value }
    }

    /// Sets a parameter (replacing one of the same name in place, else appending).
    /// `value` is written as given: pass `quote(x)` for a quoted value.
    public mutating func set(_ name: String, _ value: String?) {
        if let i = index(of: name) {
            elements[i].value = value
        } else {
            elements.append(SIPParameter(name, value))
        }
    }

    public mutating func remove(_ name: String) {
        elements.removeAll { equalsIgnoringASCIICase($0.name, name) }
    }

    public var description: String {
        var out = ""
        for p in elements {
            out += ";"
            out += p.name
            if let v = p.value {
                out += "="
                out += v
            }
        }
        return out
    }
}

extension ByteScanner {
    /// `*( SEMI generic-param )` of a header value: `;name`, `;name=token|host|quoted`.
    mutating func readHeaderParameters() throws(SIPParseError) -> SIPParameters {
        var params = SIPParameters()
        while consumeSeparator(UInt8(ascii: ";")) {
            guard let name = read(CharClass.token) else { throw SIPParseError(.invalidParameter) }
            var value: String?
            if consumeSeparator(UInt8(ascii: "=")) {
                if peek() == UInt8(ascii: "\"") {
                    value = try readQuotedRaw()
                } else {
                    let start = index
                    while index < end,
                        isClass(bytes[index], CharClass.token)
                            || bytes[index] == UInt8(ascii: "[") || bytes[index] == UInt8(ascii: "]")
                            || bytes[index] == UInt8(ascii: ":")
                    {
                        index += 1
                    }
                    guard index > start else { throw SIPParseError(.invalidParameter) }
                    value = string(start, index)
                }
            }
            params.elements.append(SIPParameter(name, value))
        }
        return params
    }

    /// `*( ";" uri-parameter )` inside a SIP URI: paramchar runs with escapes, no quotes.
    mutating func readURIParameters() throws(SIPParseError) -> SIPParameters {
        var params = SIPParameters()
        let bits = CharClass.unreserved | CharClass.paramUnreserved
        while consume(UInt8(ascii: ";")) {
            guard let name = try readEscaped(bits) else { throw SIPParseError(.invalidParameter) }
            var value: String?
            if consume(UInt8(ascii: "=")) {
                guard let v = try readEscaped(bits) else { throw SIPParseError(.invalidParameter) }
                value = v
            }
            params.elements.append(SIPParameter(name, value))
        }
        return params
    }
}
