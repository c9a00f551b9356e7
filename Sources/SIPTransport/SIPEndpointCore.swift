import Logging
import NIOCore
import SIPCore
import Synchronization
import Utilities

/// Answers a request that starts a server transaction; nil sends no response (ACK).
public typealias SIPRequestHandler = @Sendable (SIPRequest, SIPPeer) async -> SIPResponse?

/// Takes a new request with its server transaction, through which it answers (provisional
/// responses first if it likes, then one final response) and learns of a CANCEL.
public typealias SIPTransactionHandler = @Sendable (SIPRequest, SIPServerTransaction) async -> Void

/// Message dispatch and the one transaction layer (RFC 3261 §17: INVITE and non-INVITE,
/// client and server, with RFC 6026's Accepted state) shared by every listener and
/// outbound connection of one endpoint. The state machines (Transactions/) do no I/O;
/// this class keeps them behind one mutex, arms their timers on `clock` and does what they
/// ask. The transaction user runs outside the mutex, in a task.
final class SIPEndpointCore: Sendable {
    let logger: Logger
    let parser: SIPParser
    let timers: SIPTimers
    let handler: Handler
    let clock: any SIPClock
    let trace: SIPTrace?
    let state = Mutex(State())

    struct State {
        var serverTransactions: [ServerKey: ServerTransactionEntry] = [:]
        var clientTransactions: [ClientKey: ClientTransactionEntry] = [:]
        var outbound: [SIPDestination: StreamConnection] = [:]
        var udp: DatagramConnection?
        var viaAddresses: [SIPTransportProtocol: (host: String, port: Int)] = [:]
        /// Completed non-INVITE server transactions over UDP by the tick they completed in.
        var timerJ = ExpiryRing<ServerKey>(slots: SIPEndpointCore.timerJSlots)
        var timerJTicking = false
    }

    /// Timer J runs in 32 ticks: completed transactions leave in bulk once a tick instead
    /// of one scheduled task each (at 10,000 requests a second, 320,000 pending timers).
    static let timerJSlots = 33

    /// The transaction user: one that answers each request once, or one that drives its
    /// server transaction itself.
    enum Handler: Sendable {
        case answering(SIPRequestHandler)
        case transactional(SIPTransactionHandler)
        /// REGISTER and SUBSCRIBE answered once (a registrar's or an edge's own business);
        /// every other request, and the ACKs for 2xx, to a transaction user that drives
        /// its transaction (the calls a proxy carries).
        case sessions(answering: SIPRequestHandler, proxying: SIPTransactionHandler)
    }

    init(
        logger: Logger, limits: SIPParserLimits, timers: SIPTimers, clock: any SIPClock, trace: SIPTrace? = nil,
        handler: Handler
    ) {
        self.trace = trace
        self.logger = logger
        self.parser = SIPParser(limits: limits)
        self.timers = timers
        self.clock = clock
        self.handler = handler
    }

    // MARK: inbound

    func receive(_ buffer: ByteBuffer, from peer: SIPPeer, framing: SIPFraming) {
        trace?.record(.incoming, buffer, peer: "\(peer.remoteAddress)", via: peer.transport.rawValue)
        switch parser.parse(buffer, framing: framing) {
        case .message(.request(let request)):
            receive(request, from: peer)
        case .message(.response(let response)):
            receive(response, from: peer)
        case .malformed(let error, let answer):
            reject(error, answer: answer, from: peer, closeIfUnanswerable: framing == .stream)
        }
    }

    /// A whole message already in an array (a WebSocket message): parsed with the array as
    /// its backing, no copy.
    func receive(_ bytes: [UInt8], from peer: SIPPeer) {
        trace?.record(.incoming, bytes: bytes, peer: "\(peer.remoteAddress)", via: Self.traceName(peer))
        switch parser.parseInbound(bytes, framing: .message) {
        case .message(.request(let request)):
            receive(request, from: peer)
        case .message(.response(let response)):
            receive(response, from: peer)
        case .malformed(let error, let answer):
            reject(error, answer: answer, from: peer, closeIfUnanswerable: false)
        }
    }

    static func traceName(_ peer: SIPPeer) -> String {
        peer.flow.map { "WSS flow \($0.token)" } ?? peer.transport.rawValue
    }

    func rejectUnframeable(_ head: ByteBuffer, error: SIPParseError, from peer: SIPPeer) {
        let answer = head.withUnsafeUInt8Bytes { SIPResponse.errorResponse(forUnparseable: $0, error: error) }
        reject(error, answer: answer, from: peer, closeIfUnanswerable: false)
    }

    private func reject(_ error: SIPParseError, answer: SIPResponse?, from peer: SIPPeer, closeIfUnanswerable: Bool) {
        // Log the reason, never the bytes: they may carry credentials.
        logger.debug("unparseable SIP from \(peer): \(error.reasonPhrase)")
        if var answer {
            // Answer where the request really came from, as for a parsed one.
            _ = try? stampReceived(&answer.headers, from: peer.remoteAddress)
            send(answer, over: peer.connection, defaultDestination: peer.remoteAddress)
        } else if closeIfUnanswerable {
            peer.connection.close()
        }
    }

    /// A message that is one request (already parsed), from any transport.
    func receive(_ request: SIPRequest, from peer: SIPPeer) {
        var request = request
        let via: SIPVia
        do {
            // In process there is no address to note: the Via is as the neighbour wrote it.
            via =
                peer.connection.isInProcess
                ? try request.headers.topVia : try stampReceived(&request.headers, from: peer.remoteAddress)
            try request.checkSyntax()
        } catch {
            if request.method != .ack {
                send(
                    SIPResponse(replyingTo: request, statusCode: 400, reasonPhrase: error.reasonPhrase, toTag: "e400"),
                    over: peer.connection, defaultDestination: peer.remoteAddress)
            }
            return
        }
        if peer.transport.isReliable, request.method != .invite, request.method != .ack, request.method != .cancel {
            // No table entry: see SIPServerTransaction.Kind.direct.
            deliver(request, SIPServerTransaction(core: self, kind: .direct, peer: peer))
            return
        }
        let key = ServerKey(
            branch: via.branch ?? "", host: via.host, port: via.port,
            method: request.method == .ack ? SIPMethod.invite.rawValue : request.method.rawValue)
        // Worked out now, from the Via just stamped, rather than from each response's copy.
        let destination = peer.transport == .udp ? responseDestination(via: via, remote: peer.remoteAddress) : nil
        switch request.method {
        case .ack: receiveACK(request, key: key, from: peer)
        case .cancel: receiveCANCEL(request, key: key, from: peer, destination: destination)
        default: receiveRequest(request, key: key, from: peer, destination: destination)
        }
    }

    /// Hands a request to the transaction user in a task of its own.
    func deliver(_ request: SIPRequest, _ transaction: SIPServerTransaction) {
        switch handler {
        case .answering(let answer):
            deliver(request, transaction, answer)
        case .transactional(let handle):
            Task(executorPreference: EventLoopExecutor.current) { await handle(request, transaction) }
        case .sessions(let answer, let proxy):
            if request.method == .register || request.method == .subscribe {
                deliver(request, transaction, answer)
            } else {
                Task(executorPreference: EventLoopExecutor.current) { await proxy(request, transaction) }
            }
        }
    }

    /// A request to a transaction user that answers it once.
    private func deliver(
        _ request: SIPRequest, _ transaction: SIPServerTransaction, _ answer: @escaping SIPRequestHandler
    ) {
        if request.method == .invite {
            // A CANCEL while it works on the INVITE: 487 for it (RFC 3261 §9.2).
            transaction.whenCancelled {
                transaction.respond(SIPResponse(replyingTo: request, statusCode: 487, toTag: randomToken(length: 8)))
            }
        }
        // One async call where a transactional wrapper took two (a frame each).
        Task(executorPreference: EventLoopExecutor.current) {
            if let response = await answer(request, transaction.peer) {
                transaction.respond(response)
            } else {
                transaction.abandon()
            }
        }
    }

    /// Sends a response back (RFC 3261 §18.2.2). Over UDP it goes to `destination`, or, when
    /// that is not known yet, to where the response's top Via says.
    @discardableResult
    func send(
        _ response: SIPResponse, over connection: any SIPConnection, destination known: SocketAddress? = nil,
        defaultDestination: SocketAddress
    ) -> SocketAddress? {
        let destination =
            connection.transport == .udp
            ? known ?? responseDestination(for: response, default: defaultDestination) : nil
        if connection.isActive {
            trace?.record(
                .outgoing, .response(response), peer: "\(destination ?? defaultDestination)",
                via: connection.transport.rawValue)
            connection.write(.response(response), to: destination)
        } else {
            logger.debug("response \(response.statusCode) dropped: connection to \(defaultDestination) is gone")
        }
        return destination
    }

    func receive(_ response: SIPResponse, from peer: SIPPeer) {
        guard let via = try? response.headers.topVia, let branch = via.branch, let cseq = try? response.headers.cseq
        else {
            logger.debug("dropping response without a usable Via/CSeq from \(peer)")
            return
        }
        // An ACK's method in CSeq never answers; INVITE and CANCEL are told apart by it.
        receiveResponse(response, key: ClientKey(branch: branch, method: cseq.method.rawValue))
    }

    // MARK: connections

    func connectionClosed(_ connection: any SIPConnection) {
        guard let channel = connection.channelIdentity else { return }
        let orphaned = state.withLock { state in
            for (destination, open) in state.outbound where ObjectIdentifier(open.channel) == channel {
                state.outbound.removeValue(forKey: destination)
            }
            return state.clientTransactions.filter { $0.value.channel == channel }.map(\.key)
        }
        // RFC 3261 §8.1.3.1: a transport failure is a 503 at once, not a 408 after Timer F
        // (e.g. a TLS handshake the peer refused).
        for key in orphaned { clientTransportFailed(key) }
    }
}

/// Keys that expire together after a fixed number of ticks: `insert` puts a key in the
/// current slot, `advance` moves to the next slot and hands back what was put there
/// `slots` ticks ago.
struct ExpiryRing<Key> {
    private var buckets: [[Key]]
    private var current = 0
    private(set) var count = 0

    init(slots: Int) { buckets = Array(repeating: [], count: max(2, slots)) }

    var isEmpty: Bool { count == 0 }

    mutating func insert(_ key: Key) {
        buckets[current].append(key)
        count += 1
    }

    mutating func advance() -> [Key] {
        current = (current + 1) % buckets.count
        let expired = buckets[current]
        buckets[current].removeAll(keepingCapacity: true)
        count -= expired.count
        return expired
    }
}
