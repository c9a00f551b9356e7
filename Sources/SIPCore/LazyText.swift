/// Where scanned bytes came from: the message buffer and the offset of the scanned bytes
/// in it. With a source, parsed values can point into the message instead of copying.
struct ByteSource {
    let array: [UInt8]
    let offset: Int
}

/// Text that stays a byte range of the message it was parsed from until someone asks for
/// a `String` — so a parse pays nothing for parameters or a kilobyte-long bearer token
/// that nobody reads. Equality and hashing are by content, however it is stored.
struct LazyText: Sendable {
    // One representation for both origins — a range of a byte array — so copying one is a
    // single retain with no case to switch on; text made from a `String` holds its bytes.
    let array: [UInt8]
    let start: UInt32
    let end: UInt32

    init(_ string: String) {
        array = Array(string.utf8)
        start = 0
        end = UInt32(array.count)
    }

    init(_ source: ByteSource, _ start: Int, _ end: Int) {
        array = source.array
        self.start = UInt32(source.offset + start)
        self.end = UInt32(source.offset + end)
    }

    var string: String { array.withUnsafeBufferPointer { makeString($0, Int(start), Int(end)) } }

    @inline(__always)
    func withBytes<R>(_ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
        array.withUnsafeBufferPointer { body(UnsafeBufferPointer(rebasing: $0[Int(start)..<Int(end)])) }
    }
}

extension LazyText: Hashable {
    static func == (lhs: LazyText, rhs: LazyText) -> Bool {
        lhs.withBytes { a in rhs.withBytes { b in a.elementsEqual(b) } }
    }

    func hash(into hasher: inout Hasher) {
        withBytes { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
    }
}

/// A part of a value held as a range of a byte buffer; absent when `start` is `.max`.
struct TextSpan: Sendable {
    var start: UInt32
    var end: UInt32

    static let absent = TextSpan(start: .max, end: .max)

    init(start: UInt32, end: UInt32) {
        self.start = start
        self.end = end
    }

    init(_ start: Int, _ end: Int) {
        self.start = UInt32(start)
        self.end = UInt32(end)
    }

    /// The same span in a buffer where the spanned bytes start `offset` later.
    func shifted(by offset: Int) -> TextSpan {
        start == .max ? self : TextSpan(start: start + UInt32(offset), end: end + UInt32(offset))
    }

    /// Appends `text` to `bytes` and spans it; absent for nil.
    init(appending text: String?, to bytes: inout [UInt8]) {
        guard let text else {
            self = .absent
            return
        }
        let start = bytes.count
        bytes.append(contentsOf: text.utf8)
        self.init(start, bytes.count)
    }

    @inline(__always)
    var range: Range<Int>? { start == .max ? nil : Int(start)..<Int(end) }

    @inline(__always)
    func string(in source: [UInt8]) -> String? {
        guard let range else { return nil }
        return source.withUnsafeBufferPointer { makeString($0, range.lowerBound, range.upperBound) }
    }

    @inline(__always)
    func withBytes<R>(in source: [UInt8], _ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
        source.withUnsafeBufferPointer { all in
            guard let range else { return body(UnsafeBufferPointer(start: nil, count: 0)) }
            return body(UnsafeBufferPointer(rebasing: all[range]))
        }
    }

    static func equal(_ a: TextSpan, _ aSource: [UInt8], _ b: TextSpan, _ bSource: [UInt8]) -> Bool {
        guard (a.start == .max) == (b.start == .max) else { return false }
        return a.withBytes(in: aSource) { x in b.withBytes(in: bSource) { y in x.elementsEqual(y) } }
    }

    func hash(in source: [UInt8], into hasher: inout Hasher) {
        hasher.combine(start == .max)
        withBytes(in: source) { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
    }
}
