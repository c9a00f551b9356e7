import Foundation
import Testing
import Utilities

@Suite struct Base64URLTests {
    /// RFC 4648 §10 vectors, without padding (RFC 7515 §2).
    @Test func rfc4648Vectors() {
        let vectors = [
            ("", ""), ("f", "Zg"), ("fo", "Zm8"), ("foo", "Zm9v"), ("foob", "Zm9vYg"), ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ]
        for (plain, encoded) in vectors {
            #expect(base64URLEncode(Array(plain.utf8)) == encoded)
            #expect(base64URLDecode(encoded) == Array(plain.utf8))
        }
    }

    /// Random bytes agree with Foundation's base64 with the URL alphabet swapped in.
    @Test func agreesWithFoundation() {
        var generator = SystemRandomNumberGenerator()
        for length in 0..<200 {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let foundation = Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-")
                .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
            #expect(base64URLEncode(bytes) == foundation)
            #expect(base64URLDecode(foundation) == bytes)
        }
    }

    @Test func refusesWhatNoEncoderWrites() {
        for bad in ["Zg==", "Z", "Zm9vY", "Z+8", "Zm/v", "Zm9v\n", "Zh", "Zm9vYmF", "é"] {
            #expect(base64URLDecode(bad) == nil, "\(bad)")
        }
        #expect(base64URLDecode("Zm8") == Array("fo".utf8))
    }
}
