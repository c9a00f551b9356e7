import MediaGateway
import Testing

@Suite struct BencodeTests {
    @Test func writesTheEncodingsOfTheSpecification() {
        #expect(Bencode.integer(42).encoded == Array("i42e".utf8))
        #expect(Bencode.integer(-7).encoded == Array("i-7e".utf8))
        #expect(Bencode.string("spam").encoded == Array("4:spam".utf8))
        #expect(Bencode.list([.string("a"), .integer(1)]).encoded == Array("l1:ai1ee".utf8))
        // Keys sorted as raw bytes: "ICE" < "call-id" < "sdp" (upper case first).
        let dictionary = Bencode.dictionary(["sdp": .string("x"), "call-id": .string("c"), "ICE": .string("force")])
        #expect(dictionary.encoded == Array("d3:ICE5:force7:call-id1:c3:sdp1:xe".utf8))
    }

    @Test func readsWhatItWrites() throws {
        let value = Bencode.dictionary([
            "result": .string("ok"), "calls": .list([.string("a"), .string("b")]), "n": .integer(-12),
            "nested": .dictionary(["empty": .list([]), "bytes": .bytes([0, 255, 10])]),
        ])
        #expect(try Bencode(decoding: value.encoded) == value)
        #expect(value["calls"]?.list?.compactMap(\.text) == ["a", "b"])
        #expect(value["n"]?.integer == -12)
    }

    @Test(arguments: [
        ("i42", BencodeError.truncated),
        ("i04e", .badInteger(at: 1)),
        ("i-0e", .badInteger(at: 1)),
        ("ie", .badInteger(at: 1)),
        ("i1x2e", .badInteger(at: 1)),
        ("i99999999999999999999e", .badInteger(at: 1)),
        ("5:abc", .badLength(at: 0)),
        ("01:a", .badInteger(at: 0)),
        ("x", .unexpectedByte(UInt8(ascii: "x"), at: 0)),
        ("d1:a", .truncated),
        ("di1ei2ee", .unexpectedByte(UInt8(ascii: "i"), at: 1)),
        ("l", .truncated),
        ("i1ei2e", .trailingBytes(at: 3)),
    ])
    func refusesMalformedInput(input: String, error: BencodeError) {
        #expect(throws: error) { try Bencode(decoding: Array(input.utf8)) }
    }

    @Test func refusesNestingPastTheLimit() {
        let deep = String(repeating: "l", count: 40) + String(repeating: "e", count: 40)
        #expect(throws: BencodeError.tooDeep) { try Bencode(decoding: Array(deep.utf8)) }
        let fine = String(repeating: "l", count: 10) + String(repeating: "e", count: 10)
        #expect(throws: Never.self) { try Bencode(decoding: Array(fine.utf8)) }
    }

    @Test func aKeyMustBeText() {
        // A key of invalid UTF-8 bytes (0xff).
        let bytes = Array("d1:".utf8) + [0xff] + Array("i1ee".utf8)
        #expect(throws: BencodeError.keyNotText(at: 1)) { try Bencode(decoding: bytes) }
    }
}
