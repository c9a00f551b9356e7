import NIOCore
import NIOPosix
import Synchronization
import Testing

@testable import SIPTransport

/// The wheel that holds the transaction layer's timeouts (SIPClock.swift): a timer fires
/// once, not before its time and at most a tick after; a cancelled one never fires.
@Suite struct TimerWheelTests {
    @Test func firesInTimeAndNotWhenCancelled() async throws {
        let wheel = TimerWheel(eventLoop: MultiThreadedEventLoopGroup.singleton.next())
        let fired = Mutex<[String]>([])
        // Ticks are moved by hand below; the loop's own ticking adds at most a few more.
        _ = wheel.schedule(in: .milliseconds(1_250)) { fired.withLock { $0.append("B") } }
        let cancelled = wheel.schedule(in: .seconds(1)) { fired.withLock { $0.append("cancelled") } }
        _ = wheel.schedule(in: .seconds(60)) { fired.withLock { $0.append("late") } }
        cancelled.cancel()
        let start = wheel.state.withLock { $0.now }
        while wheel.state.withLock({ $0.now }) < start + 12 { wheel.advance() }
        #expect(fired.withLock { $0 }.isEmpty)  // 1.25 s is 13 ticks: not yet
        while wheel.state.withLock({ $0.now }) < start + 13 { wheel.advance() }
        #expect(fired.withLock { $0 } == ["B"])
        // Past one turn of the wheel (51.2 s), the 60 s timer waits for its own turn.
        while wheel.state.withLock({ $0.now }) < start + 599 { wheel.advance() }
        #expect(fired.withLock { $0 } == ["B"])
        while wheel.state.withLock({ $0.now }) < start + 600 { wheel.advance() }
        #expect(fired.withLock { $0 } == ["B", "late"])
    }

    /// A retransmission timer (T1, 500 ms) armed part-way through a tick must not fire
    /// early: it waits one tick more than its length in ticks.
    @Test func aShortTimerIsNeverEarly() async throws {
        let wheel = TimerWheel(eventLoop: MultiThreadedEventLoopGroup.singleton.next())
        let fired = Mutex(0)
        _ = wheel.schedule(in: .milliseconds(500)) { fired.withLock { $0 += 1 } }
        let start = wheel.state.withLock { $0.now }
        while wheel.state.withLock({ $0.now }) < start + 5 { wheel.advance() }
        #expect(fired.withLock { $0 } == 0)  // five ticks may be less than 500 ms
        while wheel.state.withLock({ $0.now }) < start + 6 { wheel.advance() }
        #expect(fired.withLock { $0 } == 1)
    }
}
