import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization

/// A minimal HTTPS client (HTTP/1.1, one request per connection) for the few documents
/// webims fetches from its peers: a WAF's metadata and JWKS (eP-CSCF), a remote WAF's
/// token endpoint (WWSF).
public enum HTTPSClientError: Error, CustomStringConvertible {
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

/// Which servers a client trusts, as a value callers hold without knowing NIOSSL.
public struct HTTPSTrust: Sendable {
    public let tls: TLSConfiguration
    public init(tls: TLSConfiguration) { self.tls = tls }
    /// The system's trust roots.
    public static var system: HTTPSTrust { HTTPSTrust(tls: .makeClientConfiguration()) }
}

public enum HTTPSClient {
    public static func json(_ url: String, trust: HTTPSTrust) async throws -> [String: Any] {
        try await json(url, tls: trust.tls)
    }

    public static func fetch(_ url: String, trust: HTTPSTrust) async throws -> (Int, [UInt8]) {
        try await fetch(url, tls: trust.tls)
    }

    public static func json(_ url: String, tls: TLSConfiguration) async throws -> [String: Any] {
        let (status, body) = try await fetch(url, tls: tls)
        guard status == 200 else { throw HTTPSClientError.status(status) }
        guard let object = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] else {
            throw HTTPSClientError.badDocument(url)
        }
        return object
    }

    /// One request; returns the status and body. `form` makes it a POST of
    /// application/x-www-form-urlencoded; `basicAuth` adds HTTP Basic credentials.
    public static func fetch(
        _ url: String, tls: TLSConfiguration, form: [(String, String)]? = nil, basicAuth: (String, String)? = nil,
        limit: Int = 1 << 20, timeout: TimeAmount = .seconds(5)
    ) async throws -> (Int, [UInt8]) {
        guard let components = URLComponents(string: url), components.scheme == "https", let host = components.host
        else { throw HTTPSClientError.badURL(url) }
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
            promise.fail(HTTPSClientError.timeout)
            channel.close(promise: nil)
        }
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: components.port.map { "\(host):\($0)" } ?? host)
        headers.add(name: "Accept", value: "application/json")
        headers.add(name: "Connection", value: "close")
        if let (user, password) = basicAuth {
            let credentials = Data("\(formEncode(user)):\(formEncode(password))".utf8).base64EncodedString()
            headers.add(name: "Authorization", value: "Basic " + credentials)
        }
        var body: ByteBuffer?
        if let form {
            let text = form.map { "\(formEncode($0.0))=\(formEncode($0.1))" }.joined(separator: "&")
            headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
            headers.add(name: "Content-Length", value: String(text.utf8.count))
            body = ByteBuffer(string: text)
        }
        let head = HTTPRequestHead(version: .http1_1, method: form == nil ? .GET : .POST, uri: path, headers: headers)
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        if let body { channel.write(HTTPClientRequestPart.body(.byteBuffer(body)), promise: nil) }
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
                    promise.fail(HTTPSClientError.tooLarge)
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
            promise.fail(HTTPSClientError.badDocument("connection closed early"))
        }
    }
}

/// RFC 6749 Appendix B: form-urlencoding of client credentials and form values.
public func formEncode(_ text: String) -> String {
    var allowed = CharacterSet.alphanumerics
    allowed.insert(charactersIn: "-._~")
    return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? ""
}
