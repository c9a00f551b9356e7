/// The name of a SIP header field. Names compare case-insensitively (RFC 3261 §7.3.1),
/// and compact forms are expanded when parsed, so `v` and `VIA` both equal `.via`.
public struct SIPHeaderName: Sendable, Hashable, CustomStringConvertible {
    /// The spelling written on the wire: the canonical one for known names, the received
    /// one (byte-exact) for names this library does not know.
    public let canonicalName: String
    /// Lower-cased spelling, used for equality and hashing.
    public let key: String

    /// A name written in code, e.g. `SIPHeaderName("P-Preferred-Identity")`.
    /// Compact forms and known names are folded to their canonical spelling.
    public init(_ name: String) {
        if let known = Self.lookup(name) {
            self = known
        } else {
            self.init(canonical: name, key: name.lowercased())
        }
    }

    init(canonical: String, key: String) {
        self.canonicalName = canonical
        self.key = key
    }

    private init(known: String) {
        self.init(canonical: known, key: known.lowercased())
    }

    public var description: String { canonicalName }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.key == rhs.key }
    public func hash(into hasher: inout Hasher) { hasher.combine(key) }

    public static let accept = Self(known: "Accept")
    public static let acceptContact = Self(known: "Accept-Contact")
    public static let allow = Self(known: "Allow")
    public static let allowEvents = Self(known: "Allow-Events")
    public static let authenticationInfo = Self(known: "Authentication-Info")
    public static let authorization = Self(known: "Authorization")
    public static let callID = Self(known: "Call-ID")
    public static let contact = Self(known: "Contact")
    public static let contentEncoding = Self(known: "Content-Encoding")
    public static let contentLength = Self(known: "Content-Length")
    public static let contentType = Self(known: "Content-Type")
    public static let cseq = Self(known: "CSeq")
    public static let event = Self(known: "Event")
    public static let expires = Self(known: "Expires")
    public static let from = Self(known: "From")
    public static let identity = Self(known: "Identity")
    public static let identityInfo = Self(known: "Identity-Info")
    public static let maxForwards = Self(known: "Max-Forwards")
    public static let minExpires = Self(known: "Min-Expires")
    public static let path = Self(known: "Path")
    public static let pAssertedIdentity = Self(known: "P-Asserted-Identity")
    public static let pAssociatedURI = Self(known: "P-Associated-URI")
    public static let pChargingVector = Self(known: "P-Charging-Vector")
    public static let pVisitedNetworkID = Self(known: "P-Visited-Network-ID")
    public static let proxyAuthenticate = Self(known: "Proxy-Authenticate")
    public static let proxyAuthorization = Self(known: "Proxy-Authorization")
    public static let proxyRequire = Self(known: "Proxy-Require")
    public static let recordRoute = Self(known: "Record-Route")
    public static let referTo = Self(known: "Refer-To")
    public static let referredBy = Self(known: "Referred-By")
    public static let rejectContact = Self(known: "Reject-Contact")
    public static let requestDisposition = Self(known: "Request-Disposition")
    public static let require = Self(known: "Require")
    public static let route = Self(known: "Route")
    public static let serviceRoute = Self(known: "Service-Route")
    public static let sessionExpires = Self(known: "Session-Expires")
    public static let subject = Self(known: "Subject")
    public static let subscriptionState = Self(known: "Subscription-State")
    public static let supported = Self(known: "Supported")
    public static let to = Self(known: "To")
    public static let unsupported = Self(known: "Unsupported")
    public static let userAgent = Self(known: "User-Agent")
    public static let server = Self(known: "Server")
    public static let via = Self(known: "Via")
    public static let wwwAuthenticate = Self(known: "WWW-Authenticate")
    public static let warning = Self(known: "Warning")

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
        var slot = Int(KnownNameTable.hash(bytes) & UInt32(table.mask))
        while let index = table.slots[slot] {
            let candidate = table.keys[index]
            if candidate.count == bytes.count {
                var equal = true
                for i in 0..<bytes.count where (bytes[i] | 0x20) != candidate[i] {
                    equal = false
                    break
                }
                if equal { return all[index] }
            }
            slot = (slot + 1) & table.mask
        }
        return nil
    }
}

/// Lower-cased known names hashed into a power-of-two table, built once.
struct KnownNameTable: Sendable {
    static let shared = KnownNameTable()
    let keys: [[UInt8]]
    let slots: [Int?]
    let mask: Int

    init() {
        keys = SIPHeaderName.all.map { Array($0.key.utf8) }
        let size = 256
        mask = size - 1
        var slots = [Int?](repeating: nil, count: size)
        for (index, key) in keys.enumerated() {
            var slot = key.withUnsafeBufferPointer { Int(Self.hash($0) & UInt32(size - 1)) }
            while slots[slot] != nil { slot = (slot + 1) & (size - 1) }
            slots[slot] = index
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
