import NIOCore
import NIOPosix
import Utilities

/// A `MediaGateway` over rtpengine's ng protocol: bencode over UDP, a fresh cookie per
/// request, the same datagram re-sent (rtpengine answers a repeated cookie from its cache,
/// so a retry never makes a second session) until a reply or the last attempt's timeout.
public final class NGClient: MediaGateway {
    /// `host:port` of the gateway, for errors and logs.
    public let name: String
    private let gateway: SocketAddress
    private let channel: any Channel
    private let pending: NIOLoopBound<PendingRequests>
    private let attempts: Int
    private let retryInterval: TimeAmount

    /// Binds a UDP socket on `localHost` (any port) for talking to `gateway`.
    public static func connect(
        to gateway: SocketAddress, from localHost: String = "127.0.0.1",
        attempts: Int = 3, retryInterval: TimeAmount = .milliseconds(500),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> NGClient {
        let loop = group.next()
        let pending = try await loop.submit { NIOLoopBound(PendingRequests(), eventLoop: loop) }.get()
        let channel = try await DatagramBootstrap(group: loop)
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 65_536))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NGReplyHandler(gateway: gateway, pending: pending))
                }
            }
            .bind(host: localHost, port: 0).get()
        let name = gateway.ipAddress.map { gateway.protocol == .inet6 ? "[\($0)]" : $0 } ?? "?"
        return NGClient(
            name: "\(name):\(gateway.port ?? 0)", gateway: gateway, channel: channel, pending: pending,
            attempts: attempts,
            retryInterval: retryInterval)
    }

    private init(
        name: String, gateway: SocketAddress, channel: any Channel, pending: NIOLoopBound<PendingRequests>,
        attempts: Int, retryInterval: TimeAmount
    ) {
        self.name = name
        self.gateway = gateway
        self.channel = channel
        self.pending = pending
        self.attempts = max(1, attempts)
        self.retryInterval = retryInterval
    }

    public func close() async {
        try? await channel.close()
    }

    // MARK: MediaGateway

    public func offer(_ offer: MediaOffer) async throws(MediaGatewayError) -> [UInt8] {
        try sdp(of: try await request(NGMessage.offer(offer)))
    }

    public func answer(_ answer: MediaAnswer) async throws(MediaGatewayError) -> [UInt8] {
        try sdp(of: try await request(NGMessage.answer(answer)))
    }

    public func delete(callID: String) async throws(MediaGatewayError) {
        do {
            _ = try await request(NGMessage.delete(callID: callID))
        } catch .refused(let reason) where reason.lowercased().contains("unknown call") {
            return  // already gone (its own timeout, or an earlier delete)
        }
    }

    public func query(callID: String) async throws(MediaGatewayError) -> MediaSessionStatus? {
        let reply: [String: Bencode]
        do {
            reply = try await request(NGMessage.query(callID: callID))
        } catch .refused(let reason) where reason.lowercased().contains("unknown call") {
            return nil
        }
        let tags = reply["tags"]?.dictionary.map { Array($0.keys).sorted() } ?? []
        return MediaSessionStatus(tags: tags, created: reply["created"]?.integer)
    }

    public func list() async throws(MediaGatewayError) -> [String] {
        let reply = try await request(NGMessage.list())
        return (reply["calls"]?.list ?? []).compactMap(\.text)
    }

    /// rtpengine's `ping`: true when it answers `pong`.
    public func ping() async -> Bool {
        guard let reply = try? await request(NGMessage.ping) else { return false }
        return reply["result"]?.text == "pong"
    }

    // MARK: the exchange

    private func sdp(of reply: [String: Bencode]) throws(MediaGatewayError) -> [UInt8] {
        guard case .bytes(let sdp) = reply["sdp"] else { throw .malformedReply(gateway: name) }
        return sdp
    }

    /// One request and its reply; `result: error` becomes `.refused` with the gateway's reason.
    func request(_ message: Bencode) async throws(MediaGatewayError) -> [String: Bencode] {
        let cookie = randomToken(length: 12)
        let datagram = NGMessage.datagram(cookie: cookie, message)
        let loop = channel.eventLoop
        let promise = loop.makePromise(of: [String: Bencode].self)
        let exchange = Exchange(
            cookie: cookie, datagram: datagram, gateway: gateway, promise: promise, attemptsLeft: attempts,
            interval: retryInterval)
        loop.execute { [pending, channel] in exchange.send(on: channel, pending: pending) }
        let reply: [String: Bencode]
        do {
            reply = try await promise.futureResult.get()
        } catch ExchangeFailure.malformedReply {
            throw .malformedReply(gateway: name)
        } catch {
            throw .noAnswer(gateway: name)
        }
        switch reply["result"]?.text {
        case "ok", "pong":
            return reply
        case "error":
            throw .refused(reason: reply["error-reason"]?.text ?? "no reason given")
        case let other?:
            throw .refused(reason: other)  // e.g. "load limit"
        case nil:
            throw .malformedReply(gateway: name)
        }
    }
}

private enum ExchangeFailure: Error {
    case noReply
    case malformedReply
}

/// Requests awaiting a reply, by cookie; touched on the channel's event loop only.
final class PendingRequests {
    var waiting: [String: EventLoopPromise<[String: Bencode]>] = [:]
}

/// One request's sending and re-sending.
private struct Exchange: Sendable {
    let cookie: String
    let datagram: [UInt8]
    let gateway: SocketAddress
    let promise: EventLoopPromise<[String: Bencode]>
    let attemptsLeft: Int
    let interval: TimeAmount

    func send(on channel: any Channel, pending: NIOLoopBound<PendingRequests>) {
        let loop = channel.eventLoop
        pending.value.waiting[cookie] = promise
        var buffer = channel.allocator.buffer(capacity: datagram.count)
        buffer.writeBytes(datagram)
        channel.writeAndFlush(AddressedEnvelope(remoteAddress: gateway, data: buffer), promise: nil)
        loop.scheduleTask(in: interval) {
            guard pending.value.waiting[cookie] != nil else { return }  // answered
            if attemptsLeft > 1 {
                Exchange(
                    cookie: cookie, datagram: datagram, gateway: gateway, promise: promise,
                    attemptsLeft: attemptsLeft - 1, interval: interval
                ).send(on: channel, pending: pending)
            } else {
                pending.value.waiting[cookie] = nil
                promise.fail(ExchangeFailure.noReply)
            }
        }
    }
}

/// Matches reply datagrams from the gateway to their requests by cookie; anything else
/// (another sender, an unknown or repeated cookie) is dropped.
private final class NGReplyHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    private let gateway: SocketAddress
    private let pending: NIOLoopBound<PendingRequests>

    init(gateway: SocketAddress, pending: NIOLoopBound<PendingRequests>) {
        self.gateway = gateway
        self.pending = pending
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        guard envelope.remoteAddress == gateway else { return }
        let bytes = envelope.data.readableBytesView
        guard let space = bytes.firstIndex(of: UInt8(ascii: " ")) else { return }
        let cookie = String(decoding: bytes[bytes.startIndex..<space], as: UTF8.self)
        guard let promise = pending.value.waiting.removeValue(forKey: cookie) else { return }  // late or stray
        if let reply = NGMessage.parseReply(bytes) {
            promise.succeed(reply.body)
        } else {
            promise.fail(ExchangeFailure.malformedReply)
        }
    }
}
