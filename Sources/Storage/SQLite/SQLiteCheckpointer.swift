import Logging
import NIOPosix
import SQLiteNIO

/// Copies the WAL back into the database file once a second, on a connection and a thread
/// of its own. A checkpoint ends in an fsync that can take tens of milliseconds; on the
/// shared reader connection (and sqlite-nio's shared thread pool) every subscriber read
/// queued behind it waited as long, and so did the registrations needing one.
final class SQLiteCheckpointer: Sendable {
    private let connection: SQLiteConnection
    private let thread: NIOThreadPool
    private let loop: Task<Void, Never>

    private init(connection: SQLiteConnection, thread: NIOThreadPool) {
        self.connection = connection
        self.thread = thread
        self.loop = Task {
            // PASSIVE: copies what no reader still needs, never blocks the writers.
            while (try? await Task.sleep(for: .seconds(1))) != nil {
                _ = try? await connection.query("PRAGMA wal_checkpoint(PASSIVE)")
            }
        }
    }

    static func start(path: String, logger: Logger) async throws -> SQLiteCheckpointer {
        let thread = NIOThreadPool(numberOfThreads: 1)
        thread.start()
        do {
            let connection = try await SQLiteConnection.open(
                storage: .file(path: path), threadPool: thread, logger: logger,
                on: MultiThreadedEventLoopGroup.singleton.any())
            _ = try await connection.query("PRAGMA busy_timeout=5000")
            return SQLiteCheckpointer(connection: connection, thread: thread)
        } catch {
            try? await thread.shutdownGracefully()
            throw error
        }
    }

    func stop() async {
        loop.cancel()
        _ = await loop.value
        try? await connection.close()
        try? await thread.shutdownGracefully()
    }
}
