import MediaGateway
import NIOCore
import NIOPosix
import Synchronization

/// A UDP server on loopback that speaks just enough ng for the client's failure paths: each
/// datagram is handed to `reply` with how many times its cookie has been seen, and whatever
/// bytes it returns go back (nil: stay silent).
final class FakeNGServer: Sendable {
    typealias Reply = @Sendable (_ cookie: String, _ request: [String: Bencode], _ attempt: Int) -> [UInt8]?
    let channel: any Channel
    private let log: Log

    let address: SocketAddress
    /// Datagrams received, every retry counted.
    var received: Int { log.seen.withLock { $0.values.reduce(0, +) } }
    /// The last request's cookie and sender.
    var lastRequest: (cookie: String, from: SocketAddress)? { log.last.withLock { $0 } }

    static func start(reply: @escaping Reply) async throws -> FakeNGServer {
        let log = Log()
        let channel = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Handler(log: log, reply: reply))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        guard let address = channel.localAddress else { throw ChannelError.unknownLocalAddress }
        return FakeNGServer(channel: channel, address: address, log: log)
    }

    private init(channel: any Channel, address: SocketAddress, log: Log) {
        self.channel = channel
        self.address = address
        self.log = log
    }

    func close() async { try? await channel.close() }

    /// Sends `bytes` from this server's socket to `address`.
    func send(_ bytes: [UInt8], to address: SocketAddress) async throws {
        let buffer = channel.allocator.buffer(bytes: bytes)
        try await channel.writeAndFlush(AddressedEnvelope(remoteAddress: address, data: buffer))
    }

    /// `cookie` followed by a bencoded dictionary.
    static func reply(_ cookie: String, _ body: [String: Bencode]) -> [UInt8] {
        NGMessage.datagram(cookie: cookie, .dictionary(body))
    }

    private final class Log: Sendable {
        let seen = Mutex<[String: Int]>([:])
        let last = Mutex<(cookie: String, from: SocketAddress)?>(nil)
    }

    private final class Handler: ChannelInboundHandler, Sendable {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        typealias OutboundOut = AddressedEnvelope<ByteBuffer>
        let log: Log
        let reply: Reply

        init(log: Log, reply: @escaping Reply) {
            self.log = log
            self.reply = reply
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let envelope = unwrapInboundIn(data)
            guard let request = NGMessage.parseReply(envelope.data.readableBytesView) else { return }
            let attempt = log.seen.withLock { table in
                table[request.cookie, default: 0] += 1
                return table[request.cookie, default: 0]
            }
            log.last.withLock { $0 = (request.cookie, envelope.remoteAddress) }
            guard let bytes = reply(request.cookie, request.body, attempt) else { return }
            let buffer = context.channel.allocator.buffer(bytes: bytes)
            context.writeAndFlush(
                wrapOutboundOut(AddressedEnvelope(remoteAddress: envelope.remoteAddress, data: buffer)), promise: nil)
        }
    }
}
