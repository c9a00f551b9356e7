import Synchronization

/// Several gateways as one (ARCHITECTURE.md, "Scale"): a call sticks to one gateway by its
/// call ID; a new call starts at the gateway its call ID hashes to and moves to the next
/// when that one does not answer.
public final class MediaGatewayPool: MediaGateway {
    private let gateways: [any MediaGateway]
    /// Call ID → index of the gateway holding it, from its first offer to its delete.
    private let pinned = Mutex<[String: Int]>([:])

    public init(_ gateways: [any MediaGateway]) {
        precondition(!gateways.isEmpty, "a pool needs a gateway")
        self.gateways = gateways
    }

    public var count: Int { gateways.count }

    public func offer(_ offer: MediaOffer) async throws(MediaGatewayError) -> [UInt8] {
        if let index = pinned.withLock({ $0[offer.callID] }) {
            return try await gateways[index].offer(offer)
        }
        let first = Self.home(of: offer.callID, among: gateways.count)
        var lastError = MediaGatewayError.noAnswer(gateway: "none")
        for step in 0..<gateways.count {
            let index = (first + step) % gateways.count
            do {
                let sdp = try await gateways[index].offer(offer)
                pinned.withLock { $0[offer.callID] = index }
                return sdp
            } catch .noAnswer(let gateway) {
                lastError = .noAnswer(gateway: gateway)  // the next one may answer
            }
        }
        throw lastError
    }

    public func answer(_ answer: MediaAnswer) async throws(MediaGatewayError) -> [UInt8] {
        try await gateways[index(of: answer.callID)].answer(answer)
    }

    public func delete(callID: String) async throws(MediaGatewayError) {
        let index = index(of: callID)
        try await gateways[index].delete(callID: callID)
        pinned.withLock { _ = $0.removeValue(forKey: callID) }
    }

    public func query(callID: String) async throws(MediaGatewayError) -> MediaSessionStatus? {
        try await gateways[index(of: callID)].query(callID: callID)
    }

    public func list() async throws(MediaGatewayError) -> [String] {
        var calls: [String] = []
        for gateway in gateways { calls += try await gateway.list() }
        return calls
    }

    private func index(of callID: String) -> Int {
        pinned.withLock { $0[callID] } ?? Self.home(of: callID, among: gateways.count)
    }

    /// FNV-1a of the call ID: the same on every node (Swift's `hashValue` is seeded per process).
    static func home(of callID: String, among count: Int) -> Int {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in callID.utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01b3
        }
        return Int(hash % UInt64(count))
    }
}
