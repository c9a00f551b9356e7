import NIOCore
import SIPCore

/// A client transaction's key (RFC 3261 §17.1.3): our branch and the CSeq method.
struct ClientKey: Hashable {
    var branch: String
    var method: String
}

struct ClientTransactionEntry {
    enum Machine {
        case invite(InviteClientMachine)
        case nonInvite(NonInviteClientMachine)

        mutating func start() -> [TransactionAction] {
            step {
                $0.start()
            } _: {
                $0.start()
            }
        }
        mutating func receive(_ response: SIPResponse) -> [TransactionAction] {
            step {
                $0.receive(response)
            } _: {
                $0.receive(response)
            }
        }
        mutating func fire(_ timer: SIPTransactionTimer) -> [TransactionAction] {
            step {
                $0.fire(timer)
            } _: {
                $0.fire(timer)
            }
        }
        mutating func transportFailed() -> [TransactionAction] {
            step {
                $0.transportFailed()
            } _: {
                $0.transportFailed()
            }
        }

        /// One step of whichever machine this is.
        private mutating func step(
            _ invite: (inout InviteClientMachine) -> [TransactionAction],
            _ nonInvite: (inout NonInviteClientMachine) -> [TransactionAction]
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
    let connection: any SIPConnection
    let remote: SocketAddress?
    /// The channel of the connection it went out on (TCP, TLS, a flow): when that closes,
    /// no answer can come back.
    let channel: ObjectIdentifier?
    let onResponse: @Sendable (SIPResponse) -> Void
    var timers: [SIPTransactionTimer: SIPScheduledTimer] = [:]
    /// §9.1: a CANCEL waits for a provisional response.
    var provisionalSeen = false
    var cancelWanted = false
    var cancelSent = false
    var request: SIPRequest {
        switch machine {
        case .invite(let machine): return machine.request
        case .nonInvite(let machine): return machine.request
        }
    }
}

/// The client side of a request sent with `SIPEndpoint.start`: responses go to the
/// callback given there; `cancel()` asks the other side to stop (RFC 3261 §9.1).
public struct SIPClientTransaction: Sendable {
    let core: SIPEndpointCore?
    let key: ClientKey?

    /// Sends a CANCEL for this INVITE: now if a provisional response has come, else when
    /// one does; nothing once a final response has.
    public func cancel() {
        guard let core, let key else { return }
        core.cancelClient(key)
    }
}

extension SIPEndpointCore {
    /// Starts a client transaction for `request` (which carries our Via) over `connection`.
    func startClient(
        _ request: SIPRequest, key: ClientKey, over connection: any SIPConnection, to remote: SocketAddress?,
        onResponse: @escaping @Sendable (SIPResponse) -> Void
    ) {
        let reliable = connection.transport.isReliable
        let machine: ClientTransactionEntry.Machine =
            request.method == .invite
            ? .invite(InviteClientMachine(request: request, reliable: reliable, timers: timers))
            : .nonInvite(NonInviteClientMachine(request: request, reliable: reliable, timers: timers))
        state.withLock {
            $0.clientTransactions[key] = ClientTransactionEntry(
                machine: machine, connection: connection, remote: remote, channel: connection.channelIdentity,
                onResponse: onResponse)
        }
        runClient(key) { entry in
            return entry.machine.start()
        }
        if connection.channelIdentity != nil, !connection.isActive {
            // Closed before the transaction was known to connectionClosed.
            clientTransportFailed(key)
        }
    }

    func receiveResponse(_ response: SIPResponse, key: ClientKey) {
        var cancelNow = false
        let entry = runClient(key) { entry in
            if response.isProvisional {
                entry.provisionalSeen = true
                if entry.cancelWanted, !entry.cancelSent {
                    // The CANCEL that waited for this first provisional response.
                    entry.cancelSent = true
                    cancelNow = true
                }
            }
            return entry.machine.receive(response)
        }
        if cancelNow, let entry { sendCANCEL(for: entry.request, over: entry.connection, to: entry.remote) }
    }

    func fireClient(_ key: ClientKey, _ timer: SIPTransactionTimer) {
        runClient(key) { entry in
            entry.timers.removeValue(forKey: timer)
            return entry.machine.fire(timer)
        }
    }

    func clientTransportFailed(_ key: ClientKey) {
        runClient(key) { entry in
            return entry.machine.transportFailed()
        }
    }

    func cancelClient(_ key: ClientKey) {
        let now: ClientTransactionEntry? = state.withLock { state in
            guard var entry = state.clientTransactions[key], case .invite(let machine) = entry.machine else {
                return nil
            }
            guard machine.state == .calling || machine.state == .proceeding, !entry.cancelWanted else { return nil }
            entry.cancelWanted = true
            entry.cancelSent = entry.provisionalSeen
            state.clientTransactions[key] = entry
            return entry.cancelSent ? entry : nil
        }
        if let now { sendCANCEL(for: now.request, over: now.connection, to: now.remote) }
    }

    /// RFC 3261 §9.1: the CANCEL copies the INVITE's Request-URI, Call-ID, From, To, CSeq
    /// number, Route and top Via (so its branch), and is a transaction of its own.
    private func sendCANCEL(for invite: SIPRequest, over connection: any SIPConnection, to remote: SocketAddress?) {
        var headers = SIPHeaderFields()
        if let via = try? invite.headers.topVia { headers.append(.via, via.description) }
        headers.append(.maxForwards, "70")
        for route in invite.headers.fieldValues(.route) { headers.append(.route, route) }
        for name in [SIPHeaderName.from, .to, .callID] {
            if let value = invite.headers[name] { headers.append(name, value) }
        }
        headers.append(.cseq, SIPCSeq((try? invite.headers.cseq.sequence) ?? 0, .cancel).description)
        let cancel = SIPRequest(method: .cancel, uri: invite.uri, headers: headers)
        guard let branch = try? invite.headers.topVia.branch else { return }
        // The CANCEL's own answer (200 or 481) matters to nobody but its transaction.
        startClient(
            cancel, key: ClientKey(branch: branch, method: SIPMethod.cancel.rawValue), over: connection, to: remote
        ) { _ in }
    }

    /// Steps one client transaction's machine under the lock, arms and stops its timers
    /// there, and sends and delivers outside.
    @discardableResult
    func runClient(_ key: ClientKey, _ step: (inout ClientTransactionEntry) -> [TransactionAction])
        -> ClientTransactionEntry?
    {
        let outcome: ([TransactionAction], ClientTransactionEntry)? = state.withLock { state in
            guard var entry = state.clientTransactions[key] else { return nil }
            let (effects, terminated) = applyTimers(step(&entry), to: &entry.timers) { timer, delay in
                clock.schedule(in: delay) { [self] in fireClient(key, timer) }
            }
            if terminated {
                state.clientTransactions.removeValue(forKey: key)
            } else {
                state.clientTransactions[key] = entry
            }
            return (effects, entry)
        }
        guard let (effects, entry) = outcome else { return nil }
        for effect in effects {
            switch effect {
            case .send(let message):
                trace?.record(
                    .outgoing, message, peer: entry.remote.map { "\($0)" } ?? "connection",
                    via: entry.connection.transport.rawValue)
                entry.connection.write(message, to: entry.remote)
            case .deliver(var response):
                // Our own Via goes; what is left is what the next hop back needs.
                try? response.headers.removeTopVia()
                entry.onResponse(response)
            case .timedOut:
                entry.onResponse(local(408, for: entry.request))
            case .transportFailed:
                entry.onResponse(local(entry.connection.transportFailureStatus, for: entry.request))
            default:
                break
            }
        }
        return entry
    }

    /// An answer made here for the TU (timeout, transport failure), as if from downstream.
    private func local(_ status: Int, for request: SIPRequest) -> SIPResponse {
        var response = SIPResponse(replyingTo: request, statusCode: status)
        try? response.headers.removeTopVia()
        return response
    }
}

/// Arms and stops a transaction's timers as its machine asks (under the layer's lock) and
/// says whether it ended, cancelling what is left then; the rest of the actions — sends,
/// deliveries — are for the caller to do outside the lock.
func applyTimers(
    _ actions: [TransactionAction], to timers: inout [SIPTransactionTimer: SIPScheduledTimer],
    arm: (SIPTransactionTimer, TimeAmount) -> SIPScheduledTimer
) -> (effects: [TransactionAction], terminated: Bool) {
    var effects: [TransactionAction] = []
    var terminated = false
    for action in actions {
        switch action {
        case .arm(let timer, let delay):
            timers[timer]?.cancel()
            timers[timer] = arm(timer, delay)
        case .disarm(let timer):
            timers.removeValue(forKey: timer)?.cancel()
        case .terminate:
            terminated = true
        default:
            effects.append(action)
        }
    }
    if terminated {
        for timer in timers.values { timer.cancel() }
        timers.removeAll()
    }
    return (effects, terminated)
}
