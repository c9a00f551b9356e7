extension SIPRequest {
    /// What an element checks of every request before acting on it, whatever the transport
    /// and whoever the request is for: all Vias, From and To, the Contact, a Date, and a
    /// Request-URI without headers (RFC 3261 §19.1.1). The parser itself leaves these for
    /// later (most of them are read only by the element that needs them); checked here,
    /// the RFC 4475 messages get one answer on UDP, TCP, TLS and WSS alike, before any
    /// decision about who may send what.
    public func checkSyntax() throws(SIPParseError) {
        if case .sip(let target) = uri, !target.headers.isEmpty { throw SIPParseError(.invalidURI) }
        _ = try headers.vias
        _ = try headers.from
        _ = try headers.to
        _ = try headers.contact
        if let date = headers[Self.date], !Self.isHTTPDate(date) {
            throw SIPParseError(.invalidHeader, header: Self.date)
        }
    }

    static let date = SIPHeaderName("Date")

    /// RFC 3261 §20.17 (RFC 1123 form, GMT only): `Sat, 13 Nov 2010 23:29:00 GMT`.
    static func isHTTPDate(_ text: String) -> Bool {
        let parts = text.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 6 else { return false }
        let days = ["Mon,", "Tue,", "Wed,", "Thu,", "Fri,", "Sat,", "Sun,"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func digits(_ s: Substring, _ count: Int) -> Bool { s.count == count && s.allSatisfy(\.isASCIIDigit) }
        let time = parts[4].split(separator: ":", omittingEmptySubsequences: false)
        return days.contains(String(parts[0])) && digits(parts[1], 2) && months.contains(String(parts[2]))
            && digits(parts[3], 4) && time.count == 3 && time.allSatisfy { digits($0, 2) } && parts[5] == "GMT"
    }
}

extension Character {
    fileprivate var isASCIIDigit: Bool { isASCII && isNumber }
}
