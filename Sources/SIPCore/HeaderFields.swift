#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

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
///
/// Parsed fields are not copied out of the message: each is a byte range into the one
/// buffer the message arrived in, and becomes a `String` only when someone asks for its
/// value. Typed views and the serializer read the bytes directly. A value set in code (or
/// unfolded by the parser) is appended to a second buffer, so a field is always a range:
/// the list of fields is plain data, with nothing to retain or release per field, and the
/// message's own bytes are never copied. Values replaced in code stay behind in that buffer
/// until the message goes.
public struct SIPHeaderFields: Sendable, Hashable, RandomAccessCollection, MutableCollection,
    ExpressibleByDictionaryLiteral
{
    /// A field: its name as a number (no `String` to copy or release per field) and where
    /// its value lies: `backing[start..<end]`, or, from `backing.count` on, in `extra`.
    @usableFromInline struct Slot: Sendable {
        /// A known name's `knownID`, or `-(i + 1)` for `unknownNames[i]`.
        var code: Int32
        var start: UInt32
        var end: UInt32
        /// Set in code rather than parsed: it may hold line breaks, which the serializer drops.
        var setInCode: Bool

        init(code: Int32, start: UInt32, end: UInt32, setInCode: Bool = false) {
            self.code = code
            self.start = start
            self.end = end
            self.setInCode = setInCode
        }
    }

    /// The message as received (empty when built in code); never changed.
    @usableFromInline let backing: [UInt8]
    /// The values set in code or unfolded, one after another; positions in it count on
    /// from the end of `backing`.
    @usableFromInline var extra: [UInt8]
    @usableFromInline var slots: [Slot]
    /// Names this library does not know, as written (byte-exact on the wire).
    @usableFromInline var unknownNames: [String]

    public init() {
        backing = []
        extra = []
        slots = []
        unknownNames = []
    }

    public init(_ fields: [SIPHeaderField]) {
        self.init()
        for field in fields { append(field.name, field.value) }
    }

    init(backing: [UInt8], extra: [UInt8] = [], slots: [Slot], unknownNames: [String]) {
        self.backing = backing
        self.extra = extra
        self.slots = slots
        self.unknownNames = unknownNames
    }

    public init(dictionaryLiteral elements: (SIPHeaderName, String)...) {
        self.init()
        for (name, value) in elements { append(name, value) }
    }

    /// The code a slot with this name gets; an unknown name is added to `unknownNames`
    /// (once per spelling).
    mutating func code(adding name: SIPHeaderName) -> Int32 {
        if name.knownID >= 0 { return Int32(name.knownID) }
        let index =
            unknownNames.firstIndex { $0.utf8.elementsEqual(name.canonicalName.utf8) }
            ?? {
                unknownNames.append(name.canonicalName)
                return unknownNames.count - 1
            }()
        return -Int32(index) - 1
    }

    /// Where the next byte appended to `extra` will be.
    var extraEnd: UInt32 { UInt32(backing.count + extra.count) }

    /// A slot for a value set in code: the value's bytes go at the end of `extra`.
    mutating func slot(code: Int32, value: String) -> Slot {
        compactExtraIfLarge()
        let start = extraEnd
        extra.append(contentsOf: value.utf8)
        return Slot(code: code, start: start, end: extraEnd, setInCode: true)
    }

    /// Drops the bytes of replaced values from `extra` once they are most of it, so fields
    /// set over and over (a long-lived message edited in a loop) keep `extra` bounded by
    /// what the fields hold.
    mutating func compactExtraIfLarge() {
        if extra.count > 4_096 { compactExtra() }
    }

    mutating func compactExtra() {
        let base = backing.count
        var live = 0
        for slot in slots where Int(slot.end) > base { live += Int(slot.end - slot.start) }
        guard extra.count > 2 * live else { return }
        var kept: [UInt8] = []
        kept.reserveCapacity(2 * live)
        for i in slots.indices where Int(slots[i].end) > base {
            let start = UInt32(base + kept.count)
            kept.append(contentsOf: extra[(Int(slots[i].start) - base)..<(Int(slots[i].end) - base)])
            slots[i].start = start
            slots[i].end = UInt32(base + kept.count)
        }
        extra = kept
    }

    /// A slot for a value set in code, under this name.
    mutating func slot(_ name: SIPHeaderName, value: String) -> Slot {
        slot(code: code(adding: name), value: value)
    }

    /// Gives the field at `index` a new value (set in code), keeping its name.
    mutating func setValue(_ value: String, at index: Int) {
        slots[index] = slot(code: slots[index].code, value: value)
    }

    /// The name of a slot.
    @inline(__always)
    func name(of slot: Slot) -> SIPHeaderName { Self.name(code: slot.code, unknownNames: unknownNames) }

    /// The name a slot code stands for (see `Slot.code`).
    @inline(__always)
    static func name(code: Int32, unknownNames: [String]) -> SIPHeaderName {
        code >= 0 ? SIPHeaderName.all[Int(code)] : SIPHeaderName(unknown: unknownNames[Int(-code - 1)])
    }

    /// Whether a slot has this name (case-insensitively, RFC 3261 §7.3.1).
    @inline(__always)
    func matches(_ slot: Slot, _ name: SIPHeaderName) -> Bool { Self.matches(slot, name, unknownNames) }

    @inline(__always)
    static func matches(_ slot: Slot, _ name: SIPHeaderName, _ unknownNames: [String]) -> Bool {
        if name.knownID >= 0 { return slot.code == Int32(name.knownID) }
        return slot.code < 0 && equalsIgnoringASCIICase(unknownNames[Int(-slot.code - 1)], name.canonicalName)
    }

    public var startIndex: Int { slots.startIndex }
    public var endIndex: Int { slots.endIndex }
    public subscript(position: Int) -> SIPHeaderField {
        get { SIPHeaderField(name: name(of: slots[position]), value: string(slots[position])) }
        set { slots[position] = slot(newValue.name, value: newValue.value) }
    }

    /// The first field value with this name; setting replaces every field of that name
    /// by one (in place of the first), or removes them all when set to `nil`.
    public subscript(name: SIPHeaderName) -> String? {
        get { firstIndex(named: name).map { string(slots[$0]) } }
        set {
            guard let newValue else {
                removeAll(name)
                return
            }
            if let first = firstIndex(named: name) {
                setValue(newValue, at: first)
                var index = first + 1
                while index < slots.count {
                    if matches(slots[index], name) { slots.remove(at: index) } else { index += 1 }
                }
            } else {
                append(name, newValue)
            }
        }
    }

    /// Every field value with this name, in order, without splitting at commas.
    public func fieldValues(_ name: SIPHeaderName) -> [String] {
        slots.compactMap { matches($0, name) ? string($0) : nil }
    }

    /// Every element of the comma-separated lists in the fields with this name
    /// (RFC 3261 §7.3.1). Auth headers are never split: their parameters use commas.
    public func values(_ name: SIPHeaderName) -> [String] {
        if SIPHeaderFields.neverSplit.contains(name) { return fieldValues(name) }
        var result: [String] = []
        for i in slots.indices where matches(slots[i], name) {
            withBytes(slots[i]) { splitCommaList($0, into: &result) }
        }
        return result
    }

    public func contains(_ name: SIPHeaderName) -> Bool {
        firstIndex(named: name) != nil
    }

    /// Calls `body` with the value bytes of each field of this name, in order (no `String`).
    public func forEachValue(_ name: SIPHeaderName, _ body: (UnsafeBufferPointer<UInt8>) -> Void) {
        for i in slots.indices where matches(slots[i], name) { withBytes(slots[i], body) }
    }

    /// The positions of every field with this name, in order.
    public func positions(of name: SIPHeaderName) -> [Int] {
        slots.indices.filter { matches(slots[$0], name) }
    }

    /// Room for `fields` more fields holding `bytes` more bytes of values, for a message
    /// about to be given several (a 200 OK's Contacts, Path, Service-Route …): one
    /// allocation each instead of one per doubling.
    public mutating func reserveCapacity(fields: Int, bytes: Int) {
        slots.reserveCapacity(slots.count + fields)
        extra.reserveCapacity(extra.count + bytes)
    }

    public mutating func append(_ name: SIPHeaderName, _ value: String) {
        slots.append(slot(name, value: value))
    }

    public mutating func append(_ field: SIPHeaderField) {
        append(field.name, field.value)
    }

    /// Appends a field whose value `write` appends straight to the message's bytes: a value
    /// put together from parts (a 200 OK's Contacts) then needs no String of its own.
    /// `write` may only append, and only a valid field value (no CR or LF).
    public mutating func append(_ name: SIPHeaderName, writing write: (inout [UInt8]) -> Void) {
        compactExtraIfLarge()
        let code = code(adding: name)
        let start = extraEnd
        write(&extra)
        slots.append(Slot(code: code, start: start, end: extraEnd, setInCode: true))
    }

    /// Inserts a field before the first field of the same name (or at the top when there
    /// is none), the way a proxy adds its own Via, Path or Record-Route.
    public mutating func prepend(_ name: SIPHeaderName, _ value: String) {
        let at = firstIndex(named: name) ?? 0
        slots.insert(slot(name, value: value), at: at)
    }

    public mutating func insert(_ field: SIPHeaderField, at index: Int) {
        slots.insert(slot(field.name, value: field.value), at: index)
    }

    @discardableResult
    public mutating func remove(at index: Int) -> SIPHeaderField {
        let field = self[index]
        slots.remove(at: index)
        return field
    }

    public mutating func removeAll(_ name: SIPHeaderName) {
        let unknownNames = self.unknownNames
        slots.removeAll { Self.matches($0, name, unknownNames) }
    }

    public mutating func removeAll(where shouldRemove: (SIPHeaderField) throws -> Bool) rethrows {
        var kept: [Slot] = []
        kept.reserveCapacity(slots.count)
        for slot in slots where !(try shouldRemove(SIPHeaderField(name: name(of: slot), value: string(slot)))) {
            kept.append(slot)
        }
        slots = kept
    }

    public static func == (lhs: SIPHeaderFields, rhs: SIPHeaderFields) -> Bool {
        guard lhs.slots.count == rhs.slots.count else { return false }
        for (l, r) in zip(lhs.slots, rhs.slots) {
            guard lhs.name(of: l) == rhs.name(of: r) else { return false }
            let same = lhs.withBytes(l) { a in rhs.withBytes(r) { b in a.elementsEqual(b) } }
            if !same { return false }
        }
        return true
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(slots.count)
        for slot in slots {
            hasher.combine(name(of: slot))
            withBytes(slot) { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
        }
    }

    // MARK: access to the bytes, for typed views and the serializer

    /// The position of the first field with this name. Prefer this (and `positions(of:)`)
    /// to `firstIndex(where:)` over the collection, which makes every value it passes a `String`.
    @inline(__always)
    public func firstIndex(named name: SIPHeaderName) -> Int? {
        for i in slots.indices where matches(slots[i], name) { return i }
        return nil
    }

    /// Calls `body` with the value's UTF-8 bytes, without making a `String`.
    @inline(__always)
    func withBytes<R, E: Error>(_ slot: Slot, _ body: (UnsafeBufferPointer<UInt8>) throws(E) -> R) throws(E) -> R {
        try withSource(slot) { (bytes, _) throws(E) -> R in try body(bytes) }
    }

    /// Like `withBytes`, with the message buffer the bytes live in (for parsed fields), so
    /// typed views can point into it.
    @inline(__always)
    func withSource<R, E: Error>(_ slot: Slot, _ body: (UnsafeBufferPointer<UInt8>, ByteSource?) throws(E) -> R)
        throws(E) -> R
    {
        let base = backing.count
        if Int(slot.end) <= base {
            return try backing.withUnsafeBufferPointer { (all) throws(E) -> R in
                try body(
                    UnsafeBufferPointer(rebasing: all[Int(slot.start)..<Int(slot.end)]),
                    ByteSource(array: backing, offset: Int(slot.start)))
            }
        }
        let start = Int(slot.start) - base
        return try extra.withUnsafeBufferPointer { (all) throws(E) -> R in
            try body(
                UnsafeBufferPointer(rebasing: all[start..<(Int(slot.end) - base)]),
                ByteSource(array: extra, offset: start))
        }
    }

    /// The first field with this name with its source (see `withSource`), or nil when there is none.
    @inline(__always)
    func withFirstSource<R, E: Error>(
        _ name: SIPHeaderName, _ body: (UnsafeBufferPointer<UInt8>, ByteSource?) throws(E) -> R
    ) throws(E) -> R? {
        guard let i = firstIndex(named: name) else { return nil }
        return try withSource(slots[i], body)
    }

    /// The bytes of the first field with this name, or nil when there is none — a look at
    /// a value without making a `String` of it.
    @inline(__always)
    public func withFirstValue<R, E: Error>(_ name: SIPHeaderName, _ body: (UnsafeBufferPointer<UInt8>) throws(E) -> R)
        throws(E) -> R?
    {
        guard let i = firstIndex(named: name) else { return nil }
        return try withBytes(slots[i], body)
    }

    @inline(__always)
    func string(_ slot: Slot) -> String {
        withBytes(slot) { makeString($0, 0, $0.count) }
    }

    static let neverSplit: Set<SIPHeaderName> = [
        .authorization, .proxyAuthorization, .wwwAuthenticate, .proxyAuthenticate,
        .authenticationInfo,
    ]
}

/// Splits `a, "b,c", <sip:d;x=1,2>` at top-level commas: not inside quotes or angle brackets.
func splitCommaList(_ bytes: UnsafeBufferPointer<UInt8>, into result: inout [String]) {
    do {
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
