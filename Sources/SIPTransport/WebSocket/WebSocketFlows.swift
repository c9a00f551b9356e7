import Metrics
import NIOCore
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

/// A flow after its upgrade, in one handler on the bytes TLS hands up: framing
/// (`ClientFrameHeader`; a frame RFC 6455 forbids: 1002), keep-alive (a ping every
/// interval from the loop's `KeepAliveSweep`, the flow closed after `idle` without any
/// frame, pong for ping, close for close: §5.5), message assembly (`MessageAssembly`; too
/// large: 1009), the message rate (`MessageRate`; over it: 1008), then each whole message
/// to the endpoint's transaction layer. The jobs are kept apart as value types rather than
/// as handlers: every handler in a pipeline costs an idle connection its context and
/// object, and every message a hop through `NIOAny` per handler. Frames go down as bytes
/// (`serverFrame`), each written from this handler's context.
final class SIPWebSocketHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let core: SIPEndpointCore
    let flows: WebSocketFlows
    let flow: SIPFlow
    let sweep: KeepAliveSweep
    var lastFrame = NIODeadline.now()
    var assembly: MessageAssembly
    var rate: MessageRate
    var connection: WebSocketConnection?
    var peer: SIPPeer?
    /// The start of a frame whose rest has not arrived, copied out of its read.
    var partialFrame: [UInt8]?
    var closing = false

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
                wrapOutboundOut(
                    serverFrame(WebSocketOpcode.ping, EmptyCollection(), allocator: context.channel.allocator)),
                promise: nil)
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
        guard !closing else { return }
        var received = unwrapInboundIn(data)
        if let partial = partialFrame {
            // Rare (a frame split across reads): the start goes in front of what came now.
            partialFrame = nil
            var joined = context.channel.allocator.buffer(capacity: partial.count + received.readableBytes)
            joined.writeBytes(partial)
            joined.writeBuffer(&received)
            received = joined
        }
        let now = NIODeadline.now()
        while received.readableBytes > 0, !closing {
            let consumed = received.withUnsafeReadableBytes { bytes -> Int? in
                switch ClientFrameHeader.read(bytes, maxPayload: assembly.maxSize) {
                case .needMore:
                    return nil
                case .refuse(let code):
                    refuse(context, code: code)
                    return 0
                case .frame(let header):
                    let end = header.headerLength + header.payloadLength
                    guard bytes.count >= end else { return nil }
                    take(
                        header, payload: UnsafeRawBufferPointer(rebasing: bytes[header.headerLength..<end]), context,
                        now)
                    return end
                }
            }
            guard let consumed else {
                partialFrame = Array(received.readableBytesView)
                return
            }
            received.moveReaderIndex(forwardBy: consumed)
        }
    }

    /// One whole frame, its payload still masked.
    private func take(
        _ header: ClientFrameHeader, payload: UnsafeRawBufferPointer, _ context: ChannelHandlerContext,
        _ now: NIODeadline
    ) {
        lastFrame = now
        let allocator = context.channel.allocator
        switch header.opcode {
        case WebSocketOpcode.ping:
            var data: [UInt8] = []
            appendUnmasked(payload, key: header.maskKey, to: &data)
            context.writeAndFlush(
                wrapOutboundOut(serverFrame(WebSocketOpcode.pong, data, allocator: allocator)), promise: nil)
            return
        case WebSocketOpcode.close:
            closing = true
            context.writeAndFlush(
                wrapOutboundOut(serverFrame(WebSocketOpcode.close, EmptyCollection(), allocator: allocator))
            )
            .whenComplete { [channel = context.channel] _ in channel.close(promise: nil) }
            return
        case WebSocketOpcode.pong:
            return
        default:
            break
        }
        switch assembly.take(header, payload: payload) {
        case .partial:
            return
        case .tooLarge:
            refuse(context, code: WebSocketCloseCode.messageTooLarge)
        case .message(let message):
            guard rate.admit(now: now) else {
                refuse(context, code: WebSocketCloseCode.policyViolation)
                return
            }
            guard let peer else { return }
            core.receive(message, from: peer)
        }
    }

    /// Closes the flow with `code` (RFC 6455 §7.4.1), then the connection; nothing read
    /// after it is taken.
    private func refuse(_ context: ChannelHandlerContext, code: UInt16) {
        closing = true
        partialFrame = nil
        context.writeAndFlush(wrapOutboundOut(closeFrame(code, allocator: context.channel.allocator)))
            .whenComplete { [channel = context.channel] _ in channel.close(promise: nil) }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        core.logger.debug("closing flow \(flow): \(error)")
        context.close(promise: nil)
    }
}
