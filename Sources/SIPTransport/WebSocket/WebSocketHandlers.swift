import NIOCore
import NIOWebSocket

/// Closes a flow with a status code (RFC 6455 §7.4.1), then the connection.
func closeFlow(_ context: ChannelHandlerContext, code: WebSocketErrorCode) {
    var data = context.channel.allocator.buffer(capacity: 2)
    data.write(webSocketErrorCode: code)
    context.writeAndFlush(NIOAny(WebSocketFrame(fin: true, opcode: .connectionClose, data: data)))
        .whenComplete { [channel = context.channel] _ in channel.close(promise: nil) }
}

/// Keeps a flow alive and answers its control frames: a ping every `interval`, the flow
/// closed after `idle` without any frame (RFC 6455 §5.5); pong for ping, close for close.
/// Data frames pass on.
final class WebSocketKeepAlive: ChannelDuplexHandler {
    typealias InboundIn = WebSocketFrame
    typealias InboundOut = WebSocketFrame
    typealias OutboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame
    let interval: TimeAmount
    let idle: TimeAmount
    var lastFrame = NIODeadline.now()
    var task: RepeatedTask?

    init(interval: Duration, idle: Duration) {
        self.interval = TimeAmount(interval)
        self.idle = TimeAmount(idle)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        task = context.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
            let (handler, context) = loopBound.value
            if NIODeadline.now() - handler.lastFrame > handler.idle {
                context.close(promise: nil)
            } else {
                context.writeAndFlush(
                    handler.wrapOutboundOut(WebSocketFrame(fin: true, opcode: .ping, data: ByteBuffer())),
                    promise: nil)
            }
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        task?.cancel()
        task = nil
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
