import Foundation
import Testing

@testable import WebAuth

/// The hand-written JSON of the WAF's tokens reads back as what was written, whatever the
/// strings hold.
@Suite struct JSONTextTests {
    @Test func claimsReadBackExactly() throws {
        let awkward = "quote \" backslash \\ slash / tab \t newline \n nul \u{0} bell \u{7} é 𝄞 \u{2028}"
        let claims: [String: Any] = [
            "iss": "https://waf.ims.example.com", "exp": 1_893_456_600, "iat": Int64(1_893_453_000),
            "impu": ["sip:alice@ims.example.com", "tel:+15551234567", awkward], "sub": awkward, "empty": [String](),
            "flag": true, "nested": ["a": "b", "n": 1],
        ]
        let text = try jsonText(claims)
        let back = try #require(try JSONSerialization.jsonObject(with: Data(text)) as? [String: Any])
        #expect(back["sub"] as? String == awkward)
        #expect(back["impu"] as? [String] == ["sip:alice@ims.example.com", "tel:+15551234567", awkward])
        #expect((back["exp"] as? NSNumber)?.int64Value == 1_893_456_600)
        #expect((back["iat"] as? NSNumber)?.int64Value == 1_893_453_000)
        #expect(back["empty"] as? [String] == [])
        #expect(back["flag"] as? Bool == true)
        #expect((back["nested"] as? [String: Any])?["a"] as? String == "b")
        // Control characters never appear raw (RFC 8259 §7).
        #expect(!text.contains { $0 < 0x20 })
    }
}
