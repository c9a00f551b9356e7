import MediaGateway
import Testing

/// The ng messages the eP-CSCF sends, byte for byte (golden messages): the flags are the ones
/// checked with Chromium and a plain RTP phone on this machine (CALLS.md).
@Suite struct NGMessageTests {
    let sdp = Array("v=0\r\n".utf8)

    @Test func anOfferFromTheBrowserTowardsIMS() {
        let message = NGMessage.offer(MediaOffer(callID: "c1~orig", fromTag: "ft", sdp: sdp, towards: .ims))
        let expected =
            "d4:DTLS3:off3:ICE6:remove7:call-id7:c1~orig7:command5:offer5:flagsl13:trust-address8:SDES-offe"
            + "8:from-tag2:ft7:replacel6:origin18:session-connectione8:rtcp-muxl5:demuxe3:sdp5:v=0\r\n"
            + "18:transport-protocol7:RTP/AVPe"
        #expect(String(decoding: message.encoded, as: UTF8.self) == expected)
    }

    @Test func anAnswerFromIMSTowardsTheBrowser() {
        let message = NGMessage.answer(
            MediaAnswer(callID: "c1~orig", fromTag: "ft", toTag: "tt", sdp: sdp, towards: .webRTC))
        let expected =
            "d3:ICE5:force7:call-id7:c1~orig7:command6:answer5:flagsl13:trust-address8:SDES-offe"
            + "8:from-tag2:ft7:replacel6:origin18:session-connectione8:rtcp-muxl7:requiree3:sdp5:v=0\r\n"
            + "6:to-tag2:tt18:transport-protocol17:UDP/TLS/RTP/SAVPFe"
        #expect(String(decoding: message.encoded, as: UTF8.self) == expected)
    }

    @Test func anOfferFromIMSTowardsTheBrowser() {
        let message = NGMessage.offer(MediaOffer(callID: "c2~term", fromTag: "a", sdp: sdp, towards: .webRTC))
        let expected =
            "d3:ICE5:force7:call-id7:c2~term7:command5:offer5:flagsl13:trust-address12:generate-mid8:SDES-offe"
            + "8:from-tag1:a7:replacel6:origin18:session-connectione8:rtcp-muxl5:offer7:requiree3:sdp5:v=0\r\n"
            + "18:transport-protocol17:UDP/TLS/RTP/SAVPFe"
        #expect(String(decoding: message.encoded, as: UTF8.self) == expected)
    }

    @Test func anAnswerFromTheBrowserTowardsIMS() {
        let message = NGMessage.answer(
            MediaAnswer(callID: "c2~term", fromTag: "a", toTag: "b", sdp: sdp, towards: .ims))
        let expected =
            "d4:DTLS3:off3:ICE6:remove7:call-id7:c2~term7:command6:answer5:flagsl13:trust-address8:SDES-offe"
            + "8:from-tag1:a7:replacel6:origin18:session-connectione8:rtcp-muxl5:demuxe3:sdp5:v=0\r\n"
            + "6:to-tag1:b18:transport-protocol7:RTP/AVPe"
        #expect(String(decoding: message.encoded, as: UTF8.self) == expected)
    }

    @Test func deleteQueryListPing() {
        #expect(
            String(decoding: NGMessage.delete(callID: "x").encoded, as: UTF8.self) == "d7:call-id1:x7:command6:deletee")
        #expect(
            String(decoding: NGMessage.query(callID: "x").encoded, as: UTF8.self) == "d7:call-id1:x7:command5:querye")
        #expect(String(decoding: NGMessage.list(limit: 5).encoded, as: UTF8.self) == "d7:command4:list5:limiti5ee")
        #expect(String(decoding: NGMessage.ping.encoded, as: UTF8.self) == "d7:command4:pinge")
    }

    @Test func aDatagramIsCookieSpaceDictionary() {
        let datagram = NGMessage.datagram(cookie: "k1", NGMessage.ping)
        #expect(String(decoding: datagram, as: UTF8.self) == "k1 d7:command4:pinge")
        let reply = NGMessage.parseReply(Array("k1 d6:result4:ponge".utf8))
        #expect(reply?.cookie == "k1")
        #expect(reply?.body["result"]?.text == "pong")
        #expect(NGMessage.parseReply(Array("k1".utf8)) == nil)
        #expect(NGMessage.parseReply(Array(" d6:result4:ponge".utf8)) == nil)
        #expect(NGMessage.parseReply(Array("k1 garbage".utf8)) == nil)
        #expect(NGMessage.parseReply(Array("k1 l1:ae".utf8)) == nil)  // not a dictionary
    }
}
