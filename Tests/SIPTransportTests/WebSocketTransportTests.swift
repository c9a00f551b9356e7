import LoadGenerator
import NIOCore
import SIPCore
import Testing

@testable import SIPTransport

/// SIP over WebSocket as a transport (RFC 7118), plain WS on loopback: the handshake by hand
/// and frames read from the raw bytes, so nothing under test checks itself.
@Suite(.serialized) struct WebSocketTransportTests {
    static func endpoint(ping: Duration, idle: Duration) async throws -> SIPEndpoint {
        var configuration = SIPEndpointConfiguration()
        var webSocket = SIPWebSocketConfiguration()
        webSocket.port = 0
        webSocket.pingInterval = ping
        webSocket.idleTimeout = idle
        configuration.webSocket = webSocket
        let endpoint = try SIPEndpoint(configuration: configuration) { request, _ in
            SIPResponse(replyingTo: request, statusCode: 200, toTag: "t")
        }
        try await endpoint.start()
        return endpoint
    }

    static func open(_ endpoint: SIPEndpoint) async throws -> RawTCPPeer {
        let port = try #require(endpoint.address(.ws)?.port)
        let peer = try await RawTCPPeer(to: try SocketAddress(ipAddress: "127.0.0.1", port: port))
        try await peer.send(
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                + "Sec-WebSocket-Protocol: sip\r\n\r\n")
        return peer
    }

    /// A masked client frame (RFC 6455 §5.3) with a zero key, so the payload reads as sent.
    static func frame(opcode: UInt8, _ payload: [UInt8]) -> [UInt8] {
        ClientFrames.masked(payload, opcode: opcode, mask: [0, 0, 0, 0])
    }

    /// An OPTIONS over WS, its Call-ID and branch named by `branch`.
    static func options(branch: String) -> [UInt8] {
        Array(
            ("OPTIONS sip:x@example.com SIP/2.0\r\nVia: SIP/2.0/WS a.invalid;branch=z9hG4bK\(branch)\r\n"
                + "Max-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:x@example.com>\r\n"
                + "Call-ID: \(branch)\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").utf8)
    }

    /// The first server frame that `matches`, waited for up to two seconds.
    static func frame(from peer: RawTCPPeer, where matches: ((UInt8, [UInt8])) -> Bool) async -> (UInt8, [UInt8])? {
        for _ in 0..<200 {
            if let found = frames(peer).first(where: matches) { return found }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return nil
    }

    /// Server frames after the 101 response: (opcode, payload).
    static func frames(_ peer: RawTCPPeer) -> [(UInt8, [UInt8])] {
        var bytes = peer.rawBytes()
        guard let end = ClientFrames.headEnd(bytes) else { return [] }
        bytes.removeFirst(end + 4)
        var result: [(UInt8, [UInt8])] = []
        while let frame = ClientFrames.take(from: &bytes) { result.append((frame.opcode, frame.payload)) }
        return result
    }

    @Test func aSilentFlowIsPingedThenClosedAndOneThatAnswersStays() async throws {
        let idle = Duration.milliseconds(1_500)
        let endpoint = try await Self.endpoint(ping: .milliseconds(100), idle: idle)
        let silent = try await Self.open(endpoint)
        let lively = try await Self.open(endpoint)
        // The lively peer speaks every 0.1 s. A loaded run can stall this task for seconds
        // (seen: 3.7 s for twelve 0.1 s sleeps), and a peer silent that long is rightly
        // closed, so the longest gap between its frames is measured.
        let clock = ContinuousClock()
        var last = clock.now
        var longestGap = Duration.zero
        for _ in 0..<25 {
            try await Task.sleep(for: .milliseconds(100))
            try await lively.send(Self.frame(opcode: 0xA, []))  // pong
            longestGap = max(longestGap, clock.now - last)
            last = clock.now
        }
        #expect(Self.frames(silent).contains { $0.0 == 0x9 })  // pinged
        #expect(await silent.waitClosed(timeout: .seconds(3)))
        if longestGap < idle - .milliseconds(300) {
            #expect(!lively.isClosed)
            #expect(endpoint.openFlows == 1)
        }
        await lively.close()
        await endpoint.shutdown()
    }

    @Test func aSIPMessageGetsItsAnswerAsATextFrameAndAPingItsPong() async throws {
        let endpoint = try await Self.endpoint(ping: .seconds(30), idle: .seconds(90))
        let peer = try await Self.open(endpoint)
        let options = Self.options(branch: "ws1")
        try await peer.send([0x81, 0xFE, UInt8(options.count >> 8), UInt8(options.count & 0xFF), 0, 0, 0, 0] + options)
        try await peer.send(Self.frame(opcode: 0x9, Array("hi".utf8)))
        // Both answers, in whichever order they come: the pong is written at once, the SIP
        // answer from the transaction user's task.
        var text: [UInt8]?
        var pong = false
        for _ in 0..<200 where text == nil || !pong {
            let frames = Self.frames(peer)
            text = frames.first { $0.0 == 0x1 }?.1
            pong = frames.contains { $0.0 == 0xA && $0.1 == Array("hi".utf8) }
            try await Task.sleep(for: .milliseconds(10))
        }
        let answer = String(decoding: try #require(text), as: UTF8.self)
        #expect(answer.hasPrefix("SIP/2.0 200 OK\r\n"))
        #expect(answer.contains("received=127.0.0.1"))  // RFC 7118 §5.3: where it came from
        #expect(pong)
        await peer.close()
        await endpoint.shutdown()
    }

    /// A frame that arrives in pieces (TCP splits where it likes) is taken whole, and its
    /// random mask undone.
    @Test func aFrameSplitAcrossReadsIsTakenWhole() async throws {
        let endpoint = try await Self.endpoint(ping: .seconds(30), idle: .seconds(90))
        let peer = try await Self.open(endpoint)
        let options = Self.options(branch: "ws2")
        let frame = ClientFrames.masked(options, mask: ClientFrames.randomMask())
        for piece in [frame[0..<1], frame[1..<5], frame[5..<40], frame[40...]] {
            try await peer.send(Array(piece))
            try await Task.sleep(for: .milliseconds(30))
        }
        let text = try #require(await Self.frame(from: peer) { $0.0 == 0x1 })
        #expect(String(decoding: text.1, as: UTF8.self).hasPrefix("SIP/2.0 200 OK\r\n"))
        await peer.close()
        await endpoint.shutdown()
    }

    /// An unmasked frame (RFC 6455 §5.1) closes the flow with 1002; a frame announcing more
    /// than the message limit closes it with 1009 before its payload is sent; the endpoint
    /// serves the next flow.
    @Test func aForbiddenOrOversizedFrameClosesTheFlowWithItsCode() async throws {
        let endpoint = try await Self.endpoint(ping: .seconds(30), idle: .seconds(90))
        for (frame, code) in [
            ([0x81, 0x01, 0x41], 1002), ([0x82, 0xFF, 0, 0, 0, 0, 0x40, 0, 0, 0, 1, 2, 3, 4], 1009),
        ]
            as [([UInt8], UInt16)]
        {
            let peer = try await Self.open(endpoint)
            try await peer.send(frame)
            #expect(await peer.waitClosed(timeout: .seconds(3)))
            let close = Self.frames(peer).first { $0.0 == 0x8 }
            #expect(close?.1 == [UInt8(code >> 8), UInt8(code & 0xFF)], "close code for \(frame.prefix(2))")
        }
        // Garbage after the handshake: closed, never a crash or a hang.
        for seed in 0..<20 {
            let peer = try await Self.open(endpoint)
            // The server may close after the first bytes already: a failed send is expected.
            try? await peer.send((0..<64).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ seed &* 101) })
            try? await peer.send(Array(repeating: 0xFF, count: 16))
            #expect(await peer.waitClosed(timeout: .seconds(3)), "garbage \(seed)")
        }
        let next = try await Self.open(endpoint)
        try await next.send(Self.frame(opcode: 0x9, Array("ok".utf8)))
        #expect(await Self.frame(from: next) { $0.0 == 0xA && $0.1 == Array("ok".utf8) } != nil)
        await next.close()
        await endpoint.shutdown()
    }
}
