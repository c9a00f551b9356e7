import SIPCore
import SIPProxy
import SIPTransport
import Testing

@testable import SCSCF

/// Issue 32: a binding whose edge node has died is not tried while the identity has another.
@Suite struct UnreachableEdgeTests {
    func target(_ contact: String, via edge: String) throws -> ProxyTarget {
        ProxyTarget(
            uri: try AnyURI.parse(contact), route: [try SIPAddress.parse("<sip:fl-1@\(edge);lr;transport=tcp>")])
    }

    @Test func bindingsBehindADeadEdgeAreLeftOutWhileOthersRemain() throws {
        let dead = SIPDestination(transport: .tcp, host: "127.0.0.1", port: 5001)
        let targets = [
            try target("sip:a@x.invalid;transport=ws", via: "127.0.0.1:5001"),
            try target("sip:b@y.invalid;transport=ws", via: "127.0.0.1:5002"),
        ]
        let chosen = Registrar.preferringReachable(targets) { $0 == dead }
        #expect(chosen.map(\.uri.description) == ["sip:b@y.invalid;transport=ws"])
        // Every edge down: all are tried (one may be back), and the answer says 480.
        #expect(Registrar.preferringReachable(targets) { _ in true }.count == 2)
        #expect(Registrar.preferringReachable(targets) { _ in false }.count == 2)
    }
}
