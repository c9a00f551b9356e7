import Logging
import NIOCore
import NIOPosix
import NIOSSL
import SIPCore
import Synchronization

/// Listeners, outbound connections and transactions of one SIP element.
public struct SIPEndpointConfiguration: Sendable {
    /// Address to listen on; loopback unless configured otherwise.
    public var host: String = "127.0.0.1"
    /// Ports to listen on; nil: no such listener; 0: any free port.
    public var udpPort: Int?
    public var tcpPort: Int?
    public var tlsPort: Int?
    /// Certificate and key for the TLS listener.
    public var tlsServerConfiguration: TLSConfiguration?
    /// How outbound TLS connections check their peer.
    public var tlsClientConfiguration: TLSConfiguration = .makeClientConfiguration()
    /// Host written in our Via headers (default: `host`).
    public var advertisedHost: String?
    public var limits: SIPParserLimits = .default
    public var timers: SIPTimers = SIPTimers()
    /// A stream connection that sends nothing this long is closed (keep-alives count).
    public var idleTimeout: TimeAmount = .seconds(300)
    /// Logs every message in and out (redacted) when set.
    public var trace: SIPTrace?
    /// The WSS listener for WICs (RFC 7118), when this endpoint is an edge.
    public var webSocket: SIPWebSocketConfiguration?

    public init() {}
}

/// A SIP endpoint over UDP, TCP and TLS: parses and frames messages, answers what cannot be
/// parsed, keeps the non-INVITE transactions of RFC 3261 §17, and routes responses back
/// per §18.2.2. The request handler sees each new request once.
public final class SIPEndpoint: Sendable {
    public let configuration: SIPEndpointConfiguration
    let group: any EventLoopGroup
    let core: SIPEndpointCore
    let channels = Mutex<[any Channel]>([])
    let bound = Mutex<[SIPTransportProtocol: SocketAddress]>([:])
    let tlsClientContext: NIOSSLContext?
    /// The WSS listener's TLS and its flows.
    let webSocketTLS: LeanTLSContext?
    let flows = WebSocketFlows()
    /// Endpoints of this process reached by a call instead of a socket, by the `host:port`
    /// their URIs name (the co-located eP-CSCF and S-CSCF).
    let inProcessLinks = Mutex<[String: InProcessLink]>([:])
    /// Stream destinations a connection to failed, and when (none has succeeded since).
    /// Apart from the transaction tables: a registrar asks for every target it forks to.
    let unreachable = Mutex<[SIPDestination: NIODeadline]>([:])

    /// An endpoint whose handler answers each request with one final response (or none, for
    /// ACK). A CANCEL of an INVITE it is still working on is answered 487 for it.
    public convenience init(
        configuration: SIPEndpointConfiguration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "webims.sip"),
        handler: @escaping SIPRequestHandler
    ) throws {
        try self.init(
            configuration: configuration, eventLoopGroup: eventLoopGroup, logger: logger, clock: nil,
            handler: .answering(handler))
    }

    /// An endpoint whose handler drives each server transaction itself (a proxy: provisional
    /// responses, a final one later, CANCEL). `clock` arms the transaction timers (tests
    /// pass a `ManualSIPClock`); by default the event loop's.
    public convenience init(
        configuration: SIPEndpointConfiguration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "webims.sip"),
        clock: (any SIPClock)? = nil,
        transactionHandler: @escaping SIPTransactionHandler
    ) throws {
        try self.init(
            configuration: configuration, eventLoopGroup: eventLoopGroup, logger: logger, clock: clock,
            handler: .transactional(transactionHandler))
    }

    /// An endpoint that answers REGISTER and SUBSCRIBE once (`handler`: a registrar's or an
    /// edge's own business) and drives the transaction of every other request itself
    /// (`sessionHandler`, which gets the ACKs for 2xx too): the calls it proxies.
    public convenience init(
        configuration: SIPEndpointConfiguration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "webims.sip"),
        handler: @escaping SIPRequestHandler,
        sessionHandler: @escaping SIPTransactionHandler
    ) throws {
        try self.init(
            configuration: configuration, eventLoopGroup: eventLoopGroup, logger: logger, clock: nil,
            handler: .sessions(answering: handler, proxying: sessionHandler))
    }

    init(
        configuration: SIPEndpointConfiguration, eventLoopGroup: any EventLoopGroup, logger: Logger,
        clock: (any SIPClock)?, handler: SIPEndpointCore.Handler
    ) throws {
        self.configuration = configuration
        self.group = eventLoopGroup
        self.core = SIPEndpointCore(
            logger: logger, limits: configuration.limits, timers: configuration.timers,
            clock: clock ?? EventLoopClock(eventLoop: eventLoopGroup.next()), trace: configuration.trace,
            handler: handler)
        self.tlsClientContext = try NIOSSLContext(configuration: configuration.tlsClientConfiguration)
        self.webSocketTLS = try configuration.webSocket?.tls.map { try LeanTLSContext($0) }
    }

    static func neighbourKey(_ host: String, _ port: Int) -> String {
        var host = host.lowercased()
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return host + " " + String(port)
    }

    /// The address each listener is bound to, once started.
    public func address(_ transport: SIPTransportProtocol) -> SocketAddress? {
        bound.withLock { $0[transport] }
    }

    public func start() async throws { try await start(firstUDPPorts: []) }

    /// `firstUDPPorts`: ports to try for the shared UDP/TCP port before the kernel's picks
    /// (tests use it to make the pick collide with a taken TCP port).
    func start(firstUDPPorts: [Int]) async throws {
        let c = configuration
        if c.udpPort == 0, c.tcpPort == 0 {
            try await bindUDPAndTCPOnOnePort(firstUDPPorts: firstUDPPorts)
        } else {
            if let port = c.udpPort { register(try await bindDatagram(port: port), as: .udp) }
            if let port = c.tcpPort { register(try await bindStream(port: port, transport: .tcp, tls: nil), as: .tcp) }
        }
        if let port = c.tlsPort {
            guard let tls = c.tlsServerConfiguration else { throw SIPEndpointError.tlsNotConfigured }
            register(
                try await bindStream(port: port, transport: .tls, tls: try NIOSSLContext(configuration: tls)), as: .tls)
        }
        if let webSocket = c.webSocket {
            register(try await bindWebSocket(webSocket), as: webSocket.tls == nil ? .ws : .wss)
        }
    }

    /// Both asked for "any port": one port for both, since a SIP URI names one. The port
    /// the kernel picks for UDP can be taken for TCP (by any process's outbound
    /// connection), so a pair that does not fit is let go and another tried.
    private func bindUDPAndTCPOnOnePort(firstUDPPorts: [Int]) async throws {
        for attempt in 0..<64 {
            let udp = try await bindDatagram(port: attempt < firstUDPPorts.count ? firstUDPPorts[attempt] : 0)
            if let port = udp.localAddress?.port,
                let tcp = try? await bindStream(port: port, transport: .tcp, tls: nil)
            {
                register(udp, as: .udp)
                register(tcp, as: .tcp)
                return
            }
            try? await udp.close()
        }
        throw SIPEndpointError.noCommonPort
    }

    static let datagramsPerRead = 16

    private func bindDatagram(port: Int) async throws -> any Channel {
        let core = self.core
        // No SO_REUSEADDR: with it on both sides Linux lets another UDP socket bind this very
        // port (rtpengine binds its media ports so) and take our datagrams — every call in
        // flight went unanswered while a media session held the S-CSCF's port. Without it,
        // their bind fails and they pick another.
        return try await DatagramBootstrap(group: group)
            // Every datagram read whole, up to the largest UDP payload (NIO's default buffer
            // of 2,048 bytes cut longer messages short: 400 Malformed Header Line). Under
            // load several wait at each wake-up, so they are read with one `recvmmsg`, each
            // into its own 64 KiB slice. The buffer is reused once the parser (which
            // copies) lets go of every slice.
            .channelOption(.datagramVectorReadMessageCount, value: Self.datagramsPerRead)
            // One vector read per wake-up: a second would mostly find nothing (EAGAIN, one
            // system call in vain per message at a call's pace); whatever is left, epoll
            // reports again at once.
            .channelOption(.maxMessagesPerRead, value: 1)
            .channelOption(
                .recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 65_536 * Self.datagramsPerRead)
            )
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(DatagramFlushCoalescer())
                    try sync.addHandler(SIPDatagramHandler(core: core))
                }
            }
            .bind(host: configuration.host, port: port).get()
    }

    private func register(_ channel: any Channel, as transport: SIPTransportProtocol) {
        channels.withLock { $0.append(channel) }
        if transport == .udp { core.state.withLock { $0.udp = DatagramConnection(channel: channel) } }
        if let address = channel.localAddress {
            bound.withLock { $0[transport] = address }
            let host = configuration.advertisedHost ?? configuration.host
            core.state.withLock { $0.viaAddresses[transport] = (host, address.port ?? 0) }
        }
    }

    private func bindStream(port: Int, transport: SIPTransportProtocol, tls: NIOSSLContext?) async throws -> any Channel
    {
        let core = self.core
        let limits = configuration.limits
        let idle = configuration.idleTimeout
        return try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try Self.addStreamHandlers(
                        to: channel, transport: transport, tls: tls.map { NIOSSLServerHandler(context: $0) },
                        core: core, limits: limits, idle: idle)
                }
            }
            .bind(host: configuration.host, port: port).get()
    }

    static func addStreamHandlers(
        to channel: any Channel, transport: SIPTransportProtocol, tls: (any ChannelHandler)?, core: SIPEndpointCore,
        limits: SIPParserLimits, idle: TimeAmount
    ) throws {
        let sync = channel.pipeline.syncOperations
        if let tls { try sync.addHandler(tls) }
        try sync.addHandler(IdleStateHandler(readTimeout: idle))
        try sync.addHandler(ByteToMessageHandler(SIPStreamDecoder(limits: limits)))
        try sync.addHandler(SIPStreamHandler(core: core, transport: transport))
    }

    func connection(to destination: SIPDestination) async throws -> (any SIPConnection, SocketAddress?) {
        if let token = destination.flow {
            guard let flow = flows.connection(token), flow.isActive else { throw SIPEndpointError.flowGone }
            return (flow, nil)
        }
        if let link = inProcessLink(destination) { return (link, nil) }
        let address = try Self.socketAddress(destination.host, port: destination.port)
        if destination.transport == .udp {
            guard let udp = core.state.withLock({ $0.udp }) else { throw SIPEndpointError.noListener(.udp) }
            return (udp, address)
        }
        if let open = core.state.withLock({ $0.outbound[destination] }), open.isActive {
            return (open, nil)
        }
        let core = self.core
        let limits = configuration.limits
        let idle = configuration.idleTimeout
        let transport = destination.transport
        let tlsContext = tlsClientContext
        let hostname = destination.host
        let channel = try await ClientBootstrap(group: group)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(5))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    var tls: (any ChannelHandler)?
                    if transport == .tls, let tlsContext {
                        // SNI only for names, not for IP literals (RFC 6066 §3).
                        let isIP = (try? SocketAddress(ipAddress: hostname, port: 0)) != nil
                        tls = try NIOSSLClientHandler(context: tlsContext, serverHostname: isIP ? nil : hostname)
                    }
                    try Self.addStreamHandlers(
                        to: channel, transport: transport, tls: tls, core: core, limits: limits, idle: idle)
                }
            }
            .connect(to: address).get()
        let connection = StreamConnection(channel: channel, transport: transport)
        core.state.withLock { $0.outbound[destination] = connection }
        unreachable.withLock { _ = $0.removeValue(forKey: destination) }
        return (connection, nil)
    }

    /// How long a destination a connection failed to counts as unreachable.
    public static let unreachableFor = TimeAmount.seconds(30)

    /// A stream destination a connection to failed within `unreachableFor`, none having
    /// succeeded since: a registrar does not send a binding's requests there while the
    /// identity has another binding (its edge node has gone, docs/scale-out.md).
    public func isRecentlyUnreachable(_ destination: SIPDestination) -> Bool {
        guard destination.flow == nil, destination.transport != .udp else { return false }
        return unreachable.withLock { unreachable in
            guard let failed = unreachable[destination] else { return false }
            if failed + Self.unreachableFor > .now() { return true }
            unreachable[destination] = nil
            return false
        }
    }

    func markUnreachable(_ destination: SIPDestination) {
        guard destination.flow == nil, destination.transport != .udp else { return }
        unreachable.withLock { unreachable in
            // Bounded: a destination is one edge node; a flood of made-up ones starts afresh.
            if unreachable.count >= 1_024 { unreachable.removeAll() }
            unreachable[destination] = .now()
        }
    }

    /// An IP literal is read as one; only a name is resolved. Resolving runs getaddrinfo,
    /// which opens and queries a netlink socket each time (seven system calls): for a
    /// literal on every request a proxy sent, it was a tenth of a call's cost.
    static func socketAddress(_ host: String, port: Int) throws -> SocketAddress {
        if let literal = try? SocketAddress(ipAddress: host, port: port) { return literal }
        return try SocketAddress.makeAddressResolvingHost(host, port: port)
    }

    public func shutdown() async {
        let all = channels.withLock { channels in
            defer { channels.removeAll() }
            return channels
        }
        for channel in all { try? await channel.close().get() }
        let outbound = core.state.withLock { state in
            defer { state.outbound.removeAll() }
            return Array(state.outbound.values)
        }
        for connection in outbound { connection.close() }
    }
}

public enum SIPEndpointError: Error, Sendable {
    case tlsNotConfigured
    case noListener(SIPTransportProtocol)
    /// No port free for both UDP and TCP was found.
    case noCommonPort
    /// The WebSocket flow a request was for has closed.
    case flowGone
}
