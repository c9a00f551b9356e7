import NIOCore
import SIPCore

/// The timers of RFC 3261 §17 and RFC 6026 by name, plus the INVITE server's 200 ms wait
/// before it sends 100 Trying on the TU's behalf (§17.2.1).
public enum SIPTransactionTimer: String, Sendable, Hashable, CaseIterable {
    case a = "A", b = "B", d = "D", e = "E", f = "F", g = "G", h = "H", i = "I", j = "J", k = "K", l = "L", m = "M"
    case trying = "100"
}

/// What a transaction state machine asks of the layer that drives it. The machines do no
/// I/O and read no clock, so every timer and state is testable on a fake clock.
enum TransactionAction: Hashable, Sendable {
    /// Send to the transaction's peer (a request or ACK from a client, a response from a server).
    case send(SIPMessage)
    /// Start (or restart) a timer.
    case arm(SIPTransactionTimer, TimeAmount)
    case disarm(SIPTransactionTimer)
    /// Client: a response for the transaction user.
    case deliver(SIPResponse)
    /// Timer B or F fired, or Timer H (no ACK came): the TU learns of it.
    case timedOut
    /// The transport failed (RFC 3261 §17.1.4, §17.2.4).
    case transportFailed
    case terminate
}

extension SIPTimers {
    /// 64·T1: Timers B, F, H, J, L and M.
    var sixtyFourT1: TimeAmount { transactionTimeout }
    /// Timer D: at least 32 s over unreliable transports, zero over reliable ones.
    func timerD(reliable: Bool) -> TimeAmount { reliable ? .zero : .seconds(32) }
    /// Timers I and K: T4 over unreliable transports, zero over reliable ones.
    func timerT4(reliable: Bool) -> TimeAmount { reliable ? .zero : t4 }
}

/// The INVITE client transaction (RFC 3261 §17.1.1, with RFC 6026's Accepted state).
struct InviteClientMachine {
    enum State: Hashable { case calling, proceeding, completed, accepted, terminated }

    private(set) var state = State.calling
    let request: SIPRequest
    let reliable: Bool
    let timers: SIPTimers
    private var intervalA: TimeAmount
    private var ack: SIPRequest?

    init(request: SIPRequest, reliable: Bool, timers: SIPTimers) {
        self.request = request
        self.reliable = reliable
        self.timers = timers
        intervalA = timers.t1
    }

    mutating func start() -> [TransactionAction] {
        var actions: [TransactionAction] = [.send(.request(request))]
        if !reliable { actions.append(.arm(.a, intervalA)) }
        actions.append(.arm(.b, timers.sixtyFourT1))
        return actions
    }

    mutating func receive(_ response: SIPResponse) -> [TransactionAction] {
        switch (state, response.statusCode) {
        case (.calling, 100..<200), (.proceeding, 100..<200):
            state = .proceeding
            return [.disarm(.a), .disarm(.b), .deliver(response)]
        case (.calling, 200..<300), (.proceeding, 200..<300):
            // RFC 6026 §8.4: Accepted absorbs nothing; later 2xx go to the TU, which ACKs them.
            state = .accepted
            return [.disarm(.a), .disarm(.b), .deliver(response), .arm(.m, timers.sixtyFourT1)]
        case (.calling, _), (.proceeding, _):
            state = .completed
            let ack = Self.ack(for: request, answeredBy: response)
            self.ack = ack
            let d = timers.timerD(reliable: reliable)
            return [.disarm(.a), .disarm(.b), .send(.request(ack)), .deliver(response)]
                + (d == .zero ? [.terminate] : [.arm(.d, d)])
        case (.completed, 300...):
            // A retransmitted final answer: the ACK again, nothing for the TU.
            return ack.map { [.send(.request($0))] } ?? []
        case (.accepted, 200..<300):
            return [.deliver(response)]
        default:
            return []
        }
    }

    mutating func fire(_ timer: SIPTransactionTimer) -> [TransactionAction] {
        switch (state, timer) {
        case (.calling, .a):
            intervalA = intervalA * 2
            return [.send(.request(request)), .arm(.a, intervalA)]
        case (.calling, .b):
            state = .terminated
            return [.disarm(.a), .timedOut, .terminate]
        case (.completed, .d), (.accepted, .m):
            state = .terminated
            return [.terminate]
        default:
            return []
        }
    }

    mutating func transportFailed() -> [TransactionAction] {
        guard state == .calling || state == .proceeding else { return [] }
        state = .terminated
        return [.disarm(.a), .disarm(.b), .transportFailed, .terminate]
    }

    /// RFC 3261 §17.1.1.3: the ACK for a non-2xx answer, built from the request and the
    /// answer's To (which carries the UAS's tag).
    static func ack(for request: SIPRequest, answeredBy response: SIPResponse) -> SIPRequest {
        var headers = SIPHeaderFields()
        if let via = try? request.headers.topVia { headers.append(.via, via.description) }
        headers.append(.maxForwards, "70")
        for route in request.headers.fieldValues(.route) { headers.append(.route, route) }
        if let from = request.headers[.from] { headers.append(.from, from) }
        if let to = response.headers[.to] ?? request.headers[.to] { headers.append(.to, to) }
        if let callID = request.headers[.callID] { headers.append(.callID, callID) }
        let sequence = (try? request.headers.cseq.sequence) ?? 0
        headers.append(.cseq, SIPCSeq(sequence, .ack).description)
        return SIPRequest(method: .ack, uri: request.uri, headers: headers)
    }
}

/// The non-INVITE client transaction (RFC 3261 §17.1.2).
struct NonInviteClientMachine {
    enum State: Hashable { case trying, proceeding, completed, terminated }

    private(set) var state = State.trying
    let request: SIPRequest
    let reliable: Bool
    let timers: SIPTimers
    private var intervalE: TimeAmount

    init(request: SIPRequest, reliable: Bool, timers: SIPTimers) {
        self.request = request
        self.reliable = reliable
        self.timers = timers
        intervalE = timers.t1
    }

    mutating func start() -> [TransactionAction] {
        var actions: [TransactionAction] = [.send(.request(request))]
        if !reliable { actions.append(.arm(.e, intervalE)) }
        actions.append(.arm(.f, timers.sixtyFourT1))
        return actions
    }

    mutating func receive(_ response: SIPResponse) -> [TransactionAction] {
        switch state {
        case .trying, .proceeding:
            if response.isProvisional {
                state = .proceeding
                return [.deliver(response)]
            }
            state = .completed
            let k = timers.timerT4(reliable: reliable)
            return [.disarm(.e), .disarm(.f), .deliver(response)] + (k == .zero ? [.terminate] : [.arm(.k, k)])
        case .completed, .terminated:
            return []  // retransmissions of the final answer are absorbed (Timer K's purpose)
        }
    }

    mutating func fire(_ timer: SIPTransactionTimer) -> [TransactionAction] {
        switch (state, timer) {
        case (.trying, .e), (.proceeding, .e):
            // §17.1.2.2: doubling up to T2 while Trying, T2 once Proceeding.
            intervalE = state == .proceeding ? timers.t2 : min(intervalE * 2, timers.t2)
            return [.send(.request(request)), .arm(.e, intervalE)]
        case (.trying, .f), (.proceeding, .f):
            state = .terminated
            return [.disarm(.e), .timedOut, .terminate]
        case (.completed, .k):
            state = .terminated
            return [.terminate]
        default:
            return []
        }
    }

    mutating func transportFailed() -> [TransactionAction] {
        guard state == .trying || state == .proceeding else { return [] }
        state = .terminated
        return [.disarm(.e), .disarm(.f), .transportFailed, .terminate]
    }
}
