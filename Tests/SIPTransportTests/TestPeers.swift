import Foundation
import NIOCore
import NIOPosix
import SIPCore
import Synchronization
import Utilities
import WebIMSTesting

@testable import SIPTransport

/// A raw UDP socket for tests: sends bytes, collects every datagram it gets.
final class RawUDPPeer: @unchecked Sendable {
    let channel: any Channel
    let collector: Collector

    init() async throws {
        let collector = Collector()
        self.collector = collector
        channel = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(collector) }
            }
            .bind(host: "127.0.0.1", port: 0).get()
    }

    var port: Int { channel.localAddress?.port ?? 0 }

    func send(_ bytes: [UInt8], to address: SocketAddress) async throws {
        try await channel.writeAndFlush(AddressedEnvelope(remoteAddress: address, data: ByteBuffer(bytes: bytes))).get()
    }

    func send(_ text: String, to address: SocketAddress) async throws { try await send(Array(text.utf8), to: address) }

    /// The next datagram, or nil after `timeout`.
    func next(timeout: Duration = .seconds(5)) async -> AddressedEnvelope<ByteBuffer>? {
        let deadline = ContinuousClock.now + timeout
        repeat {
            if let first = collector.received.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) { return first }
            try? await Task.sleep(for: .milliseconds(5))
        } while ContinuousClock.now < deadline
        return nil
    }

    func close() async { try? await channel.close().get() }

    final class Collector: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        let received = Mutex<[AddressedEnvelope<ByteBuffer>]>([])
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let envelope = unwrapInboundIn(data)
            received.withLock { $0.append(envelope) }
        }
    }
}

/// A raw TCP connection for tests: sends bytes, accumulates what comes back.
final class RawTCPPeer: @unchecked Sendable {
    let channel: any Channel
    let collector: Collector

    init(to address: SocketAddress) async throws {
        let collector = Collector()
        self.collector = collector
        channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(collector) }
            }
            .connect(to: address).get()
    }

    func send(_ text: String) async throws { try await send(Array(text.utf8)) }
    func send(_ bytes: [UInt8]) async throws {
        try await channel.writeAndFlush(ByteBuffer(bytes: bytes)).get()
    }

    /// Waits until the bytes received contain `count` complete SIP messages (framed by
    /// Content-Length) and returns them parsed.
    func messages(count: Int, timeout: Duration = .seconds(5)) async -> [SIPMessage] {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let parsed = collector.parsedMessages()
            if parsed.count >= count { return parsed }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return collector.parsedMessages()
    }

    var isClosed: Bool { collector.closed.withLock { $0 } }

    func waitClosed(timeout: Duration = .seconds(5)) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if isClosed { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return isClosed
    }

    func rawBytes() -> [UInt8] { collector.bytes.withLock { $0 } }

    func close() async { try? await channel.close().get() }

    final class Collector: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        let bytes = Mutex<[UInt8]>([])
        let closed = Mutex(false)
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let buffer = unwrapInboundIn(data)
            bytes.withLock { $0.append(contentsOf: buffer.readableBytesView) }
        }
        func channelInactive(context: ChannelHandlerContext) { closed.withLock { $0 = true } }

        func parsedMessages() -> [SIPMessage] {
            var all = bytes.withLock { $0 }
            var result: [SIPMessage] = []
            let framer = SIPStreamFramer()
            while true {
                let frame = all.withUnsafeBufferPointer { try? framer.nextFrame($0) }
                switch frame {
                case .message(let length)?:
                    if let m = try? SIPParser().parse(Array(all[0..<length]), framing: .stream) { result.append(m) }
                    all.removeFirst(length)
                case .pong?: all.removeFirst(2)
                case .ping?: all.removeFirst(4)
                default: return result
                }
            }
        }
    }
}

func crlf(_ text: String) -> String {
    text.split(separator: "\n", omittingEmptySubsequences: false).joined(separator: "\r\n")
}

func options(
    branch: String = "z9hG4bK" + randomToken(), via: String = "SIP/2.0/UDP 127.0.0.1:9;rport",
    callID: String = randomToken()
) -> String {
    crlf(
        """
        OPTIONS sip:127.0.0.1 SIP/2.0
        Via: \(via);branch=\(branch)
        Max-Forwards: 70
        From: <sip:tester@example.com>;tag=t1
        To: <sip:127.0.0.1>
        Call-ID: \(callID)
        CSeq: 1 OPTIONS
        Content-Length: 0


        """)
}

func parse(_ buffer: ByteBuffer) -> SIPMessage? {
    try? SIPParser().parse(Array(buffer.readableBytesView), framing: .message)
}

/// The status code of a response; nil for a request or nothing.
func statusCode(_ message: SIPMessage?) -> Int? {
    guard case .response(let response)? = message else { return nil }
    return response.statusCode
}
