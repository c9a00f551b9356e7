import Foundation
import Logging
import NIOCore
import SQLiteNIO
import Synchronization

/// Runs writes one batch at a time: the binding changes queued when a batch starts commit
/// together in one transaction on the bindings writer; any other write runs alone, in
/// queue order, on the general writer connection. The queue is what keeps the two
/// connections from ever writing at once.
///
/// It drains in turns on the bindings writer's event loop, so a batch is taken, committed
/// and its waiters resumed on that one thread (no hop through the global executor or a
/// thread pool: two thread wake-ups a batch instead of four).
final class WriteQueue: Sendable {
    typealias Work = @Sendable (SQLiteConnection) async throws -> Void
    enum Item: Sendable {
        case work(Work)
        case bindings(BindingChange)
    }
    private typealias Entry = (Item, CheckedContinuation<Void, any Error>)
    private struct State {
        var pending: [Entry] = []
        var draining = false
        var closed = false
        /// Closers waiting for the drain to end.
        var closers: [CheckedContinuation<Void, Never>] = []
        /// When the last batch was committed.
        var lastCommit = NIODeadline.uptimeNanoseconds(0)
    }
    private let state = Mutex(State())
    private let connection: SQLiteConnection
    let bindingWriter: SQLiteBindingWriter
    static let gatherWhenWaiting = 4
    static let gatherWindow: TimeAmount = .milliseconds(2)

    init(connection: SQLiteConnection, bindingWriter: SQLiteBindingWriter) {
        self.connection = connection
        self.bindingWriter = bindingWriter
    }

    func write<T: Sendable>(_ body: @escaping @Sendable (SQLiteConnection) async throws -> T) async throws -> T {
        let result = Mutex<T?>(nil)
        try await enqueue(
            .work { db in
                let value = try await body(db)
                result.withLock { $0 = value }
            })
        guard let value = result.withLock({ $0 }) else { throw StorageError.writeLost }
        return value
    }

    func writeBindings(_ change: BindingChange) async throws {
        try await enqueue(.bindings(change))
    }

    private func enqueue(_ item: Item) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let start = state.withLock { state -> Bool? in
                if state.closed { return nil }
                state.pending.append((item, continuation))
                if state.draining { return false }
                state.draining = true
                return true
            }
            switch start {
            case nil: continuation.resume(throwing: StorageError.writeLost)
            case true?: bindingWriter.loop.execute { self.drainTurn(gathered: false) }
            case false?: break
            }
        }
    }

    /// Takes no more writes, waits for those queued to be written, and closes the writer.
    func close() async {
        await withCheckedContinuation { (closer: CheckedContinuation<Void, Never>) in
            let idle = state.withLock { state -> Bool in
                state.closed = true
                if !state.draining { return true }
                state.closers.append(closer)
                return false
            }
            if idle { closer.resume() }
        }
        await bindingWriter.close()
    }

    /// One turn of the drain, on the writer's loop: takes what is pending and writes it,
    /// then goes again until nothing is left.
    private func drainTurn(gathered: Bool) {
        let loop = bindingWriter.loop
        // A commit has a fixed cost that its batch shares (locks, WAL index, thread wake-ups;
        // ~150 µs of CPU on the project VM, estimated from a profile). Under load — several
        // changes already waiting, or a batch committed moments ago — gather a little longer
        // so more share it; a lone registration is committed at once. (Testing only what
        // waits, the few that arrived during a commit went alone: 3 a commit, not 7.)
        if !gathered {
            let now = NIODeadline.now()
            let (waiting, lastCommit) = state.withLock { ($0.pending.count, $0.lastCommit) }
            // Many waiting: the full window. A few, just after a commit: half of it, which
            // at moderate load takes ~0.9 ms off the median registration and costs the
            // S-CSCF's loaded batches nothing (BENCHMARKS.md, fourth 2026-12-02 session).
            let window: TimeAmount?
            if waiting >= Self.gatherWhenWaiting {
                window = Self.gatherWindow
            } else if waiting > 0 && now - lastCommit < Self.gatherWindow * 2 {
                window = .nanoseconds(Self.gatherWindow.nanoseconds / 2)
            } else {
                window = nil
            }
            if let window {
                loop.scheduleTask(in: window) { self.drainTurn(gathered: true) }
                return
            }
        }
        let (batch, closers) = state.withLock { state -> ([Entry], [CheckedContinuation<Void, Never>]) in
            let batch = state.pending
            state.pending.removeAll()
            if !batch.isEmpty { return (batch, []) }
            state.draining = false
            defer { state.closers.removeAll() }
            return ([], state.closers)
        }
        if batch.isEmpty {
            for closer in closers { closer.resume() }
            return
        }
        var changes: [(BindingChange, CheckedContinuation<Void, any Error>)] = []
        for (index, (item, continuation)) in batch.enumerated() {
            switch item {
            case .bindings(let change):
                changes.append((change, continuation))
            case .work(let work):
                // Queue order: the binding changes before it commit first. The work itself
                // runs on sqlite-nio's connection (async); the rest of the batch waits for it.
                commit(changes)
                let rest = batch[(index + 1)...]
                Task {
                    continuation.resume(with: await self.run(work))
                    self.state.withLock { $0.pending.insert(contentsOf: rest, at: 0) }
                    loop.execute { self.drainTurn(gathered: true) }
                }
                return
            }
        }
        commit(changes)
        loop.execute { self.drainTurn(gathered: false) }
    }

    /// Commits binding changes together. If the batch fails, each change is tried alone,
    /// so one bad change spoils no other.
    private func commit(_ changes: [(BindingChange, CheckedContinuation<Void, any Error>)]) {
        if changes.isEmpty { return }
        defer { state.withLock { $0.lastCommit = .now() } }
        do {
            try bindingWriter.commitHere(changes.map(\.0))
            for (_, continuation) in changes { continuation.resume() }
        } catch {
            if changes.count == 1 {
                changes[0].1.resume(throwing: error)
                return
            }
            for (change, continuation) in changes {
                do {
                    try bindingWriter.commitHere([change])
                    continuation.resume()
                } catch {
                    continuation.resume(throwing: error)
                }
            }
        }
    }

    private func run(_ work: Work) async -> Result<Void, any Error> {
        do {
            _ = try await connection.query("BEGIN IMMEDIATE")
            do {
                try await work(connection)
                _ = try await connection.query("COMMIT")
                return .success(())
            } catch {
                _ = try? await connection.query("ROLLBACK")
                return .failure(error)
            }
        } catch {
            return .failure(error)
        }
    }
}
