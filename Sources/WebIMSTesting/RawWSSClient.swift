import Foundation
import LoadGenerator
import NIOCore
import NIOPosix
import NIOSSL
import SIPCore
import Synchronization

/// A WebSocket client written out by hand over TLS: the handshake as text, masked frames
/// (RFC 6455 §5.2, `ClientFrames`), so a test depends on nothing it is testing. Frames and
/// the handshake's head are read from what arrived, polling for up to 5 s.
public final class RawWSSClient: Sendable {
    public let channel: any Channel
    let collector: Collector

    public init(port: Int) async throws {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateVerification = .none
        let context = try NIOSSLContext(configuration: tls)
        let collector = Collector()
        self.collector = collector
        channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        NIOSSLClientHandler(context: context, serverHostname: nil))
                    try channel.pipeline.syncOperations.addHandler(collector)
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
    }

    public func send(_ bytes: [UInt8]) async throws { try await channel.writeAndFlush(ByteBuffer(bytes: bytes)).get() }

    /// Sends the opening handshake; returns the HTTP status code.
    public func handshake(origin: String?, protocols: String?) async throws -> Int {
        var text = "GET /sip HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        text += "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        if let origin { text += "Origin: \(origin)\r\n" }
        if let protocols { text += "Sec-WebSocket-Protocol: \(protocols)\r\n" }
        text += "\r\n"
        try await send(Array(text.utf8))
        for _ in 0..<300 {
            let bytes = collector.bytes.withLock { $0 }
            if let end = ClientFrames.headEnd(bytes) {
                let head = String(decoding: bytes[0..<end], as: UTF8.self)
                collector.bytes.withLock { $0.removeFirst(end + 4) }
                collector.head.withLock { $0 = head }
                return Int(head.split(separator: " ").dropFirst().first ?? "") ?? 0
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        return 0
    }

    /// One masked text frame (or, with `fin: false` and opcode 0, a fragment of a message).
    public func sendText(
        _ text: String, opcode: UInt8 = 0x1, fin: Bool = true, mask: [UInt8] = [0x12, 0x34, 0x56, 0x78]
    ) async throws {
        let frame = ClientFrames.masked(Array(text.utf8), opcode: opcode, fin: fin, mask: mask)
        try await send(frame)
    }

    /// The next server frame's payload (opcode, bytes), or nil after a timeout.
    public func nextFrame() async -> (opcode: UInt8, payload: [UInt8])? {
        for _ in 0..<500 {
            let frame = collector.bytes.withLock { ClientFrames.take(from: &$0) }
            if let frame { return frame }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return nil
    }

    public func nextSIP() async -> SIPResponse? {
        guard let (_, payload) = await nextFrame(), case .response(let r)? = try? SIPParser().parse(payload) else {
            return nil
        }
        return r
    }

    /// The head of the handshake's answer (status line and header fields).
    public var responseHead: String { collector.head.withLock { $0 } }

    public var isClosed: Bool { collector.closed.withLock { $0 } }

    public func close() async { try? await channel.close().get() }

    final class Collector: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let bytes = Mutex<[UInt8]>([])
        let head = Mutex<String>("")
        let closed = Mutex(false)
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let buffer = unwrapInboundIn(data)
            bytes.withLock { $0.append(contentsOf: buffer.readableBytesView) }
        }
        func channelInactive(context: ChannelHandlerContext) { closed.withLock { $0 = true } }
    }
}
