import NIOSSL
import TLSPolicy

/// TLS between IMS nodes (eP-CSCF ↔ S-CSCF): each side has a certificate, and both trust
/// the same configured CAs. A certificate is how a trusted node proves who it is (SCS-1).
public enum SIPNodeTLS {
    /// A listener that asks for a client certificate and verifies one that is presented
    /// against `caFiles` only; peers without one (UEs) still connect, unauthenticated.
    public static func server(certificateChainPEM: String, privateKeyPEM: String, caFiles: [String]) throws
        -> TLSConfiguration
    {
        var tls = TLSConfiguration.makeServerConfiguration(
            certificateChain: try chain(certificateChainPEM), privateKey: try key(privateKeyPEM))
        TLSPolicy.apply(to: &tls)
        tls.certificateVerification = .optionalVerification
        tls.trustRoots = .certificates([])
        tls.additionalTrustRoots = caFiles.map { .file($0) }
        return tls
    }

    /// The client side: verifies the server against the system's roots and `caFiles`, and
    /// presents its own certificate.
    public static func client(certificateChainPEM: String, privateKeyPEM: String, caFiles: [String]) throws
        -> TLSConfiguration
    {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateChain = try chain(certificateChainPEM)
        tls.privateKey = try key(privateKeyPEM)
        tls.additionalTrustRoots = caFiles.map { .file($0) }
        TLSPolicy.apply(to: &tls)
        return tls
    }

    static func chain(_ pem: String) throws -> [NIOSSLCertificateSource] {
        try NIOSSLCertificate.fromPEMBytes(Array(pem.utf8)).map { .certificate($0) }
    }

    static func key(_ pem: String) throws -> NIOSSLPrivateKeySource {
        .privateKey(try NIOSSLPrivateKey(bytes: Array(pem.utf8), format: .pem))
    }
}
