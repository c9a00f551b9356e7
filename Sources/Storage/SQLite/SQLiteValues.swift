import NIOCore
import SQLiteNIO

/// Column values to and from SQLiteNIO's, for the store's rows.
func text(_ value: String?) -> SQLiteData { value.map { .text($0) } ?? .null }
func blob(_ value: [UInt8]?) -> SQLiteData { value.map { .blob(ByteBuffer(bytes: $0)) } ?? .null }
func bytes(_ data: SQLiteData?) -> [UInt8]? {
    if case .blob(let buffer)? = data { return Array(buffer.readableBytesView) }
    return nil
}
func lines(_ data: SQLiteData?) -> [String] {
    (data?.string ?? "").split(separator: "\n").map(String.init)
}
