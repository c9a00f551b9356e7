/// Text for XML (reginfo bodies) or HTML (web pages): the five markup characters escaped.
/// Byte by byte over UTF-8, never by Character: a grapheme cluster such as `"` + U+0301
/// compares unequal to `"` yet still ends an HTML attribute (issue 26 item 2). Every
/// markup character is ASCII, and no other scalar's UTF-8 contains an ASCII byte.
public func escapeMarkup(_ text: String) -> String {
    var out: [UInt8] = []
    out.reserveCapacity(text.utf8.count + 16)
    for byte in text.utf8 {
        switch byte {
        case UInt8(ascii: "&"): out.append(contentsOf: "&amp;".utf8)
        case UInt8(ascii: "<"): out.append(contentsOf: "&lt;".utf8)
        case UInt8(ascii: ">"): out.append(contentsOf: "&gt;".utf8)
        case UInt8(ascii: "\""): out.append(contentsOf: "&quot;".utf8)
        case UInt8(ascii: "'"): out.append(contentsOf: "&#39;".utf8)
        default: out.append(byte)
        }
    }
    return String(decoding: out, as: UTF8.self)
}
