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

/// The transaction layer's clock in service: every timer of two ticks or more (all of
/// RFC 3261's at their default T1, Trying's 200 ms included) goes to one `TimerWheel`.
/// Arming one is an append under a lock and stopping it a flag, where the event loop's
/// scheduler made a task, a promise and a future for each and searched its heap to cancel
/// one — and every INVITE arms and at once stops the Trying timer, every UDP request Timer
/// A or E. Arming from another thread wakes nobody (the wheel's loop ticks on its own),
/// which the scheduler's cross-loop arming did (an eventfd write and a task switch).
/// Shorter timers (a T1 of a few milliseconds, as tests and lab networks set) go to the
/// scheduler of the arming thread's loop, which keeps them to the millisecond.
struct EventLoopClock: SIPClock {
    let eventLoop: any EventLoop
    let wheel: TimerWheel

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
        wheel = TimerWheel(eventLoop: eventLoop)
    }

    func schedule(in delay: TimeAmount, _ task: @escaping @Sendable () -> Void) -> SIPScheduledTimer {
        if delay >= TimerWheel.tick * 2 { return wheel.schedule(in: delay, task) }
        let loop = MultiThreadedEventLoopGroup.currentEventLoop ?? eventLoop
        let scheduled = loop.scheduleTask(in: delay, task)
        return SIPScheduledTimer { scheduled.cancel() }
    }
}

/// A hashed timing wheel (Varghese and Lauck): arming is an append, cancelling a flag, and
/// one task on the loop moves the hand every tick. A timeout of a second or more (B, C, D,
/// F, H, I, K, L, M) fires within a tick of its time; a shorter one (Trying, and the
/// retransmissions A, E, G) never before its time and at most a tick after, so a
/// retransmission is never early (RFC 3261 §17: T1 is the least interval).
final class TimerWheel: Sendable {
    static let tick = TimeAmount.milliseconds(100)
    /// Timers shorter than this (retransmissions, Trying) are never early; longer ones
    /// (timeouts) may be by up to a tick.
    static let neverEarlyBelow = TimeAmount.seconds(1)
    static let slots = 512

    final class Timer: Sendable {
        let task: @Sendable () -> Void
        let cancelled = Atomic(false)
        init(_ task: @escaping @Sendable () -> Void) { self.task = task }
    }

    struct State {
        var now: Int64 = 0
        var slots = [[(due: Int64, timer: Timer)]](repeating: [], count: TimerWheel.slots)
        var turning = false
    }

    let eventLoop: any EventLoop
    let state = Mutex(State())

    init(eventLoop: any EventLoop) { self.eventLoop = eventLoop }

    func schedule(in delay: TimeAmount, _ task: @escaping @Sendable () -> Void) -> SIPScheduledTimer {
        let whole = max(1, (delay.nanoseconds + Self.tick.nanoseconds - 1) / Self.tick.nanoseconds)
        // Armed part-way through a tick: `whole` ticks on may be up to a tick early.
        let ticks = delay < Self.neverEarlyBelow ? whole + 1 : whole
        let timer = Timer(task)
        let start = state.withLock { state -> Bool in
            let due = state.now + ticks
            state.slots[Int(due % Int64(Self.slots))].append((due, timer))
            defer { state.turning = true }
            return !state.turning
        }
        if start {
            eventLoop.scheduleRepeatedTask(initialDelay: Self.tick, delay: Self.tick) { [weak self] task in
                guard let self else { return task.cancel() }
                self.advance()
            }
        }
        return SIPScheduledTimer { timer.cancelled.store(true, ordering: .relaxed) }
    }

    /// One tick on: runs what is due, outside the lock (a timer may arm others).
    func advance() {
        let due = state.withLock { state -> [Timer] in
            state.now += 1
            let index = Int(state.now % Int64(Self.slots))
            guard !state.slots[index].isEmpty else { return [] }
            var fired: [Timer] = []
            let now = state.now
            // Cancelled timers leave when the hand passes them, due or not: memory holds at
            // most one turn of them, though Timer C runs for three minutes.
            state.slots[index].removeAll { entry in
                if entry.timer.cancelled.load(ordering: .relaxed) { return true }
                guard entry.due <= now else { return false }
                fired.append(entry.timer)
                return true
            }
            return fired
        }
        for timer in due where !timer.cancelled.load(ordering: .relaxed) { timer.task() }
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
