/// The name of a SIP header field. Names compare case-insensitively (RFC 3261 §7.3.1),
/// and compact forms are expanded when parsed, so `v` and `VIA` both equal `.via`.
public struct SIPHeaderName: Sendable, Hashable, CustomStringConvertible {
    /// The spelling written on the wire: the canonical one for known names, the received
    /// one (byte-exact) for names this library does not know.
    public let canonicalName: String
    /// Index into `all` for known names (-1 otherwise): equality of two known names is
    /// then an integer comparison, which the parser does for every field. Kept small
    /// (a literal's immortal string and an integer) because every header field copies one.
    let knownID: Int16

    /// Lower-cased spelling.
    public var key: String { canonicalName.lowercased() }

    /// A name written in code, e.g. `SIPHeaderName("P-Preferred-Identity")`.
    /// Compact forms and known names are folded to their canonical spelling.
    public init(_ name: String) {
        if let known = Self.lookup(name) {
            self = known
        } else {
            self.init(unknown: name)
        }
    }

    /// For names that `lookup` did not find.
    init(unknown name: String) {
        self.canonicalName = name
        self.knownID = -1
    }

    private init(known: String, _ id: Int16) {
        self.canonicalName = known
        self.knownID = id
    }

    public var description: String { canonicalName }

    @inline(__always)
    public static func == (lhs: Self, rhs: Self) -> Bool {
        if lhs.knownID >= 0 || rhs.knownID >= 0 { return lhs.knownID == rhs.knownID }
        return equalsIgnoringASCIICase(lhs.canonicalName, rhs.canonicalName)
    }
    public func hash(into hasher: inout Hasher) {
        if knownID >= 0 {
            hasher.combine(knownID)
        } else {
            for b in canonicalName.utf8 { hasher.combine((b >= 0x41 && b <= 0x5A) ? b | 0x20 : b) }
        }
    }

    public static let accept = Self(known: "Accept", 0)
    public static let acceptContact = Self(known: "Accept-Contact", 1)
    public static let allow = Self(known: "Allow", 2)
    public static let allowEvents = Self(known: "Allow-Events", 3)
    public static let authenticationInfo = Self(known: "Authentication-Info", 4)
    public static let authorization = Self(known: "Authorization", 5)
    public static let callID = Self(known: "Call-ID", 6)
    public static let contact = Self(known: "Contact", 7)
    public static let contentEncoding = Self(known: "Content-Encoding", 8)
    public static let contentLength = Self(known: "Content-Length", 9)
    public static let contentType = Self(known: "Content-Type", 10)
    public static let cseq = Self(known: "CSeq", 11)
    public static let event = Self(known: "Event", 12)
    public static let expires = Self(known: "Expires", 13)
    public static let from = Self(known: "From", 14)
    public static let identity = Self(known: "Identity", 15)
    public static let identityInfo = Self(known: "Identity-Info", 16)
    public static let maxForwards = Self(known: "Max-Forwards", 17)
    public static let minExpires = Self(known: "Min-Expires", 18)
    public static let path = Self(known: "Path", 19)
    public static let pAssertedIdentity = Self(known: "P-Asserted-Identity", 20)
    public static let pAssociatedURI = Self(known: "P-Associated-URI", 21)
    public static let pChargingVector = Self(known: "P-Charging-Vector", 22)
    public static let pVisitedNetworkID = Self(known: "P-Visited-Network-ID", 23)
    public static let proxyAuthenticate = Self(known: "Proxy-Authenticate", 24)
    public static let proxyAuthorization = Self(known: "Proxy-Authorization", 25)
    public static let proxyRequire = Self(known: "Proxy-Require", 26)
    public static let recordRoute = Self(known: "Record-Route", 27)
    public static let referTo = Self(known: "Refer-To", 28)
    public static let referredBy = Self(known: "Referred-By", 29)
    public static let rejectContact = Self(known: "Reject-Contact", 30)
    public static let requestDisposition = Self(known: "Request-Disposition", 31)
    public static let require = Self(known: "Require", 32)
    public static let route = Self(known: "Route", 33)
    public static let serviceRoute = Self(known: "Service-Route", 34)
    public static let sessionExpires = Self(known: "Session-Expires", 35)
    public static let subject = Self(known: "Subject", 36)
    public static let subscriptionState = Self(known: "Subscription-State", 37)
    public static let supported = Self(known: "Supported", 38)
    public static let to = Self(known: "To", 39)
    public static let unsupported = Self(known: "Unsupported", 40)
    public static let userAgent = Self(known: "User-Agent", 41)
    public static let server = Self(known: "Server", 42)
    public static let via = Self(known: "Via", 43)
    public static let wwwAuthenticate = Self(known: "WWW-Authenticate", 44)
    public static let warning = Self(known: "Warning", 45)
    public static let pPreferredIdentity = Self(known: "P-Preferred-Identity", 46)
    public static let pCalledPartyID = Self(known: "P-Called-Party-ID", 47)
    public static let privacy = Self(known: "Privacy", 48)

    static let all: [SIPHeaderName] = [
        .accept, .acceptContact, .allow, .allowEvents, .authenticationInfo, .authorization, .callID,
        .contact, .contentEncoding, .contentLength, .contentType, .cseq, .event, .expires, .from,
        .identity, .identityInfo, .maxForwards, .minExpires, .path, .pAssertedIdentity,
        .pAssociatedURI, .pChargingVector, .pVisitedNetworkID, .proxyAuthenticate,
        .proxyAuthorization, .proxyRequire, .recordRoute, .referTo, .referredBy, .rejectContact,
        .requestDisposition, .require, .route, .serviceRoute, .sessionExpires, .subject,
        .subscriptionState, .supported, .to, .unsupported, .userAgent, .server, .via,
        .wwwAuthenticate, .warning, .pPreferredIdentity, .pCalledPartyID, .privacy,
    ]

    /// Compact forms (RFC 3261 §7.3.3 and the extensions that define one).
    static let compactForms: [UInt8: SIPHeaderName] = [
        UInt8(ascii: "a"): .acceptContact, UInt8(ascii: "b"): .referredBy,
        UInt8(ascii: "c"): .contentType, UInt8(ascii: "d"): .requestDisposition,
        UInt8(ascii: "e"): .contentEncoding, UInt8(ascii: "f"): .from,
        UInt8(ascii: "i"): .callID, UInt8(ascii: "j"): .rejectContact,
        UInt8(ascii: "k"): .supported, UInt8(ascii: "l"): .contentLength,
        UInt8(ascii: "m"): .contact, UInt8(ascii: "n"): .identityInfo,
        UInt8(ascii: "o"): .event, UInt8(ascii: "r"): .referTo,
        UInt8(ascii: "s"): .subject, UInt8(ascii: "t"): .to,
        UInt8(ascii: "u"): .allowEvents, UInt8(ascii: "v"): .via,
        UInt8(ascii: "x"): .sessionExpires, UInt8(ascii: "y"): .identity,
    ]

    static func lookup(_ name: String) -> SIPHeaderName? {
        var name = name
        return name.withUTF8 { lookup(bytes: $0) }
    }

    static func lookup(bytes: UnsafeBufferPointer<UInt8>) -> SIPHeaderName? {
        let table = KnownNameTable.shared
        return lookupID(bytes: bytes, key: KnownNameTable.Key(bytes), table: table).map { table.names[$0] }
    }

    /// The known name's `knownID` (its index in `all`) for a name's bytes and their
    /// `KnownNameTable.Key`, or nil: a small open-addressed table keyed by a hash of the
    /// case-folded first sixteen bytes, confirmed by comparing those as two words (and
    /// any bytes after them one by one). Nothing is allocated, copied or retained.
    @inline(__always)
    static func lookupID(bytes: UnsafeBufferPointer<UInt8>, key: KnownNameTable.Key, table: KnownNameTable) -> Int? {
        if bytes.count == 1 {
            let index = table.compact[Int(bytes[0] | 0x20)]
            return index < 0 ? nil : Int(index)
        }
        var slot = Int(key.hash & UInt32(KnownNameTable.size - 1))
        while true {
            let index = Int(table.slots[slot])
            if index < 0 { return nil }
            if table.keyWords[2 * index] == key.low, table.keyWords[2 * index + 1] == key.high,
                Int(table.keyOffsets[index + 1] - table.keyOffsets[index]) == bytes.count
            {
                guard bytes.count > 16 else { return index }
                let rest = table.keyBytes + Int(table.keyOffsets[index])
                var equal = true
                for i in 16..<bytes.count where (bytes[i] | 0x20) != rest[i] {
                    equal = false
                    break
                }
                if equal { return index }
            }
            slot = (slot + 1) & (KnownNameTable.size - 1)
        }
    }
}

/// Lower-cased known names hashed into a power-of-two table, built once and never
/// freed: raw pointers, so the parser's hot loop pays no bounds checks or reference
/// counting. Written only in the initializer, read-only afterwards.
final class KnownNameTable: @unchecked Sendable {
    static let shared = KnownNameTable()
    static let size = 256
    let names: UnsafeMutablePointer<SIPHeaderName>
    /// All lower-cased names back to back; name `i` is `keyOffsets[i]..<keyOffsets[i + 1]`.
    let keyBytes: UnsafeMutablePointer<UInt8>
    let keyOffsets: UnsafeMutablePointer<Int32>
    /// Name `i`'s first sixteen lower-cased bytes as two words: `2 * i` and `2 * i + 1`.
    let keyWords: UnsafeMutablePointer<UInt64>
    /// Index into `names`, or -1 for an empty slot.
    let slots: UnsafeMutablePointer<Int16>
    /// Compact form (lower-cased byte) → index into `names`, or -1.
    let compact: UnsafeMutablePointer<Int16>

    init() {
        let all = SIPHeaderName.all
        names = .allocate(capacity: all.count)
        names.initialize(from: all, count: all.count)
        let keys = all.map { Array($0.canonicalName.lowercased().utf8) }
        keyBytes = .allocate(capacity: keys.reduce(0) { $0 + $1.count })
        keyOffsets = .allocate(capacity: keys.count + 1)
        var offset = 0
        for (i, key) in keys.enumerated() {
            keyOffsets[i] = Int32(offset)
            (keyBytes + offset).initialize(from: key, count: key.count)
            offset += key.count
        }
        keyOffsets[keys.count] = Int32(offset)
        keyWords = .allocate(capacity: 2 * keys.count)
        for (i, key) in keys.enumerated() {
            let words = key.withUnsafeBufferPointer { Key($0) }
            keyWords[2 * i] = words.low
            keyWords[2 * i + 1] = words.high
        }
        slots = .allocate(capacity: Self.size)
        slots.initialize(repeating: -1, count: Self.size)
        for (index, key) in keys.enumerated() {
            var slot = key.withUnsafeBufferPointer { Int(Key($0).hash & UInt32(Self.size - 1)) }
            while slots[slot] >= 0 { slot = (slot + 1) & (Self.size - 1) }
            slots[slot] = Int16(index)
        }
        compact = .allocate(capacity: 256)
        compact.initialize(repeating: -1, count: 256)
        for (byte, name) in SIPHeaderName.compactForms {
            compact[Int(byte)] = all.firstIndex(of: name).map(Int16.init) ?? -1
        }
    }

    /// A header name's first sixteen bytes, case-folded with `| 0x20` and zero-padded, as
    /// two little-endian words, and its length: what the table hashes and compares.
    /// Folding maps a few punctuation bytes together too; the comparison of the words
    /// (and the name's length) keeps that harmless, since no known name differs from
    /// another only there.
    struct Key {
        var low: UInt64
        var high: UInt64
        var count: Int

        init(low: UInt64, high: UInt64, count: Int) {
            self.low = low
            self.high = high
            self.count = count
        }

        /// Byte by byte, for names not scanned by the parser's vector path.
        init(_ bytes: UnsafeBufferPointer<UInt8>) {
            var words: (UInt64, UInt64) = (0, 0)
            for i in 0..<min(bytes.count, 16) {
                let folded = UInt64(bytes[i] | 0x20) << (8 * UInt64(i & 7))
                if i < 8 { words.0 |= folded } else { words.1 |= folded }
            }
            self.init(low: words.0, high: words.1, count: bytes.count)
        }

        @inline(__always)
        var hash: UInt32 {
            let mixed = (low &* 0x9E37_79B9_7F4A_7C15) ^ (high &* 0xC2B2_AE3D_27D4_EB4F) ^ UInt64(count)
            return UInt32(truncatingIfNeeded: (mixed ^ (mixed >> 29)) &* 0x1656_67B1_9E37_79F9 >> 32)
        }
    }
}
