import ArgumentParser
import Foundation
import NIOCore
import NIOPosix
import WebAuth

/// Where the web-facing functions listen and what their URLs are.
struct WebOptions: ParsableArguments {
    @Option(help: "Host name in the URLs webims prints and puts in tokens (the certificate covers localhost).")
    var publicHost: String = "localhost"

    @Option(
        help: ArgumentHelp(
            "The WWSF origin browsers use, e.g. https://webims.example.com behind a load balancer. Default: https://<public-host>:<wwsf-port>.",
            discussion:
                "Give every node the same: it is the Origin the eP-CSCF accepts and the wwsf claim of the tokens (docs/scale-out.md)."
        ))
    var publicWwsf: String?

    @Option(
        help: ArgumentHelp(
            "The WAF issuer URL tokens carry and the eP-CSCF trusts, e.g. https://webims.example.com:8444 behind a load balancer. Default: https://<public-host>:<waf-port>.",
            discussion: "Give every node the same: a token from one node's WAF is then valid at every node's eP-CSCF."
        ))
    var publicWaf: String?

    @Option(help: "WWSF HTTPS port (serves the WIC and the demo page; 0 picks a free port).")
    var wwsfPort: Int = 8443

    @Option(help: "WAF HTTPS port, its own origin (0 picks a free port).")
    var wafPort: Int = 8444

    @Option(help: "eP-CSCF secure WebSocket port (0 picks a free port).")
    var wssPort: Int = 7443

    @Option(
        help: ArgumentHelp(
            "Logins a minute from one source prefix (IPv4 address, IPv6 /64) before the WWSF and WAF answer 429.",
            discussion:
                "Behind a load balancer every browser has the balancer's address: raise this and limit per client at the balancer (docs/scale-out.md)."
        ))
    var loginAttemptsPerSource: Int = 20

    @Option(help: "Lifetime of the access tokens the WAF issues, in seconds.")
    var tokenLifetime: Int = 3_600

    @Option(help: "The eP-CSCF's identifier: the `aud` of every token. Default: https://epcscf.<home domain>.")
    var epcscfID: String?

    @Option(
        help: ArgumentHelp(
            "JSON file of further OAuth clients of the WAF.",
            discussion:
                #"An array of {"id", "secret" (omit for a public client), "redirect_uris": [...], "wwsf"}."#))
    var wafClients: String?

    func audience(homeDomain: String) -> String { epcscfID ?? "https://epcscf.\(homeDomain)" }

    /// The WWSF origin every node announces and the eP-CSCF admits.
    func wwsfOrigin(port: Int) -> String { publicWwsf.map(trimmingSlash) ?? origin("https", publicHost, port) }

    /// The WAF issuer every node's tokens carry.
    func wafIssuer(port: Int) -> String { publicWaf.map(trimmingSlash) ?? origin("https", publicHost, port) }

    func extraWAFClients() throws -> [OAuthClient] {
        guard let path = wafClients else { return [] }
        struct Entry: Decodable {
            var id: String
            var secret: String?
            var redirect_uris: [String]
            var wwsf: String
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ValidationError("cannot read \(path)")
        }
        return try JSONDecoder().decode([Entry].self, from: data).map {
            OAuthClient(id: $0.id, secret: $0.secret, redirectURIs: $0.redirect_uris, wwsf: $0.wwsf)
        }
    }
}

/// What `serve` writes to `<data-dir>/endpoints.json` once every listener is up, so
/// scripts, tests and the other commands find it.
struct Endpoints: Codable {
    var wwsf: String?
    var wafIssuer: String?
    var epcscf: String?
    var scscf: String?
    var scscfTLS: String?
    /// The eP-CSCF's own SIP listener (towards its S-CSCFs).
    var epcscfSIP: String?
    var homeDomain: String
    var audience: String
    var metrics: String?

    enum CodingKeys: String, CodingKey {
        case wwsf, epcscf, scscf, metrics, audience
        case wafIssuer = "waf_issuer"
        case homeDomain = "home_domain"
        case scscfTLS = "scscf_tls"
        case epcscfSIP = "epcscf_sip"
    }

    static func read(dataDir: String) -> Endpoints? {
        guard let data = FileManager.default.contents(atPath: dataDir + "/endpoints.json") else { return nil }
        return try? JSONDecoder().decode(Endpoints.self, from: data)
    }

    func write(dataDir: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let path = dataDir + "/endpoints.json"
        try encoder.encode(self).write(to: URL(fileURLWithPath: path + ".tmp"))
        guard rename(path + ".tmp", path) == 0 else { throw ValidationError("cannot write \(path)") }
    }
}

/// A free TCP port on `host` (for options set to 0 whose value must be known before the
/// listener starts, e.g. to put it in an origin). Picked below the kernel's ephemeral
/// range: a port the kernel handed us for a bind to 0 is free again once we close it, and
/// an outgoing connection may take it before our listener binds it (seen in CI).
func freePort(host: String) async throws -> Int {
    let firstEphemeral =
        (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8))
        .flatMap { $0.split(whereSeparator: \.isWhitespace).first.flatMap { Int($0) } } ?? 32768
    if firstEphemeral > 10_001 {
        for _ in 0..<50 {
            let port = Int.random(in: 10_000..<firstEphemeral)
            if let channel = try? await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .bind(host: host, port: port).get()
            {
                try await channel.close()
                return port
            }
        }
    }
    let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .bind(host: host, port: 0).get()
    let port = channel.localAddress?.port ?? 0
    try await channel.close()
    return port
}

func trimmingSlash(_ url: String) -> String { url.hasSuffix("/") ? String(url.dropLast()) : url }

func origin(_ scheme: String, _ host: String, _ port: Int) -> String {
    "\(scheme)://\(host)\(port == 443 ? "" : ":\(port)")"
}
