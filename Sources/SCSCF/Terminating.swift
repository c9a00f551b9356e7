import Foundation
import SIPCore
import SIPTransport
import Storage

extension Registrar {
    /// A request for a registered public identity, from a trusted node (the I-CSCF or
    /// another S-CSCF's side of the network): sent to the identity's contacts, each through
    /// the Path stored with its binding (RFC 3327 §5.3), so it reaches the WIC through the
    /// eP-CSCF that holds its WebSocket — whichever S-CSCF stored the binding. Contacts are
    /// tried in turn until one answers 2xx (sequential forking, simplified TS 24.229 5.4.3.3).
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
        guard let endpoint = regEvent.endpoint.withLock({ $0 }) else { return reply(request, 503) }
        var last: SIPResponse?
        for binding in contacts {
            guard let contact = try? AnyURI.parse(binding.contact),
                let path = try? binding.path.flatMap({ try SIPAddress.parseList($0) })
            else { continue }
            var forwarded = hopped
            forwarded.uri = contact
            for hop in path.reversed() { forwarded.headers.prepend(.route, hop.description) }
            guard let next = path.first?.uri.sipURI ?? contact.sipURI, let destination = SIPDestination(uri: next)
            else { continue }
            let answer = await endpoint.send(forwarded, to: destination)
            if (200..<300).contains(answer.statusCode) { return answer }
            last = answer
        }
        return last ?? reply(request, 480, "Not Reachable")
    }
}
