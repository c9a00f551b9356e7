#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// A `sip:` or `sips:` URI (RFC 3261 §19.1). User, password and parameters keep their
/// escapes as written; `decodedUser` gives the user with `%HH` resolved.
public struct SIPURI: Sendable, Hashable, CustomStringConvertible {
    public var isSecure: Bool
    public var port: UInt16?
    public var parameters: SIPParameters
    /// `?name=value&…` headers, as written.
    public var headers: [SIPParameter]
    // User, password and host are ranges of one buffer: for a parsed URI, the message it
    // came in (no `String`s made until they are read, one reference however many parts);
    // for one built in code, their own bytes.
    var source: [UInt8]
    var userSpan: TextSpan
    var passwordSpan: TextSpan
    var hostSpan: TextSpan

    public init(
        isSecure: Bool = false, user: String? = nil, password: String? = nil, host: String,
        port: UInt16? = nil, parameters: SIPParameters = [], headers: [SIPParameter] = []
    ) {
        self.isSecure = isSecure
        self.port = port
        self.parameters = parameters
        self.headers = headers
        var bytes: [UInt8] = []
        bytes.reserveCapacity((user?.utf8.count ?? 0) + (password?.utf8.count ?? 0) + host.utf8.count)
        userSpan = TextSpan(appending: user, to: &bytes)
        passwordSpan = TextSpan(appending: password, to: &bytes)
        hostSpan = TextSpan(appending: host, to: &bytes)
        source = bytes
    }

    init(
        isSecure: Bool, source: [UInt8], user: TextSpan, password: TextSpan, host: TextSpan, port: UInt16?,
        parameters: SIPParameters, headers: [SIPParameter]
    ) {
        self.isSecure = isSecure
        self.port = port
        self.parameters = parameters
        self.headers = headers
        self.source = source
        self.userSpan = user
        self.passwordSpan = password
        self.hostSpan = host
    }

    public var user: String? {
        get { userSpan.string(in: source) }
        set { rebuild(user: newValue, password: password, host: host) }
    }
    public var password: String? {
        get { passwordSpan.string(in: source) }
        set { rebuild(user: user, password: newValue, host: host) }
    }
    /// Host name, IPv4 address, or IPv6 reference with its brackets.
    public var host: String {
        get { hostSpan.string(in: source) ?? "" }
        set { rebuild(user: user, password: password, host: newValue) }
    }

    private mutating func rebuild(user: String?, password: String?, host: String) {
        self = SIPURI(
            isSecure: isSecure, user: user, password: password, host: host, port: port, parameters: parameters,
            headers: headers)
    }

    public static func == (lhs: SIPURI, rhs: SIPURI) -> Bool {
        lhs.isSecure == rhs.isSecure && lhs.port == rhs.port
            && TextSpan.equal(lhs.userSpan, lhs.source, rhs.userSpan, rhs.source)
            && TextSpan.equal(lhs.passwordSpan, lhs.source, rhs.passwordSpan, rhs.source)
            && TextSpan.equal(lhs.hostSpan, lhs.source, rhs.hostSpan, rhs.source)
            && lhs.parameters == rhs.parameters && lhs.headers == rhs.headers
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(isSecure)
        hasher.combine(port)
        userSpan.hash(in: source, into: &hasher)
        passwordSpan.hash(in: source, into: &hasher)
        hostSpan.hash(in: source, into: &hasher)
        hasher.combine(parameters)
        hasher.combine(headers)
    }

    public static func parse(_ text: String) throws(SIPParseError) -> SIPURI {
        guard case .sip(let uri) = try AnyURI.parse(text) else { throw SIPParseError(.invalidURI) }
        return uri
    }

    public var transport: String? { parameters["transport"] }
    public var isLooseRouting: Bool { parameters.contains("lr") }
    public var decodedUser: String? { user.map(percentDecode) }
    /// `host[:port]`.
    public var hostPort: String { port.map { "\(host):\($0)" } ?? host }

    public var description: String {
        var out: [UInt8] = []
        append(to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Writes the URI's wire form to `out`.
    func append(to out: inout [UInt8]) {
        out.append(contentsOf: isSecure ? "sips:".utf8 : "sip:".utf8)
        source.withUnsafeBufferPointer { bytes in
            if let user = userSpan.range {
                out.append(contentsOf: bytes[user])
                if let password = passwordSpan.range {
                    out.append(UInt8(ascii: ":"))
                    out.append(contentsOf: bytes[password])
                }
                out.append(UInt8(ascii: "@"))
            }
            if let host = hostSpan.range { out.append(contentsOf: bytes[host]) }
        }
        if let port {
            out.append(UInt8(ascii: ":"))
            out.append(contentsOf: String(port).utf8)
        }
        parameters.append(to: &out)
        if !headers.isEmpty {
            out.append(UInt8(ascii: "?"))
            out.append(contentsOf: headers.map { "\($0.name)=\($0.value ?? "")" }.joined(separator: "&").utf8)
        }
    }
}

/// A `tel:` URI (RFC 3966): the number as written and its parameters.
public struct TelURI: Sendable, Hashable, CustomStringConvertible {
    public var number: String
    public var parameters: SIPParameters

    public init(number: String, parameters: SIPParameters = []) {
        self.number = number
        self.parameters = parameters
    }

    public var isGlobal: Bool { number.utf8.first == UInt8(ascii: "+") }
    public var description: String { "tel:" + number + parameters.description }
}

/// Any URI that can stand in a Request-URI or a name-addr.
public enum AnyURI: Sendable, Hashable, CustomStringConvertible {
    case sip(SIPURI)
    case tel(TelURI)
    /// Another absolute URI (`urn:`, `https:`, …), kept as written.
    case other(String)

    public var description: String {
        switch self {
        case .sip(let u): return u.description
        case .tel(let t): return t.description
        case .other(let s): return s
        }
    }

    /// Writes the URI's wire form to `out`.
    func append(to out: inout [UInt8]) {
        switch self {
        case .sip(let u): u.append(to: &out)
        case .tel(let t): out.append(contentsOf: t.description.utf8)
        case .other(let s): out.append(contentsOf: s.utf8)
        }
    }

    public var sipURI: SIPURI? {
        if case .sip(let u) = self { return u }
        return nil
    }

    public var telURI: TelURI? {
        if case .tel(let t) = self { return t }
        return nil
    }

    /// Parses a complete URI: nothing may follow it.
    public static func parse(_ text: String) throws(SIPParseError) -> AnyURI {
        try withUTF8Bytes(text) { (bytes) throws(SIPParseError) -> AnyURI in
            var scanner = ByteScanner(bytes)
            let uri = try scanner.readURI(context: .complete)
            guard scanner.isAtEnd else { throw SIPParseError(.invalidURI) }
            return uri
        }
    }
}

extension AnyURI {
    /// The public identity (IMPU) this URI names, for comparing and storing identities:
    /// scheme, user and host[:port] with the host lower-cased; URI parameters and headers are
    /// not part of it. nil for schemes other than sip, sips and tel.
    public var publicIdentity: String? {
        switch self {
        case .sip(let u):
            // Built in one string (the concatenations made one each); the host lowercased
            // only when it has something to lower.
            var out = ""
            out.reserveCapacity(5 + (u.user?.utf8.count ?? 0) + 1 + u.host.utf8.count + 6)
            out += u.isSecure ? "sips:" : "sip:"
            if let user = u.user {
                out += user
                out += "@"
            }
            if u.host.utf8.contains(where: { ($0 >= 0x41 && $0 <= 0x5A) || $0 >= 0x80 }) {
                out += u.host.lowercased()
            } else {
                out += u.host
            }
            if let port = u.port {
                out += ":"
                out += String(port)
            }
            return out
        case .tel(let t): return "tel:" + t.number
        case .other: return nil
        }
    }
}

/// An identity written as text, in the form `AnyURI.publicIdentity` gives; text that is no
/// sip/sips/tel URI is returned unchanged.
public func canonicalPublicIdentity(_ text: String) -> String {
    (try? AnyURI.parse(text))?.publicIdentity ?? text
}

/// Where a URI stands decides what may follow it and whether `;params` are its own.
enum URIContext {
    /// Request-URI or the whole text: parameters belong to the URI; ends at SP or end.
    case complete
    /// Inside `<…>`: parameters belong to the URI; ends at `>`.
    case angle
    /// addr-spec without brackets: `;params` after it are header parameters.
    case addrSpec
}

extension ByteScanner {
    mutating func readURI(context: URIContext) throws(SIPParseError) -> AnyURI {
        let schemeStart = index
        guard let first = peek(), (first | 0x20) >= 0x61, (first | 0x20) <= 0x7A else {
            throw SIPParseError(.invalidURI)
        }
        while let b = peek(),
            isClass(b, CharClass.hostChar) || b == UInt8(ascii: "+")
        {
            index += 1
        }
        let schemeEnd = index
        guard consume(UInt8(ascii: ":")) else { throw SIPParseError(.invalidURI) }
        let scheme = UnsafeBufferPointer(rebasing: bytes[schemeStart..<schemeEnd])
        if asciiEquals(scheme, "sip") {
            return .sip(try readSIPURIBody(secure: false, context: context))
        } else if asciiEquals(scheme, "sips") {
            return .sip(try readSIPURIBody(secure: true, context: context))
        } else if asciiEquals(scheme, "tel") {
            guard let number = read(CharClass.telChar) else { throw SIPParseError(.invalidURI) }
            let params = context == .addrSpec ? SIPParameters() : try readURIParameters()
            return .tel(TelURI(number: number, parameters: params))
        }
        // Other schemes: opaque up to the end of the URI in this context.
        while let b = peek(), b > 0x20, b < 0x7F, b != UInt8(ascii: ">"), b != UInt8(ascii: "<"),
            b != UInt8(ascii: "\"")
        {
            if context == .addrSpec, b == UInt8(ascii: ";") || b == UInt8(ascii: ",") { break }
            index += 1
        }
        guard index > schemeEnd + 1 else { throw SIPParseError(.invalidURI) }
        return .other(string(schemeStart, index))
    }

    private mutating func readSIPURIBody(secure: Bool, context: URIContext) throws(SIPParseError)
        -> SIPURI
    {
        // userinfo is present when an `@` comes before the URI ends; `@` is in no other part.
        // memchr finds the `@`; only the bytes before it are checked for an end of the URI.
        var at: Int?
        if index < end, let base = bytes.baseAddress,
            let hit = memchr(base + index, Int32(UInt8(ascii: "@")), end - index)
        {
            let candidate = UnsafeRawPointer(hit).assumingMemoryBound(to: UInt8.self) - base
            var j = index
            while j < candidate {
                let b = bytes[j]
                // A comma ends a URI only in a list of bare addr-specs; a Request-URI's
                // user part may hold one (RFC 4475 §3.1.1.2, `intmeth`).
                if b == UInt8(ascii: ">") || isLWS(b) || (b == UInt8(ascii: ",") && context == .addrSpec) { break }
                j += 1
            }
            if j == candidate { at = candidate }
        }
        var user = TextSpan.absent
        var password = TextSpan.absent
        if let at {
            let userStart = index
            try skipEscaped(CharClass.unreserved | CharClass.userUnreserved)
            guard index > userStart else { throw SIPParseError(.invalidURI) }
            user = TextSpan(userStart, index)
            if consume(UInt8(ascii: ":")) {
                let passwordStart = index
                try skipEscaped(CharClass.unreserved | CharClass.passwordExtra)
                password = TextSpan(passwordStart, index)
            }
            guard index == at else { throw SIPParseError(.invalidURI) }
            index += 1
        }
        let hostStart = index
        try skipHost()
        let host = TextSpan(hostStart, index)
        let port = try readPort()
        var params = SIPParameters()
        var headers: [SIPParameter] = []
        if context != .addrSpec {
            params = try readURIParameters()
            if consume(UInt8(ascii: "?")) {
                let bits = CharClass.unreserved | CharClass.headerUnreserved
                repeat {
                    guard let name = try readEscaped(bits), consume(UInt8(ascii: "=")) else {
                        throw SIPParseError(.invalidURI)
                    }
                    headers.append(SIPParameter(name, try readEscaped(bits) ?? ""))
                } while consume(UInt8(ascii: "&"))
            }
        }
        let (array, offset) = sourceArray()
        return SIPURI(
            isSecure: secure, source: array, user: user.shifted(by: offset), password: password.shifted(by: offset),
            host: host.shifted(by: offset), port: port, parameters: params, headers: headers)
    }

    /// hostname / IPv4address / "[" IPv6 "]" (RFC 3261 §25.1).
    mutating func skipHost() throws(SIPParseError) {
        let start = index
        if consume(UInt8(ascii: "[")) {
            var colons = 0
            while let b = peek(), isClass(b, CharClass.ipv6Char) {
                if b == UInt8(ascii: ":") { colons += 1 }
                index += 1
            }
            guard colons >= 2, consume(UInt8(ascii: "]")) else { throw SIPParseError(.invalidHost) }
            return
        }
        skipHostChars()
        guard index > start, bytes[start] != UInt8(ascii: "."), bytes[start] != UInt8(ascii: "-")
        else { throw SIPParseError(.invalidHost) }
    }

    /// Steps over alphanumerics, `-` and `.`: sixteen bytes per step while the buffer has
    /// them, then byte by byte.
    @inline(__always)
    mutating func skipHostChars() {
        if let base = bytes.baseAddress {
            let x20 = SIMD16<UInt8>(repeating: 0x20)
            while index + 16 <= end {
                let v = UnsafeRawPointer(base + index).loadUnaligned(as: SIMD16<UInt8>.self)
                let letter = lanes(v | x20, from: 0x61, count: 26)
                let dashOrDot = lanes(v, from: 0x2D, count: 2)
                let digit = lanes(v, from: 0x30, count: 10)
                if let lane = firstLane(.!(letter .| dashOrDot .| digit)) {
                    index += lane
                    return
                }
                index += 16
            }
        }
        while let b = peek(), isClass(b, CharClass.hostChar) { index += 1 }
    }

    mutating func readPort() throws(SIPParseError) -> UInt16? {
        guard consume(UInt8(ascii: ":")) else { return nil }
        let start = index
        while let b = peek(), isClass(b, CharClass.digit) { index += 1 }
        guard let value = parseDecimal(bytes, start, index, max: 65535) else {
            throw SIPParseError(.invalidPort)
        }
        return UInt16(value)
    }
}

/// Case-insensitive comparison of `bytes[start..<end]` with an ASCII literal.
@inline(__always)
func asciiEquals(_ bytes: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int, _ literal: StaticString) -> Bool {
    asciiEquals(UnsafeBufferPointer(rebasing: bytes[start..<end]), literal)
}

/// Case-insensitive comparison of bytes with an ASCII literal.
@inline(__always)
func asciiEquals(_ bytes: UnsafeBufferPointer<UInt8>, _ literal: StaticString) -> Bool {
    guard bytes.count == literal.utf8CodeUnitCount else { return false }
    let lit = literal.utf8Start
    for i in 0..<bytes.count {
        let b = bytes[i]
        let lower = (b >= 0x41 && b <= 0x5A) ? b | 0x20 : b
        if lower != (lit[i] | (lit[i] >= 0x41 && lit[i] <= 0x5A ? 0x20 : 0)) { return false }
    }
    return true
}

/// Resolves `%HH` escapes; invalid escapes are left as they are.
public func percentDecode(_ text: String) -> String {
    guard text.utf8.contains(UInt8(ascii: "%")) else { return text }
    var out: [UInt8] = []
    let bytes = Array(text.utf8)
    var i = 0
    while i < bytes.count {
        if bytes[i] == UInt8(ascii: "%"), i + 2 < bytes.count,
            let hi = hexValue(bytes[i + 1]), let lo = hexValue(bytes[i + 2])
        {
            out.append(hi << 4 | lo)
            i += 3
        } else {
            out.append(bytes[i])
            i += 1
        }
    }
    return String(decoding: out, as: UTF8.self)
}

@inline(__always)
func hexValue(_ b: UInt8) -> UInt8? {
    switch b {
    case 0x30...0x39: return b - 0x30
    case 0x41...0x46: return b - 0x41 + 10
    case 0x61...0x66: return b - 0x61 + 10
    default: return nil
    }
}
