import Logging
import NIOCore
import SIPCore

/// `--sip-trace`: every SIP message in and out, with its peer and flow, secrets redacted
/// (SIPTraceRedaction) — what an operator reads first when a registration fails.
public struct SIPTrace: Sendable {
    public enum Direction: String, Sendable {
        case incoming = "in from"
        case outgoing = "out to"
    }

    let logger: Logger

    public init(logger: Logger) { self.logger = logger }

    public func record(_ direction: Direction, _ bytes: ByteBuffer, peer: String, via: String) {
        let text = String(decoding: bytes.readableBytesView, as: UTF8.self)
        record(direction, text: text, peer: peer, via: via)
    }

    public func record(_ direction: Direction, bytes: [UInt8], peer: String, via: String) {
        record(direction, text: String(decoding: bytes, as: UTF8.self), peer: peer, via: via)
    }

    public func record(_ direction: Direction, _ message: SIPMessage, peer: String, via: String) {
        let bytes: [UInt8]
        switch message {
        case .request(let r): bytes = r.serialized()
        case .response(let r): bytes = r.serialized()
        }
        record(direction, text: String(decoding: bytes, as: UTF8.self), peer: peer, via: via)
    }

    func record(_ direction: Direction, text: String, peer: String, via: String) {
        logger.notice(
            "SIP \(direction.rawValue) \(peer) over \(via)\n\(SIPTraceRedaction.redact(text))")
    }
}
