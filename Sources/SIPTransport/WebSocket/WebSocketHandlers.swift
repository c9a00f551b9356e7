import NIOCore
import Synchronization

/// The flows of one event loop, visited every `interval` by one repeated task that runs
/// while the loop has any. Touched only on its event loop.
final class KeepAliveSweep: @unchecked Sendable {
    let eventLoop: any EventLoop
    let interval: TimeAmount
    let idle: TimeAmount
    private var members: [ObjectIdentifier: (handler: SIPWebSocketHandler, context: ChannelHandlerContext)] = [:]
    private var task: RepeatedTask?

    init(eventLoop: any EventLoop, interval: Duration, idle: Duration) {
        self.eventLoop = eventLoop
        self.interval = TimeAmount(interval)
        self.idle = TimeAmount(idle)
    }

    func add(_ handler: SIPWebSocketHandler, _ context: ChannelHandlerContext) {
        eventLoop.assertInEventLoop()
        members[ObjectIdentifier(handler)] = (handler, context)
        guard task == nil else { return }
        task = eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { [self] _ in
            let now = NIODeadline.now()
            for (handler, context) in members.values { handler.visit(context, now: now) }
        }
    }

    func remove(_ handler: SIPWebSocketHandler) {
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
/// WebSocket message, text or binary); a message over `maxSize` is refused.
struct MessageAssembly {
    enum Outcome {
        case partial
        case message([UInt8])
        case tooLarge
    }

    let maxSize: Int
    var assembling: [UInt8]?

    init(maxSize: Int) { self.maxSize = maxSize }

    /// A data frame's payload, still masked, into the message it belongs to.
    mutating func take(_ header: ClientFrameHeader, payload: UnsafeRawBufferPointer) -> Outcome {
        switch header.opcode {
        case WebSocketOpcode.text, WebSocketOpcode.binary:
            guard payload.count <= maxSize else {
                assembling = nil
                return .tooLarge
            }
            var message: [UInt8] = []
            message.reserveCapacity(payload.count)
            appendUnmasked(payload, key: header.maskKey, to: &message)
            assembling = message
        case WebSocketOpcode.continuation:
            guard var message = assembling else { return .partial }
            assembling = nil  // the only reference, so the append does not copy the array
            guard message.count + payload.count <= maxSize else { return .tooLarge }
            appendUnmasked(payload, key: header.maskKey, to: &message)
            assembling = message
        default:
            return .partial
        }
        guard header.fin, let message = assembling else { return .partial }
        assembling = nil
        return .message(message)
    }
}

/// A token bucket of messages per flow: `burst`, refilled at `perSecond`.
struct MessageRate {
    let burst: Double
    let perSecond: Double
    var allowance: Double
    var allowanceAt = NIODeadline.now()

    init(burst: Int, perSecond: Int) {
        self.burst = Double(burst)
        self.perSecond = Double(perSecond)
        allowance = Double(burst)
    }

    /// Whether one more message is within the rate (and counts it).
    mutating func admit(now: NIODeadline) -> Bool {
        allowance = min(burst, allowance + Double((now - allowanceAt).nanoseconds) / 1e9 * perSecond)
        allowanceAt = now
        guard allowance >= 1 else { return false }
        allowance -= 1
        return true
    }
}
