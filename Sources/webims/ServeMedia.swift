import ArgumentParser
import Foundation
import Logging
import MediaGateway
import NIOCore
import NIOPosix
import ServiceLifecycle

/// The eP-CSCF's eIMS-AGW as `serve` sets it up: rtpengine started here (the default when it
/// is installed), rtpengines elsewhere by their ng address, or none.
struct MediaFunction {
    let gateway: (any MediaGateway)?
    /// The rtpengine this process runs and supervises, if any.
    let embedded: EmbeddedRTPEngine?
    /// What the start-up lines say about it.
    let summary: String
}

extension Serve {
    func startMedia(logger: Logger) async throws -> MediaFunction {
        let choices = mediaGateway.isEmpty ? ["embedded"] : mediaGateway
        if choices == ["none"] {
            return MediaFunction(
                gateway: nil, embedded: nil, summary: "none (--media-gateway none: SDP passes through, WIC to WIC only)"
            )
        }
        if choices == ["embedded"] { return try await startEmbeddedMedia(logger: logger) }
        var clients: [NGClient] = []
        for choice in choices {
            guard choice.hasPrefix("ng://"), let address = Self.socketAddress(String(choice.dropFirst(5))) else {
                throw ValidationError(
                    "--media-gateway \(choice): expected ng://host:port (an rtpengine's ng port), embedded or none")
            }
            // Any local address of the gateway's family: a gateway on another machine is not
            // reached from loopback (`--host`); replies count only from the gateway itself.
            clients.append(try await NGClient.connect(to: address, from: address.protocol == .inet6 ? "::" : "0.0.0.0"))
        }
        let gateway: any MediaGateway = clients.count == 1 ? clients[0] : MediaGatewayPool(clients)
        return MediaFunction(
            gateway: gateway, embedded: nil, summary: "rtpengine at " + clients.map(\.name).joined(separator: ", "))
    }

    private func startEmbeddedMedia(logger: Logger) async throws -> MediaFunction {
        guard let executable = EmbeddedRTPEngine.locate() else {
            logger.warning("rtpengine is not installed (apt-get install rtpengine-daemon): SDP passes through")
            return MediaFunction(
                gateway: nil, embedded: nil,
                summary: "none (rtpengine is not installed: SDP passes through, WIC to WIC only)")
        }
        let ports = try Self.portRange(mediaPorts)
        let engine = EmbeddedRTPEngine(
            configuration: .init(
                executable: executable, interface: host, ngPort: try await freeUDPPort(host: host), mediaPorts: ports,
                logFile: storage.dataDir + "/rtpengine.log", pidFile: storage.dataDir + "/rtpengine.pid"))
        engine.onRestart { status in
            logger.warning("rtpengine exited (status \(status)); starting it again")
        }
        try await engine.start()
        let client = try await NGClient.connect(to: try engine.ngAddress, from: host)
        return MediaFunction(
            gateway: client, embedded: engine,
            summary:
                "rtpengine embedded (ng \(host):\(engine.configuration.ngPort), media ports \(ports.lowerBound)-\(ports.upperBound), log \(storage.dataDir)/rtpengine.log)"
        )
    }

    static func portRange(_ text: String) throws -> ClosedRange<Int> {
        let parts = text.split(separator: "-")
        guard parts.count == 2, let low = Int(parts[0]), let high = Int(parts[1]), 1024 <= low, low < high,
            high <= 65_535
        else { throw ValidationError("--media-ports \(text): expected A-B with 1024 ≤ A < B ≤ 65535") }
        return low...high
    }

    static func socketAddress(_ hostPort: String) -> SocketAddress? {
        guard let colon = hostPort.lastIndex(of: ":"), let port = Int(hostPort[hostPort.index(after: colon)...]) else {
            return nil
        }
        var host = String(hostPort[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return try? SocketAddress.makeAddressResolvingHost(host, port: port)
    }
}

/// A free UDP port on `host` (for the embedded rtpengine's ng port).
func freeUDPPort(host: String) async throws -> Int {
    let channel = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: host, port: 0)
        .get()
    let port = channel.localAddress?.port ?? 0
    try await channel.close()
    return port
}

/// Stops the embedded rtpengine when the process stops (after the SIP functions).
struct MediaGatewayService: Service, CustomStringConvertible {
    var description: String { "eIMS-AGW" }
    let engine: EmbeddedRTPEngine

    func run() async throws {
        try? await gracefulShutdown()
        await engine.stop()
    }
}
