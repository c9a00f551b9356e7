import Foundation

/// JSON text (RFC 8259) of a token's header and claims, written out by hand: the values are
/// strings, integers and arrays of strings, and `JSONSerialization` (a bridged dictionary
/// walked through `NSNumber`/`NSString` on Linux) cost more than the ES256 signature itself
/// — the WAF signed a token in ~150 µs where jwt-kit took ~85 µs; see BENCHMARKS.md, "jwt-kit
/// against the hand-written tokens". Anything else falls back to `JSONSerialization`.
func jsonText(_ object: [String: Any]) throws -> [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(512)
    try appendJSON(object, to: &out)
    return out
}

private func appendJSON(_ value: Any, to out: inout [UInt8]) throws {
    switch value {
    case let text as String:
        appendJSONString(text, to: &out)
    // Bool before the integers: where Foundation bridges, `true` also casts to Int.
    case let flag as Bool:
        out.append(contentsOf: (flag ? "true" : "false").utf8)
    case let number as Int:
        out.append(contentsOf: String(number).utf8)
    case let number as Int64:
        out.append(contentsOf: String(number).utf8)
    case let texts as [String]:
        out.append(UInt8(ascii: "["))
        for (index, text) in texts.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            appendJSONString(text, to: &out)
        }
        out.append(UInt8(ascii: "]"))
    case let object as [String: Any]:
        out.append(UInt8(ascii: "{"))
        var first = true
        for (key, member) in object {
            if !first { out.append(UInt8(ascii: ",")) }
            first = false
            appendJSONString(key, to: &out)
            out.append(UInt8(ascii: ":"))
            try appendJSON(member, to: &out)
        }
        out.append(UInt8(ascii: "}"))
    default:
        // Doubles, nested arrays of other types: the general encoder, as a fragment.
        out.append(
            contentsOf: try JSONSerialization.data(
                withJSONObject: value, options: [.fragmentsAllowed, .withoutEscapingSlashes]))
    }
}

/// A JSON string: `"` and `\` escaped, control characters as \u00XX; everything else,
/// non-ASCII included, as its UTF-8 bytes (RFC 8259 §7).
private func appendJSONString(_ text: String, to out: inout [UInt8]) {
    out.append(UInt8(ascii: "\""))
    for byte in text.utf8 {
        switch byte {
        case UInt8(ascii: "\""): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
        case UInt8(ascii: "\\"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
        case 0x00..<0x20:
            out.append(contentsOf: Array("\\u00".utf8))
            out.append(hexDigits[Int(byte >> 4)])
            out.append(hexDigits[Int(byte & 0x0F)])
        default: out.append(byte)
        }
    }
    out.append(UInt8(ascii: "\""))
}

private let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)
