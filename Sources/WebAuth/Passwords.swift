import Crypto
import Foundation
import Utilities
import _CryptoExtras

/// Web account passwords, stored as PBKDF2-HMAC-SHA256 (OWASP 2023: ≥ 600,000 rounds) with
/// a random 16-byte salt: `pbkdf2-sha256$<rounds>$<salt b64url>$<hash b64url>`.
public struct PasswordHasher: Sendable {
    public var rounds: Int

    public init(rounds: Int = 600_000) { self.rounds = rounds }

    public func hash(_ password: String) throws -> String {
        let salt = randomBytes(16)
        let key = try derive(password, salt: salt, rounds: rounds)
        return "pbkdf2-sha256$\(rounds)$\(base64URLEncode(salt))$\(base64URLEncode(key))"
    }

    /// True when `password` matches; a malformed stored value matches nothing.
    public func verify(_ password: String, against stored: String) -> Bool {
        let parts = stored.split(separator: "$", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == "pbkdf2-sha256", let rounds = Int(parts[1]), rounds >= 1,
            rounds <= 10_000_000, let salt = base64URLDecode(String(parts[2])),
            let expected = base64URLDecode(String(parts[3])),
            let key = try? derive(password, salt: salt, rounds: rounds)
        else { return false }
        return constantTimeEqual(key, expected)
    }

    /// Spends the same time as a real check, so an unknown user name is not told apart by timing.
    public func verifyNothing(_ password: String) {
        _ = try? derive(password, salt: [UInt8](repeating: 0, count: 16), rounds: rounds)
    }

    func derive(_ password: String, salt: [UInt8], rounds: Int) throws -> [UInt8] {
        let key = try KDF.Insecure.PBKDF2.deriveKey(
            from: Array(password.utf8), salt: salt, using: .sha256, outputByteCount: 32,
            unsafeUncheckedRounds: rounds)
        return key.withUnsafeBytes { Array($0) }
    }
}
