/// The name of a SIP header field. Names compare case-insensitively (RFC 3261 §7.3.1),
/// and compact forms are expanded when parsed, so `v` and `VIA` both equal `.via`.
public struct SIPHeaderName: Sendable, Hashable, CustomStringConvertible {
    /// The spelling written on the wire: the canonical one for known names, the received
    /// one (byte-exact) for names this library does not know.
    public let canonicalName: String
    /// Lower-cased spelling, used for equality and hashing.
    public let key: String
    /// Index into `all` for known names (-1 otherwise): equality of two known names is
    /// then an integer comparison, which the parser does for every field.
    let knownID: Int16

    /// A name written in code, e.g. `SIPHeaderName("P-Preferred-Identity")`.
    /// Compact forms and known names are folded to their canonical spelling.
    public init(_ name: String) {
        if let known = Self.lookup(name) {
            self = known
        } else {
            self.init(canonical: name, key: name.lowercased())
        }
    }

    /// For names that `lookup` did not find.
    init(canonical: String, key: String) {
        self.canonicalName = canonical
        self.key = key
        self.knownID = -1
    }

    private init(known: String, _ id: Int16) {
        self.canonicalName = known
        self.key = known.lowercased()
        self.knownID = id
    }

    public var description: String { canonicalName }

    @inline(__always)
    public static func == (lhs: Self, rhs: Self) -> Bool {
        if lhs.knownID >= 0 || rhs.knownID >= 0 { return lhs.knownID == rhs.knownID }
        return lhs.key == rhs.key
    }
    public func hash(into hasher: inout Hasher) { hasher.combine(key) }

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

    static let all: [SIPHeaderName] = [
        .accept, .acceptContact, .allow, .allowEvents, .authenticationInfo, .authorization, .callID,
        .contact, .contentEncoding, .contentLength, .contentType, .cseq, .event, .expires, .from,
        .identity, .identityInfo, .maxForwards, .minExpires, .path, .pAssertedIdentity,
        .pAssociatedURI, .pChargingVector, .pVisitedNetworkID, .proxyAuthenticate,
        .proxyAuthorization, .proxyRequire, .recordRoute, .referTo, .referredBy, .rejectContact,
        .requestDisposition, .require, .route, .serviceRoute, .sessionExpires, .subject,
        .subscriptionState, .supported, .to, .unsupported, .userAgent, .server, .via,
        .wwwAuthenticate, .warning,
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

    /// Finds a known or compact name without allocating: a small open-addressed table
    /// keyed by a case-folded hash, confirmed by a byte comparison.
    static func lookup(bytes: UnsafeBufferPointer<UInt8>) -> SIPHeaderName? {
        if bytes.count == 1 {
            return compactForms[bytes[0] | 0x20]
        }
        let table = KnownNameTable.shared
        var slot = Int(KnownNameTable.hash(bytes) & UInt32(KnownNameTable.size - 1))
        while true {
            let index = Int(table.slots[slot])
            if index < 0 { return nil }
            let key = table.keys[index]
            if key.count == bytes.count {
                var equal = true
                for i in 0..<bytes.count where (bytes[i] | 0x20) != key[i] {
                    equal = false
                    break
                }
                if equal { return table.names[index] }
            }
            slot = (slot + 1) & (KnownNameTable.size - 1)
        }
    }
}

/// Lower-cased known names hashed into a power-of-two table, built once. A class, so
/// reading it in the parser's hot loop copies nothing.
final class KnownNameTable: Sendable {
    static let shared = KnownNameTable()
    static let size = 256
    let names: [SIPHeaderName]
    let keys: [[UInt8]]
    /// Index into `names`, or -1 for an empty slot.
    let slots: [Int16]

    init() {
        names = SIPHeaderName.all
        keys = names.map { Array($0.key.utf8) }
        var slots = [Int16](repeating: -1, count: Self.size)
        for (index, key) in keys.enumerated() {
            var slot = key.withUnsafeBufferPointer { Int(Self.hash($0) & UInt32(Self.size - 1)) }
            while slots[slot] >= 0 { slot = (slot + 1) & (Self.size - 1) }
            slots[slot] = Int16(index)
        }
        self.slots = slots
    }

    /// FNV-1a over ASCII case-folded bytes. Folding with `| 0x20` also maps a few
    /// punctuation bytes together; the confirming comparison makes that harmless.
    @inline(__always)
    static func hash(_ bytes: UnsafeBufferPointer<UInt8>) -> UInt32 {
        var h: UInt32 = 2_166_136_261
        for b in bytes {
            h = (h ^ UInt32(b | 0x20)) &* 16_777_619
        }
        return h
    }
}
