import Crypto
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization

/// Keeps a remote WAF's signing keys current in the validator (EPC-16, WAF-5): reads the
/// issuer's RFC 8414 metadata for `jwks_uri`, fetches the JWKS over HTTPS, refreshes it
/// periodically, and again when a token names an unknown `kid` — at most once per
/// `minimumInterval`, so forged kids cannot make us hammer the WAF.
public final class WAFKeyFetcher: Sendable {
    public let issuer: String
    let validator: TokenValidator
    let tls: TLSConfiguration
    let minimumInterval: Duration
    let logger: Logger
    /// When a token with an unknown kid last made us fetch (the periodic refresh does not count).
    let lastOnDemand = Mutex<ContinuousClock.Instant?>(nil)

    public init(
        issuer: String, validator: TokenValidator, tls: TLSConfiguration = .makeClientConfiguration(),
        minimumInterval: Duration = .seconds(10), logger: Logger
    ) {
        self.issuer = issuer.hasSuffix("/") ? String(issuer.dropLast()) : issuer
        self.validator = validator
        self.tls = tls
        self.minimumInterval = minimumInterval
        self.logger = logger
    }

    /// Fetches metadata and JWKS now; returns the number of keys installed.
    @discardableResult public func refresh() async throws -> Int {
        let metadata = try await HTTPSGet.json(issuer + "/.well-known/oauth-authorization-server", tls: tls)
        // RFC 8414 §3.3: the metadata must name the issuer we asked.
        guard metadata["issuer"] as? String == issuer, let jwksURI = metadata["jwks_uri"] as? String,
            jwksURI.hasPrefix("https://")
        else { throw HTTPSGetError.badDocument("metadata of \(issuer)") }
        let (status, body) = try await HTTPSGet.fetch(jwksURI, tls: tls)
        guard status == 200 else { throw HTTPSGetError.status(status) }
        let keys = TrustedIssuer.keys(fromJWKS: Data(body))
        guard !keys.isEmpty else { throw HTTPSGetError.badDocument("JWKS of \(issuer)") }
        validator.setKeys(keys, issuer: issuer)
        return keys.count
    }

    /// A refresh for a token naming an unknown kid, unless one was made for that reason
    /// within the minimum interval.
    public func refreshForUnknownKey() async {
        let due = lastOnDemand.withLock { last in
            guard let last, ContinuousClock.now - last < minimumInterval else {
                last = .now
                return true
            }
            return false
        }
        guard due else { return }
        await refreshLogged()
    }

    func refreshLogged() async {
        do {
            let count = try await refresh()
            logger.info("WAF keys of \(issuer) refreshed: \(count) keys")
        } catch {
            logger.warning("WAF keys of \(issuer) not refreshed: \(error)")
        }
    }

    /// Refreshes every `period` until cancelled (first at once).
    public func run(period: Duration = .seconds(300)) async {
        while !Task.isCancelled {
            await refreshLogged()
            try? await Task.sleep(for: period)
        }
    }
}

public enum HTTPSGetError: Error, CustomStringConvertible {
    case badURL(String)
    case status(Int)
    case tooLarge
    case badDocument(String)
    case timeout

    public var description: String {
        switch self {
        case .badURL(let url): "not an https URL: \(url)"
        case .status(let code): "HTTP status \(code)"
        case .tooLarge: "response too large"
        case .badDocument(let what): "unusable \(what)"
        case .timeout: "timed out"
        }
    }
}

/// A minimal HTTPS GET (HTTP/1.1, one request per connection) for the few documents the
/// eP-CSCF reads: WAF metadata and JWKS.
enum HTTPSGet {
    static func json(_ url: String, tls: TLSConfiguration) async throws -> [String: Any] {
        let (status, body) = try await fetch(url, tls: tls)
        guard status == 200 else { throw HTTPSGetError.status(status) }
        guard let object = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] else {
            throw HTTPSGetError.badDocument(url)
        }
        return object
    }

    static func fetch(_ url: String, tls: TLSConfiguration, limit: Int = 1 << 20, timeout: TimeAmount = .seconds(5))
        async throws -> (Int, [UInt8])
    {
        guard let components = URLComponents(string: url), components.scheme == "https", let host = components.host
        else { throw HTTPSGetError.badURL(url) }
        let port = components.port ?? 443
        var path = components.percentEncodedPath.isEmpty ? "/" : components.percentEncodedPath
        if let query = components.percentEncodedQuery { path += "?" + query }
        let context = try NIOSSLContext(configuration: tls)
        let group = MultiThreadedEventLoopGroup.singleton
        let promise = group.next().makePromise(of: (Int, [UInt8]).self)
        let collector = ResponseCollector(promise: promise, limit: limit)
        let serverName = host.first?.isNumber == true || host.contains(":") ? nil : host
        let channel = try await ClientBootstrap(group: group)
            .connectTimeout(timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(NIOSSLClientHandler(context: context, serverHostname: serverName))
                    try sync.addHTTPClientHandlers()
                    try sync.addHandler(collector)
                }
            }
            .connect(host: host, port: port).get()
        let timer = channel.eventLoop.scheduleTask(in: timeout) {
            promise.fail(HTTPSGetError.timeout)
            channel.close(promise: nil)
        }
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: components.port.map { "\(host):\($0)" } ?? host)
        headers.add(name: "Accept", value: "application/json")
        headers.add(name: "Connection", value: "close")
        channel.write(
            HTTPClientRequestPart.head(HTTPRequestHead(version: .http1_1, method: .GET, uri: path, headers: headers)),
            promise: nil)
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        defer {
            timer.cancel()
            channel.close(promise: nil)
        }
        return try await promise.futureResult.get()
    }

    final class ResponseCollector: ChannelInboundHandler, Sendable {
        typealias InboundIn = HTTPClientResponsePart
        let promise: EventLoopPromise<(Int, [UInt8])>
        let limit: Int
        let state = Mutex<(status: Int, body: [UInt8])>((0, []))

        init(promise: EventLoopPromise<(Int, [UInt8])>, limit: Int) {
            self.promise = promise
            self.limit = limit
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head):
                state.withLock { $0.status = Int(head.status.code) }
            case .body(let buffer):
                let tooLarge = state.withLock { state -> Bool in
                    state.body += buffer.readableBytesView
                    return state.body.count > limit
                }
                if tooLarge {
                    promise.fail(HTTPSGetError.tooLarge)
                    context.close(promise: nil)
                }
            case .end:
                promise.succeed(state.withLock { ($0.status, $0.body) })
            }
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            promise.fail(error)
            context.close(promise: nil)
        }

        func channelInactive(context: ChannelHandlerContext) {
            promise.fail(HTTPSGetError.badDocument("connection closed early"))
        }
    }
}
