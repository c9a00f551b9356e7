import MediaGateway
import Testing

@Suite struct SessionDescriptionTests {
    @Test func readsTheStreamsAndTheirCodecs() throws {
        let description = try SessionDescription(parsing: RTPEngineTests.browserOffer)
        #expect(description.media.count == 1)
        let audio = try #require(description.media.first)
        #expect(audio.kind == "audio")
        #expect(audio.proto == "UDP/TLS/RTP/SAVPF")
        #expect(audio.codecs == ["opus", "g722", "pcmu", "pcma", "telephone-event"])
        // A phone's static payload types need no a=rtpmap (RFC 3551).
        let phone = try SessionDescription(
            parsing: RTPEngineTests.sdp(
                "v=0", "o=- 1 1 IN IP4 10.0.0.1", "s=-",
                "c=IN IP4 10.0.0.1", "t=0 0", "m=audio 4000 RTP/AVP 8 0"))
        #expect(phone.media.first?.codecs == ["pcma", "pcmu"])
    }

    @Test func findsAStreamABrowserCouldNotDecode() throws {
        let g729Only = try SessionDescription(
            parsing: RTPEngineTests.sdp(
                "v=0", "o=- 1 1 IN IP4 10.0.0.1",
                "s=-", "c=IN IP4 10.0.0.1", "t=0 0", "m=audio 4000 RTP/AVP 18 101", "a=rtpmap:101 telephone-event/8000")
        )
        #expect(g729Only.streamWithoutCodec(in: SessionDescription.webRTCCodecs)?.kind == "audio")
        let browser = try SessionDescription(parsing: RTPEngineTests.browserOffer)
        #expect(browser.streamWithoutCodec(in: SessionDescription.webRTCCodecs) == nil)
        // A refused stream (port 0) needs no codec.
        let refused = try SessionDescription(
            parsing: RTPEngineTests.sdp(
                "v=0", "o=- 1 1 IN IP4 10.0.0.1",
                "s=-", "c=IN IP4 10.0.0.1", "t=0 0", "m=audio 4000 RTP/AVP 0", "m=video 0 RTP/AVP 34"))
        #expect(refused.streamWithoutCodec(in: SessionDescription.webRTCCodecs) == nil)
    }

    @Test(arguments: [
        ("", SDPError.badVersion),
        ("hello", .badLine(1)),
        ("v=1\r\n", .badVersion),
        ("v=0\r\ns=-\r\n", .missing("o=")),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\n", .missing("m=")),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 0\r\n", .missing("c=")),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4 1.2.3.4\r\nm=audio x RTP/AVP 0\r\n", .badMediaLine(4)),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4 1.2.3.4\r\nm=audio 70000 RTP/AVP 0\r\n", .badMediaLine(4)),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP\r\n", .badMediaLine(4)),
        (
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0\r\n",
            .badAttribute(5)
        ),
        ("v=0\r\nxx\r\n", .badLine(2)),
    ])
    func refusesWhatIsNotSDP(text: String, error: SDPError) {
        #expect(throws: error) { try SessionDescription(parsing: Array(text.utf8)) }
    }

    @Test func refusesBinaryAndHugeBodies() {
        #expect(throws: SDPError.notText) { try SessionDescription(parsing: [0x76, 0x3d, 0x30, 0xff, 0xfe]) }
        let huge = [UInt8](repeating: UInt8(ascii: "a"), count: SessionDescription.maximumSize + 1)
        #expect(throws: SDPError.tooLarge) { try SessionDescription(parsing: huge) }
    }
}
