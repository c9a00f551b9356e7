import Logging
import NIOCore
import SIPCore
import Synchronization
import Testing

@testable import SIPTransport

/// A connection that keeps what is written to it, over UDP (unreliable) or TCP (reliable).
final class RecordingConnection: SIPConnection {
    let transport: SIPTransportProtocol
    let written = Mutex<[SIPMessage]>([])
    init(_ transport: SIPTransportProtocol) { self.transport = transport }
    var isActive: Bool { true }
    func write(_ message: SIPMessage, to remote: SocketAddress?) { written.withLock { $0.append(message) } }
    func writeRaw(_ bytes: [UInt8]) {}
    func close() {}

    var responses: [Int] {
        written.withLock { $0.compactMap { if case .response(let r) = $0 { r.statusCode } else { nil } } }
    }
    var requests: [SIPMethod] {
        written.withLock { $0.compactMap { if case .request(let r) = $0 { r.method } else { nil } } }
    }
}

/// What a callback saw, in order.
final class Recorded<T: Sendable>: Sendable {
    private let items = Mutex<[T]>([])
    func append(_ item: T) { items.withLock { $0.append(item) } }
    var all: [T] { items.withLock { $0 } }
    var count: Int { items.withLock { $0.count } }
    func element(_ index: Int) -> T? { items.withLock { $0.count > index ? $0[index] : nil } }
}

/// One transaction layer on a fake clock, fed messages by hand.
final class TransactionRig: Sendable {
    let clock = ManualSIPClock()
    let connection: RecordingConnection
    let core: SIPEndpointCore
    let peer: SIPPeer
    let received = Recorded<(SIPRequest, SIPServerTransaction)>()
    let responses = Recorded<SIPResponse>()

    init(_ transport: SIPTransportProtocol) throws {
        connection = RecordingConnection(transport)
        let received = self.received
        core = SIPEndpointCore(
            logger: Logger(label: "test"), limits: .default, timers: SIPTimers(), clock: clock,
            handler: .transactional({ request, transaction in received.append((request, transaction)) }))
        peer = SIPPeer(
            transport: transport, remoteAddress: try SocketAddress(ipAddress: "127.0.0.1", port: 5070),
            localAddress: nil, connection: connection)
    }

    /// Feeds a request in as if it came from `peer`.
    func receive(_ text: String) throws {
        guard case .request(let request) = try SIPParser().parse(text) else { throw SIPParseError(.malformedStartLine) }
        core.receive(request, from: peer)
    }

    func receiveResponse(_ text: String) throws {
        guard case .response(let response) = try SIPParser().parse(text) else {
            throw SIPParseError(.malformedStartLine)
        }
        core.receive(response, from: peer)
    }

    /// The server transaction of the n-th request the TU got, once it has it.
    func transaction(_ index: Int = 0) async throws -> SIPServerTransaction {
        for _ in 0..<2000 {
            if let found = received.element(index)?.1 { return found }
            try await Task.sleep(for: .milliseconds(1))
        }
        throw CancellationError()
    }

    func request(_ index: Int = 0) -> SIPRequest? { received.element(index)?.0 }

    /// Starts a client transaction for `text` (which carries our Via) over the connection.
    func startClient(_ text: String) throws -> ClientKey {
        guard case .request(let request) = try SIPParser().parse(text) else { throw SIPParseError(.malformedStartLine) }
        let key = ClientKey(branch: try request.headers.topVia.branch ?? "", method: request.method.rawValue)
        let responses = self.responses
        core.startClient(request, key: key, over: connection, to: peer.remoteAddress) { response in
            responses.append(response)
        }
        return key
    }

    var delivered: [Int] { responses.all.map(\.statusCode) }
    var serverCount: Int { core.state.withLock { $0.serverTransactions.count } }
    var clientCount: Int { core.state.withLock { $0.clientTransactions.count } }
}

enum Messages {
    static func invite(branch: String = "z9hG4bKinv1", method: String = "INVITE") -> String {
        """
        \(method) sip:bob@example.com SIP/2.0\r
        Via: SIP/2.0/UDP 127.0.0.1:5070;branch=\(branch)\r
        Max-Forwards: 70\r
        From: <sip:alice@example.com>;tag=a1\r
        To: <sip:bob@example.com>\r
        Call-ID: call-1\r
        CSeq: 1 \(method)\r
        Content-Length: 0\r
        \r

        """
    }

    static func response(
        _ status: Int, method: String = "INVITE", branch: String = "z9hG4bKinv1", toTag: String? = "b1"
    )
        -> String
    {
        """
        SIP/2.0 \(status) Whatever\r
        Via: SIP/2.0/UDP 127.0.0.1:5070;branch=\(branch)\r
        From: <sip:alice@example.com>;tag=a1\r
        To: <sip:bob@example.com>\(toTag.map { ";tag=\($0)" } ?? "")\r
        Call-ID: call-1\r
        CSeq: 1 \(method)\r
        Content-Length: 0\r
        \r

        """
    }

    static func ack(branch: String = "z9hG4bKinv1") -> String {
        """
        ACK sip:bob@example.com SIP/2.0\r
        Via: SIP/2.0/UDP 127.0.0.1:5070;branch=\(branch)\r
        Max-Forwards: 70\r
        From: <sip:alice@example.com>;tag=a1\r
        To: <sip:bob@example.com>;tag=b1\r
        Call-ID: call-1\r
        CSeq: 1 ACK\r
        Content-Length: 0\r
        \r

        """
    }

    static func cancel(branch: String = "z9hG4bKinv1") -> String {
        invite(branch: branch, method: "CANCEL")
    }
}

func reply(_ request: SIPRequest, _ status: Int) -> SIPResponse {
    SIPResponse(replyingTo: request, statusCode: status, toTag: "b1")
}

@Suite struct InviteServerTransactionTests {
    @Test func sendsTryingAfter200msWhenTheTUIsSilent() async throws {
        let rig = try TransactionRig(.udp)
        try rig.receive(Messages.invite())
        _ = try await rig.transaction()
        rig.clock.advance(by: .milliseconds(199))
        #expect(rig.connection.responses.isEmpty)
        rig.clock.advance(by: .milliseconds(1))
        #expect(rig.connection.responses == [100])
    }

    @Test func aProvisionalFromTheTUInTimeMeansNoTrying() async throws {
        let rig = try TransactionRig(.udp)
        try rig.receive(Messages.invite())
        let transaction = try await rig.transaction()
        transaction.respond(reply(try #require(rig.request()), 180))
        rig.clock.advance(by: .seconds(1))
        #expect(rig.connection.responses == [180])
        // A retransmitted INVITE gets the last provisional again (§17.2.1).
        try rig.receive(Messages.invite())
        #expect(rig.connection.responses == [180, 180])
        #expect(rig.received.count == 1)
    }

    @Test func overUDPANon2xxIsResentOnTimerGUntilTheACKThenTimerIEnds() async throws {
        let rig = try TransactionRig(.udp)
        try rig.receive(Messages.invite())
        let transaction = try await rig.transaction()
        transaction.respond(reply(try #require(rig.request()), 486))
        #expect(rig.connection.responses == [486])
        rig.clock.advance(by: .milliseconds(500))  // G = T1
        #expect(rig.connection.responses == [486, 486])
        rig.clock.advance(by: .seconds(1))  // G = 2·T1
        #expect(rig.connection.responses == [486, 486, 486])
        try rig.receive(Messages.ack())  // absorbed: the TU never sees it
        #expect(rig.received.count == 1)
        rig.clock.advance(by: .seconds(4))
        #expect(rig.connection.responses.count == 3)  // Confirmed: no more G
        #expect(rig.serverCount == 1)
        rig.clock.advance(by: .seconds(5))  // I = T4
        #expect(rig.serverCount == 0)
    }

    @Test func timerGStopsGrowingAtT2AndTimerHGivesUpWithoutAnACK() async throws {
        let rig = try TransactionRig(.udp)
        try rig.receive(Messages.invite())
        try await rig.transaction().respond(reply(try #require(rig.request()), 603))
        // G: 0.5, 1, 2, 4, 4, 4 ... within H = 32 s: 0.5+1+2+4·7 = 31.5 → 10 resends.
        rig.clock.advance(by: .milliseconds(31_999))
        #expect(rig.connection.responses.count == 11)
        #expect(rig.serverCount == 1)
        rig.clock.advance(by: .milliseconds(1))
        #expect(rig.serverCount == 0)
    }

    @Test func overAReliableTransportNothingIsResentAndTheACKEndsIt() async throws {
        let rig = try TransactionRig(.tcp)
        try rig.receive(Messages.invite())
        try await rig.transaction().respond(reply(try #require(rig.request()), 486))
        rig.clock.advance(by: .seconds(10))
        #expect(rig.connection.responses == [486])
        try rig.receive(Messages.ack())
        #expect(rig.serverCount == 0)  // Timer I is zero
    }

    @Test func a2xxMovesToAcceptedWhereRetransmissionsAreAbsorbedUntilTimerL() async throws {
        let rig = try TransactionRig(.udp)
        try rig.receive(Messages.invite())
        let transaction = try await rig.transaction()
        transaction.respond(reply(try #require(rig.request()), 200))
        try rig.receive(Messages.invite())
        #expect(rig.connection.responses == [200])  // RFC 6026 §7.1: absorbed
        transaction.respond(reply(try #require(rig.request()), 200))  // the TU's own resend
        #expect(rig.connection.responses == [200, 200])
        // The ACK for a 2xx is end to end: it goes to the TU.
        try rig.receive(Messages.ack(branch: "z9hG4bKack2"))
        _ = try await rig.transaction(1)
        #expect(rig.request(1)?.method == .ack)
        rig.clock.advance(by: .seconds(32))
        #expect(rig.serverCount == 0)
    }

    @Test func cancelBeforeAnyAnswerIs200AndTheTUHearsOfIt() async throws {
        let rig = try TransactionRig(.udp)
        try rig.receive(Messages.invite())
        let transaction = try await rig.transaction()
        let heard = Mutex(false)
        transaction.whenCancelled { heard.withLock { $0 = true } }
        try rig.receive(Messages.cancel())
        #expect(rig.connection.responses == [200])
        #expect(heard.withLock { $0 })
        transaction.respond(reply(try #require(rig.request()), 487))
        #expect(rig.connection.responses == [200, 487])
        #expect(rig.received.count == 1)  // the CANCEL is not the TU's
    }

    @Test func cancelAfterAProvisionalAndBeforeTheTUListensStillReachesIt() async throws {
        let rig = try TransactionRig(.tcp)
        try rig.receive(Messages.invite())
        let transaction = try await rig.transaction()
        transaction.respond(reply(try #require(rig.request()), 180))
        try rig.receive(Messages.cancel())
        let heard = Mutex(false)
        transaction.whenCancelled { heard.withLock { $0 = true } }  // at once: already cancelled
        #expect(heard.withLock { $0 })
        #expect(rig.connection.responses == [180, 200])
    }

    @Test func aCancelThatMatchesNothingIs481() throws {
        let rig = try TransactionRig(.udp)
        try rig.receive(Messages.cancel(branch: "z9hG4bKnothing"))
        #expect(rig.connection.responses == [481])
    }

    @Test func anAnsweringHandlerStillWorkingOnACancelledInviteGets487SentForIt() async throws {
        let endpoint = try SIPEndpoint(configuration: SIPEndpointConfiguration()) { request, _ in
            try? await Task.sleep(for: .milliseconds(600))
            return reply(request, 200)
        }
        let connection = RecordingConnection(.tcp)
        let peer = SIPPeer(
            transport: .tcp, remoteAddress: try SocketAddress(ipAddress: "127.0.0.1", port: 5070), localAddress: nil,
            connection: connection)
        guard case .request(let invite) = try SIPParser().parse(Messages.invite()),
            case .request(let cancel) = try SIPParser().parse(Messages.cancel())
        else { return }
        endpoint.core.receive(invite, from: peer)
        try await Task.sleep(for: .milliseconds(20))
        endpoint.core.receive(cancel, from: peer)
        try await Task.sleep(for: .milliseconds(1000))
        // The CANCEL's 200, the INVITE's 487 and no late 200 (a 100 Trying first, should
        // the CANCEL come after 200 ms on a busy machine).
        #expect(connection.responses.filter { $0 != 100 } == [200, 487])
    }
}

@Suite struct NonInviteServerTransactionTests {
    @Test func overUDPTheFinalAnswerIsResentForRetransmissionsUntilTimerJ() async throws {
        let rig = try TransactionRig(.udp)
        try rig.receive(Messages.invite(branch: "z9hG4bKopt", method: "OPTIONS"))
        let transaction = try await rig.transaction()
        try rig.receive(Messages.invite(branch: "z9hG4bKopt", method: "OPTIONS"))
        #expect(rig.connection.responses.isEmpty)  // Trying absorbs
        transaction.respond(reply(try #require(rig.request()), 200))
        try rig.receive(Messages.invite(branch: "z9hG4bKopt", method: "OPTIONS"))
        #expect(rig.connection.responses == [200, 200])
        rig.clock.advance(by: .seconds(33))  // J = 64·T1, in ticks of 1 s
        #expect(rig.serverCount == 0)
        #expect(rig.received.count == 1)
    }

    @Test func overAReliableTransportTheTransactionEndsWithItsAnswer() async throws {
        let rig = try TransactionRig(.tcp)
        try rig.receive(Messages.invite(branch: "z9hG4bKopt", method: "OPTIONS"))
        try await rig.transaction().respond(reply(try #require(rig.request()), 200))
        #expect(rig.serverCount == 0)
    }
}

@Suite struct InviteClientTransactionTests {
    @Test func timerAResendsAtDoublingIntervalsAndTimerBGives408() throws {
        let rig = try TransactionRig(.udp)
        _ = try rig.startClient(Messages.invite())
        #expect(rig.connection.requests == [.invite])
        rig.clock.advance(by: .milliseconds(500))
        rig.clock.advance(by: .seconds(1))
        rig.clock.advance(by: .seconds(2))
        #expect(rig.connection.requests.count == 4)  // A: 0.5, 1, 2 s
        rig.clock.advance(by: .milliseconds(28_499))
        #expect(rig.delivered.isEmpty)
        rig.clock.advance(by: .milliseconds(1))  // B = 64·T1
        #expect(rig.delivered == [408])
        #expect(rig.clientCount == 0)
    }

    @Test func aProvisionalStopsTimersAAndB() throws {
        let rig = try TransactionRig(.udp)
        _ = try rig.startClient(Messages.invite())
        try rig.receiveResponse(Messages.response(180))
        rig.clock.advance(by: .seconds(60))
        #expect(rig.connection.requests == [.invite])
        #expect(rig.delivered == [180])  // Proceeding waits (a proxy's Timer C decides)
    }

    @Test func aNon2xxIsACKedHereAndItsRetransmissionsAgainUntilTimerD() throws {
        let rig = try TransactionRig(.udp)
        _ = try rig.startClient(Messages.invite())
        try rig.receiveResponse(Messages.response(486))
        #expect(rig.connection.requests == [.invite, .ack])
        let ack = rig.connection.written.withLock { $0.last }
        guard case .request(let request)? = ack else { Issue.record("no ACK"); return }
        #expect(try request.headers.topVia.branch == "z9hG4bKinv1")  // §17.1.1.3: the INVITE's branch
        #expect(try request.headers.to.tag == "b1")
        try rig.receiveResponse(Messages.response(486))
        #expect(rig.connection.requests == [.invite, .ack, .ack])
        #expect(rig.delivered == [486])  // once
        rig.clock.advance(by: .seconds(32))
        #expect(rig.clientCount == 0)
    }

    @Test func overAReliableTransportNoRetransmissionsAndTimerDIsZero() throws {
        let rig = try TransactionRig(.tcp)
        _ = try rig.startClient(Messages.invite())
        rig.clock.advance(by: .seconds(10))
        #expect(rig.connection.requests == [.invite])
        try rig.receiveResponse(Messages.response(486))
        #expect(rig.clientCount == 0)
    }

    @Test func a2xxIsAcceptedAndItsRetransmissionsReachTheTUUntilTimerM() throws {
        let rig = try TransactionRig(.udp)
        _ = try rig.startClient(Messages.invite())
        try rig.receiveResponse(Messages.response(200))
        try rig.receiveResponse(Messages.response(200))
        #expect(rig.delivered == [200, 200])  // RFC 6026 §8.4: the TU ACKs each
        #expect(rig.connection.requests == [.invite])  // no ACK from the transaction
        rig.clock.advance(by: .seconds(32))
        #expect(rig.clientCount == 0)
    }

    @Test func cancelBeforeAProvisionalWaitsForOne() throws {
        let rig = try TransactionRig(.tcp)
        let key = try rig.startClient(Messages.invite())
        SIPClientTransaction(core: rig.core, key: key).cancel()
        #expect(rig.connection.requests == [.invite])  // §9.1: not yet
        try rig.receiveResponse(Messages.response(180))
        #expect(rig.connection.requests == [.invite, .cancel])
        try rig.receiveResponse(Messages.response(200, method: "CANCEL"))
        try rig.receiveResponse(Messages.response(487))
        #expect(rig.delivered == [180, 487])
        #expect(rig.connection.requests == [.invite, .cancel, .ack])
        #expect(rig.clientCount == 0)
    }

    @Test func cancelAfterAProvisionalGoesAtOnceWithTheInvitesBranch() throws {
        let rig = try TransactionRig(.udp)
        let key = try rig.startClient(Messages.invite())
        try rig.receiveResponse(Messages.response(183))
        SIPClientTransaction(core: rig.core, key: key).cancel()
        SIPClientTransaction(core: rig.core, key: key).cancel()  // once is enough
        #expect(rig.connection.requests == [.invite, .cancel])
        let cancel = rig.connection.written.withLock { $0.last }
        guard case .request(let request)? = cancel else { Issue.record("no CANCEL"); return }
        #expect(try request.headers.topVia.branch == "z9hG4bKinv1")
        #expect(try request.headers.cseq == SIPCSeq(1, .cancel))
        // Its own non-INVITE transaction retransmits on Timer E over UDP.
        rig.clock.advance(by: .milliseconds(500))
        #expect(rig.connection.requests == [.invite, .cancel, .cancel])
    }
}

@Suite struct NonInviteClientTransactionTests {
    @Test func timerECapsAtT2AndTimerFGives408() throws {
        let rig = try TransactionRig(.udp)
        _ = try rig.startClient(Messages.invite(branch: "z9hG4bKmsg", method: "MESSAGE"))
        // E: 0.5, 1, 2, 4, 4, ... → sends at 0.5, 1.5, 3.5, 7.5, 11.5, ..., 31.5
        rig.clock.advance(by: .milliseconds(31_999))
        #expect(rig.connection.requests.count == 1 + 3 + 7)
        rig.clock.advance(by: .milliseconds(1))
        #expect(rig.delivered == [408])
        #expect(rig.clientCount == 0)
    }

    @Test func aProvisionalSlowsTimerEToT2AndTheFinalEndsItAfterTimerK() throws {
        let rig = try TransactionRig(.udp)
        _ = try rig.startClient(Messages.invite(branch: "z9hG4bKmsg", method: "MESSAGE"))
        try rig.receiveResponse(Messages.response(100, method: "MESSAGE", branch: "z9hG4bKmsg"))
        rig.clock.advance(by: .milliseconds(500))  // the E armed before the 100
        rig.clock.advance(by: .seconds(4))  // then T2
        #expect(rig.connection.requests.count == 3)
        try rig.receiveResponse(Messages.response(202, method: "MESSAGE", branch: "z9hG4bKmsg"))
        try rig.receiveResponse(Messages.response(202, method: "MESSAGE", branch: "z9hG4bKmsg"))
        #expect(rig.delivered == [100, 202])  // the retransmission absorbed
        rig.clock.advance(by: .seconds(5))  // K = T4
        #expect(rig.clientCount == 0)
    }

    @Test func overAReliableTransportTheFinalEndsItAtOnce() throws {
        let rig = try TransactionRig(.tcp)
        _ = try rig.startClient(Messages.invite(branch: "z9hG4bKmsg", method: "MESSAGE"))
        rig.clock.advance(by: .seconds(20))
        #expect(rig.connection.requests.count == 1)
        try rig.receiveResponse(Messages.response(200, method: "MESSAGE", branch: "z9hG4bKmsg"))
        #expect(rig.clientCount == 0)
        #expect(rig.delivered == [200])
    }

    @Test func aTransportFailureIs503AtOnce() throws {
        let rig = try TransactionRig(.tcp)
        let key = try rig.startClient(Messages.invite(branch: "z9hG4bKmsg", method: "MESSAGE"))
        rig.core.clientTransportFailed(key)
        #expect(rig.delivered == [503])
        #expect(rig.clientCount == 0)
    }
}
