import Metrics
import NIOCore
import NIOWebSocket
import SIPCore
import Synchronization

/// A WebSocket flow as a SIPConnection: each message one text frame (RFC 7118 §5).
final class WebSocketConnection: SIPConnection {
    let channel: any Channel
    let flow: SIPFlow

    init(channel: any Channel, flow: SIPFlow) {
        self.channel = channel
        self.flow = flow
    }

    var transport: SIPTransportProtocol { .wss }
    var isActive: Bool { channel.isActive }
    var channelIdentity: ObjectIdentifier? { ObjectIdentifier(channel) }
    func write(_ message: SIPMessage, to remote: SocketAddress?) { writeTextFrame(message.serialized(), on: channel) }
    func writeRaw(_ bytes: [UInt8]) { writeTextFrame(bytes, on: channel) }
    func close() { channel.close(promise: nil) }
    /// RFC 5626 §5.3: a request for a flow that is gone is 430 Flow Failed.
    var transportFailureStatus: Int { 430 }
}

/// The open flows of one endpoint and its connection caps.
final class WebSocketFlows: Sendable {
    struct State {
        var flows: [String: WebSocketConnection] = [:]
        var total = 0
        var byAddress: [String: Int] = [:]
        var highWater = 0
        var closedHandlers: [@Sendable (SIPFlow) -> Void] = []
    }

    let state = Mutex(State())

    /// Made with the endpoint, so /metrics shows both at zero before the first flow.
    init() { _ = (Self.open, Self.refused) }

    static let open = Gauge(label: "webims_epcscf_flows")
    static let refused = Counter(label: "webims_epcscf_connections_refused_total")

    /// Counts a new connection in, unless a cap says no.
    func admit(_ address: String, maxTotal: Int, maxPerAddress: Int) -> Bool {
        let admitted = state.withLock { state -> Bool in
            guard state.total < maxTotal, state.byAddress[address, default: 0] < maxPerAddress else { return false }
            state.total += 1
            state.highWater = max(state.highWater, state.total)
            state.byAddress[address, default: 0] += 1
            return true
        }
        if !admitted { Self.refused.increment() }
        return admitted
    }

    func connectionClosed(_ address: String) {
        state.withLock { state in
            state.total -= 1
            let left = state.byAddress[address, default: 1] - 1
            state.byAddress[address] = left > 0 ? left : nil
        }
    }

    func opened(_ connection: WebSocketConnection) {
        let count = state.withLock { state in
            state.flows[connection.flow.token] = connection
            return state.flows.count
        }
        Self.open.record(count)
    }

    func closed(_ connection: WebSocketConnection) {
        let (count, handlers) = state.withLock { state in
            state.flows.removeValue(forKey: connection.flow.token)
            return (state.flows.count, state.closedHandlers)
        }
        Self.open.record(count)
        for handler in handlers { handler(connection.flow) }
    }

    func connection(_ token: String) -> WebSocketConnection? { state.withLock { $0.flows[token] } }
}

/// A flow after its upgrade, in one handler: keep-alive (a ping every interval from the
/// loop's `KeepAliveSweep`, the flow closed after `idle` without any frame, pong for ping,
/// close for close: RFC 6455 §5.5), message assembly (`MessageAssembly`; too large: 1009),
/// the message rate (`MessageRate`; over it: 1008), then each whole message to the
/// endpoint's transaction layer. The jobs are kept apart as value types rather than as four
/// handlers: every handler in a pipeline costs an idle connection its context and object
/// (~600 bytes over three) and every message a hop through `NIOAny` per handler.
final class SIPWebSocketHandler: ChannelDuplexHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame
    let core: SIPEndpointCore
    let flows: WebSocketFlows
    let flow: SIPFlow
    let sweep: KeepAliveSweep
    var lastFrame = NIODeadline.now()
    var assembly: MessageAssembly
    var rate: MessageRate
    var connection: WebSocketConnection?
    var peer: SIPPeer?

    init(
        core: SIPEndpointCore, flows: WebSocketFlows, flow: SIPFlow, sweep: KeepAliveSweep, assembly: MessageAssembly,
        rate: MessageRate
    ) {
        self.core = core
        self.flows = flows
        self.flow = flow
        self.sweep = sweep
        self.assembly = assembly
        self.rate = rate
    }

    func handlerAdded(context: ChannelHandlerContext) {
        sweep.add(self, context)
        let connection = WebSocketConnection(channel: context.channel, flow: flow)
        self.connection = connection
        if let remote = context.channel.remoteAddress {
            peer = SIPPeer(
                transport: .wss, remoteAddress: remote, localAddress: context.channel.localAddress,
                connection: connection, flow: flow)
        }
        flows.opened(connection)
    }

    func handlerRemoved(context: ChannelHandlerContext) { sweep.remove(self) }

    /// The sweep's visit: close when silent too long, else ping.
    func visit(_ context: ChannelHandlerContext, now: NIODeadline) {
        if now - lastFrame > sweep.idle {
            context.close(promise: nil)
        } else {
            context.writeAndFlush(
                wrapOutboundOut(WebSocketFrame(fin: true, opcode: .ping, data: ByteBuffer())), promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let connection {
            flows.closed(connection)
            core.connectionClosed(connection)
        }
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        let now = NIODeadline.now()
        lastFrame = now
        switch frame.opcode {
        case .ping:
            context.writeAndFlush(
                wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
            return
        case .connectionClose:
            context.writeAndFlush(
                wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: ByteBuffer()))
            )
            .whenComplete { [channel = context.channel] _ in channel.close(promise: nil) }
            return
        case .pong:
            return
        default:
            break
        }
        switch assembly.take(frame) {
        case .partial:
            return
        case .tooLarge:
            closeFlow(context, code: .messageTooLarge)
        case .message(let message):
            guard rate.admit(now: now) else {
                closeFlow(context, code: .policyViolation)
                return
            }
            guard let peer else { return }
            core.receive(message, from: peer)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        core.logger.debug("closing flow \(flow): \(error)")
        context.close(promise: nil)
    }
}
