import Crypto
import Foundation
import Synchronization
import Utilities

/// Server nonces that carry their own age and a MAC (RFC 7616 §3.3 suggests this shape):
/// any S-CSCF holding the key can tell a forged or stale nonce without keeping state.
/// Layout, base64url: 8-byte issue time (ms) ‖ 8 random bytes ‖ 16-byte HMAC-SHA256 prefix
/// over time ‖ random ‖ realm.
public struct NonceMinter: Sendable {
    /// HMAC already keyed: each nonce copies it instead of deriving the pads from the key
    /// again (the copy shares the state until it is updated).
    let keyed: HMAC<SHA256>
    /// How long a nonce may be answered; older ones are `stale`.
    public let lifetime: Duration

    public init(key: [UInt8], lifetime: Duration = .seconds(300)) {
        self.keyed = HMAC<SHA256>(key: SymmetricKey(data: key))
        self.lifetime = lifetime
    }

    /// A fresh key for a server that has none stored.
    public static func makeKey() -> [UInt8] {
        randomBytes(32)
    }

    public func mint(realm: String, now: Date = Date()) -> String {
        var generator = SystemRandomNumberGenerator()
        let millis = UInt64(max(0, now.timeIntervalSince1970 * 1000))
        var body = withUnsafeBytes(of: millis.bigEndian) { Array($0) }
        withUnsafeBytes(of: generator.next() as UInt64) { body.append(contentsOf: $0) }
        return base64URLEncode(body + mac(body, realm: realm))
    }

    public enum Verdict: Sendable, Equatable {
        case valid
        /// Ours, but older than `lifetime`: challenge again with `stale=true`.
        case stale
        /// Not ours (forged, for another realm, or garbage).
        case invalid
    }

    public func check(_ nonce: String, realm: String, now: Date = Date()) -> Verdict {
        guard let bytes = Self.decode(nonce) else { return .invalid }
        let body = Array(bytes[0..<16])
        guard constantTimeEqual(mac(body, realm: realm), Array(bytes[16..<32])) else { return .invalid }
        let millis = Self.issueMillis(bytes)
        let nowMillis = UInt64(max(0, now.timeIntervalSince1970 * 1000))
        let lifetimeMillis = UInt64(lifetime.components.seconds * 1000)
        // A nonce from the future beyond a little clock skew is not ours to trust.
        if millis > nowMillis + 5_000 { return .invalid }
        return nowMillis - min(millis, nowMillis) > lifetimeMillis ? .stale : .valid
    }

    /// When a nonce of this layout was issued (ms since 1970), read without checking its MAC.
    public static func issueTime(of nonce: String) -> UInt64? {
        decode(nonce).map(issueMillis)
    }

    /// The nonce's 32 bytes, or nil when it cannot be one of ours. 32 bytes are 43
    /// characters; anything much longer is not worth decoding.
    private static func decode(_ nonce: String) -> [UInt8]? {
        guard nonce.utf8.count <= 64, let bytes = base64URLDecode(nonce), bytes.count == 32 else { return nil }
        return bytes
    }

    private static func issueMillis(_ bytes: [UInt8]) -> UInt64 {
        bytes[0..<8].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    }

    private func mac(_ body: [UInt8], realm: String) -> [UInt8] {
        var hmac = keyed
        hmac.update(data: body)
        var realm = realm
        realm.withUTF8 { hmac.update(data: UnsafeRawBufferPointer($0)) }
        return Array(hmac.finalize().prefix(16))
    }
}

/// Remembers the highest nonce-count seen per nonce, so a replayed response (same or lower
/// `nc`) is refused (RFC 7616 §3.4). Entries stay for the nonces' lifetime in a bounded
/// `AgedTable`. When it is full of live nonces it forgets the oldest generation, and then every
/// nonce issued no later than the newest of those is refused too (the client is challenged
/// again): a forgotten count must not make a replay look like a first use.
public final class NonceCountTracker: Sendable {
    private struct Entry {
        var highest: UInt32
        /// Issue time (ms) read from the nonce.
        var issued: UInt64
    }
    private struct State {
        var table: AgedTable<String, Entry>
        /// Nonces issued at or before this (ms) whose counts may have been forgotten.
        var forgottenThrough: UInt64 = 0
    }
    private let state: Mutex<State>

    public init(capacity: Int = 100_000, lifetime: Duration = .seconds(300)) {
        let seconds = Double(lifetime.components.seconds) + Double(lifetime.components.attoseconds) * 1e-18
        state = Mutex(State(table: AgedTable(capacity: capacity, lifetime: seconds)))
    }

    /// True when `nc` is higher than any count seen for this nonce; records it.
    public func accept(nonce: String, nc: UInt32, now: Date = Date()) -> Bool {
        let t = now.timeIntervalSince1970
        return state.withLock { s in
            let issued: UInt64
            if let entry = s.table.value(for: nonce, now: t) {
                guard entry.highest < nc else { return false }
                issued = entry.issued
            } else {
                issued = NonceMinter.issueTime(of: nonce) ?? 0
                guard s.forgottenThrough == 0 || issued > s.forgottenThrough else { return false }
            }
            if let dropped = s.table.set(nonce, Entry(highest: nc, issued: issued), now: t) {
                for entry in dropped.values where entry.issued > s.forgottenThrough {
                    s.forgottenThrough = entry.issued
                }
            }
            return true
        }
    }
}
