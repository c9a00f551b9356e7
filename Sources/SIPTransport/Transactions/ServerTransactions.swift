import NIOCore
import SIPCore
import Utilities

/// RFC 3261 §17.2.3: branch, sent-by and method (sent-by as host and port, with no
/// `host:port` text made per request). An ACK looks for its INVITE's key.
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

    func with(method: String) -> ServerKey { ServerKey(branch: branch, host: host, port: port, method: method) }

    static func == (a: ServerKey, b: ServerKey) -> Bool {
        a.hash == b.hash && a.branch == b.branch && a.port == b.port && a.host == b.host && a.method == b.method
    }

    func hash(into hasher: inout Hasher) { hasher.combine(hash) }
}

struct ServerTransactionEntry {
    enum Machine {
        case invite(InviteServerMachine)
        case nonInvite(NonInviteServerMachine)

        mutating func respond(_ response: SIPResponse) -> [TransactionAction] {
            step {
                $0.respond(response)
            } _: {
                $0.respond(response)
            }
        }
        mutating func receiveRetransmission() -> [TransactionAction] {
            step {
                $0.receiveRetransmission()
            } _: {
                $0.receiveRetransmission()
            }
        }
        mutating func fire(_ timer: SIPTransactionTimer) -> [TransactionAction] {
            step {
                $0.fire(timer)
            } _: {
                $0.fire(timer)
            }
        }

        /// One step of whichever machine this is.
        private mutating func step(
            _ invite: (inout InviteServerMachine) -> [TransactionAction],
            _ nonInvite: (inout NonInviteServerMachine) -> [TransactionAction]
        ) -> [TransactionAction] {
            switch self {
            case .invite(var machine):
                defer { self = .invite(machine) }
                return invite(&machine)
            case .nonInvite(var machine):
                defer { self = .nonInvite(machine) }
                return nonInvite(&machine)
            }
        }
    }

    var machine: Machine
    let peer: SIPPeer
    /// Over UDP, where responses go (worked out once from the request's Via).
    let destination: SocketAddress?
    var timers: [SIPTransactionTimer: SIPScheduledTimer] = [:]
    var cancelled = false
    var onCancel: (@Sendable () -> Void)?
}

/// The server side of one request, handed to the transaction user: it answers through it
/// and learns of a CANCEL from it. An ACK for a 2xx (a transaction of its own end to end,
/// RFC 3261 §17.1.1.3) comes with a stateless one, which sends nothing.
public struct SIPServerTransaction: Sendable {
    enum Kind {
        /// Kept in the table: retransmissions answered, timers, CANCEL.
        case kept(ServerKey)
        /// A non-INVITE request over a reliable transport: no retransmission can come and
        /// Timer J is zero (RFC 3261 §17.2.2), so there is nothing to keep — the answer
        /// goes straight back on the connection.
        case direct
        /// An ACK for a 2xx: nothing to answer.
        case stateless
    }

    let core: SIPEndpointCore?
    let kind: Kind
    public let peer: SIPPeer

    /// Sends a response: any number of provisional ones, then one final one (§17.2).
    public func respond(_ response: SIPResponse) {
        guard let core else { return }
        switch kind {
        case .kept(let key):
            core.runServer(key) { entry in
                return entry.machine.respond(response)
            }
        case .direct:
            core.send(response, over: peer.connection, defaultDestination: peer.remoteAddress)
        case .stateless:
            return
        }
    }

    /// Sends a final response and ends the transaction at once, as a stateless element
    /// would (RFC 3261 §16.11): no retransmission timers, no wait for the ACK; a
    /// retransmitted request is taken as new. For answers that cost nothing to give again —
    /// a Digest challenge (Kamailio's proxy_challenge answers so too).
    public func respondStatelessly(_ response: SIPResponse) {
        guard let core, case .kept(let key) = kind else {
            respond(response)
            return
        }
        core.runServer(key) { entry in
            var actions = entry.machine.respond(response).filter {
                if case .arm = $0 { return false }
                return true
            }
            actions.append(.terminate)
            return actions
        }
    }

    /// Ends the transaction without an answer (a request the TU drops).
    public func abandon() {
        guard let core, case .kept(let key) = kind else { return }
        core.runServer(key) { _ in [.terminate] }
    }

    /// Runs `body` once the request is cancelled (RFC 3261 §9.2) — at once if it already is.
    public func whenCancelled(_ body: @escaping @Sendable () -> Void) {
        guard let core, case .kept(let key) = kind else { return }
        let already = core.state.withLock { state -> Bool in
            guard state.serverTransactions[key] != nil else { return false }
            if state.serverTransactions[key]?.cancelled == true { return true }
            state.serverTransactions[key]?.onCancel = body
            return false
        }
        if already { body() }
    }

    /// True for an ACK's stateless transaction.
    public var isStateless: Bool {
        if case .stateless = kind { return true }
        return false
    }
}

extension SIPEndpointCore {
    func receiveRequest(_ request: SIPRequest, key: ServerKey, from peer: SIPPeer, destination: SocketAddress?) {
        let reliable = peer.transport.isReliable
        let isNew: Bool = state.withLock { state in
            guard state.serverTransactions[key] == nil else { return false }
            let machine: ServerTransactionEntry.Machine =
                request.method == .invite
                ? .invite(InviteServerMachine(request: request, reliable: reliable, timers: timers))
                : .nonInvite(NonInviteServerMachine(reliable: reliable, timers: timers))
            state.serverTransactions[key] = ServerTransactionEntry(
                machine: machine, peer: peer, destination: destination)
            return true
        }
        if isNew {
            if request.method == .invite {
                runServer(key) { entry in
                    guard case .invite(var machine) = entry.machine else { return [] }
                    defer { entry.machine = .invite(machine) }
                    return machine.start()
                }
            }
            deliver(request, SIPServerTransaction(core: self, kind: .kept(key), peer: peer))
        } else {
            // §17.2.1, §17.2.2: a retransmission gets the last response again, if any.
            runServer(key) { entry in
                return entry.machine.receiveRetransmission()
            }
        }
    }

    /// An ACK with its INVITE's branch ends a non-2xx exchange in the transaction; any
    /// other ACK (for a 2xx) goes to the TU, which routes it end to end.
    func receiveACK(_ request: SIPRequest, key: ServerKey, from peer: SIPPeer) {
        enum Match { case absorbed, none }
        let match: Match = state.withLock { state in
            guard case .invite(let machine)? = state.serverTransactions[key]?.machine, machine.state != .accepted
            else { return .none }
            return .absorbed
        }
        switch match {
        case .absorbed:
            runServer(key) { entry in
                guard case .invite(var machine) = entry.machine else { return [] }
                defer { entry.machine = .invite(machine) }
                return machine.receiveACK()
            }
        case .none:
            deliver(request, SIPServerTransaction(core: nil, kind: .stateless, peer: peer))
        }
    }

    /// RFC 3261 §9.2: a CANCEL is answered here — 200 when its INVITE's transaction exists
    /// (whose TU is then told), else 481 — in a non-INVITE transaction of its own.
    func receiveCANCEL(_ request: SIPRequest, key: ServerKey, from peer: SIPPeer, destination: SocketAddress?) {
        let invite = key.with(method: SIPMethod.invite.rawValue)
        enum Outcome { case retransmission, cancels((@Sendable () -> Void)?), unmatched }
        let outcome: Outcome = state.withLock { state in
            if state.serverTransactions[key] != nil { return .retransmission }
            state.serverTransactions[key] = ServerTransactionEntry(
                machine: .nonInvite(NonInviteServerMachine(reliable: peer.transport.isReliable, timers: timers)),
                peer: peer, destination: destination)
            guard var entry = state.serverTransactions[invite] else { return .unmatched }
            if entry.cancelled { return .cancels(nil) }
            entry.cancelled = true
            let body = entry.onCancel
            entry.onCancel = nil
            state.serverTransactions[invite] = entry
            return .cancels(body)
        }
        let transaction = SIPServerTransaction(core: self, kind: .kept(key), peer: peer)
        switch outcome {
        case .retransmission:
            receiveRequest(request, key: key, from: peer, destination: destination)
        case .cancels(let body):
            transaction.respond(SIPResponse(replyingTo: request, statusCode: 200, toTag: randomToken(length: 8)))
            body?()
        case .unmatched:
            transaction.respond(SIPResponse(replyingTo: request, statusCode: 481, toTag: randomToken(length: 8)))
        }
    }

    /// Steps one server transaction's machine under the lock, arms and stops its timers
    /// there, and sends what it asks outside.
    func runServer(_ key: ServerKey, _ step: (inout ServerTransactionEntry) -> [TransactionAction]) {
        let outcome: ([TransactionAction], ServerTransactionEntry)? = state.withLock { state in
            guard var entry = state.serverTransactions[key] else { return nil }
            var actions: [TransactionAction] = []
            var startTicking = false
            for action in step(&entry) {
                if case .arm(.j, _) = action {
                    // Timer J in bulk, by the tick (see `timerJSlots`).
                    state.timerJ.insert(key)
                    if !state.timerJTicking {
                        state.timerJTicking = true
                        startTicking = true
                    }
                } else {
                    actions.append(action)
                }
            }
            var (effects, terminated) = applyTimers(actions, to: &entry.timers) { timer, delay in
                clock.schedule(in: delay) { [self] in fireServer(key, timer) }
            }
            if startTicking { effects.append(.arm(.j, .zero)) }
            if terminated {
                state.serverTransactions.removeValue(forKey: key)
            } else {
                state.serverTransactions[key] = entry
            }
            return (effects, entry)
        }
        guard let (effects, entry) = outcome else { return }
        for effect in effects {
            switch effect {
            case .send(.response(let response)):
                send(
                    response, over: entry.peer.connection, destination: entry.destination,
                    defaultDestination: entry.peer.remoteAddress)
            case .arm(.j, _):
                tickTimerJ()
            case .timedOut:
                logger.debug("no ACK for a final answer to \(entry.peer) (Timer H)")
            default:
                break
            }
        }
    }

    func fireServer(_ key: ServerKey, _ timer: SIPTransactionTimer) {
        runServer(key) { entry in
            entry.timers.removeValue(forKey: timer)
            return entry.machine.fire(timer)
        }
    }

    /// RFC 3261 §17.2.2 Timer J (64·T1 on UDP): completed transactions leave a tick at a time.
    private func tickTimerJ() {
        let tick = TimeAmount.nanoseconds(timers.transactionTimeout.nanoseconds / Int64(Self.timerJSlots - 1))
        _ = clock.schedule(in: tick) { [self] in
            let idle = state.withLock { state in
                for key in state.timerJ.advance() {
                    if case .nonInvite(let machine)? = state.serverTransactions[key]?.machine,
                        machine.state == .completed
                    {
                        state.serverTransactions.removeValue(forKey: key)
                    }
                }
                if state.timerJ.isEmpty { state.timerJTicking = false }
                return !state.timerJTicking
            }
            if !idle { tickTimerJ() }
        }
    }
}
