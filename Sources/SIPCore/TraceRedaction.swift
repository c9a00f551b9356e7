/// Secrets in a SIP message, blanked for logs (`--sip-trace`): Bearer tokens, Digest
/// responses, AKA keys and AUTS. It cannot fail open (issue 26 item 9): a message the
/// parser takes is redacted on its parsed fields — whatever line ends, folding or spacing
/// it came with — keeping only auth-params known to be harmless; bytes that do not parse
/// have every line of every credential-bearing header masked whole, continuation lines
/// too. Everything else stays as it was, so an operator can read the exchange.
public enum SIPTraceRedaction {
    static let authHeaders: [SIPHeaderName] = [
        .authorization, .proxyAuthorization, .wwwAuthenticate, .proxyAuthenticate, .authenticationInfo,
    ]
    static let authHeaderNames: Set<String> = Set(authHeaders.map(\.key))
    /// Auth-params shown as they are; any other (response, ik, ck, auts, access_token,
    /// rspauth, and whatever a peer invents) is redacted.
    static let harmlessParameters: Set<String> = [
        "username", "realm", "uri", "nonce", "algorithm", "qop", "nc", "cnonce", "opaque", "stale", "domain",
        "integrity-protected", "scope", "authz_server", "error", "error_description", "token-type", "waf-id",
        "wwsf-id",
    ]
    static let mask = "[redacted]"

    public static func redact(_ text: String) -> String {
        guard let message = try? SIPParser().parse(Array(text.utf8)) else { return redactUnparsed(text) }
        var headers = message.headers
        for name in authHeaders {
            for index in headers.positions(of: name) {
                headers[index].value = redactedValue(headers[index].value, header: name)
            }
        }
        var redacted = message
        redacted.headers = headers
        return String(decoding: redacted.serialized(), as: UTF8.self)
    }

    /// A parsed field's value with its secrets masked; a value that does not parse as
    /// credentials or a challenge is masked whole.
    static func redactedValue(_ value: String, header: SIPHeaderName) -> String {
        if header == .authenticationInfo {
            // Authentication-Info is auth-params without a scheme: read it as Digest's.
            guard let field = try? SIPAuthField.parse("Digest " + value, header: .authorization) else { return mask }
            return parameters(field)
        }
        guard let field = try? SIPAuthField.parse(value, header: header) else { return mask }
        if field.token68 != nil { return field.scheme + " " + mask }
        let rest = parameters(field)
        return rest.isEmpty ? field.scheme : field.scheme + " " + rest
    }

    static func parameters(_ field: SIPAuthField) -> String {
        field.parameters.map { parameter in
            let value =
                harmlessParameters.contains(parameter.name.lowercased())
                ? (parameter.isQuoted ? quote(parameter.value) : parameter.value) : quote(mask)
            return parameter.name + "=" + value
        }.joined(separator: ", ")
    }

    /// Bytes the parser refused: line by line, whatever ends the lines (CRLF, LF or CR),
    /// every line of a credential-bearing header — its name compared without case or
    /// surrounding whitespace — and every folded line after it is masked whole. Lines
    /// after a blank one are judged the same way: nothing tells a body from headers here.
    static func redactUnparsed(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        var masking = false
        func flush(_ line: Substring) {
            if let first = line.first, first == " " || first == "\t", masking {
                out += mask
                return
            }
            masking = false
            if let colon = line.firstIndex(of: ":") {
                let name = line[..<colon].filter { $0 != " " && $0 != "\t" }.lowercased()
                if authHeaderNames.contains(name) {
                    masking = true
                    out += line[..<colon] + ": " + mask
                    return
                }
            }
            out += line
        }
        // By Unicode scalars: CR LF is one Character, and a Character walk would hide ends.
        // CR LF ends one line; a lone CR or LF ends one too.
        let scalars = text.unicodeScalars
        var lineStart = scalars.startIndex
        var s = scalars.startIndex
        var previousWasCR = false
        while s < scalars.endIndex {
            let scalar = scalars[s]
            if scalar == "\n" && previousWasCR {
                out.unicodeScalars.append(scalar)
                lineStart = scalars.index(after: s)
            } else if scalar == "\r" || scalar == "\n" {
                flush(text[lineStart..<s])
                out.unicodeScalars.append(scalar)
                lineStart = scalars.index(after: s)
            }
            previousWasCR = scalar == "\r"
            s = scalars.index(after: s)
        }
        flush(text[lineStart...])
        return out
    }
}
