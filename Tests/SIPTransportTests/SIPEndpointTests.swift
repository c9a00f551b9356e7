import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import SIPCore
import Synchronization
import Testing
import Utilities
import WebIMSTesting

@testable import SIPTransport

/// Counts requests per Call-ID and answers OPTIONS with 200 (after `delay`).
final class OptionsResponder: Sendable {
    let calls = Mutex<[String: Int]>([:])
    let delay: Duration

    init(delay: Duration = .zero) { self.delay = delay }

    func count(_ callID: String) -> Int { calls.withLock { $0[callID] ?? 0 } }

    var handler: SIPRequestHandler {
        { request, _ in
            let callID = (try? request.headers.callID) ?? ""
            self.calls.withLock { $0[callID, default: 0] += 1 }
            if self.delay > .zero { try? await Task.sleep(for: self.delay) }
            switch request.method {
            case .options: return SIPResponse(replyingTo: request, statusCode: 200, toTag: "srv")
            default: return SIPResponse(replyingTo: request, statusCode: 501, toTag: "srv")
            }
        }
    }
}

func makeEndpoint(
    udp: Bool = true, tcp: Bool = true, tls: (certificate: String, key: String)? = nil,
    t1: TimeAmount = .milliseconds(10),
    responder: OptionsResponder = OptionsResponder()
) async throws -> SIPEndpoint {
    var config = SIPEndpointConfiguration()
    config.udpPort = udp ? 0 : nil
    config.tcpPort = tcp ? 0 : nil
    if let tls {
        config.tlsPort = 0
        config.tlsServerConfiguration = .makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMBytes(Array(tls.certificate.utf8)).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(tls.key.utf8), format: .pem)))
        var client = TLSConfiguration.makeClientConfiguration()
        client.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(tls.certificate.utf8)))
        config.tlsClientConfiguration = client
    }
    config.timers = SIPTimers(t1: t1, t2: .nanoseconds(t1.nanoseconds * 8), t4: .nanoseconds(t1.nanoseconds * 10))
    let endpoint = try SIPEndpoint(configuration: config, handler: responder.handler)
    try await endpoint.start()
    return endpoint
}

/// A UDP SIP port is ours alone: a socket that asks to share it (SO_REUSEADDR, as
/// rtpengine's media sockets do) cannot bind it and steal what the S-CSCF should read.
@Test func aUDPPortCannotBeSharedByAnotherSocket() async throws {
    let endpoint = try await makeEndpoint(tcp: false)
    let port = try #require(endpoint.address(.udp)?.port)
    await #expect(throws: (any Error).self) {
        let intruder = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: "127.0.0.1", port: port).get()
        try await intruder.close()
    }
    await endpoint.shutdown()
}

@Suite struct PortTests {
    /// Asked for any port, UDP and TCP share one (a SIP URI names one port). When the
    /// kernel's UDP pick is taken for TCP — here by a listener the test holds — the
    /// endpoint lets that pair go and tries another instead of listening on two ports.
    @Test func anyPortGivesOnePortForUDPAndTCPEvenWhenTheFirstPickIsTaken() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let blocker = try await ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
        let taken = try #require(blocker.localAddress?.port)
        var config = SIPEndpointConfiguration()
        config.udpPort = 0
        config.tcpPort = 0
        let endpoint = try SIPEndpoint(configuration: config, handler: OptionsResponder().handler)
        try await endpoint.start(firstUDPPorts: [taken])
        let udp = try #require(endpoint.address(.udp)?.port)
        let tcp = try #require(endpoint.address(.tcp)?.port)
        #expect(udp == tcp)
        #expect(udp != taken)
        // And it answers on that one port over both transports.
        let address = try SocketAddress(ipAddress: "127.0.0.1", port: udp)
        let tcpPeer = try await RawTCPPeer(to: address)
        try await tcpPeer.send(options(via: "SIP/2.0/TCP 127.0.0.1:9;rport"))
        let overTCP = await tcpPeer.messages(count: 1)
        #expect(statusCode(overTCP.first) == 200)
        let udpPeer = try await RawUDPPeer()
        try await udpPeer.send(options(), to: address)
        let overUDP = await udpPeer.next()
        #expect(statusCode(overUDP.flatMap { parse($0.data) }) == 200)
        await tcpPeer.close()
        await udpPeer.close()
        await endpoint.shutdown()
        try await blocker.close()
    }
}

@Suite struct UDPTests {
    @Test func optionsIsAnsweredAndRoutedBackByRport() async throws {
        let endpoint = try await makeEndpoint(tcp: false)
        defer { Task { await endpoint.shutdown() } }
        let peer = try await RawUDPPeer()
        defer { Task { await peer.close() } }
        // sent-by names port 9; rport asks for the source port instead (RFC 3581).
        try await peer.send(options(), to: try #require(endpoint.address(.udp)))
        let reply = try #require(await peer.next())
        guard case .response(let response)? = parse(reply.data) else {
            Issue.record("no response")
            return
        }
        #expect(response.statusCode == 200)
        let via = try response.headers.topVia
        #expect(via.rport == .value(UInt16(peer.port)))
        #expect(via.received == "127.0.0.1")
        #expect(try response.headers.to.tag == "srv")
    }

    /// A datagram is read whole however long it is, up to the parser's 64 KiB limit.
    @Test(arguments: [1_500, 2_100, 9_000, 60_000])
    func longDatagramsAreReadWhole(padding: Int) async throws {
        let endpoint = try await makeEndpoint(tcp: false)
        defer { Task { await endpoint.shutdown() } }
        let peer = try await RawUDPPeer()
        defer { Task { await peer.close() } }
        // Lines of at most 7,000 bytes: the header line limit is 8 KiB.
        let lines = stride(from: 0, to: padding, by: 7_000).map { start in
            "X-Padding: " + String(repeating: "p", count: min(7_000, padding - start)) + "\r\n"
        }
        let long = options().replacingOccurrences(
            of: "CSeq: 1 OPTIONS\r\n", with: "CSeq: 1 OPTIONS\r\n" + lines.joined())
        try await peer.send(long, to: try #require(endpoint.address(.udp)))
        let reply = String(buffer: try #require(await peer.next()).data)
        #expect(reply.hasPrefix("SIP/2.0 200 OK\r\n"))
    }

    /// A burst, sent without waiting: datagrams that one wake-up reads together (one
    /// `recvmmsg`, each into its own slice of the read buffer) are each read whole, and
    /// every answer leaves though a turn's flushes are held to its end.
    @Test func aBurstOfShortAndLongDatagramsIsAnsweredInFull() async throws {
        let endpoint = try await makeEndpoint(tcp: false)
        defer { Task { await endpoint.shutdown() } }
        let peer = try await RawUDPPeer()
        defer { Task { await peer.close() } }
        let address = try #require(endpoint.address(.udp))
        var sent: Set<String> = []
        // Small enough in all (about 60 KiB) that the kernel's receive buffer holds it.
        for i in 0..<24 {
            let callID = "burst-\(i)-" + randomToken()
            var request = options(callID: callID)
            if i % 4 == 0 {
                let padding = "X-Padding: " + String(repeating: "p", count: 4_000) + "\r\n"
                request = request.replacingOccurrences(
                    of: "CSeq: 1 OPTIONS\r\n", with: "CSeq: 1 OPTIONS\r\n" + String(repeating: padding, count: 2))
            }
            try await peer.send(request, to: address)
            sent.insert(callID)
        }
        var answered: Set<String> = []
        while answered.count < sent.count, let reply = await peer.next(timeout: .seconds(5)) {
            guard case .response(let response)? = parse(reply.data), response.statusCode == 200 else {
                Issue.record("not a 200: \(String(buffer: reply.data).prefix(60))")
                continue
            }
            answered.insert(try response.headers.callID)
        }
        #expect(answered == sent)
    }

    @Test func malformedRequestGets400WithAReason() async throws {
        let endpoint = try await makeEndpoint(tcp: false)
        defer { Task { await endpoint.shutdown() } }
        let peer = try await RawUDPPeer()
        defer { Task { await peer.close() } }
        let bad = options().replacingOccurrences(of: "CSeq: 1 OPTIONS", with: "CSeq: x OPTIONS")
        try await peer.send(bad, to: try #require(endpoint.address(.udp)))
        // The answer copies the broken CSeq as it was (RFC 3261 §8.2.6.2), so read it as text.
        let reply = String(buffer: try #require(await peer.next()).data)
        #expect(reply.hasPrefix("SIP/2.0 400 Malformed CSeq header\r\n"))
        #expect(reply.contains("\r\nCall-ID: "))
        #expect(reply.contains("\r\nCSeq: x OPTIONS\r\n"))
        #expect(reply.contains("rport=\(peer.port)"))
    }

    @Test func retransmissionsReachTheHandlerOnceAndGetTheSameAnswer() async throws {
        let responder = OptionsResponder(delay: .milliseconds(50))
        let endpoint = try await makeEndpoint(tcp: false, t1: .milliseconds(100), responder: responder)
        defer { Task { await endpoint.shutdown() } }
        let peer = try await RawUDPPeer()
        defer { Task { await peer.close() } }
        let callID = randomToken()
        let request = options(callID: callID)
        let address = try #require(endpoint.address(.udp))
        try await peer.send(request, to: address)
        try await peer.send(request, to: address)  // while the handler works: absorbed
        #expect(await peer.next() != nil)
        try await peer.send(request, to: address)  // after the answer: answered again
        let again = try #require(await peer.next())
        guard case .response(let response)? = parse(again.data) else {
            Issue.record("no response")
            return
        }
        #expect(response.statusCode == 200)
        #expect(responder.count(callID) == 1)
    }

    @Test func keepsServingAfterAGarbageFlood() async throws {
        let endpoint = try await makeEndpoint(tcp: false)
        defer { Task { await endpoint.shutdown() } }
        let peer = try await RawUDPPeer()
        defer { Task { await peer.close() } }
        let address = try #require(endpoint.address(.udp))
        var rng = SystemRandomNumberGenerator()
        let seed = Array(options().utf8)
        for i in 0..<2_000 {
            var bytes: [UInt8]
            switch i % 3 {
            case 0: bytes = (0..<Int(rng.next() % 1400)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            case 1:
                bytes = seed
                for _ in 0..<5 { bytes[Int(rng.next() % UInt64(bytes.count))] = UInt8.random(in: 0...255, using: &rng) }
            default: bytes = Array(repeating: 0x41, count: 70_000 % 65_000)
            }
            try await peer.send(bytes, to: address)
        }
        // Drain whatever 400s the mutated-but-answerable ones produced.
        while await peer.next(timeout: .milliseconds(300)) != nil {}
        try await peer.send(options(), to: address)
        var answered = false
        while let reply = await peer.next(timeout: .seconds(5)) {
            if case .response(let r)? = parse(reply.data), r.statusCode == 200 {
                answered = true
                break
            }
        }
        #expect(answered)
    }
}

@Suite struct StreamTests {
    @Test func tcpOptionsKeepAliveAnd400ThenStillServing() async throws {
        let endpoint = try await makeEndpoint(udp: false)
        defer { Task { await endpoint.shutdown() } }
        let peer = try await RawTCPPeer(to: try #require(endpoint.address(.tcp)))
        defer { Task { await peer.close() } }
        try await peer.send(options(via: "SIP/2.0/TCP 127.0.0.1:9"))
        var messages = await peer.messages(count: 1)
        guard case .response(let ok)? = messages.first else {
            Issue.record("no response")
            return
        }
        #expect(ok.statusCode == 200)
        // RFC 5626 §4.4.1: CRLFCRLF ping → CRLF pong.
        try await peer.send("\r\n\r\n")
        try await Task.sleep(for: .milliseconds(100))
        #expect(peer.rawBytes().suffix(2) == [0x0D, 0x0A])
        // A framed but malformed request is answered 400 and the connection stays.
        let bad = options(via: "SIP/2.0/TCP 127.0.0.1:9").replacingOccurrences(
            of: "Max-Forwards: 70", with: "Max Forwards 70")
        try await peer.send(bad)
        try await peer.send(options(via: "SIP/2.0/TCP 127.0.0.1:9"))
        messages = await peer.messages(count: 3)
        #expect(messages.count == 3)
        if messages.count == 3, case .response(let r400) = messages[1], case .response(let r200) = messages[2] {
            #expect(r400.statusCode == 400)
            #expect(r400.reasonPhrase == "Malformed Header Line")
            #expect(r200.statusCode == 200)
        }
        #expect(!peer.isClosed)
    }

    @Test func garbageOnTCPDisconnectsThePeerButNotTheListener() async throws {
        let endpoint = try await makeEndpoint(udp: false)
        defer { Task { await endpoint.shutdown() } }
        let address = try #require(endpoint.address(.tcp))
        // A TLS ClientHello sent to the TCP port has no line end to wait for: cut off at once.
        let clientHello = "\u{16}\u{3}\u{1}\u{2}\u{0}\u{1}\u{0}\u{1}\u{7C}\u{3}\u{3}"
        for garbage in [
            "\u{1}\u{2}\u{3} not sip at all\r\n\r\n", String(repeating: "A", count: 70_000), "\r\r\r\r", clientHello,
        ] {
            let peer = try await RawTCPPeer(to: address)
            try await peer.send(garbage)
            #expect(await peer.waitClosed(), "not disconnected after \(garbage.prefix(10))")
            await peer.close()
        }
        // No Content-Length on a stream: cannot be framed; answered 400 then closed.
        let noLength = try await RawTCPPeer(to: address)
        try await noLength.send(
            options(via: "SIP/2.0/TCP 127.0.0.1:9").replacingOccurrences(of: "Content-Length: 0\r\n", with: ""))
        let answer = await noLength.messages(count: 1)
        if case .response(let r)? = answer.first { #expect(r.statusCode == 400) } else { Issue.record("no 400") }
        #expect(await noLength.waitClosed())
        // The listener still serves new connections.
        let fresh = try await RawTCPPeer(to: address)
        defer { Task { await fresh.close() } }
        try await fresh.send(options(via: "SIP/2.0/TCP 127.0.0.1:9"))
        if case .response(let r)? = await fresh.messages(count: 1).first {
            #expect(r.statusCode == 200)
        } else {
            Issue.record("no 200")
        }
    }

    @Test func manyConcurrentConnectionsWithGarbageAndGoodTraffic() async throws {
        let endpoint = try await makeEndpoint(udp: false)
        defer { Task { await endpoint.shutdown() } }
        let address = try #require(endpoint.address(.tcp))
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<200 {
                group.addTask {
                    let peer = try await RawTCPPeer(to: address)
                    try await peer.send(
                        i % 2 == 0
                            ? "GARBAGE \(i)\r\n\r\n" : "REGISTER sip:x SIP/2.0\r\nContent-Length: 99999999\r\n\r\n")
                    _ = await peer.waitClosed(timeout: .seconds(5))
                    await peer.close()
                }
            }
            try await group.waitForAll()
        }
        let peer = try await RawTCPPeer(to: address)
        defer { Task { await peer.close() } }
        try await peer.send(options(via: "SIP/2.0/TCP 127.0.0.1:9"))
        if case .response(let r)? = await peer.messages(count: 1).first {
            #expect(r.statusCode == 200)
        } else {
            Issue.record("no 200")
        }
    }
}

@Suite struct ClientTransactionTests {
    func request(_ method: SIPMethod = .options) -> SIPRequest {
        var headers = SIPHeaderFields()
        headers.append(.from, "<sip:a@example.com>;tag=\(randomToken())")
        headers.append(.to, "<sip:b@example.com>")
        headers.append(.callID, randomToken())
        headers.append(.cseq, SIPCSeq(1, method).description)
        return SIPRequest(method: method, uri: .sip(SIPURI(host: "127.0.0.1")), headers: headers)
    }

    @Test(arguments: [SIPTransportProtocol.udp, .tcp, .tls])
    func requestReachesAnotherEndpointAndItsAnswerComesBack(transport: SIPTransportProtocol) async throws {
        let cert = try makeTestCertificate()
        let server = try await makeEndpoint(tls: cert)
        let client = try await makeEndpoint(tls: cert)
        defer {
            Task {
                await server.shutdown()
                await client.shutdown()
            }
        }
        let address = try #require(server.address(transport))
        let response = await client.send(
            request(), to: SIPDestination(transport: transport, host: "127.0.0.1", port: address.port ?? 0))
        #expect(response.statusCode == 200)
        #expect(try response.headers.to.tag == "srv")
        // The client's own Via is removed from what it hands back.
        #expect(!response.headers.contains(.via))
        // A second request reuses the connection and works as well.
        let second = await client.send(
            request(), to: SIPDestination(transport: transport, host: "127.0.0.1", port: address.port ?? 0))
        #expect(second.statusCode == 200)
    }

    @Test func unansweredUDPRequestIsRetransmittedThenTimesOutWith408() async throws {
        let client = try await makeEndpoint(tcp: false, t1: .milliseconds(10))
        defer { Task { await client.shutdown() } }
        let silent = try await RawUDPPeer()
        defer { Task { await silent.close() } }
        let start = ContinuousClock.now
        let response = await client.send(
            request(), to: SIPDestination(transport: .udp, host: "127.0.0.1", port: silent.port))
        let elapsed = ContinuousClock.now - start
        #expect(response.statusCode == 408)
        #expect(elapsed >= .milliseconds(600))  // Timer F = 64·T1 = 640 ms
        var copies = 0
        while await silent.next(timeout: .milliseconds(100)) != nil { copies += 1 }
        // Timer E: 10, 20, 40, 80, 80, … ms until 640 ms: about ten sends.
        #expect(copies >= 5)
    }

    @Test func unreachableTCPPeerGives503() async throws {
        let client = try await makeEndpoint(udp: false)
        defer { Task { await client.shutdown() } }
        // Bind and close a port so nothing listens on it.
        let probe = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(
            host: "127.0.0.1", port: 0
        ).get()
        let port = probe.localAddress?.port ?? 1
        try await probe.close().get()
        let destination = SIPDestination(transport: .tcp, host: "127.0.0.1", port: port)
        #expect(!client.isRecentlyUnreachable(destination))
        let response = await client.send(request(), to: destination)
        #expect(response.statusCode == 503)
        // Remembered, so a registrar can leave that edge's bindings out (issue 32).
        #expect(client.isRecentlyUnreachable(destination))
        #expect(!client.isRecentlyUnreachable(SIPDestination(transport: .tcp, host: "127.0.0.1", port: port + 1)))
        #expect(!client.isRecentlyUnreachable(SIPDestination(transport: .udp, host: "127.0.0.1", port: port)))
    }

    @Test func destinationFromURI() throws {
        #expect(
            SIPDestination(uri: try SIPURI.parse("sip:10.0.0.5:5070;transport=tcp"))
                == SIPDestination(transport: .tcp, host: "10.0.0.5", port: 5070))
        #expect(
            SIPDestination(uri: try SIPURI.parse("sips:scscf.example.com"))
                == SIPDestination(transport: .tls, host: "scscf.example.com", port: 5061))
        #expect(
            SIPDestination(uri: try SIPURI.parse("sip:[::1]"))
                == SIPDestination(transport: .udp, host: "::1", port: 5060))
        #expect(SIPDestination(uri: try SIPURI.parse("sip:h;transport=sctp")) == nil)
    }
}

@Suite struct BindingTests {
    @Test func anyPortForUDPAndTCPIsOnePort() async throws {
        let endpoint = try await makeEndpoint()
        defer { Task { await endpoint.shutdown() } }
        let udp = try #require(endpoint.address(.udp)?.port)
        #expect(udp > 0)
        #expect(endpoint.address(.tcp)?.port == udp)
    }
}
