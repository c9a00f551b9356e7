import Logging
import NIOCore
import SIPCore
import Synchronization

/// Answers a request that starts a server transaction; nil sends no response (ACK).
public typealias SIPRequestHandler = @Sendable (SIPRequest, SIPPeer) async -> SIPResponse?

/// The transaction layer (RFC 3261 §17, non-INVITE) and message dispatch shared by every
/// listener and outbound connection of one endpoint. State sits behind one mutex; the
/// request handler runs outside it, in a task.
final class SIPEndpointCore: Sendable {
    let logger: Logger
    let parser: SIPParser
    let timers: SIPTimers
    let handler: SIPRequestHandler
    let eventLoop: any EventLoop
    let trace: SIPTrace?
    let state = Mutex(State())

    struct State {
        var serverTransactions: [ServerKey: ServerTransaction] = [:]
        var clientTransactions: [ClientKey: ClientTransaction] = [:]
        var outbound: [SIPDestination: StreamConnection] = [:]
        var udp: DatagramConnection?
        var viaAddresses: [SIPTransportProtocol: (host: String, port: Int)] = [:]
        /// Completed UDP server transactions by the tick they were completed in (Timer J).
        var timerJ = ExpiryRing<ServerKey>(slots: SIPEndpointCore.timerJSlots)
        var timerJTicking = false
    }

    /// Timer J runs in 32 ticks: completed transactions leave in bulk once a tick instead
    /// of one scheduled task each (at 10,000 requests a second, 320,000 pending timers).
    static let timerJSlots = 33

    /// RFC 3261 §17.2.3: branch, sent-by and method (sent-by as host and port, with no
    /// `host:port` text made per request).
    struct ServerKey: Hashable {
        let branch: String
        let host: String
        let port: UInt16?
        let method: String
        /// Hashed once: a request looks its key up, stores its answer under it and, Timer J
        /// later, removes it; three passes over three strings otherwise.
        let hash: Int

        init(branch: String, host: String, port: UInt16?, method: String) {
            self.branch = branch
            self.host = host
            self.port = port
            self.method = method
            var hasher = Hasher()
            hasher.combine(branch)
            hasher.combine(host)
            hasher.combine(port)
            hasher.combine(method)
            hash = hasher.finalize()
        }

        static func == (a: ServerKey, b: ServerKey) -> Bool {
            a.hash == b.hash && a.branch == b.branch && a.port == b.port && a.host == b.host && a.method == b.method
        }

        func hash(into hasher: inout Hasher) { hasher.combine(hash) }
    }

    enum ServerTransaction {
        case trying
        case completed(SIPResponse, any SIPConnection, SocketAddress?)
    }

    struct ClientKey: Hashable {
        var branch: String
        var method: String
    }

    struct ClientTransaction {
        var continuation: CheckedContinuation<SIPResponse, Never>
        var request: SIPRequest
        var timeout: Scheduled<Void>?
        var retransmit: Scheduled<Void>?
        /// The stream it went out on: when that closes, no answer can come back.
        var stream: StreamConnection?
    }

    init(
        logger: Logger, limits: SIPParserLimits, timers: SIPTimers, eventLoop: any EventLoop,
        trace: SIPTrace? = nil, handler: @escaping SIPRequestHandler
    ) {
        self.trace = trace
        self.logger = logger
        self.parser = SIPParser(limits: limits)
        self.timers = timers
        self.eventLoop = eventLoop
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

    /// A message that is one request (already parsed), from any transport — WebSocket
    /// flows call this too.
    func receive(_ request: SIPRequest, from peer: SIPPeer) {
        var request = request
        let via: SIPVia
        do {
            via = try stampReceived(&request.headers, from: peer.remoteAddress)
        } catch {
            send(
                SIPResponse(replyingTo: request, statusCode: 400, reasonPhrase: error.reasonPhrase, toTag: "e400"),
                over: peer.connection, defaultDestination: peer.remoteAddress)
            return
        }
        if request.method == .ack {
            // ACK for a non-2xx final answer belongs to an INVITE transaction, which this
            // layer does not keep; hand it up and send nothing.
            let handler = self.handler
            Task { _ = await handler(request, peer) }
            return
        }
        let key = ServerKey(branch: via.branch ?? "", host: via.host, port: via.port, method: request.method.rawValue)
        enum Action {
            case start
            case absorb
            case resend(SIPResponse, any SIPConnection, SocketAddress?)
        }
        let action: Action = state.withLock { state in
            switch state.serverTransactions[key] {
            case nil:
                state.serverTransactions[key] = .trying
                return .start
            case .trying?:
                return .absorb
            case .completed(let response, let connection, let destination)?:
                return .resend(response, connection, destination)
            }
        }
        switch action {
        case .absorb:
            return
        case .resend(let response, let connection, let destination):
            // RFC 3261 §17.2.2: a retransmitted request gets the final response again.
            connection.write(.response(response), to: destination)
        case .start:
            let handler = self.handler
            // Worked out now, from the Via just stamped, rather than from the response's copy.
            let destination = peer.transport == .udp ? responseDestination(via: via, remote: peer.remoteAddress) : nil
            Task(executorPreference: EventLoopExecutor.current) {
                let response = await handler(request, peer)
                self.complete(key, with: response, peer: peer, destination: destination)
            }
        }
    }

    @inline(never)
    private func complete(_ key: ServerKey, with response: SIPResponse?, peer: SIPPeer, destination: SocketAddress?) {
        guard let response else {
            _ = state.withLock { $0.serverTransactions.removeValue(forKey: key) }
            return
        }
        send(response, over: peer.connection, destination: destination, defaultDestination: peer.remoteAddress)
        if peer.transport.isReliable || response.isProvisional {
            // Timer J is zero on reliable transports (RFC 3261 §17.2.2).
            _ = state.withLock { $0.serverTransactions.removeValue(forKey: key) }
            return
        }
        let startTicking = state.withLock { state in
            state.serverTransactions[key] = .completed(response, peer.connection, destination)
            state.timerJ.insert(key)
            if state.timerJTicking { return false }
            state.timerJTicking = true
            return true
        }
        if startTicking {
            let tick = TimeAmount.nanoseconds(timers.transactionTimeout.nanoseconds / Int64(Self.timerJSlots - 1))
            eventLoop.scheduleRepeatedTask(initialDelay: tick, delay: tick) { task in
                // RFC 3261 §17.2.2 Timer J (64·T1 on UDP): the transaction may go now.
                let idle = self.state.withLock { state in
                    for key in state.timerJ.advance() {
                        if case .completed? = state.serverTransactions[key] {
                            state.serverTransactions.removeValue(forKey: key)
                        }
                    }
                    if state.timerJ.isEmpty { state.timerJTicking = false }
                    return !state.timerJTicking
                }
                if idle { task.cancel() }
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
        // Provisional responses only tell a non-INVITE client to keep waiting.
        guard !response.isProvisional else { return }
        completeClient(ClientKey(branch: branch, method: cseq.method.rawValue), with: response, stripVia: true)
    }

    // MARK: client transactions

    func completeClient(_ key: ClientKey, with response: SIPResponse, stripVia: Bool) {
        guard let transaction = state.withLock({ $0.clientTransactions.removeValue(forKey: key) }) else {
            return  // a stray or retransmitted response: absorbed (RFC 3261 §17.1.2.2, Timer K)
        }
        transaction.timeout?.cancel()
        transaction.retransmit?.cancel()
        var response = response
        if stripVia {
            // Our own Via goes; what is left is what the next hop back needs.
            try? response.headers.removeTopVia()
        }
        transaction.continuation.resume(returning: response)
    }

    func startClient(
        _ request: SIPRequest, key: ClientKey, over connection: any SIPConnection, to remote: SocketAddress?,
        continuation: CheckedContinuation<SIPResponse, Never>
    ) {
        state.withLock {
            $0.clientTransactions[key] = ClientTransaction(
                continuation: continuation, request: request, stream: connection as? StreamConnection)
        }
        trace?.record(
            .outgoing, .request(request), peer: remote.map { "\($0)" } ?? "connection",
            via: connection.transport.rawValue)
        connection.write(.request(request), to: remote)
        if connection is StreamConnection, !connection.isActive {
            // Closed before the transaction was known to connectionClosed.
            completeClient(key, with: SIPResponse(replyingTo: request, statusCode: 503), stripVia: true)
            return
        }
        // Timer F: no final response in 64·T1 → 408 (RFC 3261 §17.1.2.2).
        let timeout = eventLoop.scheduleTask(in: timers.transactionTimeout) {
            self.completeClient(key, with: SIPResponse(replyingTo: request, statusCode: 408), stripVia: true)
        }
        var retransmit: Scheduled<Void>?
        if !connection.transport.isReliable {
            retransmit = scheduleRetransmit(key, interval: timers.t1, connection: connection, remote: remote)
        }
        state.withLock {
            $0.clientTransactions[key]?.timeout = timeout
            $0.clientTransactions[key]?.retransmit = retransmit
        }
    }

    /// Timer E: resend at T1, 2·T1, … capped at T2, until an answer or Timer F.
    private func scheduleRetransmit(
        _ key: ClientKey, interval: TimeAmount, connection: any SIPConnection, remote: SocketAddress?
    )
        -> Scheduled<Void>
    {
        eventLoop.scheduleTask(in: interval) {
            guard let request = self.state.withLock({ $0.clientTransactions[key]?.request }) else { return }
            connection.write(.request(request), to: remote)
            let next = TimeAmount.nanoseconds(min(interval.nanoseconds * 2, self.timers.t2.nanoseconds))
            let scheduled = self.scheduleRetransmit(key, interval: next, connection: connection, remote: remote)
            self.state.withLock { $0.clientTransactions[key]?.retransmit = scheduled }
        }
    }

    // MARK: connections

    func connectionClosed(_ connection: StreamConnection) {
        let orphaned = state.withLock { state in
            for (destination, open) in state.outbound where open == connection {
                state.outbound.removeValue(forKey: destination)
            }
            return state.clientTransactions.filter { $0.value.stream == connection }.map { ($0.key, $0.value.request) }
        }
        // RFC 3261 §8.1.3.1: a transport failure is a 503 at once, not a 408 after Timer F
        // (e.g. a TLS handshake the peer refused).
        for (key, request) in orphaned {
            completeClient(key, with: SIPResponse(replyingTo: request, statusCode: 503), stripVia: true)
        }
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
