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
    enum Storage: Sendable {
        case string(String)
        case slice([UInt8], UInt32, UInt32)
    }

    var storage: Storage

    init(_ string: String) { storage = .string(string) }

    init(_ source: ByteSource, _ start: Int, _ end: Int) {
        storage = .slice(source.array, UInt32(source.offset + start), UInt32(source.offset + end))
    }

    var string: String {
        switch storage {
        case .string(let s): return s
        case .slice(let array, let start, let end):
            return array.withUnsafeBufferPointer { makeString($0, Int(start), Int(end)) }
        }
    }

    @inline(__always)
    func withBytes<R>(_ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
        switch storage {
        case .string(let s): return withUTF8Bytes(s, body)
        case .slice(let array, let start, let end):
            return array.withUnsafeBufferPointer { body(UnsafeBufferPointer(rebasing: $0[Int(start)..<Int(end)])) }
        }
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
