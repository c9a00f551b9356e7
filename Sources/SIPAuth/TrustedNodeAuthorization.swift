import SIPCore

/// The Authorization header a trusted node (the eP-CSCF) sends once it has authenticated the
/// user itself (TS 33.203 Annex U; TS 24.371 CR; spec.md §2.2): the IMPI, an empty response
/// and `integrity-protected=auth-done` (bare token per spec.md §13). A third-party WAF adds
/// the authorization entity's identity (`waf-id`, `wwsf-id`: a project decision, spec.md §2.2).
public struct TrustedNodeAuthorization: Sendable, Hashable {
    public var impi: String
    public var realm: String
    public var uri: String
    public var wafID: String?
    public var wwsfID: String?

    public init(impi: String, realm: String, uri: String, wafID: String? = nil, wwsfID: String? = nil) {
        self.impi = impi
        self.realm = realm
        self.uri = uri
        self.wafID = wafID
        self.wwsfID = wwsfID
    }

    public static let authDone = "auth-done"

    public var field: SIPAuthField {
        var f = SIPAuthField.digest([])
        f.set("username", impi, quoted: true)
        f.set("realm", realm, quoted: true)
        f.set("uri", uri, quoted: true)
        f.set("nonce", "", quoted: true)
        f.set("response", "", quoted: true)
        f.set("integrity-protected", Self.authDone, quoted: false)
        if let wafID { f.set("waf-id", wafID, quoted: true) }
        if let wwsfID { f.set("wwsf-id", wwsfID, quoted: true) }
        return f
    }

    /// The header value, written directly: the text `field.description` gives, without
    /// building the parameter list first (the eP-CSCF writes one per REGISTER).
    public var headerValue: String {
        var out = "Digest username="
        out.reserveCapacity(120 + impi.utf8.count + realm.utf8.count + uri.utf8.count)
        out.appendQuoted(impi)
        out += ", realm="
        out.appendQuoted(realm)
        out += ", uri="
        out.appendQuoted(uri)
        out += ", nonce=\"\", response=\"\", integrity-protected="
        out += Self.authDone
        if let wafID {
            out += ", waf-id="
            out.appendQuoted(wafID)
        }
        if let wwsfID {
            out += ", wwsf-id="
            out.appendQuoted(wwsfID)
        }
        return out
    }

    /// Reads a TNA header; nil unless it is Digest with a username and `auth-done`
    /// (quoted or bare, spec.md §13).
    public init?(_ field: SIPAuthField) {
        guard field.isDigest, field.integrityProtected == Self.authDone, let impi = field.username, !impi.isEmpty
        else { return nil }
        self.init(
            impi: impi, realm: field.realm ?? "", uri: field.uri ?? "", wafID: field["waf-id"], wwsfID: field["wwsf-id"]
        )
    }
}

extension SIPAuthField {
    /// Drops parameters only a trusted node may set: `integrity-protected` and the
    /// authorization-entity identities (EPC-14, SCS-5).
    public mutating func removeTrustedNodeParameters() {
        remove("integrity-protected")
        remove("waf-id")
        remove("wwsf-id")
    }
}
