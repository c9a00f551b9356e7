import NIOCore
import NIOPosix
import Synchronization

/// Where the transaction layer arms its timers: the event loop in service, a
/// `ManualSIPClock` in tests (RFC 3261 §17 timers checked without waiting for them).
public protocol SIPClock: Sendable {
    func schedule(in delay: TimeAmount, _ task: @escaping @Sendable () -> Void) -> SIPScheduledTimer
}

/// A timer that can be stopped before it fires.
public struct SIPScheduledTimer: Sendable {
    let stop: @Sendable () -> Void
    public init(stop: @escaping @Sendable () -> Void) { self.stop = stop }
    public func cancel() { stop() }
}

/// The event loop's own scheduler: the loop of the thread that arms the timer when it runs
/// one (a message's transaction is handled on the loop that read it), else `eventLoop`.
/// Arming a timer on another thread's loop wakes that thread (an eventfd write and a task
/// switch): a call through the S-CSCF arms and stops about ten, and that wake-up was the
/// largest cost of a call (perf, scripts/bench-calls).
struct EventLoopClock: SIPClock {
    let eventLoop: any EventLoop

    func schedule(in delay: TimeAmount, _ task: @escaping @Sendable () -> Void) -> SIPScheduledTimer {
        let loop = MultiThreadedEventLoopGroup.currentEventLoop ?? eventLoop
        let scheduled = loop.scheduleTask(in: delay, task)
        return SIPScheduledTimer { scheduled.cancel() }
    }
}

/// A clock that moves only when told: `advance(by:)` fires, in time order, every timer due
/// by then (timers armed by those firings included).
public final class ManualSIPClock: SIPClock {
    struct Pending {
        let id: Int
        let due: TimeAmount
        let task: @Sendable () -> Void
    }

    private let state = Mutex((now: TimeAmount.zero, nextID: 0, pending: [Pending]()))

    public init() {}

    public var now: TimeAmount { state.withLock { $0.now } }

    /// Timers armed and not yet fired or cancelled.
    public var pendingCount: Int { state.withLock { $0.pending.count } }

    public func schedule(in delay: TimeAmount, _ task: @escaping @Sendable () -> Void) -> SIPScheduledTimer {
        let id = state.withLock { state in
            state.nextID += 1
            state.pending.append(Pending(id: state.nextID, due: state.now + delay, task: task))
            return state.nextID
        }
        return SIPScheduledTimer { [weak self] in
            self?.state.withLock { $0.pending.removeAll { $0.id == id } }
        }
    }

    /// Moves time on; each timer runs outside the clock's lock, so it may arm others.
    public func advance(by amount: TimeAmount) {
        let end = state.withLock { $0.now + amount }
        while true {
            let next: Pending? = state.withLock { state in
                guard
                    let index = state.pending.indices.filter({ state.pending[$0].due <= end })
                        .min(by: {
                            (state.pending[$0].due, state.pending[$0].id) < (
                                state.pending[$1].due, state.pending[$1].id
                            )
                        })
                else { return nil }
                let pending = state.pending.remove(at: index)
                state.now = max(state.now, pending.due)
                return pending
            }
            guard let next else { break }
            next.task()
        }
        state.withLock { $0.now = end }
    }
}
