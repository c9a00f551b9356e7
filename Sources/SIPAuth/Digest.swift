import Crypto
import Foundation
import Utilities

/// HTTP Digest as SIP uses it (RFC 2617, RFC 7616), including the IMS AKA algorithms of
/// RFC 3310 and RFC 4169, where the password is derived from the AKA vector.
public enum DigestAlgorithm: String, Sendable, CaseIterable {
    case md5 = "MD5"
    case sha256 = "SHA-256"
    case akav1MD5 = "AKAv1-MD5"
    case akav2MD5 = "AKAv2-MD5"

    /// Reads an `algorithm` value; absent means MD5 (RFC 2617 §3.2.1).
    public init?(parameter: String?) {
        guard let parameter else {
            self = .md5
            return
        }
        guard let match = Self.allCases.first(where: { $0.rawValue.lowercased() == parameter.lowercased() }) else {
            return nil
        }
        self = match
    }

    var usesSHA256: Bool { self == .sha256 }

    func hash(_ bytes: [UInt8]) -> String {
        if usesSHA256 { return hex(Array(SHA256.hash(data: bytes))) }
        return hex(Array(Insecure.MD5.hash(data: bytes)))
    }

    /// HA1 = H(username ":" realm ":" password); the password is raw bytes because AKA
    /// passwords are binary (RFC 3310 §3.4: RES as is, not hex).
    public func ha1(username: String, realm: String, password: [UInt8]) -> String {
        hash(Array("\(username):\(realm):".utf8) + password)
    }

    /// The `response` for qop=auth: H(HA1 ":" nonce ":" nc ":" cnonce ":auth:" H(method ":" uri));
    /// without qop (RFC 2069 compatibility): H(HA1 ":" nonce ":" H(A2)).
    public func response(
        ha1: String, nonce: String, nc: String?, cnonce: String?, qop: String?, method: String, uri: String
    )
        -> String
    {
        let ha2 = hash(Array("\(method):\(uri)".utf8))
        if let qop, let nc, let cnonce {
            return hash(Array("\(ha1):\(nonce):\(nc):\(cnonce):\(qop):\(ha2)".utf8))
        }
        return hash(Array("\(ha1):\(nonce):\(ha2)".utf8))
    }

    /// `rspauth` of Authentication-Info: as the response, with A2 = ":" uri (RFC 2617 §3.2.3).
    public func responseAuth(ha1: String, nonce: String, nc: String, cnonce: String, qop: String, uri: String) -> String
    {
        response(ha1: ha1, nonce: nonce, nc: nc, cnonce: cnonce, qop: qop, method: "", uri: uri)
    }
}

/// IMS AKA glue (RFC 3310, RFC 4169): the nonce layout and the digest password.
public enum IMSAKA {
    /// nonce = base64(RAND ‖ AUTN) (RFC 3310 §3.2).
    public static func nonce(rand: [UInt8], autn: [UInt8]) -> String {
        Data(rand + autn).base64EncodedString()
    }

    /// Splits a nonce into RAND and AUTN; nil if it is not base64 of at least 32 bytes.
    public static func split(nonce: String) -> (rand: [UInt8], autn: [UInt8])? {
        guard let data = Data(base64Encoded: nonce), data.count >= 32 else { return nil }
        let bytes = Array(data)
        return (Array(bytes[0..<16]), Array(bytes[16..<32]))
    }

    /// AUTN = (SQN ⊕ AK) ‖ AMF ‖ MAC-A (TS 33.102 §6.3.2).
    public static func autn(sqn: [UInt8], ak: [UInt8], amf: [UInt8], macA: [UInt8]) -> [UInt8] {
        xor(sqn, ak) + amf + macA
    }

    /// The digest password: RES itself for AKAv1; for AKAv2,
    /// base64(HMAC-MD5(key = RES ‖ IK ‖ CK, "http-digest-akav2-password")) (RFC 4169).
    public static func password(algorithm: DigestAlgorithm, res: [UInt8], ik: [UInt8], ck: [UInt8]) -> [UInt8] {
        switch algorithm {
        case .akav2MD5:
            let mac = HMAC<Insecure.MD5>.authenticationCode(
                for: Array("http-digest-akav2-password".utf8), using: SymmetricKey(data: res + ik + ck))
            return Array(Data(mac).base64EncodedString().utf8)
        default:
            return res
        }
    }
}
