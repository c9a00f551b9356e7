import Foundation
import SIPCore
import SIPProxy
import SIPTransport
import Storage

extension Registrar {
    /// A request for a registered public identity, from a trusted node (the I-CSCF or
    /// another S-CSCF's side of the network): sent to the identity's contacts, each through
    /// the Path stored with its binding (RFC 3327 §5.3), so it reaches the WIC through the
    /// eP-CSCF that holds its WebSocket — whichever S-CSCF stored the binding.
    func terminating(_ request: SIPRequest, from peer: SIPPeer) async -> SIPResponse? {
        guard let target = request.uri.publicIdentity else { return reply(request, 404) }
        guard isTrusted(peer) else { return reply(request, 403, "Not A Trusted Node") }
        var hopped = request
        if let refusal = hopped.takeHop() { return reply(request, refusal.status, refusal.reason) }
        let now = Int64(clock().timeIntervalSince1970)
        let contacts: [Binding]
        do {
            contacts = try await bindings.bindings(aor: target, now: now)
        } catch {
            return reply(request, 500, "Store Unavailable")
        }
        guard !contacts.isEmpty else {
            let known = (try? await hss.store.subscriber(impu: target)) != nil
            return reply(request, known ? 480 : 404, known ? "Not Registered" : nil)
        }
        guard let proxy = proxyCore else { return reply(request, 503) }
        // Every contact at once (RFC 3261 §16.6, TS 24.229 5.4.3.3): the first 2xx wins and
        // the other branches are cancelled; else the best answer (§16.7).
        var targets: [ProxyTarget] = []
        for binding in contacts {
            guard let contact = try? AnyURI.parse(binding.contact),
                let path = try? binding.path.flatMap({ try SIPAddress.parseList($0) })
            else { continue }
            targets.append(ProxyTarget(uri: contact, route: path))
        }
        guard !targets.isEmpty else { return reply(request, 480, "Not Reachable") }
        return await proxy.forward(hopped, to: targets, inbound: peer.transport)
    }
}
