import NIOCore
import NIOSSL
import NIOTLS
import SIPCore

/// What a stream (TCP/TLS) carries: whole messages, keep-alives, or bytes that can no
/// longer be framed (after which the connection is closed).
enum SIPStreamItem {
    case message(ByteBuffer)
    case ping
    case unframeable(SIPParseError, ByteBuffer)
}

/// Cuts a TCP/TLS byte stream into SIP messages by Content-Length (RFC 3261 §18.3) and
/// CRLF keep-alives (RFC 5626 §4.4.1). Nothing is buffered beyond the size limit.
struct SIPStreamDecoder: ByteToMessageDecoder {
    typealias InboundOut = SIPStreamItem
    let framer: SIPStreamFramer
    /// How far the bytes of the next message have been scanned already.
    var scan = SIPStreamFramer.ScanState()
    var failed = false

    init(limits: SIPParserLimits) { framer = SIPStreamFramer(limits: limits) }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        if failed {
            buffer.moveReaderIndex(to: buffer.writerIndex)
            return .needMoreData
        }
        let frame: SIPStreamFrame
        do {
            frame = try buffer.withUnsafeUInt8Bytes { try framer.nextFrame($0, resuming: &scan) }
        } catch let error as SIPParseError {
            failed = true
            let head = buffer.readSlice(length: min(buffer.readableBytes, 8_192)) ?? ByteBuffer()
            buffer.moveReaderIndex(to: buffer.writerIndex)
            context.fireChannelRead(wrapInboundOut(.unframeable(error, head)))
            return .needMoreData
        }
        if frame != .needMoreData { scan = SIPStreamFramer.ScanState() }
        switch frame {
        case .needMoreData:
            return .needMoreData
        case .ping:
            buffer.moveReaderIndex(forwardBy: 4)
            context.fireChannelRead(wrapInboundOut(.ping))
        case .pong:
            buffer.moveReaderIndex(forwardBy: buffer.readableBytesView.first == 0x0A ? 1 : 2)
        case .message(let length):
            guard let message = buffer.readSlice(length: length) else { return .needMoreData }
            context.fireChannelRead(wrapInboundOut(.message(message)))
        }
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws
        -> DecodingState
    {
        while try decode(context: context, buffer: &buffer) == .continue {}
        buffer.moveReaderIndex(to: buffer.writerIndex)
        return .needMoreData
    }
}

/// Parses framed stream messages and hands them to the endpoint. A message that does not
/// parse is answered 400 when it says enough to be answered, else the peer is cut off.
final class SIPStreamHandler: ChannelInboundHandler {
    typealias InboundIn = SIPStreamItem
    let core: SIPEndpointCore
    let transport: SIPTransportProtocol
    var connection: StreamConnection?
    /// Names of the peer's verified TLS certificate, read once the handshake is done.
    var certificateNames: [String] = []

    init(core: SIPEndpointCore, transport: SIPTransportProtocol) {
        self.core = core
        self.transport = transport
    }

    func handlerAdded(context: ChannelHandlerContext) {
        connection = StreamConnection(channel: context.channel, transport: transport)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let connection { core.connectionClosed(connection) }
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let connection, let remote = context.channel.remoteAddress else { return }
        let peer = SIPPeer(
            transport: transport, remoteAddress: remote, localAddress: context.channel.localAddress,
            connection: connection, certificateNames: certificateNames)
        switch unwrapInboundIn(data) {
        case .ping:
            connection.writeRaw([0x0D, 0x0A])
        case .message(let buffer):
            core.receive(buffer, from: peer, framing: .stream)
        case .unframeable(let error, let head):
            core.rejectUnframeable(head, error: error, from: peer)
            context.close(promise: nil)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted = event as? TLSUserEvent,
            let tls = try? context.pipeline.syncOperations.handler(type: NIOSSLHandler.self),
            let certificate = tls.peerCertificate
        {
            // Listeners verify a certificate that is presented (optional verification) and
            // outbound connections verify the server's, so one here has passed the trust roots.
            certificateNames = Self.names(of: certificate)
        }
        if event is IdleStateHandler.IdleStateEvent {
            // A silent peer holds a socket for nothing (and may be a slow-loris).
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        core.logger.debug("closing \(transport.rawValue) connection: \(error)")
        context.close(promise: nil)
    }
}

extension SIPStreamHandler {
    /// The DNS and IP subject alternative names of a certificate, as text.
    static func names(of certificate: NIOSSLCertificate) -> [String] {
        var names: [String] = []
        for name in certificate._subjectAlternativeNames() {
            let bytes = name.contents.withUnsafeBufferPointer { Array($0) }
            if name.nameType == .dnsName {
                names.append(String(decoding: bytes, as: UTF8.self).lowercased())
            } else if name.nameType == .ipAddress, bytes.count == 4 || bytes.count == 16 {
                let packed = ByteBuffer(bytes: bytes)
                if let text = try? SocketAddress(packedIPAddress: packed, port: 0).ipAddress { names.append(text) }
            }
        }
        return names
    }
}

/// Receives SIP datagrams. Garbage is dropped; a malformed request that can be answered
/// gets a 400.
final class SIPDatagramHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    let core: SIPEndpointCore
    var connection: DatagramConnection?

    init(core: SIPEndpointCore) { self.core = core }

    func handlerAdded(context: ChannelHandlerContext) {
        connection = DatagramConnection(channel: context.channel)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let connection else { return }
        let envelope = unwrapInboundIn(data)
        // RFC 5626 §3.5.1 keep-alives over UDP are STUN; a bare CRLF is noise: ignore.
        if envelope.data.readableBytesView.allSatisfy({ $0 == 0x0D || $0 == 0x0A }) { return }
        let peer = SIPPeer(
            transport: .udp, remoteAddress: envelope.remoteAddress, localAddress: context.channel.localAddress,
            connection: connection)
        core.receive(envelope.data, from: peer, framing: .message)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // ICMP errors and the like must not close the listening socket.
        core.logger.debug("UDP error: \(error)")
    }
}

/// Holds a UDP socket's flushes to the end of the event loop's turn, so the answers that
/// one turn writes (a batch of registrations committed together resumes all at once) leave
/// in one `sendmmsg` instead of one `sendmsg` each.
final class DatagramFlushCoalescer: ChannelOutboundHandler {
    typealias OutboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>
    private var flushPending = false

    func flush(context: ChannelHandlerContext) {
        if flushPending { return }
        flushPending = true
        // Both the handler and its context belong to this event loop; the box says so.
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        context.eventLoop.execute {
            let (handler, context) = loopBound.value
            handler.flushPending = false
            context.flush()
        }
    }
}

/// A TCP or TLS connection as a SIPConnection.
final class StreamConnection: SIPConnection, Hashable {
    let channel: any Channel
    let transport: SIPTransportProtocol

    init(channel: any Channel, transport: SIPTransportProtocol) {
        self.channel = channel
        self.transport = transport
    }

    var isActive: Bool { channel.isActive }
    var channelIdentity: ObjectIdentifier? { ObjectIdentifier(channel) }

    func write(_ message: SIPMessage, to remote: SocketAddress?) {
        let bytes = message.serialized()
        channel.writeAndFlush(channel.allocator.buffer(bytes: bytes), promise: nil)
    }

    func writeRaw(_ bytes: [UInt8]) {
        channel.writeAndFlush(channel.allocator.buffer(bytes: bytes), promise: nil)
    }

    func close() { channel.close(promise: nil) }

    /// Two wrappers of one channel are the same connection.
    static func == (a: StreamConnection, b: StreamConnection) -> Bool { a.channel === b.channel }
    func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(channel)) }
}

/// The UDP socket as a SIPConnection: every write names its destination.
final class DatagramConnection: SIPConnection {
    let channel: any Channel
    var transport: SIPTransportProtocol { .udp }

    init(channel: any Channel) { self.channel = channel }

    var isActive: Bool { channel.isActive }

    func write(_ message: SIPMessage, to remote: SocketAddress?) {
        guard let remote else { return }
        let buffer = channel.allocator.buffer(bytes: message.serialized())
        channel.writeAndFlush(AddressedEnvelope(remoteAddress: remote, data: buffer), promise: nil)
    }

    func writeRaw(_ bytes: [UInt8]) {}

    func close() {}
}
