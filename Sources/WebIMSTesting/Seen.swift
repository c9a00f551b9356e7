import Synchronization

/// What a callback saw, in order.
public final class Seen<T: Sendable>: Sendable {
    public init() {}

    private let items = Mutex<[T]>([])
    public func append(_ item: T) { items.withLock { $0.append(item) } }
    public var all: [T] { items.withLock { $0 } }

    /// Waits until something matching `predicate` has been seen.
    public func first(timeout: Duration = .seconds(5), where predicate: (T) -> Bool = { _ in true }) async -> T? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let found = all.first(where: predicate) { return found }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return nil
    }
}
