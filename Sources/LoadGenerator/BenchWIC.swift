import Foundation
import SIPAuth
import SIPCore
import Synchronization
import Utilities

/// What one bench WIC sends.
public final class BenchWIC: Sendable {
    public let impi: String
    public let impu: String
    public let domain: String

    public init(impi: String, impu: String, domain: String) {
        self.impi = impi
        self.impu = impu
        self.domain = domain
    }

    let host = randomToken(length: 10) + ".invalid"
    let callID = randomToken(length: 16)
    let instance = "<urn:uuid:\(UUID().uuidString.lowercased())>"
    let cseq = Mutex<UInt32>(0)

    public func register(authorization: String?) throws -> SIPRequest {
        let n = cseq.withLock { value -> UInt32 in
            value += 1
            return value
        }
        var text =
            "REGISTER sip:\(domain) SIP/2.0\r\nVia: SIP/2.0/WSS \(host);branch=z9hG4bK\(randomToken(length: 12))\r\n"
        text += "Max-Forwards: 70\r\nFrom: <\(impu)>;tag=\(callID.prefix(8))\r\nTo: <\(impu)>\r\nCall-ID: \(callID)\r\n"
        text +=
            "CSeq: \(n) REGISTER\r\nContact: <sip:b@\(host);transport=ws>;+sip.instance=\"\(instance)\";reg-id=1\r\n"
        text += "Expires: 600\r\nSupported: path, outbound, gruu\r\n"
        if let authorization { text += "Authorization: \(authorization)\r\n" }
        text += "Content-Length: 0\r\n\r\n"
        guard case .request(let request) = try SIPParser().parse(Array(text.utf8)) else { throw BenchError.connect }
        return request
    }

    /// REGISTER → 401 → answered REGISTER; returns the final status.
    public func digestRegister(over flow: BenchFlow) async throws -> Int {
        let first = try await flow.transaction(
            register(
                authorization:
                    "Digest username=\"\(impi)\", realm=\"\(domain)\", uri=\"sip:\(domain)\", nonce=\"\", response=\"\""
            ))
        guard first.statusCode == 401,
            let challenge = try first.headers.challenges().first(where: { $0.algorithm == "MD5" || $0.algorithm == nil }
            ),
            let nonce = challenge.nonce
        else { return first.statusCode }
        let ha1 = DigestAlgorithm.md5.ha1(username: impi, realm: domain, password: Array("bench-secret".utf8))
        let response = DigestAlgorithm.md5.response(
            ha1: ha1, nonce: nonce, nc: "00000001", cnonce: "bench", qop: "auth", method: "REGISTER",
            uri: "sip:\(domain)")
        let answered = try register(
            authorization:
                "Digest username=\"\(impi)\", realm=\"\(domain)\", uri=\"sip:\(domain)\", nonce=\"\(nonce)\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"bench\", response=\"\(response)\""
        )
        return try await flow.transaction(answered).statusCode
    }
}
