import Synchronization

/// Runs one private identity's registrations (read bindings, decide, commit) one at a time.
///
/// A REGISTER reads the stored bindings, decides what to change, and commits; two of them
/// interleaved would each decide on a read the other is about to make stale — the
/// eP-CSCF's flow-close removal (EPC-33) could delete the binding a page reload had just
/// stored over a new flow. Different IMPIs never wait for each other.
final class RegistrationTurns: Sendable {
    /// Per busy IMPI, the registrations waiting their turn; an IMPI with no entry is free.
    private let busy = Mutex<[String: [CheckedContinuation<Void, Never>]]>([:])

    func run<T>(impi: String, _ body: () async -> T) async -> T {
        await enter(impi)
        defer { leave(impi) }
        return await body()
    }

    private func enter(_ impi: String) async {
        let entered = busy.withLock { table -> Bool in
            guard table[impi] == nil else { return false }
            table[impi] = []
            return true
        }
        if entered { return }
        await withCheckedContinuation { (turn: CheckedContinuation<Void, Never>) in
            let enteredNow = busy.withLock { table -> Bool in
                guard table[impi] != nil else {
                    table[impi] = []
                    return true
                }
                table[impi, default: []].append(turn)
                return false
            }
            if enteredNow { turn.resume() }
        }
    }

    /// Hands the turn to the longest waiter, or frees the IMPI.
    private func leave(_ impi: String) {
        let next = busy.withLock { table -> CheckedContinuation<Void, Never>? in
            guard var waiters = table[impi], !waiters.isEmpty else {
                table[impi] = nil
                return nil
            }
            let first = waiters.removeFirst()
            table[impi] = waiters
            return first
        }
        next?.resume()
    }
}
