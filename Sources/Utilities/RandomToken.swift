import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A random token for branches, tags and flow tokens: `length` characters of [0-9a-z].
public func randomToken(length: Int = 16) -> String {
    var bytes = [UInt8]()
    bytes.reserveCapacity(length)
    // Twelve base-36 digits from each 64-bit draw (36^12 < 2^64).
    while bytes.count < length {
        var draw = randomPool.withLock { $0.next() }
        for _ in 0..<min(12, length - bytes.count) {
            bytes.append(tokenAlphabet[Int(draw % 36)])
            draw /= 36
        }
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// `count` bytes from the system's cryptographic generator: keys, secrets, salts (rare,
/// so not through the token pool).
public func randomBytes(_ count: Int) -> [UInt8] {
    var generator = SystemRandomNumberGenerator()
    return (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
}

/// Kernel randomness taken 512 bytes at a time: a request draws several tokens (tags,
/// branches, charging IDs), and a `getrandom` call for each showed in profiles.
private let randomPool = Mutex(RandomPool())

private struct RandomPool: Sendable {
    private var bytes = [UInt8](repeating: 0, count: 512)
    private var used = 512

    mutating func next() -> UInt64 {
        if used + 8 > bytes.count {
            refill()
            used = 0
        }
        let offset = used
        used += 8
        return bytes.withUnsafeMutableBytes { buffer in
            let value = buffer.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
            // What was handed out does not linger in the pool.
            buffer.storeBytes(of: 0, toByteOffset: offset, as: UInt64.self)
            return value
        }
    }

    private mutating func refill() {
        var generator = SystemRandomNumberGenerator()
        bytes.withUnsafeMutableBytes { buffer in
            #if canImport(Glibc) || canImport(Darwin)
                // The C library's cryptographic generator, 512 bytes per call.
                if let base = buffer.baseAddress {
                    arc4random_buf(base, buffer.count)
                    return
                }
            #endif
            for offset in stride(from: 0, to: buffer.count, by: 8) {
                buffer.storeBytes(of: generator.next(), toByteOffset: offset, as: UInt64.self)
            }
        }
    }
}

private let tokenAlphabet: [UInt8] = Array("0123456789abcdefghijklmnopqrstuvwxyz".utf8)
