import NIOCore
import NIOPosix
import SIPCore

/// A "connection" between two endpoints of this process (the co-located eP-CSCF and
/// S-CSCF): messages cross it as values, never serialized or parsed again, and each side's
/// transaction layer runs as over TCP — provisional responses, CANCEL and ACK included, so
/// a call through both functions is the same call as through two processes. Only this
/// process can make one, which is why a peer on it is trusted for being in process
/// (docs/security.md), never for an address.
struct InProcessLink: SIPConnection {
    /// The endpoint messages written here arrive at, and the one they come from (whose
    /// link the answers take back).
    let target: SIPEndpointCore
    let source: SIPEndpointCore
    /// Where a message is delivered when the writer runs on no event loop. A writer on one
    /// has it delivered on that same loop, later: in the order it wrote (a 180 before its
    /// 200, an INVITE before its CANCEL), never inside the writer's lock, and without
    /// waking another thread (an eventfd write and a futex per message when every message
    /// crossed to one fixed loop; strace, scripts/bench-calls' WSS path).
    let loop: any EventLoop

    var transport: SIPTransportProtocol { .tcp }
    var isActive: Bool { true }
    var isInProcess: Bool { true }

    func write(_ message: SIPMessage, to remote: SocketAddress?) {
        let back = InProcessLink(target: source, source: target, loop: loop)
        let peer = SIPPeer(
            transport: .tcp, remoteAddress: SIPPeer.inProcessAddress, localAddress: nil, connection: back)
        let target = self.target
        (MultiThreadedEventLoopGroup.currentEventLoop ?? loop).execute {
            switch message {
            case .request(let request): target.receive(request, from: peer)
            case .response(let response): target.receive(response, from: peer)
            }
        }
    }

    func writeRaw(_ bytes: [UInt8]) {}
    func close() {}
}

extension SIPEndpoint {
    /// Requests this endpoint sends to `host:port` (any transport the URI names) go to
    /// `neighbour`'s transaction layer by a call, and its answers and requests back to us
    /// the same way: the co-located eP-CSCF and S-CSCF. Call it on both endpoints, each
    /// naming the other's address.
    public func linkInProcess(toHost host: String, port: Int, _ neighbour: SIPEndpoint) {
        let link = InProcessLink(target: neighbour.core, source: core, loop: neighbour.group.next())
        inProcessLinks.withLock { $0[Self.neighbourKey(host, port)] = link }
    }

    func inProcessLink(_ destination: SIPDestination) -> InProcessLink? {
        guard destination.flow == nil else { return nil }
        return inProcessLinks.withLock { $0[Self.neighbourKey(destination.host, destination.port)] }
    }
}
