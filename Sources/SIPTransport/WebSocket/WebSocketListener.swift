import Crypto
import NIOCore
import NIOHTTP1
import NIOPosix
import SIPCore
import Utilities

extension SIPEndpoint {
    /// The WSS listener (RFC 7118): caps, TLS, the HTTP upgrade, then one handler for the
    /// flow (framing, keep-alive, message assembly, the message rate, SIP).
    func bindWebSocket(_ configuration: SIPWebSocketConfiguration) async throws -> any Channel {
        let endpoint = self
        return try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 4096)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            // An idle flow holds no receive buffer (PerReadRecvAllocator).
            .childChannelOption(.maxMessagesPerRead, value: 1)
            .childChannelOption(.recvAllocator, value: PerReadRecvAllocator())
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try endpoint.setUpWebSocket(channel, configuration) }
            }
            .bind(host: self.configuration.host, port: configuration.port).get()
    }

    private func setUpWebSocket(_ channel: any Channel, _ configuration: SIPWebSocketConfiguration) throws {
        // Caps first, before any TLS work is spent on the connection.
        let address = channel.remoteAddress?.ipAddress ?? "?"
        guard
            flows.admit(
                address, maxTotal: configuration.maxConnections, maxPerAddress: configuration.maxConnectionsPerAddress)
        else {
            channel.close(promise: nil)
            return
        }
        channel.closeFuture.whenComplete { [flows] _ in flows.connectionClosed(address) }
        // A connection that never finishes TLS and the upgrade is closed.
        channel.eventLoop.scheduleTask(in: TimeAmount(configuration.handshakeTimeout)) {
            channel.pipeline.handler(type: SIPWebSocketHandler.self).whenFailure { _ in channel.close(promise: nil) }
        }
        let sync = channel.pipeline.syncOperations
        if let webSocketTLS {
            try sync.addHandler(LeanTLSServerHandler(context: webSocketTLS, allocator: channel.allocator))
        }
        let core = self.core
        let flows = self.flows
        let upgrader = SIPWebSocketUpgrader(
            accepts: { Self.handshakeVerdict($0, configuration) == nil },
            flowHandler: { channel, head in
                SIPWebSocketHandler(
                    core: core, flows: flows,
                    flow: SIPFlow(token: "fl-" + randomToken(length: 12), origin: head.headers.first(name: "origin")),
                    sweep: KeepAliveSweep.of(
                        channel.eventLoop, interval: configuration.pingInterval, idle: configuration.idleTimeout),
                    assembly: MessageAssembly(maxSize: configuration.maxMessageSize),
                    rate: MessageRate(burst: configuration.messageBurst, perSecond: configuration.messagesPerSecond))
            })
        try sync.configureHTTPServerPipeline(withServerUpgrade: (upgraders: [upgrader], completionHandler: { _ in }))
        try sync.addHandler(HandshakeRefusal(configuration: configuration), name: "handshake-refusal")
    }

    /// nil to upgrade; else the HTTP status that refuses the handshake and why: the edge's
    /// Origin decision first, then subprotocol `sip` (RFC 7118 §4) and a WebSocket upgrade.
    static func handshakeVerdict(_ head: HTTPRequestHead, _ configuration: SIPWebSocketConfiguration)
        -> (HTTPResponseStatus, String)?
    {
        if let refusal = configuration.originPolicy(head.headers.first(name: "origin")) { return (.forbidden, refusal) }
        // A client may offer several protocols in one header (`foo, sip`).
        let offered = head.headers["sec-websocket-protocol"].flatMap { $0.split(separator: ",") }
            .map {
                String($0.drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
                    .lowercased()
            }
        guard offered.contains("sip") else { return (.badRequest, "Subprotocol sip required") }
        guard head.headers.first(name: "upgrade")?.lowercased() == "websocket" else {
            return (.upgradeRequired, "WebSocket only")
        }
        return nil
    }

    /// Open WebSocket flows.
    public var openFlows: Int { flows.state.withLock { $0.flows.count } }

    /// Open WSS connections (flows plus handshakes in progress).
    public var openWebSocketConnections: Int { flows.state.withLock { $0.total } }

    /// The most WSS connections open at once since the last call, and now.
    public func takeConnectionHighWater() -> (highWater: Int, now: Int) {
        flows.state.withLock { state in
            defer { state.highWater = state.total }
            return (state.highWater, state.total)
        }
    }

    /// `body` runs for every flow that closes (its WebSocket connection ended).
    public func whenFlowCloses(_ body: @escaping @Sendable (SIPFlow) -> Void) {
        flows.state.withLock { $0.closedHandlers.append(body) }
    }

    /// Whether a flow is open.
    public func hasFlow(_ token: String) -> Bool { flows.connection(token)?.isActive ?? false }

    /// Sends a request down a flow as a client transaction and returns the WIC's answer:
    /// 430 when the flow is gone or goes before it answers (RFC 5626 §5.3), 408 after Timer F.
    public func send(_ request: SIPRequest, overFlow token: String) async -> SIPResponse {
        await send(request, to: .flow(token))
    }

    /// Stops taking connections and tells every WIC it is going away (close 1001, RFC 6455
    /// §7.4.1) so it reconnects elsewhere or later; waits up to `grace` for the flows to go.
    public func closeFlows(grace: Duration) async {
        let all = flows.state.withLock { Array($0.flows.values) }
        for connection in all {
            let channel = connection.channel
            writeFrame(closeFrame(WebSocketCloseCode.goingAway, allocator: channel.allocator), on: channel)
        }
        let deadline = ContinuousClock.now + grace
        while ContinuousClock.now < deadline, openFlows > 0 { try? await Task.sleep(for: .milliseconds(50)) }
        for connection in all { try? await connection.channel.close().get() }
    }
}

/// Answers handshakes that were not upgraded: 403 for a foreign or missing Origin, 400
/// without subprotocol `sip`, 426 for plain HTTP; then closes.
final class HandshakeRefusal: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    let configuration: SIPWebSocketConfiguration

    init(configuration: SIPWebSocketConfiguration) { self.configuration = configuration }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(let head) = unwrapInboundIn(data) else { return }
        let (status, reason) = SIPEndpoint.handshakeVerdict(head, configuration) ?? (.badRequest, "Bad handshake")
        var headers = HTTPHeaders([("Content-Type", "text/plain"), ("Connection", "close")])
        headers.add(name: "Content-Length", value: String(reason.utf8.count + 1))
        context.write(
            wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(
            wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: reason + "\n")))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { [channel = context.channel] _ in
            channel.close(promise: nil)
        }
    }
}

/// The WebSocket opening handshake, server side (RFC 6455 §4.2), for NIO's HTTP upgrade
/// handler: version 13 and one key, the edge's verdict on the request (`accepts`), then the
/// 101's headers with subprotocol `sip` (RFC 7118 §4); the upgraded pipeline gets the flow
/// handler alone (it does its own framing). A refused request fails the upgrade, and
/// `HandshakeRefusal` answers it.
struct SIPWebSocketUpgrader: HTTPServerProtocolUpgrader, Sendable {
    let accepts: @Sendable (HTTPRequestHead) -> Bool
    let flowHandler: @Sendable (any Channel, HTTPRequestHead) -> SIPWebSocketHandler

    var supportedProtocol: String { "websocket" }
    /// None: NIO would want them named in `Connection` too. The key and version are checked
    /// in `buildUpgradeResponse`.
    var requiredUpgradeHeaders: [String] { [] }

    struct Refused: Error {}

    /// RFC 6455 §1.3: the GUID every server appends to the client's key.
    static let keyGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    func buildUpgradeResponse(
        channel: any Channel, upgradeRequest: HTTPRequestHead, initialResponseHeaders: HTTPHeaders
    )
        -> EventLoopFuture<HTTPHeaders>
    {
        let keys = upgradeRequest.headers["sec-websocket-key"]
        let versions = upgradeRequest.headers["sec-websocket-version"]
        guard keys.count == 1, versions == ["13"], accepts(upgradeRequest) else {
            return channel.eventLoop.makeFailedFuture(Refused())
        }
        var headers = initialResponseHeaders
        headers.replaceOrAdd(name: "Upgrade", value: "websocket")
        headers.replaceOrAdd(name: "Connection", value: "upgrade")
        headers.add(name: "Sec-WebSocket-Accept", value: Self.accept(key: keys[0]))
        headers.add(name: "Sec-WebSocket-Protocol", value: "sip")
        return channel.eventLoop.makeSucceededFuture(headers)
    }

    /// base64(SHA-1(key + GUID)), standard alphabet with its padding (§4.2.2 item 5.4).
    static func accept(key: String) -> String {
        let digest = Array(Insecure.SHA1.hash(data: Array((key + keyGUID).utf8)))
        // 20 bytes: 27 characters of base64url, one "=" of padding, two letters swapped back.
        let url = base64URLEncode(digest)
        return String(url.map { $0 == "-" ? "+" : $0 == "_" ? "/" : $0 }) + "="
    }

    func upgrade(context: ChannelHandlerContext, upgradeRequest: HTTPRequestHead) -> EventLoopFuture<Void> {
        context.eventLoop.makeCompletedFuture {
            let sync = context.pipeline.syncOperations
            // The refusal handler is for HTTP; frames must not reach it.
            sync.removeHandler(name: "handshake-refusal", promise: nil)
            try sync.addHandler(flowHandler(context.channel, upgradeRequest))
        }
    }
}
