import Foundation
import SIPCore
import SIPProxy
import SIPTransport
import Storage

/// Calls through the S-CSCF (TS 24.229 5.4.3): a new request is checked on its originating
/// side — who is calling, and may they — then sent to every registered contact of the
/// callee (parallel forking through the proxy core, CANCEL to the losers). The S-CSCF
/// Record-Routes the dialogs it sets up, so their later requests come through it (and
/// reach a WIC through its eP-CSCF); it keeps no dialog state, only transactions.
extension Registrar {
    /// The endpoint's handler for everything but REGISTER and SUBSCRIBE
    /// (`SIPEndpoint(configuration:handler:sessionHandler:)`).
    public var sessionHandler: SIPTransactionHandler {
        { request, transaction in await self.session(request, transaction) }
    }

    public func session(_ request: SIPRequest, _ transaction: SIPServerTransaction) async {
        guard let proxy = proxyCore else {
            if request.method != .ack { transaction.respond(reply(request, 503)) }
            return
        }
        var request = request
        if request.method == .ack {
            // An ACK for a 2xx is end to end (§16.11): on by the route set, and only one that
            // came through our Record-Route — never a relay to wherever its URI points.
            let ours = proxy.preprocessRoute(&request)
            if !ours.isEmpty { await proxy.forwardACK(request) }
            return
        }
        if let refusal = proxy.validate(&request) {
            transaction.respond(refusal)
            return
        }
        let ours = proxy.preprocessRoute(&request)
        if (try? request.headers.to.tag) != nil {
            // RFC 3261 §12.2: within a dialog a request follows its route set, which names us
            // when we Record-Routed its INVITE; anything else is not a dialog of ours.
            guard !ours.isEmpty else {
                transaction.respond(reply(request, 404, "Not A Dialog Here"))
                return
            }
            await proxy.forward(request, transaction: transaction, targets: [request.uri])
            return
        }
        if request.method == .options, [nil, "scscf"].contains(request.uri.sipURI?.user) {
            var ok = reply(request, 200)
            ok.headers.append(.allow, "REGISTER, SUBSCRIBE, OPTIONS, MESSAGE, NOTIFY, INFO, INVITE, ACK, CANCEL, BYE")
            transaction.respond(ok)
            return
        }
        // TS 24.229 5.4.3.2: the originating side is what came by our Service-Route (`orig`),
        // or anything from a node we do not trust (a phone registered here).
        let fromTrusted = isTrusted(transaction.peer)
        // A trusted node's request without `orig` is terminating (5.4.3.3): from the
        // I-CSCF's place or an AS, for one of our users, whoever it names as the caller.
        if !fromTrusted || ours.contains(where: { $0.uri.sipURI?.user == "orig" }) {
            if let refusal = await originating(&request, from: transaction.peer, trusted: fromTrusted) {
                // A challenge is given again for a retransmission: nothing to keep for it.
                if refusal.statusCode == 407 {
                    transaction.respondStatelessly(refusal)
                } else {
                    transaction.respond(refusal)
                }
                return
            }
        }
        // A Route left after ours (loose routing) names the next hop: follow it.
        if request.headers.contains(.route) {
            await proxy.forward(request, transaction: transaction, targets: [request.uri])
            return
        }
        if let host = request.uri.sipURI?.host, !equalsIgnoringASCIICase(host, configuration.homeDomain) {
            // Another network: to its peer (`--peer`), else unknown here.
            guard let peer = configuration.peer(for: host) else {
                transaction.respond(reply(request, 404, "Not In This Network"))
                return
            }
            await toPeer(request, peer, transaction, proxy)
            return
        }
        switch await contacts(of: request) {
        case .answer(let response):
            // A number nobody here has goes to the trunk, when there is one.
            if response.statusCode == 404, case .tel = request.uri, let peer = configuration.peer(for: nil) {
                await toPeer(request, peer, transaction, proxy)
                return
            }
            transaction.respond(response)
        case .targets(let targets):
            // TS 24.229 5.4.3.3: the callee learns which of its identities was called.
            if let called = request.uri.publicIdentity {
                request.headers.removeAll(.pCalledPartyID)
                request.headers.append(.pCalledPartyID, "<\(called)>")
            }
            // A binding whose edge is down (its node died) is left out while there are
            // others; when every edge is down the caller hears 480, not the proxy's 500.
            let chosen = Self.preferringReachable(targets) { proxy.endpoint.isRecentlyUnreachable($0) }
            await proxy.forward(request, transaction: transaction, to: chosen, unavailable: 480)
        }
    }

    /// A request for another network, by loose route through its peer (RFC 3261 §16.6).
    func toPeer(_ request: SIPRequest, _ peer: SIPURI, _ transaction: SIPServerTransaction, _ proxy: SIPProxyCore)
        async
    {
        var hop = peer
        if !hop.isLooseRouting { hop.parameters.set("lr", nil) }
        await proxy.forward(
            request, transaction: transaction, to: [ProxyTarget(uri: request.uri, route: [SIPAddress(hop)])])
    }

    /// TS 24.229 5.4.3.2: the served user on the originating side. From a trusted node (the
    /// eP-CSCF) the P-Asserted-Identity names it; from anyone else (a phone registered here)
    /// the request must prove it with Digest in Proxy-Authorization (RFC 3261 §22.3), and the
    /// S-CSCF then asserts the From identity. Either way the identity must be registered.
    /// nil when the request may go on (with P-Asserted-Identity set); else the answer.
    func originating(_ request: inout SIPRequest, from peer: SIPPeer, trusted: Bool) async -> SIPResponse? {
        let caller: String
        if trusted {
            guard let value = request.headers.values(.pAssertedIdentity).first,
                let asserted = (try? SIPAddress.parseList(value))?.first?.uri.publicIdentity
            else {
                return reply(request, 403, "No Asserted Identity")
            }
            caller = asserted
        } else {
            guard let from = try? request.headers.from.uri.publicIdentity else { return reply(request, 400) }
            let subscriber: SubscriberRecord
            do {
                guard let owner = try await hss.subscriber(impu: from) else {
                    return reply(request, 403, "Unknown Caller")
                }
                subscriber = owner
            } catch {
                return reply(request, 500, "Store Unavailable")
            }
            let credentials = (try? request.headers.authorizations(.proxyAuthorization))?.first {
                $0.isDigest && $0.username == subscriber.impi
            }
            if case .failure(let refusal) = await checkDigestAcrossNodes(
                credentials, subscriber: subscriber, method: request.method.rawValue)
            {
                return digestRefusal(request, refusal, subscriber: subscriber, proxy: true)
            }
            // Our realm's credentials end here (§22.3); nobody downstream needs them.
            request.headers.removeAll(.proxyAuthorization)
            caller = from
        }
        let now = Int64(clock().timeIntervalSince1970)
        guard let registered = try? await bindings.bindings(aor: caller, now: now), !registered.isEmpty else {
            return reply(request, 403, "Not Registered")
        }
        // TS 24.229 5.4.3.2: the asserted identity is the served user's, whatever came in.
        request.headers.removeAll(.pAssertedIdentity)
        request.headers.removeAll(.pPreferredIdentity)
        request.headers.append(.pAssertedIdentity, "<\(caller)>")
        return nil
    }
}
