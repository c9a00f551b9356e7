import Foundation
import MediaGateway
import NIOCore
import NIOPosix
import Testing

/// The ng client and the embedded supervisor against Debian's real rtpengine (scripts/test
/// installs `rtpengine-daemon`): the SDP that leaves for each side is what that side needs.
@Suite(.serialized) struct RTPEngineTests {
    static let browserOffer = sdp(
        "v=0", "o=- 4611731400430051336 2 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=group:BUNDLE 0",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111 9 0 8 126", "c=IN IP4 0.0.0.0", "a=rtcp:9 IN IP4 0.0.0.0",
        "a=candidate:1 1 udp 2113937151 127.0.0.1 50000 typ host generation 0", "a=ice-ufrag:abcd",
        "a=ice-pwd:aaaaaaaaaaaaaaaaaaaaaaaa", "a=ice-options:trickle",
        "a=fingerprint:sha-256 " + (0..<32).map { _ in "AB" }.joined(separator: ":"), "a=setup:actpass", "a=mid:0",
        "a=sendrecv", "a=rtcp-mux", "a=rtpmap:111 opus/48000/2", "a=rtpmap:9 G722/8000", "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000", "a=rtpmap:126 telephone-event/8000")
    static let phoneSDP = sdp(
        "v=0", "o=user1 53655765 2353687637 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0",
        "m=audio 6000 RTP/AVP 0 101", "a=rtpmap:0 PCMU/8000", "a=rtpmap:101 telephone-event/8000")

    static func sdp(_ lines: String...) -> [UInt8] { Array((lines.joined(separator: "\r\n") + "\r\n").utf8) }

    /// rtpengine on loopback with a free ng port and its own media ports, stopped afterwards.
    static func withRTPEngine(_ body: (EmbeddedRTPEngine, NGClient) async throws -> Void) async throws {
        let executable = try #require(
            EmbeddedRTPEngine.locate(), "rtpengine is not installed (apt-get install rtpengine-daemon)")
        let ngPort = try freeUDPPort()
        let low = Int.random(in: 20_000...29_000) * 2
        let engine = EmbeddedRTPEngine(
            configuration: .init(executable: executable, ngPort: ngPort, mediaPorts: low...(low + 99)))
        try await engine.start()
        let client = try await NGClient.connect(to: try engine.ngAddress)
        do {
            try await body(engine, client)
        } catch {
            await client.close()
            await engine.stop()
            throw error
        }
        await client.close()
        await engine.stop()
    }

    static func freeUDPPort() throws -> Int {
        let channel = try DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).wait()
        defer { try? channel.close().wait() }
        return channel.localAddress?.port ?? 0
    }

    static func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    @Test func aCallFromTheBrowserToAPhone() async throws {
        try await Self.withRTPEngine { _, gateway in
            let toPhone = Self.text(
                try await gateway.offer(
                    MediaOffer(callID: "b2p~orig", fromTag: "wic", sdp: Self.browserOffer, towards: .ims)))
            #expect(toPhone.contains(" RTP/AVP "))
            #expect(!toPhone.contains("a=ice-ufrag"))
            #expect(!toPhone.contains("a=fingerprint"))
            #expect(!toPhone.contains("a=crypto"))
            #expect(toPhone.contains("c=IN IP4 127.0.0.1"))
            #expect(try SessionDescription(parsing: Array(toPhone.utf8)).media.first?.codecs.contains("pcmu") == true)

            let toBrowser = Self.text(
                try await gateway.answer(
                    MediaAnswer(
                        callID: "b2p~orig", fromTag: "wic", toTag: "phone", sdp: Self.phoneSDP, towards: .webRTC)))
            #expect(toBrowser.contains("UDP/TLS/RTP/SAVPF"))
            #expect(toBrowser.contains("a=ice-ufrag"))
            #expect(toBrowser.contains("a=fingerprint"))
            #expect(toBrowser.contains("a=rtcp-mux"))
            #expect(toBrowser.contains("a=candidate"))

            let status = try #require(try await gateway.query(callID: "b2p~orig"))
            #expect(Set(status.tags) == ["wic", "phone"])
            #expect(try await gateway.list().contains("b2p~orig"))
            try await gateway.delete(callID: "b2p~orig")
            #expect(try await gateway.query(callID: "b2p~orig") == nil)
            let left = try await gateway.list()
            #expect(!left.contains("b2p~orig"))
            try await gateway.delete(callID: "b2p~orig")  // twice: still fine
        }
    }

    @Test func aCallFromAPhoneToTheBrowser() async throws {
        try await Self.withRTPEngine { _, gateway in
            let toBrowser = Self.text(
                try await gateway.offer(
                    MediaOffer(callID: "p2b~term", fromTag: "phone", sdp: Self.phoneSDP, towards: .webRTC)))
            #expect(toBrowser.contains("UDP/TLS/RTP/SAVPF"))
            #expect(toBrowser.contains("a=ice-ufrag"))
            #expect(toBrowser.contains("a=fingerprint"))
            #expect(toBrowser.contains("a=setup:actpass"))
            #expect(toBrowser.contains("a=mid:"))
            #expect(!toBrowser.contains("a=crypto"))

            let browserAnswer = Self.text(Self.browserOffer).replacingOccurrences(
                of: "a=setup:actpass", with: "a=setup:active")
            let toPhone = Self.text(
                try await gateway.answer(
                    MediaAnswer(
                        callID: "p2b~term", fromTag: "phone", toTag: "wic", sdp: Array(browserAnswer.utf8),
                        towards: .ims)))
            #expect(toPhone.contains(" RTP/AVP "))
            #expect(!toPhone.contains("a=ice-ufrag"))
            try await gateway.delete(callID: "p2b~term")
            let left = try await gateway.list()
            #expect(left.isEmpty)
        }
    }

    @Test func unparsableSDPIsRefusedWithTheGatewaysReason() async throws {
        try await Self.withRTPEngine { _, gateway in
            do {
                _ = try await gateway.offer(
                    MediaOffer(callID: "bad", fromTag: "a", sdp: Array("hello".utf8), towards: .ims))
                Issue.record("rtpengine took SDP that is not SDP")
            } catch {
                guard case MediaGatewayError.refused(let reason) = error else {
                    Issue.record("expected a refusal, got \(error)")
                    return
                }
                #expect(!reason.isEmpty)
            }
            let left = try await gateway.list()
            #expect(left.isEmpty)
        }
    }

    @Test func theSupervisorStartsItAgainWhenItDies() async throws {
        try await Self.withRTPEngine { engine, gateway in
            _ = try await gateway.offer(
                MediaOffer(callID: "lost", fromTag: "a", sdp: Self.browserOffer, towards: .ims))
            // Kill it the hard way; the supervisor notices and starts a fresh one.
            let killed = Self.killChildren(named: "rtpengine")
            #expect(killed > 0)
            let clock = ContinuousClock()
            let deadline = clock.now + .seconds(10)
            while clock.now < deadline {
                if engine.restarts >= 1, await gateway.ping() { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(engine.restarts == 1)
            #expect(await gateway.ping())
        }
    }

    /// SIGKILLs this process's children running `name`; how many.
    static func killChildren(named name: String) -> Int {
        let me = getpid()
        var killed = 0
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(entry),
                let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                let open = stat.firstIndex(of: "("), let close = stat.lastIndex(of: ")")
            else { continue }
            let command = stat[stat.index(after: open)..<close]
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard command == name, fields.count > 2, Int32(fields[1]) == me else { continue }
            kill(pid, SIGKILL)
            killed += 1
        }
        return killed
    }
}
