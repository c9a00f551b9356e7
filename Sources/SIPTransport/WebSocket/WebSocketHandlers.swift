import NIOCore
import NIOWebSocket
import Synchronization

/// Closes a flow with a status code (RFC 6455 §7.4.1), then the connection.
func closeFlow(_ context: ChannelHandlerContext, code: WebSocketErrorCode) {
    var data = context.channel.allocator.buffer(capacity: 2)
    data.write(webSocketErrorCode: code)
    context.writeAndFlush(NIOAny(WebSocketFrame(fin: true, opcode: .connectionClose, data: data)))
        .whenComplete { [channel = context.channel] _ in channel.close(promise: nil) }
}

/// Keeps a flow alive and answers its control frames: a ping every `interval`, the flow
/// closed after `idle` without any frame (RFC 6455 §5.5); pong for ping, close for close.
/// Data frames pass on. The pings come from one sweep per event loop (`KeepAliveSweep`), not
/// a timer per connection: ~250 bytes less for each idle WIC.
final class WebSocketKeepAlive: ChannelDuplexHandler {
    typealias InboundIn = WebSocketFrame
    typealias InboundOut = WebSocketFrame
    typealias OutboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame
    let sweep: KeepAliveSweep
    var lastFrame = NIODeadline.now()

    init(sweep: KeepAliveSweep) { self.sweep = sweep }

    func handlerAdded(context: ChannelHandlerContext) { sweep.add(self, context) }

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

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        lastFrame = .now()
        switch frame.opcode {
        case .ping:
            context.writeAndFlush(
                wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
        case .connectionClose:
            context.writeAndFlush(
                wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: ByteBuffer()))
            )
            .whenComplete { [channel = context.channel] _ in channel.close(promise: nil) }
        case .pong:
            break
        default:
            context.fireChannelRead(data)
        }
    }
}

/// The flows of one event loop, visited every `interval` by one repeated task that runs
/// while the loop has any. Touched only on its event loop.
final class KeepAliveSweep: @unchecked Sendable {
    let eventLoop: any EventLoop
    let interval: TimeAmount
    let idle: TimeAmount
    private var members: [ObjectIdentifier: (handler: WebSocketKeepAlive, context: ChannelHandlerContext)] = [:]
    private var task: RepeatedTask?

    init(eventLoop: any EventLoop, interval: Duration, idle: Duration) {
        self.eventLoop = eventLoop
        self.interval = TimeAmount(interval)
        self.idle = TimeAmount(idle)
    }

    func add(_ handler: WebSocketKeepAlive, _ context: ChannelHandlerContext) {
        eventLoop.assertInEventLoop()
        members[ObjectIdentifier(handler)] = (handler, context)
        guard task == nil else { return }
        task = eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { [self] _ in
            let now = NIODeadline.now()
            for (handler, context) in members.values { handler.visit(context, now: now) }
        }
    }

    func remove(_ handler: WebSocketKeepAlive) {
        eventLoop.assertInEventLoop()
        members.removeValue(forKey: ObjectIdentifier(handler))
        if members.isEmpty {
            task?.cancel()
            task = nil
        }
    }

    /// One sweep per event loop and setting, made on first use.
    static func of(_ eventLoop: any EventLoop, interval: Duration, idle: Duration) -> KeepAliveSweep {
        let key = Key(loop: ObjectIdentifier(eventLoop), interval: interval, idle: idle)
        return sweeps.withLock { table in
            if let known = table[key] { return known }
            let made = KeepAliveSweep(eventLoop: eventLoop, interval: interval, idle: idle)
            table[key] = made
            return made
        }
    }

    private struct Key: Hashable {
        let loop: ObjectIdentifier
        let interval: Duration
        let idle: Duration
    }

    private static let sweeps = Mutex<[Key: KeepAliveSweep]>([:])
}

/// Joins a message's frames into its bytes, unmasked (RFC 7118 §5: one SIP message per
/// WebSocket message, text or binary). A message over `maxSize` closes the flow (1009).
final class WebSocketMessageAssembler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias InboundOut = [UInt8]
    let maxSize: Int
    var assembling: [UInt8]?

    init(maxSize: Int) { self.maxSize = maxSize }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text, .binary:
            var message: [UInt8] = []
            message.reserveCapacity(frame.length)
            frame.appendUnmaskedPayload(to: &message)
            assembling = message
        case .continuation:
            guard var message = assembling else { return }
            assembling = nil  // the only reference, so the append does not copy the array
            frame.appendUnmaskedPayload(to: &message)
            assembling = message
        default:
            return
        }
        guard let message = assembling else { return }
        if message.count > maxSize {
            assembling = nil
            closeFlow(context, code: .messageTooLarge)
            return
        }
        guard frame.fin else { return }
        assembling = nil
        context.fireChannelRead(wrapInboundOut(message))
    }
}

/// A token bucket of messages per flow: `burst`, refilled at `perSecond`; a flow over its
/// rate is closed (1008 policy violation).
final class FlowRateLimit: ChannelInboundHandler {
    typealias InboundIn = [UInt8]
    typealias InboundOut = [UInt8]
    let burst: Double
    let perSecond: Double
    var allowance: Double
    var allowanceAt = NIODeadline.now()

    init(burst: Int, perSecond: Int) {
        self.burst = Double(burst)
        self.perSecond = Double(perSecond)
        allowance = Double(burst)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let now = NIODeadline.now()
        allowance = min(burst, allowance + Double((now - allowanceAt).nanoseconds) / 1e9 * perSecond)
        allowanceAt = now
        guard allowance >= 1 else {
            closeFlow(context, code: .policyViolation)
            return
        }
        allowance -= 1
        context.fireChannelRead(data)
    }
}
