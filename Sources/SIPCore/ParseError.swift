/// Why a SIP message, header or URI could not be parsed. A server answers `400` with
/// `reasonPhrase`, which names what is wrong but never echoes the offending bytes.
public struct SIPParseError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        case messageTooLarge
        case tooManyHeaders
        case headerLineTooLong
        case malformedStartLine
        case unsupportedVersion
        case invalidMethod
        case invalidStatusCode
        case malformedHeaderLine
        case invalidUTF8
        case missingHeader
        case invalidHeader
        case missingContentLength
        case contentLengthMismatch
        case cseqMethodMismatch
        case invalidURI
        case invalidHost
        case invalidPort
        case invalidEscape
        case unterminatedQuote
        case invalidParameter
        case incomplete
    }

    public var kind: Kind
    /// The header the problem is in, when there is one.
    public var header: SIPHeaderName?

    public init(_ kind: Kind, header: SIPHeaderName? = nil) {
        self.kind = kind
        self.header = header
    }

    /// A short, safe phrase for a `400` status line.
    public var reasonPhrase: String {
        let where_ = header.map { " \(Self.safeName($0.canonicalName)) header" } ?? ""
        switch kind {
        case .messageTooLarge: return "Message Too Large"
        case .tooManyHeaders: return "Too Many Header Fields"
        case .headerLineTooLong: return "Header Line Too Long"
        case .malformedStartLine: return "Malformed Start Line"
        case .unsupportedVersion: return "Unsupported SIP Version"
        case .invalidMethod: return "Invalid Method"
        case .invalidStatusCode: return "Invalid Status Code"
        case .malformedHeaderLine: return "Malformed Header Line"
        case .invalidUTF8: return "Invalid UTF-8"
        case .missingHeader: return "Missing\(where_)"
        case .invalidHeader: return "Malformed\(where_)"
        case .missingContentLength: return "Missing Content-Length"
        case .contentLengthMismatch: return "Content-Length Mismatch"
        case .cseqMethodMismatch: return "CSeq Method Mismatch"
        case .invalidURI: return "Invalid URI\(where_.isEmpty ? "" : " in\(where_)")"
        case .invalidHost: return "Invalid Host\(where_.isEmpty ? "" : " in\(where_)")"
        case .invalidPort: return "Invalid Port\(where_.isEmpty ? "" : " in\(where_)")"
        case .invalidEscape: return "Invalid Escape\(where_.isEmpty ? "" : " in\(where_)")"
        case .unterminatedQuote: return "Unterminated Quoted String\(where_.isEmpty ? "" : " in\(where_)")"
        case .invalidParameter: return "Invalid Parameter\(where_.isEmpty ? "" : " in\(where_)")"
        case .incomplete: return "Incomplete Message"
        }
    }

    public var description: String { reasonPhrase }

    /// Attributes the error to a header if it has none yet.
    func `in`(_ name: SIPHeaderName) -> SIPParseError {
        var copy = self
        if copy.header == nil { copy.header = name }
        return copy
    }

    /// Header names are tokens once parsed, but cap their length in a status line.
    private static func safeName(_ name: String) -> String {
        String(
            name.unicodeScalars.filter { $0.isASCII && $0.value > 0x20 && $0.value < 0x7F }
                .prefix(40).map(Character.init))
    }
}
