/// How an IMPI may authenticate (HSS-1; spec.md §7.1).
public enum AuthScheme: String, Sendable, Hashable, CaseIterable, Codable {
    case digest = "digest"
    case aka = "aka"
    /// Web authentication vouched for by a trusted node (TNA, `auth-done`).
    case trustedNode = "tna"
}

/// One public identity (IMPU) of a subscription.
public struct PublicIdentity: Sendable, Hashable, Codable {
    public var uri: String
    public var barred: Bool
    /// The implicit registration set it belongs to (TS 23.228 §4.3.3.3): the IMPUs of one
    /// subscription with the same number are registered, listed and removed together. 0 for
    /// all of them by default; an IMPU pool (scenario 3, WWSF-5) gives each its own, so one
    /// web user's registration never binds another's IMPU (issue 26 item 4).
    public var implicitSet: Int

    public init(uri: String, barred: Bool = false, implicitSet: Int = 0) {
        self.uri = uri
        self.barred = barred
        self.implicitSet = implicitSet
    }
}

/// Everything the HSS keeps per private identity (IMPI). Digest passwords are kept only
/// as HA1 (HSS-7); AKA keys as K and OPc.
public struct SubscriberRecord: Sendable, Hashable, Codable {
    public var impi: String
    /// Realm the HA1 values were computed for (the home domain).
    public var realm: String
    /// The implicit registration set, default IMPU first.
    public var publicIdentities: [PublicIdentity]
    public var allowedSchemes: Set<AuthScheme>
    public var ha1MD5: String?
    public var ha1SHA256: String?
    public var akaK: [UInt8]?
    public var akaOPc: [UInt8]?
    public var akaAMF: [UInt8]
    /// SQN_HE, the network's sequence number (48 bits).
    public var sqn: UInt64
    /// Third-party authorization entities allowed for this subscription (HSS-5).
    public var allowedWAFs: [String]
    public var allowedWWSFs: [String]

    public init(
        impi: String, realm: String, publicIdentities: [PublicIdentity], allowedSchemes: Set<AuthScheme>,
        ha1MD5: String? = nil, ha1SHA256: String? = nil, akaK: [UInt8]? = nil, akaOPc: [UInt8]? = nil,
        akaAMF: [UInt8] = [0x80, 0x00], sqn: UInt64 = 0, allowedWAFs: [String] = [], allowedWWSFs: [String] = []
    ) {
        self.impi = impi
        self.realm = realm
        self.publicIdentities = publicIdentities
        self.allowedSchemes = allowedSchemes
        self.ha1MD5 = ha1MD5
        self.ha1SHA256 = ha1SHA256
        self.akaK = akaK
        self.akaOPc = akaOPc
        self.akaAMF = akaAMF
        self.sqn = sqn
        self.allowedWAFs = allowedWAFs
        self.allowedWWSFs = allowedWWSFs
    }
}

/// A registered contact of a public identity (RFC 3261 §10, RFC 5626 flows).
///
/// Its fields live in one shared object: a registration copies bindings out of the cache,
/// into the batch to commit and into the reply, and a copy is then one retain instead of
/// one per text field. Setting a field copies the object first unless this value is its
/// only owner (copy on write).
public struct Binding: Sendable, Hashable {
    /// Mutated only through `uniqueFields()`, by the one value that owns it.
    final class Fields: @unchecked Sendable {
        var aor: String
        var contact: String
        var contactHeader: String
        var instance: String?
        var regID: UInt32?
        var impi: String
        var expiresAt: Int64
        var callID: String
        var cseq: UInt32
        var path: [String]
        var scheme: AuthScheme
        /// `Binding.key`, worked out when the fields it comes from are set: a registration
        /// asks for it several times (plan, cache, store, reply), a string built each time.
        private(set) var key: String

        init(
            aor: String, contact: String, contactHeader: String, instance: String?, regID: UInt32?, impi: String,
            expiresAt: Int64, callID: String, cseq: UInt32, path: [String], scheme: AuthScheme
        ) {
            self.aor = aor
            self.contact = contact
            self.contactHeader = contactHeader
            self.instance = instance
            self.regID = regID
            self.impi = impi
            self.expiresAt = expiresAt
            self.callID = callID
            self.cseq = cseq
            self.path = path
            self.scheme = scheme
            self.key = Self.key(instance: instance, regID: regID, contact: contact)
        }

        static func key(instance: String?, regID: UInt32?, contact: String) -> String {
            if let instance, let regID {
                var key = ""
                key.reserveCapacity(instance.utf8.count + 11)
                key += instance
                key += "|"
                key += String(regID)
                return key
            }
            if let instance { return instance }
            return contact
        }

        func rekey() { key = Self.key(instance: instance, regID: regID, contact: contact) }

        func copy() -> Fields {
            Fields(
                aor: aor, contact: contact, contactHeader: contactHeader, instance: instance, regID: regID, impi: impi,
                expiresAt: expiresAt, callID: callID, cseq: cseq, path: path, scheme: scheme)
        }
    }

    private var fields: Fields

    private mutating func uniqueFields() -> Fields {
        if !isKnownUniquelyReferenced(&fields) { fields = fields.copy() }
        return fields
    }

    /// Sets one of the fields the key comes from, and the key with it.
    private mutating func setKeyField(_ set: (Fields) -> Void) {
        let fields = uniqueFields()
        set(fields)
        fields.rekey()
    }

    public init(
        aor: String, contact: String, contactHeader: String, instance: String? = nil, regID: UInt32? = nil,
        impi: String,
        expiresAt: Int64, callID: String, cseq: UInt32, path: [String] = [], scheme: AuthScheme
    ) {
        fields = Fields(
            aor: aor, contact: contact, contactHeader: contactHeader, instance: instance, regID: regID, impi: impi,
            expiresAt: expiresAt, callID: callID, cseq: cseq, path: path, scheme: scheme)
    }

    /// The IMPU (address of record) it is registered for.
    public var aor: String {
        get { fields.aor }
        set { uniqueFields().aor = newValue }
    }
    /// The Contact URI as registered.
    public var contact: String {
        get { fields.contact }
        set { setKeyField { $0.contact = newValue } }
    }
    /// The whole Contact value with its parameters, to echo in 200 OK.
    public var contactHeader: String {
        get { fields.contactHeader }
        set { uniqueFields().contactHeader = newValue }
    }
    public var instance: String? {
        get { fields.instance }
        set { setKeyField { $0.instance = newValue } }
    }
    public var regID: UInt32? {
        get { fields.regID }
        set { setKeyField { $0.regID = newValue } }
    }
    public var impi: String {
        get { fields.impi }
        set { uniqueFields().impi = newValue }
    }
    /// Seconds since 1970 when the binding lapses.
    public var expiresAt: Int64 {
        get { fields.expiresAt }
        set { uniqueFields().expiresAt = newValue }
    }
    public var callID: String {
        get { fields.callID }
        set { uniqueFields().callID = newValue }
    }
    public var cseq: UInt32 {
        get { fields.cseq }
        set { uniqueFields().cseq = newValue }
    }
    /// Path header values in order (RFC 3327): the route back to the contact.
    public var path: [String] {
        get { fields.path }
        set { uniqueFields().path = newValue }
    }
    public var scheme: AuthScheme {
        get { fields.scheme }
        set { uniqueFields().scheme = newValue }
    }

    public static func == (a: Binding, b: Binding) -> Bool {
        if a.fields === b.fields { return true }
        return a.aor == b.aor && a.contact == b.contact && a.contactHeader == b.contactHeader
            && a.instance == b.instance && a.regID == b.regID && a.impi == b.impi && a.expiresAt == b.expiresAt
            && a.callID == b.callID && a.cseq == b.cseq && a.path == b.path && a.scheme == b.scheme
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(aor)
        hasher.combine(contact)
        hasher.combine(contactHeader)
        hasher.combine(instance)
        hasher.combine(regID)
        hasher.combine(impi)
        hasher.combine(expiresAt)
        hasher.combine(callID)
        hasher.combine(cseq)
        hasher.combine(path)
        hasher.combine(scheme)
    }

    /// RFC 5626 §6: a flow is identified by (instance, reg-id); without them, by contact URI.
    public var key: String { fields.key }
}

/// Which registration wrote a binding: its Call-ID and CSeq (RFC 3261 §10.3 step 7).
public struct BindingVersion: Sendable, Hashable {
    public var callID: String
    public var cseq: UInt32

    public init(callID: String, cseq: UInt32) {
        self.callID = callID
        self.cseq = cseq
    }
}

extension Binding {
    public var version: BindingVersion { BindingVersion(callID: callID, cseq: cseq) }
}

/// A binding to delete. With `onlyIf`, only while the stored row is still that version: a
/// registrar decides a removal on what it read, and with two S-CSCFs on one database the
/// other may have stored a new registration over that row since — the eP-CSCF's
/// flow-close removal (EPC-33) racing a page reload that came in through another node.
public struct BindingRemoval: Sendable, Hashable {
    public var aor: String
    public var key: String
    public var onlyIf: BindingVersion?

    public init(aor: String, key: String, onlyIf: BindingVersion? = nil) {
        self.aor = aor
        self.key = key
        self.onlyIf = onlyIf
    }

    /// Whether this removal takes `binding` (same row, and still the version it names).
    func takes(_ binding: Binding) -> Bool {
        binding.aor == aor && binding.key == key && (onlyIf.map { $0 == binding.version } ?? true)
    }
}
