/// A map for the short-lived state of authentication (nonce counts, validated tokens, login
/// attempts, pending authorizations), bounded in size and in age with constant work per
/// operation.
///
/// Entries go into the current generation. The current one becomes the previous one when it
/// holds half of `capacity` or has been current for `lifetime`, and the previous one is then
/// dropped whole. So an entry stays at least `lifetime` unless the table is full, and at most
/// twice that. (A sweep for expired entries on each insert into a full table costs a pass
/// over all of them per insert once the table is full of live ones.)
///
/// Not thread-safe: keep it in a `Mutex`.
public struct AgedTable<Key: Hashable, Value> {
    public let capacity: Int
    /// Seconds.
    public let lifetime: Double
    private var current: [Key: Value] = [:]
    private var previous: [Key: Value] = [:]
    private var currentSince: Double?

    public init(capacity: Int, lifetime: Double) {
        self.capacity = max(2, capacity)
        self.lifetime = lifetime
    }

    public var count: Int { current.count + previous.count }

    /// The entry for `key`, if it has not aged out by `now` (seconds, any fixed epoch).
    public mutating func value(for key: Key, now: Double) -> Value? {
        age(now: now)
        return current[key] ?? previous[key]
    }

    /// Stores `value` in the current generation. Returns the generation dropped to make room
    /// or by age, if one was (callers that must remember what they forgot look at it).
    @discardableResult
    public mutating func set(_ key: Key, _ value: Value, now: Double) -> [Key: Value]? {
        var dropped = age(now: now)
        previous.removeValue(forKey: key)
        current[key] = value
        if current.count >= capacity / 2 {
            dropped = merge(dropped, previous)
            previous = current
            current = [:]
            currentSince = now
        }
        return dropped
    }

    @discardableResult
    public mutating func removeValue(for key: Key) -> Value? {
        current.removeValue(forKey: key) ?? previous.removeValue(forKey: key)
    }

    /// Moves the generations on by `now`: one step after `lifetime`, both after twice that.
    @discardableResult
    private mutating func age(now: Double) -> [Key: Value]? {
        guard let since = currentSince else {
            currentSince = now
            return nil
        }
        guard now - since >= lifetime else { return nil }
        var dropped: [Key: Value]? = previous.isEmpty ? nil : previous
        if now - since >= 2 * lifetime {
            dropped = merge(dropped, current)
            previous = [:]
        } else {
            previous = current
        }
        current = [:]
        currentSince = now
        return dropped
    }

    private func merge(_ a: [Key: Value]?, _ b: [Key: Value]) -> [Key: Value]? {
        guard let a else { return b.isEmpty ? nil : b }
        return a.merging(b) { first, _ in first }
    }
}

extension AgedTable: Sendable where Key: Sendable, Value: Sendable {}
