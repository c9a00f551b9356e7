import Foundation
import SIPAuth
import SIPCore
import Synchronization

// What the eP-CSCF remembers of a flow's registration: the identities it may assert, the
// REGISTER to undo when it closes (EPC-33), its instance.

extension EdgeProxy {
    /// EPC-13/EPC-21: a 200 binds the IMPI to this TLS session and flow; remember what to
    /// de-register should the flow die.
    func registered(
        _ upstream: SIPRequest, contacts: [SIPContact], impi: String?, token: TokenCredential?,
        answer: SIPResponse, on flow: FlowState, flowToken: String
    ) {
        // TS 24.229 5.2.6.3.4: the identities this flow may assert are the registered set.
        let associated200 = Self.associatedKey(answer)
        let known = flow.state.withLock { $0.registeredFrom == associated200 ? $0.registeredIMPUs : nil }
        // In the 200's order when read anew: the first is the default IMPU (TS 24.229
        // 5.2.6.3.3), asserted when a request prefers none of the others.
        var ordered: [String]?
        if known == nil {
            ordered = ((try? answer.headers.pAssociatedURI) ?? []).compactMap { $0.uri.publicIdentity }
        }
        var associated = known ?? Set(ordered ?? [])
        // A token registration asserts only what its token names (issue 26 item 4), however
        // wide the subscription's set; then the text is not a shortcut for the next time.
        var associatedFrom: Int? = associated200
        if let token, !associated.allSatisfy(token.impus.contains) {
            associated = associated.filter(token.impus.contains)
            ordered = ordered?.filter(token.impus.contains)
            associatedFrom = nil
        }
        var ours: SIPContact?
        let headerExpires = (try? upstream.headers.expires) ?? nil
        var removing = headerExpires == 0
        // Parsed once, by the REGISTER processing (issue 27: it was parsed four times).
        if !contacts.isEmpty {
            ours = contacts.first
            if contacts.allSatisfy({ $0.expires == 0 }) { removing = true }
        }
        let instance = ours?.instance
        let cseq = (try? upstream.headers.cseq)?.sequence ?? 0
        // A refresh of what the flow keeps changes only its CSeq; anything else is kept anew.
        let (kept, grantedAsAsked) =
            removing ? (nil, 0) : flow.state.withLock { ($0.lastRegister, $0.grantedAsAsked) }
        // How long the registration lasts. The S-CSCF grants min(asked, its maximum): once
        // an expiry was granted as asked, any shorter one is too, and the answer need not be
        // read again (a refresh nearly always asks the same or less).
        var until: Int64?
        var askedAndGranted = grantedAsAsked
        if !removing, let ours {
            let requested = ours.expires ?? headerExpires
            let seconds: Int64?
            if let requested, requested <= grantedAsAsked {
                seconds = Int64(requested)
            } else {
                seconds = Self.grantedSeconds(ours, instance: instance, requested: requested, answer: answer)
                if let requested, seconds == Int64(requested) { askedAndGranted = max(grantedAsAsked, requested) }
            }
            until = seconds.map { Int64(processor.clock().timeIntervalSince1970) + $0 }
        }
        let refresh = kept.map { $0.refreshKey == KeptRegistration.refreshKey(upstream) } ?? false
        // The Service-Route is read when the registration is new, not on each refresh.
        let serviceRoute =
            removing
            ? [] : refresh ? nil : sharedServiceRoutes.withLock { $0.list(answer.headers.fieldValues(.serviceRoute)) }
        let replacement = removing || refresh ? nil : KeptRegistration(upstream)
        let current = removing ? nil : instance
        let previousInstance = flow.state.withLock { state -> String? in
            defer { state.instance = current }
            if let impi { state.boundIMPI = impi }
            if removing {
                state.lastRegister = nil
            } else if let replacement {
                state.lastRegister = replacement
            }
            state.lastCSeq = cseq
            state.registeredIMPUs = removing ? [] : associated
            state.defaultIMPU = removing ? nil : ordered?.first ?? state.defaultIMPU
            if let serviceRoute { state.serviceRoute = serviceRoute }
            state.registeredFrom = removing ? nil : associatedFrom
            state.token = removing ? nil : token
            state.registeredUntil = until
            state.grantedAsAsked = askedAndGranted
            return state.instance
        }
        noteInstance(current, replacing: previousInstance, flowToken: flowToken)
    }

    /// Issue 26 item 13: the instance table holds at most one entry per flow — the instance
    /// of its current registration. Registering another instance, de-registering, or the
    /// flow's end takes the flow's old entry out (unless another flow has the instance now).
    func noteInstance(_ instance: String?, of flow: FlowState, flowToken: String) {
        let previous = flow.state.withLock { state -> String? in
            defer { state.instance = instance }
            return state.instance
        }
        noteInstance(instance, replacing: previous, flowToken: flowToken)
    }

    func noteInstance(_ instance: String?, replacing previous: String?, flowToken: String) {
        guard previous != nil || instance != nil else { return }
        latestFlowByInstance.withLock { table in
            if let previous, previous != instance, table[previous] == flowToken { table[previous] = nil }
            if let instance { table[instance] = flowToken }
        }
    }

    /// How many instances the eP-CSCF remembers a flow for (operators and tests).
    public var rememberedInstances: Int { latestFlowByInstance.withLock { $0.count } }

    /// How long the registration of `ours` lasts, as the 200 OK granted it: the `expires` of
    /// our contact there, else what was asked. The answer lists every binding of the
    /// identity, one Contact field each; only ours (found by its instance, or its URI) is
    /// parsed — the whole list cost a parse per binding on every registration.
    static func grantedSeconds(_ ours: SIPContact, instance: String?, requested: UInt32?, answer: SIPResponse)
        -> Int64?
    {
        let needle = instance ?? ours.address.uri.description
        for index in answer.headers.positions(of: .contact) {
            let value = answer.headers[index].value
            guard value.contains(needle), let address = try? SIPAddress.parse(value) else { continue }
            let contact = SIPContact(address)
            let sameBinding = instance != nil ? contact.instance == instance : address.uri == ours.address.uri
            if sameBinding, let expires = contact.expires { return Int64(expires) }
        }
        return requested.map(Int64.init)
    }

    /// The P-Associated-URI fields of a 200, as a key a refresh's 200 is compared by
    /// (`valuesKey`), where each flow kept the joined text. The S-CSCF writes these fields,
    /// not the WIC.
    static func associatedKey(_ answer: SIPResponse) -> Int {
        valuesKey(answer.headers, [.pAssociatedURI])
    }

    /// EPC-33: the flow is gone; after the grace period, de-register what it registered,
    /// unless its instance has registered again on another flow meanwhile.
    func flowClosed(_ flow: FlowState, flowToken: String) async {
        try? await Task.sleep(for: configuration.flowCloseGrace)
        let kept = flow.state.withLock { state in
            state.lastRegister.map { (kept: $0, impi: state.boundIMPI ?? $0.impi, cseq: state.lastCSeq) }
        }
        guard let kept, let last = kept.kept.request() else {
            noteInstance(nil, of: flow, flowToken: flowToken)
            return
        }
        if case .contacts(let contacts)? = try? last.headers.contact, let instance = contacts.first?.instance {
            let stillOurs = latestFlowByInstance.withLock { table -> Bool in
                guard table[instance] == flowToken else { return false }
                table.removeValue(forKey: instance)
                return true
            }
            guard stillOurs else { return }
        }
        noteInstance(nil, of: flow, flowToken: flowToken)
        guard let impi = kept.impi else { return }
        var request = last
        request.headers.append(
            .authorization,
            TrustedNodeAuthorization(
                impi: impi, realm: processor.configuration.homeDomain, uri: request.uri.description
            )
            .headerValue)
        request.headers[.expires] = "0"
        if let index = request.headers.firstIndex(named: .contact),
            var list = try? SIPAddress.parseList(request.headers[index].value)
        {
            for i in list.indices { list[i].parameters.remove("expires") }
            request.headers[index].value = list.map(\.description).joined(separator: ", ")
        }
        request.headers[.cseq] = SIPCSeq(kept.cseq &+ 1, .register).description
        let answer = await toSCSCF(request)
        logger.info("flow \(flowToken) closed: de-registered its contacts (\(answer.statusCode))")
    }
}

/// The REGISTER a flow keeps for its flow-close de-registration (EPC-33): without
/// Authorization, as bytes in an array of its own size, parsed again only when the flow
/// closes. The flow holds no bearer token or Digest answer for its lifetime, nor the
/// received message, its token and the fields the eP-CSCF added, nor a parse (~300 bytes of
/// field index) — an idle flow keeps this for its whole life (BENCHMARKS.md).
struct KeptRegistration {
    var bytes: [UInt8]
    /// The IMPI its Authorization named (the Authorization itself is not kept).
    var impi: String?
    /// What a refresh repeats (`refreshKey`): a REGISTER with the same key registers what
    /// this holds again, and the flow needs only its new CSeq.
    var refreshKey: Int

    init(_ upstream: SIPRequest) {
        impi = (try? upstream.headers.authorizations())?.first?.username
        var request = upstream
        request.headers.removeAll(.authorization)
        // Without Via too (the WIC's and ours, ~150 bytes): the de-registration gets its own.
        request.headers.removeAll(.via)
        // The serializer's array grew by doubling (~350 bytes of slack per idle WIC).
        let text = request.serialized()
        bytes = [UInt8](unsafeUninitializedCapacity: text.count) { buffer, count in
            count = buffer.initialize(fromContentsOf: text)
        }
        refreshKey = Self.refreshKey(upstream)
    }

    /// The kept REGISTER, parsed, without Via: nil only if it no longer parses, which a
    /// message this process serialized always does. The parser wants a Via (RFC 3261
    /// §8.1.1), so one stands in after the request line and is taken out again.
    func request() -> SIPRequest? {
        guard let lineEnd = bytes.firstIndex(of: UInt8(ascii: "\n")) else { return nil }
        var text = Array(bytes[...lineEnd])
        text += Array("Via: SIP/2.0/TCP kept.invalid;branch=z9hG4bKkept\r\n".utf8)
        text += bytes[(lineEnd + 1)...]
        guard case .request(var request)? = try? SIPParser().parse(text) else { return nil }
        request.headers.removeAll(.via)
        return request
    }

    /// The values of Call-ID, To, Contact and Path as one key (`valuesKey`).
    static func refreshKey(_ request: SIPRequest) -> Int { valuesKey(request.headers, refreshFields) }

    static let refreshFields: [SIPHeaderName] = [.callID, .to, .contact, .path]
}

/// A hash of the values of the fields with these names, each field's bytes with its length
/// before them and each name's fields closed by a mark (so no two different sets of values
/// hash alike by concatenation). Swift's `Hasher` is SipHash keyed at random per process: no
/// one can aim at a collision they cannot compute, and a chance one is 2⁻⁶⁴ — where SHA-256
/// cost a refresh 1.4 % of the server's time.
func valuesKey(_ headers: SIPHeaderFields, _ names: [SIPHeaderName]) -> Int {
    var hasher = Hasher()
    for name in names {
        headers.forEachValue(name) { value in
            hasher.combine(value.count)
            hasher.combine(bytes: UnsafeRawBufferPointer(value))
        }
        hasher.combine(-1)
    }
    return hasher.finalize()
}

/// What a flow knows across its messages; shared with the tasks that handle them.
final class FlowState: Sendable {
    struct State {
        /// The IMPI a 200 OK bound to this TLS session (EPC-13, EPC-21).
        var boundIMPI: String?
        /// The last REGISTER forwarded and accepted: what to undo if the flow dies.
        var lastRegister: KeptRegistration?
        /// The CSeq of the last accepted REGISTER; a refresh updates only this.
        var lastCSeq: UInt32 = 0
        /// The public identities registered over this flow (P-Associated-URI of the 200).
        var registeredIMPUs: Set<String> = []
        /// The first of them: asserted when a request prefers no other (TS 24.229 5.2.6.3.3).
        var defaultIMPU: String?
        /// The 200's Service-Route (TS 24.229 5.2.5): what the flow's new requests go by.
        var serviceRoute: [String] = []
        /// The P-Associated-URI fields they were read from (`associatedKey`): a refresh
        /// nearly always brings the same, and then they need not be parsed again.
        var registeredFrom: Int?
        /// The token the last registration rested on (nil for Digest and AKA).
        var token: TokenCredential?
        /// When the last registration ends (unix seconds).
        var registeredUntil: Int64?
        /// The +sip.instance of its current registration (its entry in the instance table).
        var instance: String?
        /// The longest expiry the S-CSCF granted as asked on this flow (seconds).
        var grantedAsAsked: UInt32 = 0
    }
    let state = Mutex(State())
}
