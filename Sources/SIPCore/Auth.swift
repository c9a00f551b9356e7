/// One `name=value` auth-param (RFC 3261 §25.1, RFC 7235). `isQuoted` remembers how it was
/// written so a parsed header re-serializes the same way.
public struct AuthParameter: Sendable, Hashable {
    public var name: String
    public var value: String
    public var isQuoted: Bool

    public init(_ name: String, _ value: String, quoted: Bool) {
        self.name = name
        self.value = value
        self.isQuoted = quoted
    }
}

/// The value of Authorization, Proxy-Authorization (credentials) or WWW-Authenticate,
/// Proxy-Authenticate (a challenge): a scheme with either a token68 or auth-params.
/// Covers `Digest …` (RFC 2617/7616, with the 3GPP `integrity-protected`, `auts`, `ik`,
/// `ck`) and `Bearer` in both `Bearer <token>` and `Bearer access_token="…"` forms.
public struct SIPAuthField: Sendable, Hashable, CustomStringConvertible {
    public var scheme: String
    /// A parsed token stays bytes of the message until it is read.
    var token: LazyText?
    public var parameters: [AuthParameter]

    /// `Bearer eyJ…`: the token68 form (RFC 6750 §2.1, RFC 8898).
    public var token68: String? {
        get { token?.string }
        set { token = newValue.map(LazyText.init) }
    }

    public init(scheme: String, token68: String? = nil, parameters: [AuthParameter] = []) {
        self.scheme = scheme
        self.token = token68.map(LazyText.init)
        self.parameters = parameters
    }

    init(scheme: String, token: LazyText) {
        self.scheme = scheme
        self.token = token
        self.parameters = []
    }

    public static func digest(_ parameters: [AuthParameter]) -> SIPAuthField {
        SIPAuthField(scheme: "Digest", parameters: parameters)
    }

    public static func bearer(token: String) -> SIPAuthField {
        SIPAuthField(scheme: "Bearer", token68: token)
    }

    public var isDigest: Bool { equalsIgnoringASCIICase(scheme, "Digest") }
    public var isBearer: Bool { equalsIgnoringASCIICase(scheme, "Bearer") }

    /// The bearer token in either form (24.371 A.3.2 writes `access_token="…"`).
    public var bearerToken: String? {
        guard isBearer else { return nil }
        return token68 ?? self["access_token"]
    }

    /// The value of a parameter, unquoted.
    public subscript(_ name: String) -> String? {
        // By index: `first(where:)` would copy (retain and release) every parameter it passes.
        for i in parameters.indices where equalsIgnoringASCIICase(parameters[i].name, name) {
            return parameters[i].value
        }
        return nil
    }

    public mutating func set(_ name: String, _ value: String, quoted: Bool) {
        if let i = parameters.firstIndex(where: { equalsIgnoringASCIICase($0.name, name) }) {
            parameters[i] = AuthParameter(name, value, quoted: quoted)
        } else {
            parameters.append(AuthParameter(name, value, quoted: quoted))
        }
    }

    public mutating func remove(_ name: String) {
        parameters.removeAll { equalsIgnoringASCIICase($0.name, name) }
    }

    public var username: String? { self["username"] }
    public var realm: String? { self["realm"] }
    public var nonce: String? { self["nonce"] }
    public var uri: String? { self["uri"] }
    public var response: String? { self["response"] }
    public var algorithm: String? { self["algorithm"] }
    public var qop: String? { self["qop"] }
    public var nonceCount: String? { self["nc"] }
    public var cnonce: String? { self["cnonce"] }
    public var opaque: String? { self["opaque"] }
    public var stale: Bool { self["stale"].map { equalsIgnoringASCIICase($0, "true") } ?? false }
    /// TS 24.229 §7.2A.2; accepted quoted or bare (spec.md §13).
    public var integrityProtected: String? { self["integrity-protected"] }
    public var auts: String? { self["auts"] }
    public var ik: String? { self["ik"] }
    public var ck: String? { self["ck"] }

    public var description: String {
        var out = scheme
        if let token68 {
            out += " "
            out += token68
            return out
        }
        var first = true
        for p in parameters {
            out += first ? " " : ", "
            first = false
            out += p.name
            out += "="
            out += p.isQuoted ? quote(p.value) : p.value
        }
        return out
    }

    public static func parse(_ text: String, header: SIPHeaderName = .authorization)
        throws(SIPParseError) -> SIPAuthField
    {
        try withUTF8Bytes(text) { (bytes) throws(SIPParseError) -> SIPAuthField in
            try parse(bytes: bytes, source: nil, header: header)
        }
    }

    static func parse(bytes: UnsafeBufferPointer<UInt8>, source: ByteSource?, header: SIPHeaderName)
        throws(SIPParseError)
        -> SIPAuthField
    {
        do throws(SIPParseError) {
            var scanner = ByteScanner(bytes, source: source)
            scanner.skipLWS()
            let schemeStart = scanner.index
            guard let scheme = scanner.readWord(CharClass.token) else {
                throw SIPParseError(.invalidHeader)
            }
            let afterScheme = scanner.index
            scanner.skipLWS()
            if scanner.isAtEnd { return SIPAuthField(scheme: scheme) }
            guard scanner.index > afterScheme else { throw SIPParseError(.invalidHeader) }
            // token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
            let t68Start = scanner.index
            scanner.index = scanToken68(bytes, from: scanner.index, to: scanner.end)
            let t68Body = scanner.index
            while scanner.consume(UInt8(ascii: "=")) {}
            let t68End = scanner.index
            scanner.skipLWS()
            if t68Body > t68Start, scanner.isAtEnd, !asciiEquals(bytes, schemeStart, afterScheme, "Digest") {
                // Digest always carries auth-params (RFC 7616 §3.4); a lone token is malformed.
                if let source {
                    return SIPAuthField(scheme: scheme, token: LazyText(source, t68Start, t68End))
                }
                return SIPAuthField(scheme: scheme, token68: scanner.string(t68Start, t68End))
            }
            scanner.index = t68Start
            var params: [AuthParameter] = []
            // Digest credentials carry five to ten parameters: one allocation, not one per doubling.
            params.reserveCapacity(10)
            repeat {
                guard let name = scanner.read(CharClass.token),
                    scanner.consumeSeparator(UInt8(ascii: "="))
                else { throw SIPParseError(.invalidParameter) }
                if scanner.peek() == UInt8(ascii: "\"") {
                    let raw = try scanner.readQuotedRaw()
                    params.append(AuthParameter(name, unquote(raw), quoted: true))
                } else {
                    guard let value = scanner.read(CharClass.token) else {
                        throw SIPParseError(.invalidParameter)
                    }
                    params.append(AuthParameter(name, value, quoted: false))
                }
            } while scanner.consumeSeparator(UInt8(ascii: ","))
            scanner.skipLWS()
            guard scanner.isAtEnd else { throw SIPParseError(.invalidHeader) }
            return SIPAuthField(scheme: scheme, parameters: params)
        } catch {
            throw error.in(header)
        }
    }
}

/// The end of the run of token68 characters (RFC 7235: ALPHA DIGIT - . _ ~ + /) from
/// `start`. Bearer tokens are a kilobyte or more: sixteen bytes are classified per step
/// with vector compares, and only the block where the run ends is looked at byte by byte.
@inline(__always)
func scanToken68(_ bytes: UnsafeBufferPointer<UInt8>, from start: Int, to end: Int) -> Int {
    guard let base = bytes.baseAddress else { return start }
    var i = start
    let x20 = SIMD16<UInt8>(repeating: 0x20)
    let underscore = SIMD16<UInt8>(repeating: 0x5F)
    let tilde = SIMD16<UInt8>(repeating: 0x7E)
    let plus = SIMD16<UInt8>(repeating: 0x2B)
    @inline(__always)
    func isToken68(_ at: Int) -> SIMDMask<SIMD16<Int8>> {
        let v = UnsafeRawPointer(base + at).loadUnaligned(as: SIMD16<UInt8>.self)
        // `- . / 0-9` is one range.
        return lanes(v | x20, from: 0x61, count: 26) .| lanes(v, from: 0x2D, count: 13) .| (v .== underscore)
            .| (v .== tilde) .| (v .== plus)
    }
    // Two vectors per test and branch while the token lasts, then one, then bytes.
    while i + 32 <= end, allLanes(isToken68(i) .& isToken68(i + 16)) { i += 32 }
    while i + 16 <= end, allLanes(isToken68(i)) { i += 16 }
    let t = CharClass.table
    let bit = CharClass.token68
    while i < end, t[Int(base[i])] & bit != 0 { i += 1 }
    return i
}
