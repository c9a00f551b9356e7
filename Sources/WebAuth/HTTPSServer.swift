import Hummingbird
import HummingbirdTLS
import Logging
import NIOCore
import NIOSSL

/// An HTTPS server for one router (the WWSF's or the WAF's own origin).
public enum HTTPSServer {
    /// Serves until the task is cancelled; `onListening` gets the bound port.
    public static func run(
        router: Router<WebRequestContext>, host: String, port: Int, certificateChainPEM: String, privateKeyPEM: String,
        logger: Logger, onListening: @escaping @Sendable (Int) async -> Void
    ) async throws {
        let app = try make(
            router: router, host: host, port: port, certificateChainPEM: certificateChainPEM,
            privateKeyPEM: privateKeyPEM, logger: logger, onListening: onListening)
        try await app.run()
    }

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
        tls.minimumTLSVersion = .tlsv12
        return Application(
            router: router,
            server: try .tls(.http1(), tlsConfiguration: tls),
            configuration: .init(address: .hostname(host, port: port), serverName: nil),
            onServerRunning: { channel in await onListening(channel.localAddress?.port ?? port) },
            logger: logger)
    }
}
