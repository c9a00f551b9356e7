import Crypto
import Foundation
import SwiftASN1
import X509

/// The certificate and key a TLS listener serves, as PEM text.
public struct ServerIdentity: Sendable {
    public var certificateChainPEM: String
    public var privateKeyPEM: String
    /// Where the files are, for the messages that tell a person what to trust.
    public var caCertificatePath: String?

    public init(certificateChainPEM: String, privateKeyPEM: String, caCertificatePath: String? = nil) {
        self.certificateChainPEM = certificateChainPEM
        self.privateKeyPEM = privateKeyPEM
        self.caCertificatePath = caCertificatePath
    }
}

public enum LocalPKIError: Error, CustomStringConvertible {
    case unreadable(String)
    case badAddress(String)

    public var description: String {
        switch self {
        case .unreadable(let path): "cannot read TLS file \(path)"
        case .badAddress(let address): "not an IP address: \(address)"
        }
    }
}

/// A local certificate authority for a machine that has no certificate yet: on first start
/// it makes a CA (P-256, 10 years) and a server certificate signed by it for `localhost`
/// and the loopback addresses (1 year, renewed when less than 30 days are left), stored as
/// PEM files in the data directory. A person trusts `ca.pem` once in the browser; every
/// later certificate chains to it.
public enum LocalCertificateAuthority {
    public static let caCertificateFile = "ca.pem"
    public static let caKeyFile = "ca-key.pem"
    public static let serverCertificateFile = "server.pem"
    public static let serverKeyFile = "server-key.pem"

    /// Loads the server identity from `directory`, creating the CA and/or server
    /// certificate first when they are missing, expiring, or lack one of `hostNames`.
    public static func serverIdentity(
        in directory: String, hostNames: [String] = ["localhost"], ipAddresses: [String] = ["127.0.0.1", "::1"],
        now: Date = Date()
    ) throws -> ServerIdentity {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let caPath = directory + "/" + caCertificateFile
        let caKeyPath = directory + "/" + caKeyFile
        let (caCertificate, caKey) = try loadOrCreateCA(certificatePath: caPath, keyPath: caKeyPath, now: now)

        let serverPath = directory + "/" + serverCertificateFile
        let serverKeyPath = directory + "/" + serverKeyFile
        if let pem = try? String(contentsOfFile: serverPath, encoding: .utf8),
            let keyPEM = try? String(contentsOfFile: serverKeyPath, encoding: .utf8),
            let certificate = try? Certificate(pemEncoded: pem),
            certificate.issuer == caCertificate.subject,
            certificate.notValidAfter > now.addingTimeInterval(30 * 86_400),
            covers(certificate, hostNames: hostNames, ipAddresses: ipAddresses)
        {
            return ServerIdentity(
                certificateChainPEM: pem + (try caCertificate.serializeAsPEM().pemString) + "\n",
                privateKeyPEM: keyPEM, caCertificatePath: caPath)
        }
        let serverKey = P256.Signing.PrivateKey()
        var names: [GeneralName] = hostNames.map { .dnsName($0) }
        for address in ipAddresses {
            names.append(.ipAddress(ASN1OctetString(contentBytes: try ipBytes(address)[...])))
        }
        let certificate = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: .init(serverKey.publicKey),
            notValidBefore: now.addingTimeInterval(-3_600),
            notValidAfter: now.addingTimeInterval(365 * 86_400),
            issuer: caCertificate.subject,
            subject: try DistinguishedName {
                OrganizationName("webims")
                CommonName(hostNames.first ?? "localhost")
            },
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                // Also a client certificate: the eP-CSCF presents it to the S-CSCF (SCS-1).
                try ExtendedKeyUsage([.serverAuth, .clientAuth])
                SubjectAlternativeNames(names)
                AuthorityKeyIdentifier(keyIdentifier: try caCertificate.extensions.subjectKeyIdentifier?.keyIdentifier)
            },
            issuerPrivateKey: .init(caKey))
        let pem = try certificate.serializeAsPEM().pemString + "\n"
        try write(serverKey.pemRepresentation + "\n", to: serverKeyPath, secret: true)
        try write(pem, to: serverPath, secret: false)
        return ServerIdentity(
            certificateChainPEM: pem + (try caCertificate.serializeAsPEM().pemString) + "\n",
            privateKeyPEM: serverKey.pemRepresentation + "\n", caCertificatePath: caPath)
    }

    /// Reads a configured certificate chain and key (an operator's own, e.g. from an ACME client).
    public static func serverIdentity(certificatePath: String, keyPath: String) throws -> ServerIdentity {
        guard let chain = try? String(contentsOfFile: certificatePath, encoding: .utf8) else {
            throw LocalPKIError.unreadable(certificatePath)
        }
        guard let key = try? String(contentsOfFile: keyPath, encoding: .utf8) else {
            throw LocalPKIError.unreadable(keyPath)
        }
        return ServerIdentity(certificateChainPEM: chain, privateKeyPEM: key)
    }

    static func loadOrCreateCA(certificatePath: String, keyPath: String, now: Date) throws
        -> (Certificate, P256.Signing.PrivateKey)
    {
        if let pem = try? String(contentsOfFile: certificatePath, encoding: .utf8),
            let keyPEM = try? String(contentsOfFile: keyPath, encoding: .utf8),
            let certificate = try? Certificate(pemEncoded: pem),
            let key = try? P256.Signing.PrivateKey(pemRepresentation: keyPEM),
            certificate.publicKey == Certificate.PublicKey(key.publicKey),
            certificate.notValidAfter > now.addingTimeInterval(400 * 86_400)
        {
            return (certificate, key)
        }
        let key = P256.Signing.PrivateKey()
        let name = try DistinguishedName {
            OrganizationName("webims")
            CommonName("webims local CA \(Int(now.timeIntervalSince1970))")
        }
        let publicKey = Certificate.PublicKey(key.publicKey)
        let certificate = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: publicKey,
            notValidBefore: now.addingTimeInterval(-3_600),
            notValidAfter: now.addingTimeInterval(10 * 365 * 86_400),
            issuer: name,
            subject: name,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: publicKey)
            },
            issuerPrivateKey: .init(key))
        try write(key.pemRepresentation + "\n", to: keyPath, secret: true)
        try write(try certificate.serializeAsPEM().pemString + "\n", to: certificatePath, secret: false)
        return (certificate, key)
    }

    static func covers(_ certificate: Certificate, hostNames: [String], ipAddresses: [String]) -> Bool {
        guard let names = try? certificate.extensions.subjectAlternativeNames,
            (try? certificate.extensions.extendedKeyUsage)?.contains(.clientAuth) == true
        else { return false }
        for host in hostNames where !names.contains(.dnsName(host)) { return false }
        for address in ipAddresses {
            guard let bytes = try? ipBytes(address),
                names.contains(.ipAddress(ASN1OctetString(contentBytes: bytes[...])))
            else { return false }
        }
        return true
    }

    static func ipBytes(_ address: String) throws -> [UInt8] {
        var v4 = in_addr()
        if inet_pton(AF_INET, address, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, address, &v6) == 1 { return withUnsafeBytes(of: &v6) { Array($0) } }
        throw LocalPKIError.badAddress(address)
    }

    /// Writes atomically; private keys readable by the owner only.
    static func write(_ text: String, to path: String, secret: Bool) throws {
        let temporary = path + ".tmp"
        guard
            FileManager.default.createFile(
                atPath: temporary, contents: Data(text.utf8),
                attributes: [.posixPermissions: secret ? 0o600 : 0o644]),
            rename(temporary, path) == 0
        else { throw LocalPKIError.unreadable(path) }
    }
}
