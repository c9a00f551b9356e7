import NIOSSL

/// SIP over secure WebSocket (RFC 7118): the listener the WICs connect to.
public struct SIPWebSocketConfiguration: Sendable {
    /// Port to listen on (the endpoint's host); 0: any free port.
    public var port = 7443
    /// nil only for tests of the plain-HTTP refusal; WICs always get WSS (EPC-2).
    public var tls: TLSConfiguration?
    /// Largest SIP message (one WebSocket message) accepted; a larger one closes the flow
    /// with 1009 (RFC 6455 §7.4.1).
    public var maxMessageSize = 65_536
    /// A WebSocket ping goes to every flow this often (RFC 6455 §5.5.2); a flow silent for
    /// `idleTimeout` (no frame at all, not even a pong) is closed.
    public var pingInterval: Duration = .seconds(30)
    public var idleTimeout: Duration = .seconds(95)
    /// TLS and the WebSocket handshake must be done this soon after connecting.
    public var handshakeTimeout: Duration = .seconds(10)
    /// Open connections from one address, and in all: one client cannot starve the others.
    public var maxConnectionsPerAddress = 500
    public var maxConnections = 50_000
    /// SIP messages a flow may send: a burst, then this many per second; beyond it the
    /// flow is closed (1008 policy violation).
    public var messageBurst = 60
    public var messagesPerSecond = 20
    /// Whose pages may open a flow: nil admits the handshake's Origin (nil when it sent
    /// none), else the reason it is refused with 403 (EPC-4). The edge decides; the
    /// transport asks.
    public var originPolicy: @Sendable (String?) -> String? = { _ in nil }

    public init() {}
}

/// A WebSocket flow (RFC 5626, RFC 7118): one WIC's connection, named by a token that our
/// Path and Record-Route carry so that requests find their way back down it.
public struct SIPFlow: Sendable, Hashable, CustomStringConvertible {
    public let token: String
    /// The Origin of the page that opened it (the handshake's header).
    public let origin: String?

    public init(token: String, origin: String?) {
        self.token = token
        self.origin = origin
    }

    public var description: String { token }
}
