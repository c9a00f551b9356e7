import NIOCore
import Testing

@testable import SIPTransport

/// NIO's receive pool with `PerReadRecvAllocator`, as a WSS channel reads: the pool keeps only
/// the one-byte first buffer, and every later read gets a full buffer of its own — so an idle
/// flow holds no receive buffer, and no read after the first is cut to one byte. Fails if
/// NIO's pool ever keeps or reuses buffers differently.
@Test func aFlowsReadsGetBuffersOfTheirOwn() {
    var pool = NIOPooledRecvBufferAllocator(capacity: 1, recvAllocator: PerReadRecvAllocator(capacity: 4_096))
    let allocator = ByteBufferAllocator()
    let (first, _) = pool.buffer(allocator: allocator) { $0.writeInteger(UInt8(0x16)) }
    #expect(first.capacity < 64)
    pool.record(actualReadBytes: 1)
    for round in 0..<4 {
        let (buffer, _) = pool.buffer(allocator: allocator) {
            $0.writeBytes(Array(repeating: UInt8(round), count: 1_500))
        }
        #expect(buffer.capacity >= 4_096, "read \(round)")
        #expect(buffer.readableBytes == 1_500)
        pool.record(actualReadBytes: 1_500)
    }
    #expect(pool.count == 1)  // only the first, one-byte buffer is kept
}
