/// rtpengine's ng control messages (docs/ng_control_protocol.md of sipwise/rtpengine): one
/// UDP datagram is a cookie, a space and a bencoded dictionary; the reply echoes the cookie.
/// The flags per direction are the ones checked on this machine with Chromium and a plain
/// RTP phone (CALLS.md, "rtpengine as the eIMS-AGW").
public enum NGMessage {
    /// An offer or answer rewritten for `side`.
    public static func offer(_ offer: MediaOffer) -> Bencode {
        var entries = common(command: "offer", callID: offer.callID, fromTag: offer.fromTag, sdp: offer.sdp)
        entries.merge(profile(towards: offer.towards, offer: true)) { _, new in new }
        return .dictionary(entries)
    }

    public static func answer(_ answer: MediaAnswer) -> Bencode {
        var entries = common(command: "answer", callID: answer.callID, fromTag: answer.fromTag, sdp: answer.sdp)
        entries["to-tag"] = .string(answer.toTag)
        entries.merge(profile(towards: answer.towards, offer: false)) { _, new in new }
        return .dictionary(entries)
    }

    public static func delete(callID: String) -> Bencode {
        .dictionary(["command": .string("delete"), "call-id": .string(callID)])
    }

    public static func query(callID: String) -> Bencode {
        .dictionary(["command": .string("query"), "call-id": .string(callID)])
    }

    public static func list(limit: Int = 10_000) -> Bencode {
        .dictionary(["command": .string("list"), "limit": .integer(limit)])
    }

    public static let ping: Bencode = .dictionary(["command": .string("ping")])

    /// `cookie SP bencode`, the datagram.
    public static func datagram(cookie: String, _ message: Bencode) -> [UInt8] {
        var out = Array(cookie.utf8)
        out.append(UInt8(ascii: " "))
        message.append(to: &out)
        return out
    }

    /// Splits a reply datagram into its cookie and dictionary.
    public static func parseReply(_ datagram: some Collection<UInt8>) -> (cookie: String, body: [String: Bencode])? {
        guard let space = datagram.firstIndex(of: UInt8(ascii: " ")) else { return nil }
        let cookie = String(decoding: datagram[datagram.startIndex..<space], as: UTF8.self)
        guard !cookie.isEmpty,
            let body = try? Bencode(decoding: datagram[datagram.index(after: space)...]).dictionary
        else { return nil }
        return (cookie, body)
    }

    private static func common(command: String, callID: String, fromTag: String, sdp: [UInt8]) -> [String: Bencode] {
        [
            "command": .string(command), "call-id": .string(callID), "from-tag": .string(fromTag),
            "sdp": .bytes(sdp),
        ]
    }

    /// What the SDP going to `side` must look like. `trust-address` everywhere: the ng
    /// request comes from the eP-CSCF, not from the party whose SDP it carries.
    private static func profile(towards side: MediaSide, offer: Bool) -> [String: Bencode] {
        let replace: Bencode = .list([.string("origin"), .string("session-connection")])
        switch (side, offer) {
        case (.ims, _):
            // TS 24.229 6.7.1 (the IMS side is plain RTP): no ICE, no DTLS, RTCP on its own port.
            return [
                "ICE": .string("remove"), "DTLS": .string("off"), "transport-protocol": .string("RTP/AVP"),
                "rtcp-mux": .list([.string("demux")]),
                "flags": .list([.string("trust-address"), .string("SDES-off")]), "replace": replace,
            ]
        case (.webRTC, true):
            // RFC 8829 (JSEP) needs ICE, DTLS-SRTP and rtcp-mux; a=mid for BUNDLE-less offers.
            // Without SDES-off rtpengine adds a dozen a=crypto lines; DTLS roles are left to
            // negotiation (forcing passive stalled calls, rtpengine issue #2145).
            return [
                "ICE": .string("force"), "transport-protocol": .string("UDP/TLS/RTP/SAVPF"),
                "rtcp-mux": .list([.string("offer"), .string("require")]),
                "flags": .list([.string("trust-address"), .string("generate-mid"), .string("SDES-off")]),
                "replace": replace,
            ]
        case (.webRTC, false):
            return [
                "ICE": .string("force"), "transport-protocol": .string("UDP/TLS/RTP/SAVPF"),
                "rtcp-mux": .list([.string("require")]),
                "flags": .list([.string("trust-address"), .string("SDES-off")]), "replace": replace,
            ]
        }
    }
}
