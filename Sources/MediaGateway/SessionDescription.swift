/// What the eP-CSCF reads of an SDP body (RFC 8866) before the gateway rewrites it: enough to
/// refuse a malformed one with a clear reason and to see whether the two sides can share a
/// codec, since the gateway does not transcode (Debian's rtpengine transcodes only AMR).
public struct SessionDescription: Sendable, Hashable {
    public struct Media: Sendable, Hashable {
        /// `audio`, `video`, `application`, …
        public var kind: String
        public var port: Int
        public var proto: String
        /// Payload types (RTP) or formats, as the m= line lists them.
        public var formats: [String]
        /// Payload type → encoding name in lower case (`opus`, `pcmu`), from a=rtpmap or the
        /// static table of RFC 3551.
        public var encodings: [String: String]

        /// The encoding names the m= line offers, in its order.
        public var codecs: [String] { formats.compactMap { encodings[$0] } }
    }

    public var media: [Media]

    /// The largest body the eP-CSCF reads (a browser's offer with video is ~6 KB).
    public static let maximumSize = 64 * 1024

    public init(parsing bytes: some Collection<UInt8>) throws(SDPError) {
        guard bytes.count <= Self.maximumSize else { throw .tooLarge }
        guard let text = String(validating: bytes, as: UTF8.self) else { throw .notText }
        var media: [Media] = []
        var sawVersion = false
        var sawOrigin = false
        var sawConnection = false
        var lineNumber = 0
        for raw in text.split(omittingEmptySubsequences: true, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            let line = raw.hasSuffix("\r") ? raw.dropLast() : raw[...]
            lineNumber += 1
            guard line.count >= 2, line.utf8.dropFirst().first == UInt8(ascii: "="),
                let type = line.first, type.isASCII, type.isLetter
            else { throw .badLine(lineNumber) }
            let value = line.dropFirst(2)
            if lineNumber == 1 {
                guard type == "v", value == "0" else { throw .badVersion }
                sawVersion = true
                continue
            }
            switch type {
            case "o": sawOrigin = true
            case "c": sawConnection = true
            case "m":
                let fields = value.split(separator: " ", omittingEmptySubsequences: true)
                guard fields.count >= 4, let port = Int(fields[1].split(separator: "/")[0]), (0...65_535).contains(port)
                else { throw .badMediaLine(lineNumber) }
                let formats = fields.dropFirst(3).map(String.init)
                var encodings: [String: String] = [:]
                for format in formats { if let name = Self.staticEncodings[format] { encodings[format] = name } }
                media.append(
                    Media(
                        kind: String(fields[0]), port: port, proto: String(fields[2]), formats: formats,
                        encodings: encodings))
            case "a":
                // a=rtpmap:<payload type> <encoding name>/<clock rate>[/<channels>]
                guard value.hasPrefix("rtpmap:"), !media.isEmpty else { continue }
                let mapping = value.dropFirst("rtpmap:".count).split(separator: " ", maxSplits: 1)
                guard mapping.count == 2, let name = mapping[1].split(separator: "/").first else {
                    throw .badAttribute(lineNumber)
                }
                media[media.count - 1].encodings[String(mapping[0])] = name.lowercased()
            default: continue
            }
        }
        guard sawVersion else { throw .badVersion }
        guard sawOrigin else { throw .missing("o=") }
        guard !media.isEmpty else { throw .missing("m=") }
        // RFC 8866 5.7: a c= line at session level or in every media description; a browser's
        // offer has one per m=, so only its presence somewhere is checked.
        guard sawConnection else { throw .missing("c=") }
        self.media = media
    }

    /// RFC 3551 table 4 and 5: the static payload types phones use without a=rtpmap.
    static let staticEncodings: [String: String] = [
        "0": "pcmu", "3": "gsm", "4": "g723", "8": "pcma", "9": "g722", "18": "g729", "26": "jpeg", "31": "h261",
        "34": "h263",
    ]

    /// Encodings a browser (Chromium's WebRTC) can receive; `telephone-event`, `red`, `rtx`,
    /// `ulpfec` and `cn` go along but are not a codec by themselves.
    public static let webRTCCodecs: Set<String> = ["opus", "g722", "pcmu", "pcma", "vp8", "vp9", "h264", "av1"]
    static let companions: Set<String> = ["telephone-event", "red", "rtx", "ulpfec", "flexfec-03", "cn"]

    /// The first active stream with no encoding in `supported`, or nil when every active
    /// stream (port ≠ 0, RTP) has one: an offer to a browser must carry a codec it speaks.
    public func streamWithoutCodec(in supported: Set<String>) -> Media? {
        media.first { media in
            media.port != 0 && media.proto.contains("RTP") && !media.codecs.contains { supported.contains($0) }
        }
    }
}

public enum SDPError: Error, Sendable, Hashable, CustomStringConvertible {
    case tooLarge
    case notText
    case badVersion
    case badLine(Int)
    case badMediaLine(Int)
    case badAttribute(Int)
    case missing(String)

    public var description: String {
        switch self {
        case .tooLarge: "SDP larger than \(SessionDescription.maximumSize) bytes"
        case .notText: "SDP is not UTF-8 text"
        case .badVersion: "SDP must start with v=0"
        case .badLine(let n): "SDP line \(n) is not <type>=<value>"
        case .badMediaLine(let n): "SDP line \(n) is not a valid m= line"
        case .badAttribute(let n): "SDP line \(n) is not a valid a=rtpmap"
        case .missing(let what): "SDP has no \(what) line"
        }
    }
}
