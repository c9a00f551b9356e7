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
///
/// Parsed parameters stay the checked `;…` text of the message until they are changed or
/// listed: looking one up scans that text, so a parse makes no array and no strings for
/// parameters nobody reads.
public struct SIPParameters: Sendable, Hashable, RandomAccessCollection, ExpressibleByArrayLiteral,
    CustomStringConvertible
{
    enum Storage: Sendable {
        case list([SIPParameter])
        /// `;name=value…` as written, already checked against the grammar of its kind.
        case text(LazyText, ParameterKind)
    }

    var storage: Storage

    public init() { storage = .list([]) }
    public init(_ elements: [SIPParameter]) { storage = .list(elements) }
    public init(arrayLiteral elements: SIPParameter...) { storage = .list(elements) }
    init(text: LazyText, kind: ParameterKind) { storage = .text(text, kind) }

    public var elements: [SIPParameter] {
        get {
            switch storage {
            case .list(let list): return list
            case .text(let text, let kind):
                var list: [SIPParameter] = []
                forEachParameter(text, kind) { bytes, name, value in
                    list.append(
                        SIPParameter(
                            makeString(bytes, name.lowerBound, name.upperBound),
                            value.map { makeString(bytes, $0.lowerBound, $0.upperBound) }))
                    return true
                }
                return list
            }
        }
        set { storage = .list(newValue) }
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int {
        switch storage {
        case .list(let list): return list.count
        case .text(let text, let kind):
            var count = 0
            forEachParameter(text, kind) { _, _, _ in
                count += 1
                return true
            }
            return count
        }
    }
    public subscript(position: Int) -> SIPParameter { elements[position] }

    public func contains(_ name: String) -> Bool { rawValue(name) != nil }

    /// The value, unquoted; `nil` when the parameter is absent or has no value.
    public subscript(_ name: String) -> String? {
        get { rawValue(name).flatMap { $0 }.map(unquote) }
    }

    /// The value as written, quotes included.
    public func rawValue(_ name: String) -> String?? {
        switch storage {
        case .list(let list):
            // By index: `first(where:)` would copy (retain and release) every element it passes.
            for i in list.indices where equalsIgnoringASCIICase(list[i].name, name) { return list[i].value }
            return nil
        case .text(let text, let kind):
            var found: String??
            withUTF8Bytes(name) { wanted in
                forEachParameter(text, kind) { bytes, n, v in
                    guard equalsIgnoringASCIICase(UnsafeBufferPointer(rebasing: bytes[n]), wanted) else { return true }
                    found = .some(v.map { makeString(bytes, $0.lowerBound, $0.upperBound) })
                    return false
                }
            }
            return found
        }
    }

    /// Sets a parameter (replacing one of the same name in place, else appending).
    /// `value` is written as given: pass `quote(x)` for a quoted value.
    public mutating func set(_ name: String, _ value: String?) {
        var list = takeList()
        if let i = list.indices.first(where: { equalsIgnoringASCIICase(list[$0].name, name) }) {
            list[i].value = value
        } else {
            list.append(SIPParameter(name, value))
        }
        storage = .list(list)
    }

    public mutating func remove(_ name: String) {
        var list = takeList()
        list.removeAll { equalsIgnoringASCIICase($0.name, name) }
        storage = .list(list)
    }

    /// The parameters as a list that no other value shares, so changing it copies nothing.
    private mutating func takeList() -> [SIPParameter] {
        guard case .list(let list) = storage else { return elements }
        storage = .list([])
        return list
    }

    /// Writes `;name=value…` to `out`: parsed text as it came, a list element by element.
    func append(to out: inout [UInt8]) {
        switch storage {
        case .text(let text, _): text.withBytes { out.append(contentsOf: $0) }
        case .list(let list):
            for p in list {
                out.append(UInt8(ascii: ";"))
                out.append(contentsOf: p.name.utf8)
                if let v = p.value {
                    out.append(UInt8(ascii: "="))
                    out.append(contentsOf: v.utf8)
                }
            }
        }
    }

    public var description: String {
        var out: [UInt8] = []
        appendNormalized(to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Writes `;name=value…` as `description` gives it (each parameter as parsed, without
    /// the LWS a header's text may have around `;` and `=`), with no String per part.
    func appendNormalized(to out: inout [UInt8]) {
        // A list is written as it is either way; only parsed text may hold LWS to drop.
        guard case .text(let text, let kind) = storage else { return append(to: &out) }
        forEachParameter(text, kind) { bytes, name, value in
            out.append(UInt8(ascii: ";"))
            out.append(contentsOf: bytes[name])
            if let value {
                out.append(UInt8(ascii: "="))
                out.append(contentsOf: bytes[value])
            }
            return true
        }
    }

    public static func == (lhs: SIPParameters, rhs: SIPParameters) -> Bool {
        lhs.elements == rhs.elements
    }

    public func hash(into hasher: inout Hasher) { hasher.combine(elements) }
}

/// Header parameters (`;tag=…`, LWS allowed around `;` and `=`, quoted values) or URI
/// parameters (escaped characters, nothing quoted).
enum ParameterKind: Sendable {
    case header
    case uri
}

/// Calls `body` with each parameter's name and value ranges in checked parameter text,
/// until it returns false.
private func forEachParameter(
    _ text: LazyText, _ kind: ParameterKind,
    _ body: (UnsafeBufferPointer<UInt8>, Range<Int>, Range<Int>?) -> Bool
) {
    text.withBytes { bytes in
        var scanner = ByteScanner(bytes)
        // The text was checked when it was parsed, so scanning it again cannot fail.
        while let (name, value) = try? scanner.scanParameter(kind) {
            if !body(bytes, name, value) { return }
        }
    }
}

extension ByteScanner {
    /// `*( SEMI generic-param )` of a header value: `;name`, `;name=token|host|quoted`.
    mutating func readHeaderParameters() throws(SIPParseError) -> SIPParameters {
        try readParameters(.header)
    }

    /// `*( ";" uri-parameter )` inside a SIP URI: paramchar runs with escapes, no quotes.
    mutating func readURIParameters() throws(SIPParseError) -> SIPParameters {
        try readParameters(.uri)
    }

    /// Checks the parameters and keeps them as text when the bytes have a source array,
    /// else makes the list at once.
    private mutating func readParameters(_ kind: ParameterKind) throws(SIPParseError) -> SIPParameters {
        guard let source else { return try readParameterList(kind) }
        let start = index
        var count = 0
        while try scanParameter(kind) != nil { count += 1 }
        guard count > 0 else { return SIPParameters() }
        return SIPParameters(text: LazyText(source, start, index), kind: kind)
    }

    /// Parameters of text without a source buffer (parsed from a `String`), as a list.
    @inline(never)
    private mutating func readParameterList(_ kind: ParameterKind) throws(SIPParseError) -> SIPParameters {
        var list: [SIPParameter] = []
        while let (name, value) = try scanParameter(kind) {
            list.append(
                SIPParameter(
                    string(name.lowerBound, name.upperBound), value.map { string($0.lowerBound, $0.upperBound) }))
        }
        return list.isEmpty ? SIPParameters() : SIPParameters(list)
    }

    /// One parameter: the ranges of its name and value; nil (and nothing consumed) when no
    /// parameter follows.
    mutating func scanParameter(_ kind: ParameterKind) throws(SIPParseError) -> (Range<Int>, Range<Int>?)? {
        switch kind {
        case .header:
            guard consumeSeparator(UInt8(ascii: ";")) else { return nil }
            let nameStart = index
            while index < end, isClass(bytes[index], CharClass.token) { index += 1 }
            guard index > nameStart else { throw SIPParseError(.invalidParameter) }
            let name = nameStart..<index
            guard consumeSeparator(UInt8(ascii: "=")) else { return (name, nil) }
            let valueStart = index
            if peek() == UInt8(ascii: "\"") {
                try skipQuoted()
            } else {
                while index < end,
                    isClass(bytes[index], CharClass.token) || bytes[index] == UInt8(ascii: "[")
                        || bytes[index] == UInt8(ascii: "]") || bytes[index] == UInt8(ascii: ":")
                {
                    index += 1
                }
                guard index > valueStart else { throw SIPParseError(.invalidParameter) }
            }
            return (name, valueStart..<index)
        case .uri:
            guard consume(UInt8(ascii: ";")) else { return nil }
            let bits = CharClass.unreserved | CharClass.paramUnreserved
            let nameStart = index
            try skipEscaped(bits)
            guard index > nameStart else { throw SIPParseError(.invalidParameter) }
            let name = nameStart..<index
            guard consume(UInt8(ascii: "=")) else { return (name, nil) }
            let valueStart = index
            try skipEscaped(bits)
            guard index > valueStart else { throw SIPParseError(.invalidParameter) }
            return (name, valueStart..<index)
        }
    }
}
