/// Secrets in a SIP message, blanked for logs (`--sip-trace`): Bearer tokens, Digest
/// responses, AKA keys and AUTS. Everything else stays as it was, so an operator can read
/// the exchange.
public enum SIPTraceRedaction {
    static let secretParameters: Set<String> = ["response", "ik", "ck", "auts", "access_token", "rspauth"]
    static let authHeaders: Set<String> = [
        "authorization", "proxy-authorization", "www-authenticate", "proxy-authenticate", "authentication-info",
    ]

    public static func redact(_ text: String) -> String {
        var out: [Substring] = []
        var inHeaders = true
        for line in text.split(separator: "\r\n", omittingEmptySubsequences: false) {
            if line.isEmpty { inHeaders = false }
            guard inHeaders, let colon = line.firstIndex(of: ":"),
                authHeaders.contains(line[..<colon].trimmingSpaces().lowercased())
            else {
                out.append(line)
                continue
            }
            out.append(Substring(redactAuthValue(line)))
        }
        return out.joined(separator: "\r\n")
    }

    static func redactAuthValue(_ line: Substring) -> String {
        var result = ""
        var rest = line[...]
        // `Bearer <token68>`: the word after the scheme, unless it is an auth-param.
        if let colon = rest.firstIndex(of: ":") {
            var start = rest.index(after: colon)
            while start < rest.endIndex, rest[start] == " " { start = rest.index(after: start) }
            let schemeEnd = rest[start...].firstIndex(of: " ") ?? rest.endIndex
            if rest[start..<schemeEnd].lowercased() == "bearer", schemeEnd < rest.endIndex {
                let tokenStart = rest.index(after: schemeEnd)
                let tokenEnd = rest[tokenStart...].firstIndex(where: { $0 == " " || $0 == "," }) ?? rest.endIndex
                let token = rest[tokenStart..<tokenEnd]
                let isParameter =
                    token.firstIndex(of: "=").map {
                        $0 < token.index(before: token.endIndex) && token[token.index(after: $0)] != "="
                    } ?? false
                if !isParameter {
                    result += rest[..<tokenStart] + "[redacted]"
                    rest = rest[tokenEnd...]
                }
            }
        }
        // name=value and name="value" for the secret names.
        var scan = rest.startIndex
        while scan < rest.endIndex {
            guard let eq = rest[scan...].firstIndex(of: "=") else { break }
            var nameStart = eq
            while nameStart > rest.startIndex, rest[rest.index(before: nameStart)].isParameterNameCharacter {
                nameStart = rest.index(before: nameStart)
            }
            let name = rest[nameStart..<eq].lowercased()
            var valueEnd = rest.index(after: eq)
            if valueEnd < rest.endIndex, rest[valueEnd] == "\"" {
                valueEnd = rest.index(after: valueEnd)
                while valueEnd < rest.endIndex, rest[valueEnd] != "\"" {
                    if rest[valueEnd] == "\\", rest.index(after: valueEnd) < rest.endIndex {
                        valueEnd = rest.index(after: valueEnd)
                    }
                    valueEnd = rest.index(after: valueEnd)
                }
                if valueEnd < rest.endIndex { valueEnd = rest.index(after: valueEnd) }
            } else {
                valueEnd = rest[valueEnd...].firstIndex(where: { $0 == "," || $0 == " " }) ?? rest.endIndex
            }
            if secretParameters.contains(name) {
                result += rest[scan..<rest.index(after: eq)] + "\"[redacted]\""
            } else {
                result += rest[scan..<valueEnd]
            }
            scan = valueEnd
        }
        result += rest[scan...]
        return result
    }
}

extension Character {
    fileprivate var isParameterNameCharacter: Bool {
        isLetter || isNumber || self == "-" || self == "_" || self == "."
    }
}

extension Substring {
    fileprivate func trimmingSpaces() -> Substring {
        var s = self
        while s.first == " " || s.first == "\t" { s = s.dropFirst() }
        while s.last == " " || s.last == "\t" { s = s.dropLast() }
        return s
    }
}
