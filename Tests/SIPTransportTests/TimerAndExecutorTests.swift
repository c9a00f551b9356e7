import NIOCore
import NIOPosix
import SIPCore
import Testing

@testable import SIPTransport

@Suite struct ExpiryRingTests {
    @Test func keysComeBackAfterAFullTurnInInsertionOrder() {
        var ring = ExpiryRing<Int>(slots: 3)
        ring.insert(1)
        ring.insert(2)
        #expect(ring.advance().isEmpty)
        ring.insert(3)
        #expect(ring.advance().isEmpty)
        #expect(ring.count == 3)
        #expect(ring.advance() == [1, 2])  // three ticks after they went in
        #expect(ring.advance() == [3])
        #expect(ring.isEmpty)
        #expect(ring.advance().isEmpty)
    }
}

@Suite struct EventLoopExecutorTests {
    @Test func aTaskPreferringALoopRunsOnItsThread() async {
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let executor = EventLoopExecutor.of(loop)
        #expect(EventLoopExecutor.of(loop) === executor)  // one per loop
        let onLoop = await Task(executorPreference: executor) { () async -> [Bool] in
            let before = loop.inEventLoop
            try? await Task.sleep(for: .milliseconds(5))  // resumed on the loop too
            return [before, loop.inEventLoop]
        }.value
        #expect(onLoop == [true, true])
        #expect(EventLoopExecutor.current == nil)  // a test thread runs no loop
        let current = try? await loop.submit { EventLoopExecutor.current === executor }.get()
        #expect(current == true)
    }
}

@Suite struct TimerJTests {
    /// A completed UDP transaction stays (to answer retransmissions) for Timer J, 64·T1,
    /// and then goes; here T1 is 50 ms, so J is 3.2 s, swept in 100 ms ticks.
    @Test func completedUDPTransactionsLeaveAfterTimerJ() async throws {
        let responder = OptionsResponder()
        let endpoint = try await makeEndpoint(tcp: false, t1: .milliseconds(50), responder: responder)
        let peer = try await RawUDPPeer()
        let address = try #require(endpoint.address(.udp))
        for _ in 0..<5 {
            try await peer.send(options(callID: randomToken()), to: address)
            #expect(await peer.next() != nil)
        }
        #expect(endpoint.core.state.withLock { $0.serverTransactions.count } == 5)
        try await Task.sleep(for: .milliseconds(1_500))
        #expect(endpoint.core.state.withLock { $0.serverTransactions.count } == 5)  // not before J
        var left = 5
        for _ in 0..<60 where left > 0 {
            try await Task.sleep(for: .milliseconds(100))
            left = endpoint.core.state.withLock { $0.serverTransactions.count }
        }
        #expect(left == 0)
        #expect(endpoint.core.state.withLock { $0.timerJTicking } == false)  // stops when idle
        await peer.close()
        await endpoint.shutdown()
    }
}
