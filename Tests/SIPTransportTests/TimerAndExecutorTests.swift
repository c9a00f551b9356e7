import NIOCore
import NIOPosix
import SIPCore
import Testing
import Utilities

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
        let firstSent = ContinuousClock.now
        for _ in 0..<5 {
            try await peer.send(options(callID: randomToken()), to: address)
            #expect(await peer.next() != nil)
        }
        #expect(endpoint.core.state.withLock { $0.serverTransactions.count } == 5)
        try await Task.sleep(for: .milliseconds(1_500))
        let stillThere = endpoint.core.state.withLock { $0.serverTransactions.count }
        // Not before J — judged only when this task was not held up past J itself (a
        // loaded machine can oversleep the 1.5 s).
        if ContinuousClock.now - firstSent < .milliseconds(3_000) { #expect(stillThere == 5) }
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

@Suite struct ResponseRoutingTests {
    /// RFC 3261 §18.2.1, RFC 3581 §4: the top entry gets `received` and the `rport` value;
    /// the entries below it are left exactly as written.
    @Test func stampingRewritesOnlyTheTopVia() throws {
        var headers = SIPHeaderFields()
        headers.append(
            .via, "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa;rport , SIP/2.0/TCP  proxy.example.com;branch=z9hG4bKb")
        let remote = try SocketAddress(ipAddress: "127.0.0.1", port: 4000)
        let top = try stampReceived(&headers, from: remote)
        #expect(top.received == "127.0.0.1")
        #expect(top.rport == .value(4000))
        #expect(
            headers[0].value
                == "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa;rport=4000;received=127.0.0.1 , SIP/2.0/TCP  proxy.example.com;branch=z9hG4bKb"
        )
        // The response goes back to where the request came from, not to the sent-by port.
        #expect(responseDestination(via: top, remote: remote) == remote)
    }

    @Test func aViaThatNamesTheSourceIsLeftAlone() throws {
        var headers = SIPHeaderFields()
        let value = "SIP/2.0/UDP 127.0.0.1:5070 ;branch=z9hG4bKa"
        headers.append(.via, value)
        let remote = try SocketAddress(ipAddress: "127.0.0.1", port: 4000)
        let top = try stampReceived(&headers, from: remote)
        #expect(headers[0].value == value)
        // Without rport the sent-by port is where the response goes (RFC 3261 §18.2.2).
        #expect(
            responseDestination(via: top, remote: remote) == (try SocketAddress(ipAddress: "127.0.0.1", port: 5070)))
    }

    @Test func ipv4TextMatchesInetNtop() throws {
        for text in ["0.0.0.0", "255.255.255.255", "10.20.3.4", "1.100.10.9", "192.0.2.199", "127.0.0.1"] {
            let address = try SocketAddress(ipAddress: text, port: 1)
            #expect(address.ipText == text)
            #expect(address.ipText == address.ipAddress)
        }
        let v6 = try SocketAddress(ipAddress: "2001:db8::1", port: 1)
        #expect(v6.ipText == "2001:db8::1")
    }
}
