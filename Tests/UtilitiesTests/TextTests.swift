import Testing
import Utilities

/// Random tokens and markup escaping: what SIP and web code both write into messages and pages.
@Suite struct TextTests {
    /// Tokens drawn across many refills of the random pool: right length and alphabet, no
    /// repeats, every character in use.
    @Test func randomTokensAreDistinctAndUseTheWholeAlphabet() {
        var seen = Set<String>()
        var characters = Set<Character>()
        for length in [1, 8, 12, 13, 16, 40] {
            for _ in 0..<2_000 {
                let token = randomToken(length: length)
                #expect(token.count == length)
                #expect(token.allSatisfy { $0.isASCII && ($0.isNumber || $0.isLowercase) })
                characters.formUnion(token)
                if length >= 8 { #expect(seen.insert(token).inserted) }
            }
        }
        #expect(characters.count == 36)
    }

    /// `"`, `>` and `<` stay markup characters inside grapheme clusters: a combining mark
    /// after them, or a prefixed concatenation mark (U+0600) before, must not hide them.
    @Test func randomBytesAreAsManyAsAskedAndDiffer() {
        let a = randomBytes(32)
        let b = randomBytes(32)
        #expect(a.count == 32 && b.count == 32)
        #expect(a != b)
        #expect(Set(a).count > 8)
    }

    @Test func item02EscapingWorksOnScalarsNotGraphemeClusters() {
        for text in ["\"\u{301}", ">\u{301}", "\u{600}<", "'\u{327}", "&\u{200D}", "a\"\u{301} onfocus=x", "<\u{FE0F}"]
        {
            let escaped = escapeMarkup(text)
            for markup in ["\"", "<", ">", "'"] as [Unicode.Scalar] {
                #expect(!escaped.unicodeScalars.contains(markup), "\(text.unicodeScalars.map(\.value))")
            }
            // Every & is one the escaping wrote: an entity follows it, byte for byte.
            let bytes = Array(escaped.utf8)
            for (i, byte) in bytes.enumerated() where byte == UInt8(ascii: "&") {
                let rest = bytes[i...]
                #expect(
                    ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;"].contains { rest.starts(with: Array($0.utf8)) },
                    "\(text.unicodeScalars.map(\.value))")
            }
        }
        #expect(escapeMarkup("\"\u{301}") == "&quot;\u{301}")
        #expect(escapeMarkup("plain é text") == "plain é text")
    }
}
