import NIOCore
import SIPCore

/// The INVITE server transaction (RFC 3261 §17.2.1, with RFC 6026's Accepted state).
struct InviteServerMachine {
    enum State: Hashable { case proceeding, completed, confirmed, accepted, terminated }

    private(set) var state = State.proceeding
    let request: SIPRequest
    let reliable: Bool
    let timers: SIPTimers
    /// The last response sent, for retransmitted INVITEs and Timer G.
    private(set) var lastResponse: SIPResponse?
    private var intervalG: TimeAmount

    init(request: SIPRequest, reliable: Bool, timers: SIPTimers) {
        self.request = request
        self.reliable = reliable
        self.timers = timers
        intervalG = timers.t1
    }

    /// §17.2.1: 100 Trying unless the TU answers within 200 ms.
    mutating func start() -> [TransactionAction] { [.arm(.trying, .milliseconds(200))] }

    /// The TU's answer.
    mutating func respond(_ response: SIPResponse) -> [TransactionAction] {
        switch state {
        case .proceeding:
            lastResponse = response
            switch response.statusCode {
            case ..<200:
                return [.disarm(.trying), .send(.response(response))]
            case 200..<300:
                state = .accepted
                return [.disarm(.trying), .send(.response(response)), .arm(.l, timers.sixtyFourT1)]
            default:
                state = .completed
                var actions: [TransactionAction] = [.disarm(.trying), .send(.response(response))]
                if !reliable { actions.append(.arm(.g, intervalG)) }
                actions.append(.arm(.h, timers.sixtyFourT1))
                return actions
            }
        case .accepted where response.isSuccess:
            // RFC 6026 §7.1: the TU's 2xx retransmissions go out through the transaction.
            return [.send(.response(response))]
        default:
            return []
        }
    }

    /// The INVITE again (a retransmission).
    mutating func receiveRetransmission() -> [TransactionAction] {
        switch state {
        case .proceeding, .completed:
            return lastResponse.map { [.send(.response($0))] } ?? []
        default:
            return []  // Confirmed absorbs; Accepted absorbs too (RFC 6026 §7.1)
        }
    }

    /// An ACK with the INVITE's branch: one for a non-2xx answer ends the exchange here.
    mutating func receiveACK() -> [TransactionAction] {
        guard state == .completed else { return [] }
        state = .confirmed
        let i = timers.timerT4(reliable: reliable)
        return [.disarm(.g), .disarm(.h)] + (i == .zero ? [.terminate] : [.arm(.i, i)])
    }

    mutating func fire(_ timer: SIPTransactionTimer) -> [TransactionAction] {
        switch (state, timer) {
        case (.proceeding, .trying):
            // §8.2.6.1: 100 Trying copies the request's Timestamp and has no To tag.
            var trying = SIPResponse(replyingTo: request, statusCode: 100)
            if let timestamp = request.headers[SIPHeaderName("Timestamp")] {
                trying.headers.append(SIPHeaderName("Timestamp"), timestamp)
            }
            lastResponse = trying
            return [.send(.response(trying))]
        case (.completed, .g):
            intervalG = min(intervalG * 2, timers.t2)
            return lastResponse.map { [.send(.response($0)), .arm(.g, intervalG)] } ?? []
        case (.completed, .h):
            state = .terminated
            return [.disarm(.g), .timedOut, .terminate]
        case (.confirmed, .i), (.accepted, .l):
            state = .terminated
            return [.terminate]
        default:
            return []
        }
    }

    mutating func transportFailed() -> [TransactionAction] {
        guard state != .terminated else { return [] }
        state = .terminated
        return [.disarm(.trying), .disarm(.g), .disarm(.h), .transportFailed, .terminate]
    }
}

/// The non-INVITE server transaction (RFC 3261 §17.2.2).
struct NonInviteServerMachine {
    enum State: Hashable { case trying, proceeding, completed, terminated }

    private(set) var state = State.trying
    let reliable: Bool
    let timers: SIPTimers
    private(set) var lastResponse: SIPResponse?

    init(reliable: Bool, timers: SIPTimers) {
        self.reliable = reliable
        self.timers = timers
    }

    mutating func respond(_ response: SIPResponse) -> [TransactionAction] {
        switch state {
        case .trying, .proceeding:
            lastResponse = response
            if response.isProvisional {
                state = .proceeding
                return [.send(.response(response))]
            }
            state = .completed
            let j = reliable ? TimeAmount.zero : timers.sixtyFourT1
            return [.send(.response(response))] + (j == .zero ? [.terminate] : [.arm(.j, j)])
        case .completed, .terminated:
            return []
        }
    }

    mutating func receiveRetransmission() -> [TransactionAction] {
        switch state {
        case .trying: return []  // absorbed
        case .proceeding, .completed: return lastResponse.map { [.send(.response($0))] } ?? []
        case .terminated: return []
        }
    }

    mutating func fire(_ timer: SIPTransactionTimer) -> [TransactionAction] {
        guard state == .completed, timer == .j else { return [] }
        state = .terminated
        return [.terminate]
    }

    mutating func transportFailed() -> [TransactionAction] {
        guard state != .terminated else { return [] }
        state = .terminated
        return [.transportFailed, .terminate]
    }
}
