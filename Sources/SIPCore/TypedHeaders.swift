// Typed views of the header fields. Each parses on access and throws a SIPParseError that
// names the header, so a server can answer 400 with a useful reason phrase.

extension SIPHeaderFields {
    /// All Via entries, top first, across fields and comma lists.
    public var vias: [SIPVia] {
        get throws(SIPParseError) {
            var result: [SIPVia] = []
            for i in slots.indices where matches(slots[i], .via) {
                try withSource(slots[i]) { (bytes, source) throws(SIPParseError) in
                    try SIPVia.parseList(bytes: bytes, source: source, into: &result)
                }
            }
            guard !result.isEmpty else { throw SIPParseError(.missingHeader, header: .via) }
            return result
        }
    }

    /// The top Via: the only one a UAS or the transport layer needs to read.
    public var topVia: SIPVia {
        get throws(SIPParseError) {
            guard let via = try withFirstSource(.via, SIPVia.parseFirst) else {
                throw SIPParseError(.missingHeader, header: .via)
            }
            return via
        }
    }

    public var from: SIPAddress {
        get throws(SIPParseError) { try address(.from) }
    }

    public var to: SIPAddress {
        get throws(SIPParseError) { try address(.to) }
    }

    public var callID: String {
        get throws(SIPParseError) {
            guard let value = self[.callID] else { throw SIPParseError(.missingHeader, header: .callID) }
            return value
        }
    }

    public var cseq: SIPCSeq {
        get throws(SIPParseError) {
            guard let cseq = try withFirstValue(.cseq, SIPCSeq.parse(bytes:)) else {
                throw SIPParseError(.missingHeader, header: .cseq)
            }
            return cseq
        }
    }

    public var maxForwards: UInt32? {
        get throws(SIPParseError) { try number(.maxForwards) }
    }

    public var expires: UInt32? {
        get throws(SIPParseError) { try number(.expires) }
    }

    public var minExpires: UInt32? {
        get throws(SIPParseError) { try number(.minExpires) }
    }

    /// Contact entries, `*`, or nil when there is no Contact.
    public var contact: SIPContactValue? {
        get throws(SIPParseError) {
            var parser = SIPContactValue.Accumulator()
            do {
                for i in slots.indices where matches(slots[i], .contact) {
                    try withSource(slots[i]) { (bytes, source) throws(SIPParseError) in
                        try parser.add(bytes, source: source)
                    }
                }
                guard parser.fields > 0 else { return nil }
                return try parser.finish()
            } catch { throw error.in(.contact) }
        }
    }

    public var path: [SIPAddress] { get throws(SIPParseError) { try addressList(.path) } }
    public var route: [SIPAddress] { get throws(SIPParseError) { try addressList(.route) } }
    public var recordRoute: [SIPAddress] { get throws(SIPParseError) { try addressList(.recordRoute) } }
    public var serviceRoute: [SIPAddress] { get throws(SIPParseError) { try addressList(.serviceRoute) } }
    public var pAssociatedURI: [SIPAddress] { get throws(SIPParseError) { try addressList(.pAssociatedURI) } }

    public var require: [String] { optionTags(.require) }
    public var proxyRequire: [String] { optionTags(.proxyRequire) }
    public var supported: [String] { optionTags(.supported) }
    public var unsupported: [String] { optionTags(.unsupported) }

    /// P-Visited-Network-ID entries (RFC 7315 §4.3), unquoted.
    public var pVisitedNetworkIDs: [String] {
        values(.pVisitedNetworkID).map { unquote(String($0.trimmingLWS().split(separator: ";").first ?? "")) }
    }

    /// P-Charging-Vector (RFC 7315 §4.6): `icid-value=…;orig-ioi=…` as parameters.
    public var pChargingVector: SIPParameters? {
        get throws(SIPParseError) {
            guard let value = self[.pChargingVector] else { return nil }
            do {
                return try withUTF8Bytes(";" + value) { (bytes) throws(SIPParseError) -> SIPParameters in
                    var scanner = ByteScanner(bytes)
                    let params = try scanner.readHeaderParameters()
                    scanner.skipLWS()
                    guard scanner.isAtEnd, params.contains("icid-value") else {
                        throw SIPParseError(.invalidHeader)
                    }
                    return params
                }
            } catch { throw error.in(.pChargingVector) }
        }
    }

    /// Content-Type as `type/subtype`, lower-cased, parameters dropped.
    public var contentType: String? {
        self[.contentType].map { String($0.split(separator: ";").first ?? "").trimmingLWS().lowercased() }
    }

    /// Credentials in Authorization (or Proxy-Authorization), one per field.
    public func authorizations(_ name: SIPHeaderName = .authorization) throws(SIPParseError) -> [SIPAuthField] {
        var result: [SIPAuthField] = []
        for i in slots.indices where matches(slots[i], name) {
            let field = try withSource(slots[i]) { (bytes, source) throws(SIPParseError) in
                try SIPAuthField.parse(bytes: bytes, source: source, header: name)
            }
            // The usual one field as an array literal: growing an empty array looked the
            // element type's array metadata up anew on every call (~300 instructions).
            if result.isEmpty { result = [field] } else { result.append(field) }
        }
        return result
    }

    /// Challenges in WWW-Authenticate (or Proxy-Authenticate).
    public func challenges(_ name: SIPHeaderName = .wwwAuthenticate) throws(SIPParseError) -> [SIPAuthField] {
        try authorizations(name)
    }

    // MARK: helpers

    func address(_ name: SIPHeaderName) throws(SIPParseError) -> SIPAddress {
        guard let i = firstIndex(named: name) else { throw SIPParseError(.missingHeader, header: name) }
        do throws(SIPParseError) {
            return try withSource(slots[i], SIPAddress.parse(bytes:source:))
        } catch { throw error.in(name) }
    }

    func addressList(_ name: SIPHeaderName) throws(SIPParseError) -> [SIPAddress] {
        var result: [SIPAddress] = []
        for i in slots.indices where matches(slots[i], name) {
            do {
                try withSource(slots[i]) { (bytes, source) throws(SIPParseError) in
                    try SIPAddress.parseList(bytes: bytes, source: source) { result.append($0) }
                }
            } catch { throw error.in(name) }
        }
        return result
    }

    func number(_ name: SIPHeaderName) throws(SIPParseError) -> UInt32? {
        let parsed = withFirstValue(name) { bytes -> UInt64? in
            var s = 0
            var e = bytes.count
            while s < e, isLWS(bytes[s]) { s += 1 }
            while e > s, isLWS(bytes[e - 1]) { e -= 1 }
            return parseDecimal(bytes, s, e, max: UInt64(UInt32.max))
        }
        guard let parsed else { return nil }
        guard let n = parsed else { throw SIPParseError(.invalidHeader, header: name) }
        return UInt32(n)
    }

    func optionTags(_ name: SIPHeaderName) -> [String] {
        values(name)
    }
}

extension SIPRequest {
    /// RFC 3261 §16.3 step 3 and §16.6 step 3: a proxy forwards a request with one hop less
    /// (70 when it had no Max-Forwards). When it may not be forwarded, the answer's status
    /// and reason: 483 with no hop left, 400 for a malformed value; nil once decremented.
    public mutating func takeHop() -> (status: Int, reason: String?)? {
        let hops: UInt32
        do { hops = try headers.maxForwards ?? 70 } catch { return (400, error.reasonPhrase) }
        guard hops > 0 else { return (483, nil) }
        headers[.maxForwards] = String(hops - 1)
        return nil
    }
}
