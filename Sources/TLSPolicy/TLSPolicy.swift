import NIOSSL

/// The one TLS policy of every webims listener and client — HTTPS (WWSF, WAF), WSS
/// (eP-CSCF) and SIP over TLS between the CSCFs — so no port is weaker than another
/// (issue 26 item 15): TLS 1.2 or 1.3, and in TLS 1.2 only ECDHE key exchange with AEAD
/// ciphers (forward secrecy; no static-RSA key exchange, no CBC or SHA-1 MAC suites).
/// TLS 1.3's suites are all AEAD with ephemeral keys. NIOSSL's default list still allows
/// `RSA+AES` and ECDHE with AES-CBC-SHA, for old clients no browser here needs.
public enum TLSPolicy {
    public static let minimumVersion = TLSVersion.tlsv12

    /// OpenSSL/BoringSSL cipher-list syntax, strongest first (Mozilla's intermediate set).
    public static let tls12CipherSuites = [
        "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    ].joined(separator: ":")

    /// Sets the policy's versions and suites on a configuration (a higher minimum it
    /// already has stays).
    public static func apply(to configuration: inout TLSConfiguration) {
        if configuration.minimumTLSVersion != .tlsv13 { configuration.minimumTLSVersion = minimumVersion }
        configuration.cipherSuites = tls12CipherSuites
    }
}
