import Foundation

/// A self-signed P-256 certificate for localhost and 127.0.0.1, made with the openssl
/// command line, for TLS tests (PEM certificate and key).
public func makeTestCertificate() throws -> (certificate: String, key: String) {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("webims-tls-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
    process.arguments = [
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
        "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        "-keyout", dir.appendingPathComponent("key.pem").path, "-out", dir.appendingPathComponent("cert.pem").path,
    ]
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    process.waitUntilExit()
    return (
        try String(contentsOf: dir.appendingPathComponent("cert.pem"), encoding: .utf8),
        try String(contentsOf: dir.appendingPathComponent("key.pem"), encoding: .utf8)
    )
}
