import Hummingbird
import HummingbirdTLS
import Logging
import NIOCore
import NIOSSL
import ServiceLifecycle
import TLSPolicy

/// The HTTPS servers of one process (WWSF, WAF), run as a service group so that a
/// shutdown lets requests in flight finish (graceful), instead of cancelling them.
public final class HTTPSServers: Sendable {
    public struct Site {
        public var router: Router<WebRequestContext>
        public var host: String
        public var port: Int

        public init(router: Router<WebRequestContext>, host: String, port: Int) {
            self.router = router
            self.host = host
            self.port = port
        }
    }

    let group: ServiceGroup

    public init(
        sites: [Site], certificateChainPEM: String, privateKeyPEM: String, logger: Logger,
        otherServices: [any Service] = [], onListening: @escaping @Sendable (Int) async -> Void
    ) throws {
        var services: [any Service] = otherServices
        for site in sites {
            services.append(
                try HTTPSServer.make(
                    router: site.router, host: site.host, port: site.port, certificateChainPEM: certificateChainPEM,
                    privateKeyPEM: privateKeyPEM, logger: logger, onListening: onListening))
        }
        var quiet = logger
        quiet.logLevel = max(logger.logLevel, .notice)
        group = ServiceGroup(configuration: ServiceGroupConfiguration(services: services, logger: quiet))
    }

    /// Serves until `shutdown()`.
    public func run() async throws { try await group.run() }

    /// Stops accepting, lets open requests finish, then `run()` returns.
    public func shutdown() async { await group.triggerGracefulShutdown() }
}

/// An HTTPS server for one router (the WWSF's or the WAF's own origin).
public enum HTTPSServer {
    /// Builds the application; `onListening` gets the bound port (useful with port 0).
    public static func make(
        router: Router<WebRequestContext>, host: String, port: Int, certificateChainPEM: String, privateKeyPEM: String,
        logger: Logger, onListening: @escaping @Sendable (Int) async -> Void
    ) throws -> some ApplicationProtocol {
        let chain = try NIOSSLCertificate.fromPEMBytes(Array(certificateChainPEM.utf8)).map {
            NIOSSLCertificateSource.certificate($0)
        }
        let key = try NIOSSLPrivateKey(bytes: Array(privateKeyPEM.utf8), format: .pem)
        var tls = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
        TLSPolicy.apply(to: &tls)
        return Application(
            router: router,
            server: try .tls(.http1(), tlsConfiguration: tls),
            configuration: .init(address: .hostname(host, port: port), serverName: nil),
            onServerRunning: { channel in await onListening(channel.localAddress?.port ?? port) },
            logger: logger)
    }
}
