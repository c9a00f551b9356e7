/// A SIP method token (RFC 3261 §7.1). Extension methods are just other tokens.
public struct SIPMethod: Sendable, Hashable, RawRepresentable, CustomStringConvertible,
    ExpressibleByStringLiteral
{
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { self.rawValue = value }
    public var description: String { rawValue }

    public static let register = SIPMethod("REGISTER")
    public static let invite = SIPMethod("INVITE")
    public static let ack = SIPMethod("ACK")
    public static let bye = SIPMethod("BYE")
    public static let cancel = SIPMethod("CANCEL")
    public static let options = SIPMethod("OPTIONS")
    public static let subscribe = SIPMethod("SUBSCRIBE")
    public static let notify = SIPMethod("NOTIFY")
    public static let message = SIPMethod("MESSAGE")
    public static let info = SIPMethod("INFO")
    public static let update = SIPMethod("UPDATE")
    public static let prack = SIPMethod("PRACK")
    public static let refer = SIPMethod("REFER")
    public static let publish = SIPMethod("PUBLISH")
}

/// A SIP request (RFC 3261 §7.1).
public struct SIPRequest: Sendable, Hashable, CustomStringConvertible {
    public var method: SIPMethod
    public var uri: AnyURI
    public var headers: SIPHeaderFields
    public var body: [UInt8]

    public init(method: SIPMethod, uri: AnyURI, headers: SIPHeaderFields = [:], body: [UInt8] = []) {
        self.method = method
        self.uri = uri
        self.headers = headers
        self.body = body
    }

    public var description: String { String(decoding: serialized(), as: UTF8.self) }
}

/// A SIP response (RFC 3261 §7.2).
public struct SIPResponse: Sendable, Hashable, CustomStringConvertible {
    public var statusCode: Int
    public var reasonPhrase: String
    public var headers: SIPHeaderFields
    public var body: [UInt8]

    public init(statusCode: Int, reasonPhrase: String? = nil, headers: SIPHeaderFields = [:], body: [UInt8] = []) {
        self.statusCode = statusCode
        self.reasonPhrase = reasonPhrase ?? SIPResponse.defaultReasonPhrase(statusCode)
        self.headers = headers
        self.body = body
    }

    public var isProvisional: Bool { statusCode < 200 }
    public var isSuccess: Bool { (200..<300).contains(statusCode) }
    public var description: String { String(decoding: serialized(), as: UTF8.self) }

    public static func defaultReasonPhrase(_ code: Int) -> String {
        switch code {
        case 100: return "Trying"
        case 180: return "Ringing"
        case 200: return "OK"
        case 202: return "Accepted"
        case 400: return "Bad Request"
        case 401: return "Unauthorized"
        case 403: return "Forbidden"
        case 404: return "Not Found"
        case 405: return "Method Not Allowed"
        case 407: return "Proxy Authentication Required"
        case 408: return "Request Timeout"
        case 413: return "Request Entity Too Large"
        case 415: return "Unsupported Media Type"
        case 416: return "Unsupported URI Scheme"
        case 420: return "Bad Extension"
        case 423: return "Interval Too Brief"
        case 430: return "Flow Failed"
        case 439: return "First Hop Lacks Outbound Support"
        case 481: return "Call/Transaction Does Not Exist"
        case 482: return "Loop Detected"
        case 483: return "Too Many Hops"
        case 489: return "Bad Event"
        case 500: return "Server Internal Error"
        case 501: return "Not Implemented"
        case 503: return "Service Unavailable"
        case 504: return "Server Time-out"
        case 505: return "Version Not Supported"
        case 513: return "Message Too Large"
        default: return code < 300 ? "OK" : "Error"
        }
    }
}

/// Either kind of SIP message.
public enum SIPMessage: Sendable, Hashable, CustomStringConvertible {
    case request(SIPRequest)
    case response(SIPResponse)

    public var headers: SIPHeaderFields {
        get {
            switch self {
            case .request(let r): return r.headers
            case .response(let r): return r.headers
            }
        }
        set {
            switch self {
            case .request(var r):
                r.headers = newValue
                self = .request(r)
            case .response(var r):
                r.headers = newValue
                self = .response(r)
            }
        }
    }

    public var body: [UInt8] {
        switch self {
        case .request(let r): return r.body
        case .response(let r): return r.body
        }
    }

    public func serialized() -> [UInt8] {
        switch self {
        case .request(let r): return r.serialized()
        case .response(let r): return r.serialized()
        }
    }

    public var description: String { String(decoding: serialized(), as: UTF8.self) }
}

// MARK: - Serialization

extension SIPRequest {
    /// Canonical wire form. Content-Length is written from the body, always.
    public func serialized() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(512 + body.count)
        out.append(contentsOf: method.rawValue.utf8)
        out.append(0x20)
        uri.append(to: &out)
        out.append(contentsOf: " SIP/2.0\r\n".utf8)
        writeHeaders(headers, body: body, into: &out)
        return out
    }
}

extension SIPResponse {
    public func serialized() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(512 + body.count)
        out.append(contentsOf: "SIP/2.0 ".utf8)
        out.append(contentsOf: String(statusCode).utf8)
        out.append(0x20)
        // A reason phrase carries no line breaks (RFC 3261 §25.1).
        out.append(contentsOf: reasonPhrase.utf8.filter { $0 != 0x0D && $0 != 0x0A })
        out.append(contentsOf: "\r\n".utf8)
        writeHeaders(headers, body: body, into: &out)
        return out
    }
}

private func writeHeaders(_ headers: SIPHeaderFields, body: [UInt8], into out: inout [UInt8]) {
    let contentLength = Int32(SIPHeaderName.contentLength.knownID)
    for slot in headers.slots where slot.code != contentLength {
        withUTF8Bytes(headers.name(of: slot).canonicalName) { out.append(contentsOf: $0) }
        out.append(contentsOf: ": ".utf8)
        // Values carry no raw line breaks (folding was undone when parsing); a value built
        // in code with one must not split the message, so drop them.
        headers.withBytes(slot) { value in
            if slot.setInCode, containsLineBreak(value) {
                out.append(contentsOf: value.filter { $0 != 0x0D && $0 != 0x0A })
            } else {
                out.append(contentsOf: value)
            }
        }
        out.append(contentsOf: "\r\n".utf8)
    }
    out.append(contentsOf: "Content-Length: ".utf8)
    out.append(contentsOf: String(body.count).utf8)
    out.append(contentsOf: "\r\n\r\n".utf8)
    out.append(contentsOf: body)
}
