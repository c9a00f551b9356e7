import MediaGateway
import NIOCore
import Testing

/// The ng client's failure paths against a fake ng server.
@Suite struct NGClientTests {
    let offer = MediaOffer(callID: "call~orig", fromTag: "ft", sdp: Array("v=0\r\n".utf8), towards: .ims)

    @Test func anOfferGetsTheRewrittenSDP() async throws {
        let server = try await FakeNGServer.start { cookie, request, _ in
            #expect(request["command"]?.text == "offer")
            #expect(request["call-id"]?.text == "call~orig")
            return FakeNGServer.reply(cookie, ["result": .string("ok"), "sdp": .string("v=0\r\nrewritten\r\n")])
        }
        let client = try await NGClient.connect(to: server.address)
        #expect(try await client.offer(offer) == Array("v=0\r\nrewritten\r\n".utf8))
        #expect(server.received == 1)
        await client.close()
        await server.close()
    }

    @Test func aLostReplyIsRetriedWithTheSameCookie() async throws {
        let server = try await FakeNGServer.start { cookie, _, attempt in
            attempt < 3 ? nil : FakeNGServer.reply(cookie, ["result": .string("ok"), "sdp": .string("v=0\r\n")])
        }
        // Long enough for the third reply on a loaded machine; the first two never come.
        let client = try await NGClient.connect(to: server.address, attempts: 3, retryInterval: .milliseconds(400))
        #expect(try await client.offer(offer) == Array("v=0\r\n".utf8))
        #expect(server.received == 3)  // one cookie, three datagrams
        await client.close()
        await server.close()
    }

    @Test func aSilentGatewayIsNoAnswerAfterEveryAttempt() async throws {
        let server = try await FakeNGServer.start { _, _, _ in nil }
        let client = try await NGClient.connect(to: server.address, attempts: 3, retryInterval: .milliseconds(50))
        await #expect(throws: MediaGatewayError.noAnswer(gateway: client.name)) {
            try await client.offer(offer)
        }
        #expect(server.received == 3)
        #expect(await client.ping() == false)
        await client.close()
        await server.close()
    }

    @Test func anErrorResultIsARefusalWithTheGatewaysReason() async throws {
        let server = try await FakeNGServer.start { cookie, _, _ in
            FakeNGServer.reply(cookie, ["result": .string("error"), "error-reason": .string("Failed to parse SDP")])
        }
        let client = try await NGClient.connect(to: server.address)
        await #expect(throws: MediaGatewayError.refused(reason: "Failed to parse SDP")) {
            try await client.offer(offer)
        }
        await client.close()
        await server.close()
    }

    @Test func aMalformedReplyIsNotTakenForAnAnswer() async throws {
        let server = try await FakeNGServer.start { cookie, request, _ in
            switch request["command"]?.text {
            case "offer": Array((cookie + " d6:result2:ok").utf8)  // truncated bencode
            case "answer": FakeNGServer.reply(cookie, ["result": .string("ok")])  // no sdp
            default: FakeNGServer.reply(cookie, ["nothing": .integer(1)])  // no result
            }
        }
        let client = try await NGClient.connect(to: server.address, attempts: 1)
        let name = client.name
        await #expect(throws: MediaGatewayError.malformedReply(gateway: name)) { try await client.offer(offer) }
        await #expect(throws: MediaGatewayError.malformedReply(gateway: name)) {
            try await client.answer(MediaAnswer(callID: "c", fromTag: "a", toTag: "b", sdp: [], towards: .webRTC))
        }
        await #expect(throws: MediaGatewayError.malformedReply(gateway: name)) { try await client.list() }
        await client.close()
        await server.close()
    }

    @Test func deletingAnUnknownCallIsNotAnError() async throws {
        let server = try await FakeNGServer.start { cookie, request, _ in
            FakeNGServer.reply(cookie, ["result": .string("error"), "error-reason": .string("Unknown call-id")])
        }
        let client = try await NGClient.connect(to: server.address)
        try await client.delete(callID: "gone")
        #expect(try await client.query(callID: "gone") == nil)
        await client.close()
        await server.close()
    }

    @Test func aReplyFromAnotherAddressIsIgnored() async throws {
        // The gateway stays silent; a stranger who learnt the cookie answers in its place.
        let stranger = try await FakeNGServer.start { _, _, _ in nil }
        let gateway = try await FakeNGServer.start { _, _, _ in nil }
        let client = try await NGClient.connect(to: gateway.address, attempts: 2, retryInterval: .milliseconds(150))
        let offer = offer
        let result = Task { try await client.offer(offer) }
        while gateway.lastRequest == nil { try await Task.sleep(for: .milliseconds(5)) }
        let (cookie, clientAddress) = try #require(gateway.lastRequest)
        try await stranger.send(
            FakeNGServer.reply(cookie, ["result": .string("ok"), "sdp": .string("v=0\r\nforged\r\n")]),
            to: clientAddress)
        await #expect(throws: MediaGatewayError.noAnswer(gateway: client.name)) {
            try await result.value
        }
        await client.close()
        await gateway.close()
        await stranger.close()
    }

    @Test func thePoolMovesANewCallToTheNextGatewayAndKeepsItThere() async throws {
        let silent = try await FakeNGServer.start { _, _, _ in nil }
        let answering = try await FakeNGServer.start { cookie, request, _ in
            FakeNGServer.reply(cookie, ["result": .string("ok"), "sdp": .string("v=0\r\n"), "calls": .list([])])
        }
        let first = try await NGClient.connect(to: silent.address, attempts: 1, retryInterval: .milliseconds(50))
        let second = try await NGClient.connect(to: answering.address, attempts: 1, retryInterval: .seconds(2))
        let pool = MediaGatewayPool([first, second])
        // Offers for many calls: every one lands on the answering gateway.
        for n in 0..<8 {
            let offer = MediaOffer(callID: "call-\(n)", fromTag: "a", sdp: Array("v=0\r\n".utf8), towards: .ims)
            #expect(try await pool.offer(offer) == Array("v=0\r\n".utf8))
        }
        let before = silent.received
        // The call's answer and delete go where its offer went, never to the silent one.
        for n in 0..<8 {
            _ = try await pool.answer(
                MediaAnswer(callID: "call-\(n)", fromTag: "a", toTag: "b", sdp: Array("v=0\r\n".utf8), towards: .webRTC)
            )
            try await pool.delete(callID: "call-\(n)")
        }
        #expect(silent.received == before)
        #expect(answering.received == 24)
        await first.close()
        await second.close()
        await silent.close()
        await answering.close()
    }
}
