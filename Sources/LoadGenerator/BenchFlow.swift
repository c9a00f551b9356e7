import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import SIPCore
import Synchronization

/// One WIC flow for the load generator: TLS, the WebSocket opening handshake and masked
/// frames written out by hand (RFC 6455), one SIP transaction at a time.
public final class BenchFlow: ChannelInboundHandler, @unchecked Sendable {
    public typealias InboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    // Touched on the channel's event loop only.
    private var buffer: [UInt8] = []
    private var open = false
    private var handshake: EventLoopPromise<Void>?
    private var pending: EventLoopPromise<SIPResponse>?
    private var closeCode: UInt16?
    public let channel: any Channel

    private init(channel: any Channel) { self.channel = channel }

    public static func connect(
        host: String, port: Int, path: String, origin: String, tls: NIOSSLContext, serverName: String?
    ) async throws -> BenchFlow {
        let box = Mutex<BenchFlow?>(nil)
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.seconds(10))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let flow = BenchFlow(channel: channel)
                    box.withLock { $0 = flow }
                    try channel.pipeline.syncOperations.addHandler(
                        NIOSSLClientHandler(context: tls, serverHostname: serverName))
                    try channel.pipeline.syncOperations.addHandler(flow)
                }
            }
            .connect(host: host, port: port).get()
        guard let flow = box.withLock({ $0 }) else { throw BenchError.connect }
        let promise = channel.eventLoop.makePromise(of: Void.self)
        let key = Data((0..<16).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        let request =
            "GET \(path) HTTP/1.1\r\nHost: \(serverName ?? host):\(port)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: \(key)\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: sip\r\n"
            + "Origin: \(origin)\r\n\r\n"
        channel.eventLoop.execute {
            flow.handshake = promise
            channel.writeAndFlush(ByteBuffer(string: request), promise: nil)
        }
        try await promise.futureResult.get()
        return flow
    }

    /// Sends a request and waits for its final response (the server answers each REGISTER once).
    public func transaction(_ request: SIPRequest, timeout: TimeAmount = .seconds(32)) async throws -> SIPResponse {
        let payload = request.serialized()
        let promise = channel.eventLoop.makePromise(of: SIPResponse.self)
        let send: @Sendable () -> Void = {
            self.pending = promise
            let frame = ClientFrames.masked(payload, mask: ClientFrames.randomMask())
            self.channel.writeAndFlush(ByteBuffer(bytes: frame), promise: nil)
        }
        // Run from the flow's own loop (the bench's WIC tasks are), it goes out at once.
        if channel.eventLoop.inEventLoop { send() } else { channel.eventLoop.execute(send) }
        let timer = channel.eventLoop.scheduleTask(in: timeout) { promise.fail(BenchError.timeout) }
        defer { timer.cancel() }
        return try await promise.futureResult.get()
    }

    public func close() { channel.close(promise: nil) }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        buffer.append(contentsOf: unwrapInboundIn(data).readableBytesView)
        if !open {
            guard let end = ClientFrames.headEnd(buffer) else { return }
            let head = String(decoding: buffer[0..<end], as: UTF8.self)
            buffer.removeFirst(end + 4)
            if head.hasPrefix("HTTP/1.1 101") {
                open = true
                handshake?.succeed(())
            } else {
                handshake?.fail(BenchError.refused(String(head.prefix(40))))
            }
            handshake = nil
        }
        while let (opcode, payload) = ClientFrames.take(from: &buffer) {
            if opcode == 0x8 {
                // RFC 6455 §5.5.1: the close code is the payload's first two bytes.
                closeCode = payload.count >= 2 ? UInt16(payload[0]) << 8 | UInt16(payload[1]) : nil
                continue
            }
            guard opcode == 0x1 || opcode == 0x2 else { continue }
            if case .response(let response)? = try? SIPParser().parse(payload), response.statusCode >= 200 {
                pending?.succeed(response)
                pending = nil
            }
        }
    }

    public func channelInactive(context: ChannelHandlerContext) {
        let error = closeCode.map(BenchError.closedByServer) ?? .closed
        handshake?.fail(error)
        pending?.fail(error)
        handshake = nil
        pending = nil
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

public enum BenchError: Error, CustomStringConvertible {
    case connect
    case timeout
    case closed
    case closedByServer(UInt16)
    case refused(String)

    public var description: String {
        switch self {
        case .connect: "cannot connect"
        case .timeout: "no answer in time"
        case .closed: "connection closed"
        case .closedByServer(1008):
            "closed by the server with 1008: the flow sent faster than the server allows"
                + " (bench --flow-message-rate must not exceed serve's)"
        case .closedByServer(let code): "closed by the server with \(code)"
        case .refused(let head): "handshake refused: \(head)"
        }
    }
}
