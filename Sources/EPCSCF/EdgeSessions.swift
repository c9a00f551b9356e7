import Foundation
import SIPCore
import SIPProxy
import SIPTransport
import Utilities

/// Calls through the eP-CSCF (TS 24.229 5.2.6.3 and 5.2.6.4, TS 24.371 clause 7): what a
/// WIC originates goes to its S-CSCF by the registration's Service-Route, asserted and
/// Record-Routed with the flow; what the S-CSCF sends for a flow goes down it. Every request
/// but REGISTER and SUBSCRIBE comes here with its server transaction, so provisional
/// answers and CANCEL pass through.
extension EdgeProxy {
    /// The endpoint's handler for everything but REGISTER and SUBSCRIBE
    /// (`SIPEndpoint(configuration:handler:sessionHandler:)`).
    public var sessionHandler: SIPTransactionHandler {
        { request, transaction in await self.session(request, transaction) }
    }

    public func session(_ request: SIPRequest, _ transaction: SIPServerTransaction) async {
        if let flow = transaction.peer.flow {
            await originating(request, transaction, flowToken: flow.token)
        } else {
            await terminating(request, transaction)
        }
    }

    func flowState(_ token: String) -> FlowState {
        flowStates.withLock { states in
            if let known = states[token] { return known }
            let made = FlowState()
            states[token] = made
            return made
        }
    }

    /// TS 24.229 5.2.6.3: a request from a WIC's flow.
    func originating(_ request: SIPRequest, _ transaction: SIPServerTransaction, flowToken: String) async {
        let flow = flowState(flowToken)
        if request.method == .ack {
            // An ACK for a 2xx, end to end: to our S-CSCF, whatever route the WIC gave, and
            // only from a flow that may still send.
            guard case .registered = credentialGate(flow) else { return }
            var ack = request
            await mediaInACK(&ack, flowToken: flowToken, direction: .fromWIC)
            await proxy.forwardACK(ack, to: configuration.scscf)
            return
        }
        var upstream = request
        let route: [SIPAddress]
        switch prepareOriginating(&upstream, flow: flow, flowToken: flowToken) {
        case .refused(let refusal):
            transaction.respond(refusal)
            return
        case .route(let routeSet): route = routeSet
        }
        guard
            case .proceed(let rewriting) = await media(
                &upstream, flowToken: flowToken, direction: .fromWIC, transaction)
        else { return }
        // Whatever the request names, the next hop is our S-CSCF.
        await proxy.forward(
            upstream, transaction: transaction,
            to: [ProxyTarget(uri: upstream.uri, route: route, destination: configuration.scscf)], rewriting: rewriting)
    }

    /// A flow's request made ready to go on (with the route to send it by), or refused.
    enum Originating {
        case refused(SIPResponse)
        case route([SIPAddress])
    }

    /// What every request a flow originates goes through (TS 24.229 5.2.6.3), a call's or a
    /// SUBSCRIBE's: the flow's credential gate, §16.3 validation and our Route entries
    /// consumed, the sender checked, the identity asserted; for a new request the
    /// Service-Route (returned: the route to send it by), a fresh icid and a Record-Route
    /// naming the flow. Else the refusal.
    func prepareOriginating(_ upstream: inout SIPRequest, flow: FlowState, flowToken: String)
        -> Originating
    {
        let request = upstream
        let registered: Set<String>
        switch credentialGate(flow) {
        case .registered(let identities): registered = identities
        case .tokenEnded: return .refused(processor.tokenEnded(request))
        case .notRegistered(let reason): return .refused(refusal(request, 403, reason))
        }
        // RFC 3261 §16.3 (Max-Forwards, loops, Proxy-Require) and §16.4: our own Route
        // entries (our Record-Route in the dialog's route set) are consumed here.
        if let refusal = proxy.validate(&upstream) { return .refused(refusal) }
        proxy.preprocessRoute(&upstream)
        // TS 24.371 7.2.1: the WIC's token rides on every request for the edge alone (the
        // flow's credential gate above checked it); it never goes further.
        upstream.headers.removeAll { $0.name == .authorization && $0.value.lowercased().hasPrefix("bearer") }
        let inDialog = (try? upstream.headers.to.tag) != nil
        // Only identities registered over this flow may be named (issue 26): one WIC cannot
        // speak for another, in From as in what is asserted.
        if !inDialog, let refusal = checkSender(upstream, registered: registered) { return .refused(refusal) }
        // TS 24.229 5.2.6.3.3: P-Preferred-Identity → P-Asserted-Identity when registered
        // here, else the default IMPU; whatever the WIC asserted itself is dropped.
        let preferred = upstream.headers.values(.pPreferredIdentity).first
            .flatMap { try? SIPAddress.parseList($0).first?.uri.publicIdentity }
        let defaultIMPU = flow.state.withLock { $0.defaultIMPU }
        let asserted = preferred.flatMap { registered.contains($0) ? $0 : nil } ?? defaultIMPU ?? registered.first
        upstream.headers.removeAll(.pPreferredIdentity)
        upstream.headers.removeAll(.pAssertedIdentity)
        if let asserted { upstream.headers.append(.pAssertedIdentity, "<\(asserted)>") }
        guard !inDialog else { return .route([]) }
        // The Service-Route the registration learnt goes in front (third-party WICs such
        // as JsSIP send none); a Route the WIC wrote goes (TS 24.229 5.2.6.3.3).
        upstream.headers.removeAll(.route)
        upstream.headers[.pChargingVector] =
            "icid-value=\"\(randomICID())\";orig-ioi=\(processor.configuration.networkID)"
        if SIPProxyCore.createsDialog(upstream) {
            upstream.headers.prepend(.recordRoute, flowURI(flowToken).description)
        }
        return .route(serviceRoute(flow))
    }

    /// nil when the From identity is one the flow registered (or anonymous, RFC 3323);
    /// else 403.
    func checkSender(_ request: SIPRequest, registered: Set<String>) -> SIPResponse? {
        guard let from = (try? request.headers.from)?.uri.publicIdentity else {
            return refusal(request, 400, "Bad From")
        }
        if registered.contains(from) || from == "sip:anonymous@anonymous.invalid" { return nil }
        return refusal(request, 403, "Identity Not Registered")
    }

    /// The flow's Service-Route, or our S-CSCF's originating entry when it sent none.
    func serviceRoute(_ flow: FlowState) -> [SIPAddress] {
        let stored = flow.state.withLock { $0.serviceRoute }
        let parsed = stored.flatMap { (try? SIPAddress.parseList($0)) ?? [] }
        if !parsed.isEmpty { return parsed }
        var orig = scscfRoute
        if var uri = orig.uri.sipURI {
            uri.user = "orig"
            orig = SIPAddress(uri)
        }
        return [orig]
    }

    /// Where a request from the S-CSCF side for a flow stands: refused (nil for an ACK,
    /// which is never answered), or what goes down which flow.
    enum FlowRequest {
        case refused(SIPResponse?)
        case down(SIPRequest, flowToken: String)
    }

    /// TS 24.229 5.2.6.4, RFC 5626: the checks on a request for a flow, for a call's and
    /// any other alike — one of our S-CSCFs sent it (docs/security.md), the flow token in
    /// the top Route is ours (taken off), §16.3 validation, the flow still open (430).
    func towardsFlow(_ request: SIPRequest, from peer: SIPPeer) -> FlowRequest {
        let ack = request.method == .ack
        guard configuration.terminatingPeers.admits(peer) else {
            // Counted, logged at debug only: anyone who reaches the port could flood the log.
            EdgeMetrics.foreignFlowRequests.increment()
            logger.debug("request for a flow from \(peer), not one of our S-CSCFs: refused")
            return .refused(ack ? nil : refusal(request, 403, "Not A Trusted Node"))
        }
        var downstream = request
        guard let index = downstream.headers.firstIndex(named: .route),
            let top = try? SIPAddress.parse(downstream.headers[index].value), let uri = top.uri.sipURI,
            let token = uri.user, proxy.isOurs(uri)
        else { return .refused(ack ? nil : refusal(request, 404, "No Flow Named")) }
        downstream.headers.remove(at: index)
        if let refusal = proxy.validate(&downstream) { return .refused(ack ? nil : refusal) }
        guard ack || sip.hasFlow(token) else { return .refused(refusal(request, 430, "Flow Failed")) }
        return .down(downstream, flowToken: token)
    }

    /// A call's request for a flow: down it through a client transaction, Record-Routed.
    func terminating(_ request: SIPRequest, _ transaction: SIPServerTransaction) async {
        var downstream: SIPRequest
        let token: String
        switch towardsFlow(request, from: transaction.peer) {
        case .refused(let refusal):
            if let refusal { transaction.respond(refusal) }
            return
        case .down(let request, let flowToken): (downstream, token) = (request, flowToken)
        }
        if request.method == .ack {
            await mediaInACK(&downstream, flowToken: token, direction: .towardsWIC)
            await sip.sendStatelessly(downstream, to: .flow(token))
            return
        }
        // RFC 3325 §7: the WIC is not a trusted node — an identity the caller asked to
        // keep private does not reach it.
        if downstream.headers.values(.privacy).contains(where: { Self.asksIDPrivacy($0) }) {
            downstream.headers.removeAll(.pAssertedIdentity)
        }
        if SIPProxyCore.createsDialog(downstream) {
            // The dialog's requests from the far end come back through us to this flow.
            downstream.headers.prepend(.recordRoute, flowURI(token).description)
        }
        guard
            case .proceed(let rewriting) = await media(
                &downstream, flowToken: token, direction: .towardsWIC, transaction)
        else { return }
        await proxy.forward(
            downstream, transaction: transaction,
            to: [ProxyTarget(uri: downstream.uri, destination: .flow(token))], rewriting: rewriting)
    }

    /// `Privacy: id` (or `header`, `user`: RFC 3323 §4.2, RFC 3325 §9.3) hides the identity.
    static func asksIDPrivacy(_ value: String) -> Bool {
        value.split(whereSeparator: { $0 == ";" || $0 == "," }).contains {
            ["id", "header", "user"].contains($0.trimmingCharacters(in: .whitespaces).lowercased())
        }
    }

    func refusal(_ request: SIPRequest, _ status: Int, _ reason: String? = nil) -> SIPResponse {
        SIPResponse(replyingTo: request, statusCode: status, reasonPhrase: reason, toTag: randomToken(length: 8))
    }
}
