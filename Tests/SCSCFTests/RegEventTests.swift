import Foundation
import SIPCore
import SIPTransport
import Storage
import Synchronization
import Testing
import WebIMSTesting

@testable import SCSCF

/// A watcher (the eP-CSCF or a UE behind it) that answers NOTIFY with 200 and keeps them.
final class Watcher: Sendable {
    let notifies = Mutex<[SIPRequest]>([])
    var handler: SIPRequestHandler {
        { request, _ in
            self.notifies.withLock { $0.append(request) }
            return SIPResponse(replyingTo: request, statusCode: 200)
        }
    }

    func waitFor(count: Int) async -> [SIPRequest] {
        for _ in 0..<200 {
            let seen = notifies.withLock { $0 }
            if seen.count >= count { return seen }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return notifies.withLock { $0 }
    }
}

/// SUBSCRIBE to alice's reg event (24.228 R3-1a: Event reg, Accept reginfo+xml).
func regSubscribe(from: String, contact: String) throws -> SIPRequest {
    var headers = SIPHeaderFields()
    headers.append(.from, from)
    headers.append(.to, "<\(aliceIMPU)>")
    headers.append(.callID, UUID().uuidString)
    headers.append(.cseq, "1 SUBSCRIBE")
    headers.append(.contact, contact)
    headers.append(.event, "reg")
    headers.append(.accept, "application/reginfo+xml")
    headers.append(.expires, "600")
    return SIPRequest(method: .subscribe, uri: .sip(try SIPURI.parse(aliceIMPU)), headers: headers)
}

@Suite(.serialized) struct RegEventTests {
    @Test(arguments: StoreBackend.available)
    func subscribeGetsFullStateThenANotifyPerChange(backend: StoreBackend) async throws {
        try await Harness.with(backend) { h async throws in
            let watcher = Watcher()
            var config = SIPEndpointConfiguration()
            config.udpPort = 0
            let watcherEndpoint = try SIPEndpoint(configuration: config, handler: watcher.handler)
            try await watcherEndpoint.start()
            let watcherPort = watcherEndpoint.address(.udp)?.port ?? 0

            let subscribe = try regSubscribe(
                from: "<sip:epcscf@127.0.0.1>;tag=w1", contact: "<sip:epcscf@127.0.0.1:\(watcherPort)>")
            let ok = await h.send(subscribe)
            #expect(ok.statusCode == 200)
            #expect(try ok.headers.expires == 600)

            var initial = await watcher.waitFor(count: 1)
            #expect(initial.count == 1)
            let first = try #require(initial.first)
            #expect(first.headers[.event] == "reg")
            #expect(first.headers[.subscriptionState]?.hasPrefix("active") == true)
            #expect(first.headers.contentType == "application/reginfo+xml")
            let body0 = String(decoding: first.body, as: UTF8.self)
            #expect(body0.contains("version=\"0\" state=\"full\""))
            #expect(body0.contains("aor=\"sip:alice@ims.example.com\" id=\"r0\" state=\"init\""))

            var ua = UA()
            #expect(await h.send(ua.register(authorization: ua.tna)).statusCode == 200)
            initial = await watcher.waitFor(count: 2)
            let body1 = String(decoding: initial.last?.body ?? [], as: UTF8.self)
            #expect(body1.contains("version=\"1\""))
            #expect(body1.contains("state=\"active\" event=\"registered\""))
            #expect(body1.contains("<uri>sip:g8z4h2kq@df7jal23ls0d.invalid;transport=ws</uri>"))
            #expect(body1.contains("aor=\"tel:+15551234567\""))

            #expect(await h.send(ua.register(authorization: ua.tna, expires: 0)).statusCode == 200)
            initial = await watcher.waitFor(count: 3)
            let body2 = String(decoding: initial.last?.body ?? [], as: UTF8.self)
            #expect(body2.contains("state=\"terminated\" event=\"unregistered\""))

            // A binding that runs out is removed by the sweep and announced.
            var short = UA(contact: "<sip:short@x.invalid;transport=ws>")
            #expect(await h.send(short.register(authorization: short.tna, expires: 60)).statusCode == 200)
            _ = await watcher.waitFor(count: 4)
            h.clock.advance(61)
            await h.registrar.removeExpiredBindings()
            initial = await watcher.waitFor(count: 5)
            let body4 = String(decoding: initial.last?.body ?? [], as: UTF8.self)
            #expect(initial.count == 5)
            #expect(
                body4.contains("<uri>sip:short@x.invalid;transport=ws</uri>") && body4.contains("state=\"terminated\""))
            #expect(try await h.storage.bindings(aor: aliceIMPU, now: 0).isEmpty)

            // Other events are not ours; untrusted subscribers are refused.
            var other = subscribe
            other.headers[.event] = "presence"
            other.headers[.callID] = UUID().uuidString
            #expect(await h.send(other).statusCode == 489)
            await watcherEndpoint.shutdown()
        }
    }
}

@Suite(.serialized) struct RegEventTrustTests {
    @Test func subscribeFromAnUntrustedAddressIs403() async throws {
        try await Harness.with(.sqlite, clientHost: "127.0.0.2") { h async throws in
            let subscribe = try regSubscribe(
                from: "<sip:mallory@evil.example>;tag=m", contact: "<sip:mallory@127.0.0.2:9>")
            #expect(await h.send(subscribe).statusCode == 403)
        }
    }
}
