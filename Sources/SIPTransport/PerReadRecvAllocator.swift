import NIOCore

/// Receive buffers for long-lived, mostly idle stream connections (WSS flows): each read gets
/// a buffer of its own that is freed once the pipeline lets go of it, so a connection that
/// waits between REGISTER refreshes holds no receive buffer. NIO's default keeps one pooled
/// buffer (2,056 bytes) per channel for the channel's whole life: the largest single item of
/// an idle registered flow's memory (scripts/heap-profile).
///
/// How it gets there with NIO's pool (`NIOPooledRecvBufferAllocator`): the pool keeps the
/// first buffer it is given and, with a capacity of one (`maxMessagesPerRead` 1), never
/// stores another; with no size hint and "may grow" answered after every read, it never
/// reuses the kept one either. So the first buffer is made tiny — the connection's first
/// read takes one byte of the TLS ClientHello and epoll reports the rest at once — and every
/// later read gets `capacity` bytes, allocated then.
struct PerReadRecvAllocator: RecvByteBufferAllocator {
    /// Bytes per read after the first: a SIP message of a few kilobytes in one read (a
    /// longer TLS record takes two or three, each reported at once by epoll).
    let capacity: Int
    private var primed = false

    init(capacity: Int = 8_192) {
        self.capacity = capacity
    }

    func buffer(allocator: ByteBufferAllocator) -> ByteBuffer {
        allocator.buffer(capacity: primed ? capacity : 1)
    }

    /// No hint, so the pool never resizes and reuses its kept buffer.
    func nextBufferSize() -> Int? { nil }

    mutating func record(actualReadBytes: Int) -> Bool {
        primed = true
        return true
    }
}
