import NIOCore
import NIOPosix
import Synchronization

/// Runs Swift tasks on a NIO event loop: a message's handler task then runs on the thread
/// that read the message and writes its answer without a hop between threads (and without
/// waking the global executor's threads for every request).
public final class EventLoopExecutor: TaskExecutor {
    public let eventLoop: any EventLoop

    init(eventLoop: any EventLoop) { self.eventLoop = eventLoop }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        eventLoop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }

    private static let shared = Mutex<[ObjectIdentifier: EventLoopExecutor]>([:])

    /// The executor of the event loop this thread runs, if it runs one.
    public static var current: EventLoopExecutor? {
        guard let loop = MultiThreadedEventLoopGroup.currentEventLoop else { return nil }
        return of(loop)
    }

    /// One executor per event loop, made on first use.
    public static func of(_ loop: any EventLoop) -> EventLoopExecutor {
        shared.withLock { table in
            if let executor = table[ObjectIdentifier(loop)] { return executor }
            let executor = EventLoopExecutor(eventLoop: loop)
            table[ObjectIdentifier(loop)] = executor
            return executor
        }
    }
}
