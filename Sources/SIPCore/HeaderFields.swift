/// One header field as it stands in a message: a name and its (unfolded) value.
public struct SIPHeaderField: Sendable, Hashable {
    public var name: SIPHeaderName
    public var value: String

    public init(name: SIPHeaderName, value: String) {
        self.name = name
        self.value = value
    }
}

/// The ordered header fields of a SIP message. Order is kept as received, because it
/// matters for Via, Route, Record-Route and Path; look-ups by name are case-insensitive.
public struct SIPHeaderFields: Sendable, Hashable, RandomAccessCollection, MutableCollection,
    ExpressibleByDictionaryLiteral
{
    @usableFromInline var fields: [SIPHeaderField]

    public init() { fields = [] }

    public init(_ fields: [SIPHeaderField]) { self.fields = fields }

    public init(dictionaryLiteral elements: (SIPHeaderName, String)...) {
        fields = elements.map { SIPHeaderField(name: $0.0, value: $0.1) }
    }

    public var startIndex: Int { fields.startIndex }
    public var endIndex: Int { fields.endIndex }
    public subscript(position: Int) -> SIPHeaderField {
        get { fields[position] }
        set { fields[position] = newValue }
    }

    /// The first field value with this name; setting replaces every field of that name
    /// by one (in place of the first), or removes them all when set to `nil`.
    public subscript(name: SIPHeaderName) -> String? {
        get { fields.first { $0.name == name }?.value }
        set {
            guard let newValue else {
                removeAll(name)
                return
            }
            if let first = fields.firstIndex(where: { $0.name == name }) {
                fields[first].value = newValue
                var index = first + 1
                while index < fields.count {
                    if fields[index].name == name { fields.remove(at: index) } else { index += 1 }
                }
            } else {
                fields.append(SIPHeaderField(name: name, value: newValue))
            }
        }
    }

    /// Every field value with this name, in order, without splitting at commas.
    public func fieldValues(_ name: SIPHeaderName) -> [String] {
        fields.compactMap { $0.name == name ? $0.value : nil }
    }

    /// Every element of the comma-separated lists in the fields with this name
    /// (RFC 3261 §7.3.1). Auth headers are never split: their parameters use commas.
    public func values(_ name: SIPHeaderName) -> [String] {
        if SIPHeaderFields.neverSplit.contains(name) { return fieldValues(name) }
        var result: [String] = []
        for field in fields where field.name == name {
            splitCommaList(field.value, into: &result)
        }
        return result
    }

    public func contains(_ name: SIPHeaderName) -> Bool {
        fields.contains { $0.name == name }
    }

    public mutating func append(_ name: SIPHeaderName, _ value: String) {
        fields.append(SIPHeaderField(name: name, value: value))
    }

    public mutating func append(_ field: SIPHeaderField) {
        fields.append(field)
    }

    /// Inserts a field before the first field of the same name (or at the top when there
    /// is none), the way a proxy adds its own Via, Path or Record-Route.
    public mutating func prepend(_ name: SIPHeaderName, _ value: String) {
        let index = fields.firstIndex { $0.name == name } ?? 0
        fields.insert(SIPHeaderField(name: name, value: value), at: index)
    }

    public mutating func insert(_ field: SIPHeaderField, at index: Int) {
        fields.insert(field, at: index)
    }

    @discardableResult
    public mutating func remove(at index: Int) -> SIPHeaderField {
        fields.remove(at: index)
    }

    public mutating func removeAll(_ name: SIPHeaderName) {
        fields.removeAll { $0.name == name }
    }

    public mutating func removeAll(where shouldRemove: (SIPHeaderField) throws -> Bool) rethrows {
        try fields.removeAll(where: shouldRemove)
    }

    static let neverSplit: Set<SIPHeaderName> = [
        .authorization, .proxyAuthorization, .wwwAuthenticate, .proxyAuthenticate,
        .authenticationInfo,
    ]
}

/// Splits `a, "b,c", <sip:d;x=1,2>` at top-level commas: not inside quotes or angle brackets.
func splitCommaList(_ value: String, into result: inout [String]) {
    withUTF8Bytes(value) { bytes in
        var start = 0
        var inQuotes = false
        var inAngle = false
        var i = 0
        while i < bytes.count {
            let b = bytes[i]
            if inQuotes {
                if b == UInt8(ascii: "\\") {
                    i += 1
                } else if b == UInt8(ascii: "\"") {
                    inQuotes = false
                }
            } else if b == UInt8(ascii: "\"") {
                inQuotes = true
            } else if b == UInt8(ascii: "<") {
                inAngle = true
            } else if b == UInt8(ascii: ">") {
                inAngle = false
            } else if b == UInt8(ascii: ","), !inAngle {
                appendTrimmed(bytes, start, i, &result)
                start = i + 1
            }
            i += 1
        }
        appendTrimmed(bytes, start, bytes.count, &result)
    }
}

private func appendTrimmed(
    _ bytes: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int, _ result: inout [String]
) {
    var s = start
    var e = end
    while s < e, isLWS(bytes[s]) { s += 1 }
    while e > s, isLWS(bytes[e - 1]) { e -= 1 }
    if s < e { result.append(makeString(bytes, s, e)) }
}
