import NIOCore
import SIPCore
import SIPTransport
import Synchronization

/// The response context of one proxied request (RFC 3261 §16.7): its branches, the
/// answers so far, and which goes back upstream when.
final class ResponseContext: Sendable {
    struct Branch {
        var client: SIPClientTransaction?
        var final: SIPResponse?
        var provisional = false
        var timerC: SIPScheduledTimer?
        /// Timer C fired: the branch counts as 408 and whatever it still says is ignored.
        var abandoned = false
    }

    struct State {
        var branches: [Branch]
        var finalSent = false
        var cancelled = false
    }

    let request: SIPRequest
    /// Where what goes upstream goes: the server transaction, or the caller's continuation.
    let respond: @Sendable (SIPResponse) -> Void
    let clock: any SIPClock
    let timerC: TimeAmount?
    /// What a 503 (a next hop that could not be reached or is overloaded) goes up as.
    let unavailable: Int
    let state: Mutex<State>

    init(
        request: SIPRequest, branches: Int, clock: any SIPClock, timerC: TimeAmount?, unavailable: Int = 500,
        respond: @escaping @Sendable (SIPResponse) -> Void
    ) {
        self.request = request
        self.unavailable = unavailable
        self.respond = respond
        self.clock = clock
        self.timerC = timerC
        state = Mutex(State(branches: Array(repeating: Branch(), count: branches)))
    }

    /// A branch's client transaction exists now; cancel it at once if the request already is.
    func started(_ client: SIPClientTransaction, branch: Int) {
        let cancelNow = state.withLock { state -> Bool in
            state.branches[branch].client = client
            if state.branches[branch].final == nil, timerC != nil {
                restartTimerC(&state.branches[branch], branch: branch)
            }
            return state.cancelled || (state.finalSent && state.branches[branch].final == nil)
        }
        if cancelNow { client.cancel() }
    }

    /// §16.10: the upstream CANCEL reaches every branch still waiting.
    func cancelAll() {
        let pending = state.withLock { state -> [SIPClientTransaction] in
            state.cancelled = true
            return state.branches.filter { $0.final == nil }.compactMap(\.client)
        }
        for client in pending { client.cancel() }
    }

    /// §16.7 steps 3–10 for one response of one branch.
    func receive(_ response: SIPResponse, branch: Int) {
        enum Outcome {
            case forward(SIPResponse)
            case forwardAndCancel(SIPResponse, [SIPClientTransaction])
            case cancel([SIPClientTransaction])
            case nothing
        }
        let outcome: Outcome = state.withLock { state in
            guard !state.branches[branch].abandoned else { return .nothing }
            if response.isProvisional {
                state.branches[branch].provisional = true
                if timerC != nil, state.branches[branch].final == nil {
                    restartTimerC(&state.branches[branch], branch: branch)  // §16.8
                }
                // Step 5: 100 is hop by hop; other provisionals go up until a final has.
                return response.statusCode == 100 || state.finalSent ? .nothing : .forward(response)
            }
            if response.isSuccess, request.method == .invite, state.branches[branch].final != nil {
                return .forward(response)  // a 2xx retransmission (RFC 6026): up it goes
            }
            guard state.branches[branch].final == nil else { return .nothing }
            state.branches[branch].final = response
            state.branches[branch].timerC?.cancel()
            state.branches[branch].timerC = nil
            let others = state.branches.filter { $0.final == nil }.compactMap(\.client)
            if response.isSuccess {
                // Steps 5 and 10: every 2xx goes up at once; the other branches are cancelled.
                let first = !state.finalSent
                state.finalSent = true
                return first ? .forwardAndCancel(response, others) : .forward(response)
            }
            guard !state.finalSent else { return .nothing }
            if state.branches.allSatisfy({ $0.final != nil }) {
                state.finalSent = true
                return .forward(
                    Self.best(state.branches.compactMap(\.final), for: request, unavailable: unavailable))
            }
            // Step 5: a 6xx ends the search; the other branches' 487s complete the context.
            return response.statusCode >= 600 && request.method == .invite ? .cancel(others) : .nothing
        }
        switch outcome {
        case .forward(let response):
            respond(response)
        case .forwardAndCancel(let response, let others):
            respond(response)
            for client in others { client.cancel() }
        case .cancel(let others):
            for client in others { client.cancel() }
        case .nothing:
            break
        }
    }

    /// §16.8: Timer C fired on a branch — cancel it if it has said something, else count it
    /// as a 408 (and cancel it should it speak later).
    func timerCFired(branch: Int) {
        let action = state.withLock { state -> (SIPClientTransaction?, Bool) in
            guard state.branches[branch].final == nil else { return (nil, false) }
            state.branches[branch].timerC = nil
            return (state.branches[branch].client, state.branches[branch].provisional)
        }
        guard let client = action.0 else { return }
        client.cancel()
        if !action.1 {
            receive(SIPResponse(replyingTo: request, statusCode: 408, toTag: toTag()), branch: branch)
            state.withLock { $0.branches[branch].abandoned = true }
        }
    }

    private func restartTimerC(_ branch: inout Branch, branch index: Int) {
        guard let timerC else { return }
        branch.timerC?.cancel()
        branch.timerC = clock.schedule(in: timerC) { [self] in timerCFired(branch: index) }
    }

    /// §16.7 step 6: a 6xx if any; else the lowest class, where a 4xx prefers 401, 407, 415,
    /// 420 and 484. A 503 goes up as 500 (the next hop's trouble is not ours to advertise),
    /// or as `unavailable` when the TU says what it means (a registrar's unreachable
    /// bindings: 480); a 401 or 407 carries every branch's challenges (step 7).
    static func best(_ finals: [SIPResponse], for request: SIPRequest, unavailable: Int = 500) -> SIPResponse {
        let preferred: Set<Int> = [401, 407, 415, 420, 484]
        func rank(_ r: SIPResponse) -> (Int, Int) {
            (r.statusCode >= 600 ? 0 : r.statusCode / 100, preferred.contains(r.statusCode) ? 0 : 1)
        }
        guard var best = finals.min(by: { rank($0) < rank($1) }) else {
            return SIPResponse(replyingTo: request, statusCode: 408, toTag: toTag())
        }
        if best.statusCode == 503 {
            best.statusCode = unavailable
            best.reasonPhrase = SIPResponse.defaultReasonPhrase(unavailable)
        }
        if best.statusCode == 401 || best.statusCode == 407 {
            for other in finals where other != best && (other.statusCode == 401 || other.statusCode == 407) {
                for name in [SIPHeaderName.wwwAuthenticate, .proxyAuthenticate] {
                    for value in other.headers.fieldValues(name) { best.headers.append(name, value) }
                }
            }
        }
        return best
    }
}
