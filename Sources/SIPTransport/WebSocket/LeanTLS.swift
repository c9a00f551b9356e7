// CNIOBoringSSL is swift-nio-ssl's BoringSSL, which NIOSSL itself is built on. It is imported
// here (not a declared product of that package) for one reason: per-connection memory.
import CNIOBoringSSL
import NIOCore
import NIOSSL

/// The WSS listener's TLS, on BoringSSL directly.
///
/// NIOSSL's handler keeps, for each connection's whole life, a 32 KiB plaintext buffer, a
/// 16 KiB outbound buffer and a 96-entry action ring: ~15 KiB resident on an idle
/// connection (BENCHMARKS.md), about the whole budget of an idle WIC. This handler holds only
/// BoringSSL's `SSL` object between messages: ciphertext and plaintext live in buffers sized
/// to what arrived or is sent, and are let go as soon as they are passed on.
public final class LeanTLSContext: @unchecked Sendable {
    // An SSL_CTX is not changed after set-up; BoringSSL makes its use from many threads safe.
    let context: OpaquePointer

    /// From a server `TLSConfiguration` with its certificate chain and private key in memory
    /// (what `serve` builds). The minimum version is TLS 1.2 or the configuration's, if higher;
    /// the maximum and the TLS 1.2 cipher suites are the configuration's (TLSPolicy: the same
    /// as the HTTPS listeners').
    public init(_ configuration: TLSConfiguration) throws {
        guard case .privateKey(let key)? = configuration.privateKey else {
            throw LeanTLSError.configuration("the WSS listener needs its private key in memory")
        }
        var chain: [NIOSSLCertificate] = []
        for source in configuration.certificateChain {
            guard case .certificate(let certificate) = source else {
                throw LeanTLSError.configuration("the WSS listener needs its certificates in memory")
            }
            chain.append(certificate)
        }
        guard let leaf = chain.first else { throw LeanTLSError.configuration("no certificate for the WSS listener") }
        guard let context = SSL_CTX_new(TLS_method()) else { throw LeanTLSError.boringSSL("SSL_CTX_new") }
        self.context = context
        let minimum = configuration.minimumTLSVersion == .tlsv13 ? TLS1_3_VERSION : TLS1_2_VERSION
        guard SSL_CTX_set_min_proto_version(context, UInt16(minimum)) == 1 else {
            throw LeanTLSError.boringSSL("SSL_CTX_set_min_proto_version")
        }
        if configuration.maximumTLSVersion == .tlsv12 {
            guard SSL_CTX_set_max_proto_version(context, UInt16(TLS1_2_VERSION)) == 1 else {
                throw LeanTLSError.boringSSL("SSL_CTX_set_max_proto_version")
            }
        }
        // As NIOSSL reads the list: names BoringSSL lacks (NIOSSL's own default has `DH+…`)
        // are skipped; a list that leaves nothing is an error.
        guard SSL_CTX_set_cipher_list(context, configuration.cipherSuites) == 1 else {
            throw LeanTLSError.configuration("cipher suites BoringSSL does not take: \(configuration.cipherSuites)")
        }
        // No server-side session cache: it would hold every session's state in memory.
        _ = SSL_CTX_set_session_cache_mode(context, SSL_SESS_CACHE_OFF)
        let leafDER = try leaf.toDERBytes()
        guard leafDER.withUnsafeBufferPointer({ SSL_CTX_use_certificate_ASN1(context, $0.count, $0.baseAddress) }) == 1
        else { throw LeanTLSError.boringSSL("SSL_CTX_use_certificate_ASN1") }
        for certificate in chain.dropFirst() {
            let der = try certificate.toDERBytes()
            let added = der.withUnsafeBufferPointer { bytes -> Bool in
                var cursor = bytes.baseAddress
                guard let x509 = d2i_X509(nil, &cursor, bytes.count) else { return false }
                defer { X509_free(x509) }
                return SSL_CTX_add1_chain_cert(context, x509) == 1
            }
            guard added else { throw LeanTLSError.boringSSL("SSL_CTX_add1_chain_cert") }
        }
        let keyDER = try key.derBytes
        let usedKey = keyDER.withUnsafeBufferPointer { bytes -> Bool in
            var cursor = bytes.baseAddress
            guard let pkey = d2i_AutoPrivateKey(nil, &cursor, bytes.count) else { return false }
            defer { EVP_PKEY_free(pkey) }
            return SSL_CTX_use_PrivateKey(context, pkey) == 1
        }
        guard usedKey, SSL_CTX_check_private_key(context) == 1 else {
            throw LeanTLSError.boringSSL("SSL_CTX_use_PrivateKey")
        }
        ERR_clear_error()
    }

    deinit { SSL_CTX_free(context) }
}

public enum LeanTLSError: Error, CustomStringConvertible {
    case configuration(String)
    case boringSSL(String)
    case handshakeFailed(String)
    case connectionFailed(String)

    public var description: String {
        switch self {
        case .configuration(let why): "TLS configuration: \(why)"
        case .boringSSL(let call): "TLS set-up failed in \(call)"
        case .handshakeFailed(let why): "TLS handshake failed: \(why)"
        case .connectionFailed(let why): "TLS connection failed: \(why)"
        }
    }

    /// BoringSSL's first queued error as text, and the queue cleared: the queue is per
    /// thread, and a stale entry would confuse the next connection's `SSL_get_error`.
    static func takeQueuedError() -> String {
        let code = ERR_get_error()
        ERR_clear_error()
        guard code != 0 else { return "connection closed or protocol error" }
        return ERR_reason_error_string(code).map { String(cString: $0) } ?? "BoringSSL error \(code)"
    }
}

/// Server-side TLS for one connection: ciphertext in, plaintext out, and back.
final class LeanTLSServerHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum State { case handshaking, open, closed }

    private let tlsContext: LeanTLSContext
    private var ssl: OpaquePointer?
    private var state = State.handshaking
    /// Ciphertext received and not yet taken by BoringSSL (nil once it is all taken).
    private var inbound: ByteBuffer?
    /// Ciphertext BoringSSL has written, waiting for the next flush.
    private var outbound: ByteBuffer?
    private var outboundPromises: [EventLoopPromise<Void>] = []
    /// Plaintext written before the handshake finished.
    private var held: [(ByteBuffer, EventLoopPromise<Void>?)] = []
    private var deliveredRead = false
    private let allocator: ByteBufferAllocator

    init(context tlsContext: LeanTLSContext, allocator: ByteBufferAllocator) throws {
        self.tlsContext = tlsContext
        self.allocator = allocator
        guard let method = leanBIOMethod.pointer, let ssl = SSL_new(tlsContext.context) else {
            throw LeanTLSError.boringSSL("SSL_new")
        }
        guard let bio = BIO_new(method) else {
            SSL_free(ssl)
            throw LeanTLSError.boringSSL("BIO_new")
        }
        self.ssl = ssl
        // The BIO points back at this handler unretained: the SSL (which owns the BIO) is
        // freed before the handler goes (handlerRemoved, or deinit at the latest).
        BIO_set_data(bio, Unmanaged.passUnretained(self).toOpaque())
        BIO_set_init(bio, 1)
        SSL_set_bio(ssl, bio, bio)
        SSL_set_accept_state(ssl)
        // The certificate, key and cipher settings this SSL copied from the context are
        // freed once the handshake is done (~0.7 KB a connection; only SSL_read, SSL_write
        // and SSL_shutdown follow, which need none of it).
        SSL_set_shed_handshake_config(ssl, 1)
    }

    deinit { if let ssl { SSL_free(ssl) } }

    func handlerRemoved(context: ChannelHandlerContext) {
        failPending(ChannelError.ioOnClosedChannel)
        if let ssl { SSL_free(ssl) }
        ssl = nil
        state = .closed
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var received = unwrapInboundIn(data)
        if var waiting = inbound {
            inbound = nil
            waiting.writeBuffer(&received)
            inbound = waiting
        } else {
            inbound = received
        }
        drive(context)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if deliveredRead {
            deliveredRead = false
            context.fireChannelReadComplete()
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        state = .closed
        failPending(ChannelError.ioOnClosedChannel)
        context.fireChannelInactive()
    }

    /// Runs BoringSSL over what has arrived: the handshake, then the records it decrypts.
    private func drive(_ context: ChannelHandlerContext) {
        guard let ssl, state != .closed else {
            inbound = nil
            return
        }
        if state == .handshaking {
            let rc = SSL_do_handshake(ssl)
            if rc != 1 {
                let error = SSL_get_error(ssl, rc)
                flushOutbound(context)  // this flight of the handshake
                guard error == SSL_ERROR_WANT_READ else {
                    fail(context, LeanTLSError.handshakeFailed(LeanTLSError.takeQueuedError()))
                    return
                }
                releaseInboundIfTaken()
                return
            }
            state = .open
            let early = held
            held = []
            for (plaintext, promise) in early { encrypt(plaintext, promise: promise) }
        }
        readPlaintext(context)
        flushOutbound(context)
        releaseInboundIfTaken()
    }

    private func readPlaintext(_ context: ChannelHandlerContext) {
        guard let ssl else { return }
        // Plaintext is no longer than the ciphertext that carried it, give or take what
        // BoringSSL holds from an earlier partial record; the buffer grows if needed.
        var plaintext = context.channel.allocator.buffer(capacity: max(256, inbound?.readableBytes ?? 0))
        var peerClosed = false
        var failure: String?
        while true {
            var rc: CInt = 0
            plaintext.writeWithUnsafeMutableBytes(minimumWritableBytes: 256) { space in
                rc = SSL_read(ssl, space.baseAddress, CInt(min(space.count, Int(CInt.max))))
                return rc > 0 ? Int(rc) : 0
            }
            if rc > 0 { continue }
            let error = SSL_get_error(ssl, rc)
            if error == SSL_ERROR_WANT_READ { break }
            if error == SSL_ERROR_ZERO_RETURN {
                peerClosed = true  // close_notify
                ERR_clear_error()
            } else {
                failure = LeanTLSError.takeQueuedError()
            }
            break
        }
        if plaintext.readableBytes > 0 {
            deliveredRead = true
            context.fireChannelRead(wrapInboundOut(plaintext))
        }
        if let failure {
            fail(context, LeanTLSError.connectionFailed(failure))
        } else if peerClosed {
            close(context: context, mode: .all, promise: nil)
        }
    }

    private func releaseInboundIfTaken() {
        if let waiting = inbound, waiting.readableBytes == 0 { inbound = nil }
    }

    // MARK: Outbound

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let plaintext = unwrapOutboundIn(data)
        switch state {
        case .handshaking: held.append((plaintext, promise))
        case .open: encrypt(plaintext, promise: promise)
        case .closed: promise?.fail(ChannelError.ioOnClosedChannel)
        }
    }

    func flush(context: ChannelHandlerContext) {
        flushOutbound(context)
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if state == .open, let ssl, mode != .input {
            // Our close_notify; the peer's is not waited for (RFC 8446 §6.1 allows this).
            _ = SSL_shutdown(ssl)
            ERR_clear_error()
            flushOutbound(context)
        }
        if mode != .input { state = .closed }
        context.close(mode: mode, promise: promise)
    }

    private func encrypt(_ plaintext: ByteBuffer, promise: EventLoopPromise<Void>?) {
        guard let ssl else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        var rest = plaintext
        while rest.readableBytes > 0 {
            let rc = rest.withUnsafeReadableBytes { SSL_write(ssl, $0.baseAddress, CInt(min($0.count, 1 << 20))) }
            guard rc > 0 else {
                let why = LeanTLSError.takeQueuedError()
                promise?.fail(LeanTLSError.connectionFailed(why))
                return
            }
            rest.moveReaderIndex(forwardBy: Int(rc))
        }
        guard let promise else { return }
        if outbound == nil {
            promise.succeed()  // nothing to send (an empty write)
        } else {
            outboundPromises.append(promise)
        }
    }

    private func flushOutbound(_ context: ChannelHandlerContext) {
        guard let ciphertext = outbound else { return }
        outbound = nil
        let promise: EventLoopPromise<Void>?
        switch outboundPromises.count {
        case 0:
            promise = nil
        case 1:
            promise = outboundPromises[0]
            outboundPromises.removeAll(keepingCapacity: true)
        default:
            let waiting = outboundPromises
            outboundPromises.removeAll(keepingCapacity: true)
            let combined = context.eventLoop.makePromise(of: Void.self)
            combined.futureResult.whenComplete { result in for p in waiting { p.completeWith(result) } }
            promise = combined
        }
        context.writeAndFlush(wrapOutboundOut(ciphertext), promise: promise)
    }

    private func fail(_ context: ChannelHandlerContext, _ error: LeanTLSError) {
        state = .closed
        inbound = nil
        failPending(error)
        context.fireErrorCaught(error)
        context.close(promise: nil)
    }

    private func failPending(_ error: Error) {
        let early = held
        held = []
        for (_, promise) in early { promise?.fail(error) }
        let waiting = outboundPromises
        outboundPromises = []
        for promise in waiting { promise.fail(error) }
    }

    // MARK: The BIO's side (called by BoringSSL during SSL_* calls on this event loop)

    fileprivate func bioRead(into space: UnsafeMutableRawBufferPointer) -> Int {
        guard var waiting = inbound, waiting.readableBytes > 0 else { return 0 }
        inbound = nil
        let count = min(space.count, waiting.readableBytes)
        waiting.withUnsafeReadableBytes { space.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0.prefix(count))) }
        waiting.moveReaderIndex(forwardBy: count)
        inbound = waiting
        return count
    }

    fileprivate func bioWrite(_ bytes: UnsafeRawBufferPointer) {
        var pending = outbound ?? allocator.buffer(capacity: max(bytes.count, 512))
        outbound = nil
        pending.writeBytes(bytes)
        outbound = pending
    }
}

/// One BIO method for every connection, made once.
private struct LeanBIOMethod: @unchecked Sendable {
    // Written once at start-up, then only read.
    let pointer: OpaquePointer?

    init() {
        guard let method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "webims WSS") else {
            pointer = nil
            return
        }
        _ = BIO_meth_set_write(method, leanBIOWrite)
        _ = BIO_meth_set_read(method, leanBIORead)
        _ = BIO_meth_set_ctrl(method, leanBIOControl)
        pointer = method
    }
}

private let leanBIOMethod = LeanBIOMethod()

private func handler(of bio: OpaquePointer?) -> LeanTLSServerHandler? {
    guard let bio, let data = BIO_get_data(bio) else { return nil }
    return Unmanaged<LeanTLSServerHandler>.fromOpaque(data).takeUnretainedValue()
}

private func leanBIORead(_ bio: OpaquePointer?, _ buffer: UnsafeMutablePointer<CChar>?, _ length: CInt) -> CInt {
    guard let bio, let buffer, length > 0, let handler = handler(of: bio) else { return -1 }
    BIO_clear_retry_flags(bio)
    let count = handler.bioRead(into: UnsafeMutableRawBufferPointer(start: buffer, count: Int(length)))
    guard count > 0 else {
        // Nothing more has arrived: BoringSSL asks again after the next read.
        BIO_set_retry_read(bio)
        return -1
    }
    return CInt(count)
}

private func leanBIOWrite(_ bio: OpaquePointer?, _ buffer: UnsafePointer<CChar>?, _ length: CInt) -> CInt {
    guard let bio, let buffer, let handler = handler(of: bio) else { return -1 }
    BIO_clear_retry_flags(bio)
    guard length > 0 else { return 0 }
    handler.bioWrite(UnsafeRawBufferPointer(start: buffer, count: Int(length)))
    return length
}

private func leanBIOControl(_ bio: OpaquePointer?, _ command: CInt, _ larg: CLong, _ parg: UnsafeMutableRawPointer?)
    -> CLong
{
    // Writes are taken whole, so a flush has nothing to do; nothing else is supported.
    command == BIO_CTRL_FLUSH ? 1 : 0
}
