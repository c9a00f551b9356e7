import NIOCore
import SIPCore

/// RFC 3261 §18.2.1 and RFC 3581: a server notes where a request really came from in the
/// top Via, so the response can find its way back through NATs.
public func stampReceived(_ headers: inout SIPHeaderFields, from remote: SocketAddress) throws(SIPParseError) {
    guard let index = headers.firstIndex(named: .via) else {
        throw SIPParseError(.missingHeader, header: .via)
    }
    var vias = try SIPVia.parseList(headers[index].value)
    guard let ip = remote.ipAddress else { return }
    var top = vias[0]
    let sentHost = top.host.hasPrefix("[") ? String(top.host.dropFirst().dropLast()) : top.host
    var changed = false
    if sentHost != ip {
        top.received = ip
        changed = true
    }
    if top.rport == .requested, let port = remote.port {
        top.rport = .value(UInt16(port))
        if top.received == nil { top.received = ip }
        changed = true
    }
    guard changed else { return }
    vias[0] = top
    headers[index].value = vias.map(\.description).joined(separator: ", ")
}

/// RFC 3261 §18.2.2 for unreliable transports: `received` (or the sent-by IP), and the
/// `rport` value (RFC 3581 §4) or the sent-by port, or 5060.
func responseDestination(for response: SIPResponse, default fallback: SocketAddress) -> SocketAddress {
    guard let via = try? response.headers.topVia else { return fallback }
    var host = via.received ?? via.host
    if host.hasPrefix("[") { host = String(host.dropFirst().dropLast()) }
    let port: Int
    if case .value(let p) = via.rport {
        port = Int(p)
    } else {
        port = Int(via.port ?? 5060)
    }
    return (try? SocketAddress(ipAddress: host, port: port)) ?? fallback
}
