import NIOCore
import SIPCore

/// RFC 3261 §18.2.1 and RFC 3581: a server notes where a request really came from in the
/// top Via, so the response can find its way back through NATs. Returns the top Via as
/// stamped; the entries below it are left as written.
@discardableResult
public func stampReceived(_ headers: inout SIPHeaderFields, from remote: SocketAddress) throws(SIPParseError)
    -> SIPVia
{
    guard let ip = remote.ipText else { return try headers.topVia }
    return try headers.updateTopVia { top in
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
        return changed
    }
}

extension SocketAddress {
    /// The IP address as text; IPv4 is written here rather than by `inet_ntop`, which
    /// formats through `sprintf` — once per UDP request.
    var ipText: String? {
        guard case .v4(let v4) = self else { return ipAddress }
        let address = UInt32(bigEndian: v4.address.sin_addr.s_addr)
        // At most 15 bytes: a small string, no allocation.
        return String(unsafeUninitializedCapacity: 15) { text in
            var count = 0
            for shift in stride(from: 24, through: 0, by: -8) {
                let octet = UInt8(truncatingIfNeeded: address >> UInt32(shift))
                if shift < 24 {
                    text[count] = UInt8(ascii: ".")
                    count += 1
                }
                if octet >= 100 {
                    text[count] = UInt8(ascii: "0") + octet / 100
                    count += 1
                }
                if octet >= 10 {
                    text[count] = UInt8(ascii: "0") + octet / 10 % 10
                    count += 1
                }
                text[count] = UInt8(ascii: "0") + octet % 10
                count += 1
            }
            return count
        }
    }
}

/// RFC 3261 §18.2.2 for unreliable transports: `received` (or the sent-by IP), and the
/// `rport` value (RFC 3581 §4) or the sent-by port, or 5060.
func responseDestination(for response: SIPResponse, default fallback: SocketAddress) -> SocketAddress {
    guard let via = try? response.headers.topVia else { return fallback }
    return responseDestination(via: via, remote: fallback)
}

/// The same, from a request's top Via as stamped on arrival and where the request came from.
func responseDestination(via: SIPVia, remote fallback: SocketAddress) -> SocketAddress {
    // RFC 3581 §4: a filled-in rport and received name the request's source — the address
    // it came from, with no text to parse.
    if case .value(let p) = via.rport, Int(p) == fallback.port, let received = via.received,
        received == fallback.ipText
    {
        return fallback
    }
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
