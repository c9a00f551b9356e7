import NIOCore
import SIPCore

#if canImport(Glibc)
    import Glibc
#endif

/// The transports SIP runs over here (RFC 3261 §18, RFC 7118 §5.1 for WS/WSS).
public enum SIPTransportProtocol: String, Sendable, Hashable, CaseIterable {
    case udp = "UDP"
    case tcp = "TCP"
    case tls = "TLS"
    case ws = "WS"
    case wss = "WSS"

    /// Reliable transports need no retransmissions (RFC 3261 §17.1.2.2).
    public var isReliable: Bool { self != .udp }
    /// How the transport delimits messages.
    public var framing: SIPFraming { self == .tcp || self == .tls ? .stream : .message }
}

/// Where a SIP message came from: the transport, the peer's address and the socket it
/// arrived on, which is also the way back (RFC 3261 §18.2.2).
public struct SIPPeer: Sendable, CustomStringConvertible {
    /// What a peer is, in one object: a request's peer is handed from the transport to the
    /// transaction and the TU's task, and a copy of one reference is one retain where the
    /// fields were six (a flow's peer is made once, for the life of the connection).
    final class Details: Sendable {
        let remoteAddress: SocketAddress
        let localAddress: SocketAddress?
        let connection: any SIPConnection
        let certificateNames: [String]
        let flow: SIPFlow?

        init(
            remoteAddress: SocketAddress, localAddress: SocketAddress?, connection: any SIPConnection,
            certificateNames: [String], flow: SIPFlow?
        ) {
            self.remoteAddress = remoteAddress
            self.localAddress = localAddress
            self.connection = connection
            self.certificateNames = certificateNames
            self.flow = flow
        }
    }

    public let transport: SIPTransportProtocol
    let details: Details

    public init(
        transport: SIPTransportProtocol, remoteAddress: SocketAddress, localAddress: SocketAddress?,
        connection: any SIPConnection, certificateNames: [String] = [], flow: SIPFlow? = nil
    ) {
        self.transport = transport
        details = Details(
            remoteAddress: remoteAddress, localAddress: localAddress, connection: connection,
            certificateNames: certificateNames, flow: flow)
    }

    public var remoteAddress: SocketAddress { details.remoteAddress }
    public var localAddress: SocketAddress? { details.localAddress }
    /// The connection (or UDP socket) that carried the message.
    public var connection: any SIPConnection { details.connection }
    /// Over TLS, the names (DNS and IP subject alternative names) of the certificate the
    /// peer presented and that the TLS layer verified against its trust roots; else empty.
    public var certificateNames: [String] { details.certificateNames }
    /// The WebSocket flow the message came on (a WIC), if it did.
    public var flow: SIPFlow? { details.flow }

    /// The peer's IP address as text (nil for an in-process peer's placeholder too).
    public var remoteIP: String? { connection.isInProcess ? nil : remoteAddress.ipAddress }

    public var description: String { "\(transport.rawValue) \(remoteAddress)" }
}

/// Something SIP messages can be written to: a TCP/TLS/WebSocket connection, or a UDP
/// socket together with a destination.
public protocol SIPConnection: Sendable {
    var transport: SIPTransportProtocol { get }
    var isActive: Bool { get }
    /// Writes one message. For UDP `remote` is the destination; stream and WebSocket
    /// connections have one peer and ignore it.
    func write(_ message: SIPMessage, to remote: SocketAddress?)
    /// Writes raw bytes (a keep-alive pong).
    func writeRaw(_ bytes: [UInt8])
    func close()
    /// A connection inside this process (a co-located function): nothing crosses a network.
    var isInProcess: Bool { get }
    /// The local answer for a request that could not be sent on it, or whose connection
    /// closed before an answer came (RFC 3261 §8.1.3.1: 503; a flow: 430, RFC 5626 §5.3).
    var transportFailureStatus: Int { get }
    /// The channel behind a connection that has one of its own (TCP, TLS, a flow; not the
    /// shared UDP socket): when it closes, no answer can come back on it.
    var channelIdentity: ObjectIdentifier? { get }
}

extension SIPConnection {
    public var isInProcess: Bool { false }
    public var transportFailureStatus: Int { 503 }
    public var channelIdentity: ObjectIdentifier? { nil }
}

/// The "connection" of a request one function hands another in the same process (the
/// co-located eP-CSCF and S-CSCF): answers come back as the handler's return value, so
/// nothing is ever written to it. Only this process can make one, which is why a peer on it
/// is trusted for being in process (docs/security.md), never for an address.
public struct InProcessConnection: SIPConnection {
    public init() {}
    public var transport: SIPTransportProtocol { .tcp }
    public var isActive: Bool { true }
    public func write(_ message: SIPMessage, to remote: SocketAddress?) {}
    public func writeRaw(_ bytes: [UInt8]) {}
    public func close() {}
    public var isInProcess: Bool { true }
}

extension SIPPeer {
    /// A peer in this process, on an `InProcessConnection`.
    public static func inProcess(transport: SIPTransportProtocol = .tcp) -> SIPPeer {
        // Made once per transport: a co-located call per registration allocates nothing here.
        inProcessPeers[transport]
            ?? SIPPeer(
                transport: transport, remoteAddress: inProcessAddress, localAddress: nil,
                connection: InProcessConnection())
    }

    private static let inProcessPeers: [SIPTransportProtocol: SIPPeer] = Dictionary(
        uniqueKeysWithValues: SIPTransportProtocol.allCases.map {
            (
                $0,
                SIPPeer(
                    transport: $0, remoteAddress: inProcessAddress, localAddress: nil, connection: InProcessConnection()
                )
            )
        })

    /// An address to name an in-process peer by in logs; nothing is ever sent to it.
    static let inProcessAddress: SocketAddress = {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        return SocketAddress(address, host: "in-process")
    }()
}

/// Where to send a request that starts a client transaction.
public struct SIPDestination: Sendable, Hashable, CustomStringConvertible {
    public var transport: SIPTransportProtocol
    public var host: String
    public var port: Int
    /// A WebSocket flow of this endpoint, by its token: what a WIC is reached by (RFC 5626,
    /// RFC 7118 §5). Host and port then only name it in logs.
    public var flow: String?

    public init(transport: SIPTransportProtocol, host: String, port: Int) {
        self.transport = transport
        self.host = host
        self.port = port
    }

    /// Down the flow `token` (its WebSocket connection; our Via names the WSS listener,
    /// RFC 7118 §5.2).
    public static func flow(_ token: String) -> SIPDestination {
        var destination = SIPDestination(transport: .wss, host: "flow", port: 0)
        destination.flow = token
        return destination
    }

    /// From a SIP URI such as `sip:10.0.0.5:5060;transport=tcp` (RFC 3263 without DNS:
    /// the host is used as is, the port defaults to 5060, or 5061 for TLS).
    public init?(uri: SIPURI) {
        let transport: SIPTransportProtocol
        switch uri.transport?.lowercased() {
        case nil: transport = uri.isSecure ? .tls : .udp
        case "udp": transport = .udp
        case "tcp": transport = uri.isSecure ? .tls : .tcp
        case "tls": transport = .tls
        default: return nil
        }
        var host = uri.host
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        self.init(transport: transport, host: host, port: Int(uri.port ?? (transport == .tls ? 5061 : 5060)))
    }

    public var description: String { flow.map { "flow \($0)" } ?? "\(transport.rawValue) \(host):\(port)" }
}

/// RFC 3261 §17.1.1.1 timer values; tests shorten them.
public struct SIPTimers: Sendable, Hashable {
    public var t1: TimeAmount
    public var t2: TimeAmount
    public var t4: TimeAmount

    public init(t1: TimeAmount = .milliseconds(500), t2: TimeAmount = .seconds(4), t4: TimeAmount = .seconds(5)) {
        self.t1 = t1
        self.t2 = t2
        self.t4 = t4
    }

    /// Timer F and Timer J: 64·T1.
    public var transactionTimeout: TimeAmount { .nanoseconds(t1.nanoseconds * 64) }
}
