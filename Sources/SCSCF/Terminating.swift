import Foundation
import SIPCore
import SIPProxy
import SIPTransport
import Storage

extension Registrar {
    /// Where a request for a public identity goes, or the answer when nowhere.
    enum TerminatingTargets {
        case answer(SIPResponse)
        case targets([ProxyTarget])
    }

    /// TS 24.229 5.4.3.3: every registered contact of the Request-URI's identity, each with
    /// the Path of its binding; 480 when the identity exists but has none, 404 when it does
    /// not exist (or is not ours).
    func contacts(of request: SIPRequest) async -> TerminatingTargets {
        guard let target = request.uri.publicIdentity else { return .answer(reply(request, 404)) }
        let now = Int64(clock().timeIntervalSince1970)
        let bindings: [Binding]
        do {
            bindings = try await self.bindings.bindings(aor: target, now: now)
        } catch {
            return .answer(reply(request, 500, "Store Unavailable"))
        }
        guard !bindings.isEmpty else {
            let known = (try? await hss.subscriber(impu: target)) != nil
            return .answer(reply(request, known ? 480 : 404, known ? "Not Registered" : nil))
        }
        // RFC 5627 §8.4: a GRUU (`gr`) names one instance of the identity: only its contact.
        let instance = request.uri.sipURI?.parameters["gr"]
        var targets: [ProxyTarget] = []
        for binding in bindings where instance == nil || binding.instance == instance {
            guard let contact = try? AnyURI.parse(binding.contact),
                let path = try? binding.path.flatMap({ try SIPAddress.parseList($0) })
            else { continue }
            targets.append(ProxyTarget(uri: contact, route: path))
        }
        guard !targets.isEmpty else { return .answer(reply(request, 480, "Not Reachable")) }
        return .targets(targets)
    }

    /// RFC 5626 §5.3 at the registrar: bindings whose edge could not be reached lately are
    /// left out while the identity has others. A dead node's bindings stay in the database
    /// until they expire or their WIC registers again elsewhere (docs/scale-out.md).
    static func preferringReachable(
        _ targets: [ProxyTarget], isUnreachable: (SIPDestination) -> Bool
    ) -> [ProxyTarget] {
        let reachable = targets.filter { target in
            guard let hop = (target.route.first?.uri ?? target.uri).sipURI, let destination = SIPDestination(uri: hop)
            else { return true }
            return !isUnreachable(destination)
        }
        return reachable.isEmpty ? targets : reachable
    }
}
