import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// Our request context: Hummingbird's core storage plus the peer address (login rate limits).
public struct WebRequestContext: RequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let remoteAddress: SocketAddress?

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.remoteAddress = source.channel.remoteAddress
    }

    /// Small bodies only: forms and JSON of a login.
    public var maxUploadSize: Int { 16 * 1_024 }

    var sourceAddress: String? { remoteAddress?.ipAddress }
}

// Literal, valid field names: the initializer cannot fail on them.
// swift-format-ignore: NeverForceUnwrap
extension HTTPField.Name {
    static let csrfToken = Self("X-CSRF-Token")!
    static let contentSecurityPolicy = Self("Content-Security-Policy")!
    static let strictTransportSecurity = Self("Strict-Transport-Security")!
    static let xContentTypeOptions = Self("X-Content-Type-Options")!
    static let xFrameOptions = Self("X-Frame-Options")!
    static let referrerPolicy = Self("Referrer-Policy")!
}

/// Headers every answer carries (issue 5 §1): HSTS, a strict CSP, no sniffing, no framing.
struct SecurityHeaders<Context: RequestContext>: RouterMiddleware {
    let contentSecurityPolicy: String

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        var response: Response
        do {
            response = try await next(request, context)
        } catch let error as HTTPResponseError {
            response = try error.response(from: request, context: context)
        }
        response.headers[.strictTransportSecurity] = "max-age=31536000"
        // A page may narrow or extend its own policy (the WAF's login form names where it posts).
        if response.headers[.contentSecurityPolicy] == nil {
            response.headers[.contentSecurityPolicy] = contentSecurityPolicy
        }
        response.headers[.xContentTypeOptions] = "nosniff"
        response.headers[.xFrameOptions] = "DENY"
        response.headers[.referrerPolicy] = "no-referrer"
        return response
    }
}

func jsonResponse(_ status: HTTPResponse.Status, _ object: Any, headers: HTTPFields = [:]) -> Response {
    var headers = headers
    headers[.contentType] = "application/json"
    // Tokens and session data must not be cached (RFC 6749 §5.1).
    headers[.cacheControl] = "no-store"
    let bytes = (try? json(object)) ?? Array("{}".utf8)
    return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
}

/// A JSON document already serialized (cached documents: JWKS, metadata).
func jsonResponse(_ status: HTTPResponse.Status, bytes: [UInt8], cacheControl: String) -> Response {
    Response(
        status: status, headers: [.contentType: "application/json", .cacheControl: cacheControl],
        body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
}

func errorResponse(_ status: HTTPResponse.Status, _ code: String, _ message: String, headers: HTTPFields = [:])
    -> Response
{
    jsonResponse(status, ["error": code, "error_description": message], headers: headers)
}

func htmlResponse(_ status: HTTPResponse.Status, _ html: String, headers: HTTPFields = [:]) -> Response {
    var headers = headers
    headers[.contentType] = "text/html; charset=utf-8"
    headers[.cacheControl] = "no-store"
    return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: html)))
}

func redirect(to location: String, headers: HTTPFields = [:]) -> Response {
    var headers = headers
    headers[.location] = location
    headers[.cacheControl] = "no-store"
    return Response(status: .found, headers: headers)
}

/// `application/x-www-form-urlencoded` (query strings too). A parameter given twice makes
/// the whole form invalid (RFC 6749 §3.1: parameters MUST NOT repeat).
func formParameters(_ text: Substring) -> [String: String]? {
    var result: [String: String] = [:]
    for pair in text.split(separator: "&") where !pair.isEmpty {
        let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
        guard let name = decodeFormComponent(parts[0]) else { return nil }
        let value = parts.count > 1 ? decodeFormComponent(parts[1]) : ""
        guard let value, result[name] == nil else { return nil }
        result[name] = value
    }
    return result
}

private func decodeFormComponent(_ text: Substring) -> String? {
    text.replacingOccurrences(of: "+", with: " ").removingPercentEncoding
}

func queryParameters(_ request: Request) -> [String: String]? {
    formParameters(Substring(request.uri.query ?? ""))
}

/// Reads a small body as a form or JSON object.
func readBody(_ request: inout Request, context: WebRequestContext) async throws -> [String: Any]? {
    let buffer = try await request.collectBody(upTo: context.maxUploadSize)
    let bytes = Array(buffer.readableBytesView)
    let type = request.headers[.contentType]?.lowercased() ?? ""
    if type.hasPrefix("application/json") {
        return (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any]
    }
    if type.hasPrefix("application/x-www-form-urlencoded") {
        return formParameters(Substring(decoding: bytes, as: UTF8.self))
    }
    return nil
}

/// HTTP Basic client credentials (RFC 6749 §2.3.1: both parts form-urlencoded).
func basicCredentials(_ request: Request) -> (id: String, secret: String?)? {
    guard let header = request.headers[.authorization], header.lowercased().hasPrefix("basic "),
        let decoded = Data(base64Encoded: String(header.dropFirst(6)).trimmingCharacters(in: .whitespaces)),
        let text = String(data: decoded, encoding: .utf8), let colon = text.firstIndex(of: ":")
    else { return nil }
    let id = String(text[..<colon]).removingPercentEncoding ?? ""
    let secret = String(text[text.index(after: colon)...]).removingPercentEncoding
    return (id, secret)
}

func cookie(_ request: Request, _ name: String) -> String? {
    guard let header = request.headers[.cookie] else { return nil }
    for part in header.split(separator: ";") {
        let pair = part.trimmingCharacters(in: .whitespaces)
        if pair.hasPrefix(name + "=") { return String(pair.dropFirst(name.count + 1)) }
    }
    return nil
}

/// A `__Host-` cookie: Secure, HttpOnly, SameSite=Strict, Path=/ (RFC 6265bis §4.1.3.2).
func setCookie(_ name: String, _ value: String, maxAge: Int64) -> String {
    "\(name)=\(value); Path=/; Max-Age=\(maxAge); Secure; HttpOnly; SameSite=Strict"
}

public func unixNow() -> Int64 { Int64(Date().timeIntervalSince1970) }
