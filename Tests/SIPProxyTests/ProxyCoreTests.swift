import NIOCore
import SIPCore
import SIPTransport
import Synchronization
import Testing
import Utilities
import WebIMSTesting

@testable import SIPProxy

/// A proxy core on UDP and TCP (one port), a UAC endpoint and a UAS endpoint.
struct ProxyBench {
    let proxy: SIPProxyCore
    let uac: SIPEndpoint
    let uas: SIPEndpoint
    let atUAS = Seen<SIPRequest>()

    init(
        clock: (any SIPClock)? = nil, locate: @escaping @Sendable (SIPRequest) -> [AnyURI] = { [$0.uri] },
        answer: @escaping @Sendable (SIPRequest, SIPServerTransaction) async -> Void = { request, transaction in
            transaction.respond(SIPResponse(replyingTo: request, statusCode: 200, toTag: "uas"))
        }
    ) async throws {
        var both = SIPEndpointConfiguration()
        both.udpPort = 0
        both.tcpPort = 0
        let box = ProxyBox()
        let proxyEndpoint = try SIPEndpoint(configuration: both, clock: clock) { request, transaction in
            await box.proxy?.route(request, transaction: transaction) { locate($0) }
        }
        proxy = SIPProxyCore(endpoint: proxyEndpoint, configuration: SIPProxyConfiguration())
        box.set(proxy)
        try await proxyEndpoint.start()
        uac = try SIPEndpoint(configuration: both) { _, _ in }
        try await uac.start()
        let seen = atUAS
        uas = try SIPEndpoint(configuration: both) { request, transaction in
            seen.append(request)
            await answer(request, transaction)
        }
        try await uas.start()
    }

    var proxyPort: Int { proxy.endpoint.address(.udp)?.port ?? 0 }
    var uasPort: Int { uas.address(.udp)?.port ?? 0 }
    var toProxy: SIPDestination { SIPDestination(transport: .udp, host: "127.0.0.1", port: proxyPort) }

    func request(_ method: String, uri: String, extra: String = "") throws -> SIPRequest {
        let text = """
            \(method) \(uri) SIP/2.0\r
            Via: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKuac\(randomToken(length: 6))\r
            Max-Forwards: 70\r
            From: <sip:alice@example.com>;tag=a1\r
            To: <sip:bob@example.com>\r
            Call-ID: \(randomToken())\r
            CSeq: 1 \(method)\r
            \(extra)Content-Length: 0\r
            \r

            """
        guard case .request(var request) = try SIPParser().parse(text) else { throw CancellationError() }
        try request.headers.removeTopVia()  // the endpoint puts its own
        return request
    }

    func stop() async {
        await proxy.endpoint.shutdown()
        await uac.shutdown()
        await uas.shutdown()
    }
}

@Suite struct ProxyCoreTests {
    @Test func noHopLeftIs483() async throws {
        try await scoped(try await ProxyBench(), stop: { await $0.stop() }) { bench async throws in
            var request = try bench.request("OPTIONS", uri: "sip:bob@127.0.0.1:\(bench.uasPort)")
            request.headers[.maxForwards] = "0"
            let answer = await bench.uac.send(request, to: bench.toProxy)
            #expect(answer.statusCode == 483)
            #expect(bench.atUAS.all.isEmpty)
        }
    }

    @Test func aRequestThatComesBackUnchangedIsALoop482NotA483() async throws {
        try await scoped(try await ProxyBench(), stop: { await $0.stop() }) { bench async throws in
            // The Request-URI names the proxy itself, so it forwards the request to itself.
            let request = try bench.request("OPTIONS", uri: "sip:loop@127.0.0.1:\(bench.proxyPort)")
            let answer = await bench.uac.send(request, to: bench.toProxy)
            #expect(answer.statusCode == 482)
        }
    }

    @Test func aProxyRequireIsRefusedWith420() async throws {
        try await scoped(try await ProxyBench(), stop: { await $0.stop() }) { bench async throws in
            let request = try bench.request(
                "OPTIONS", uri: "sip:bob@127.0.0.1:\(bench.uasPort)", extra: "Proxy-Require: foo\r\n")
            let answer = await bench.uac.send(request, to: bench.toProxy)
            #expect(answer.statusCode == 420)
            #expect(answer.headers[.unsupported] == "foo")
        }
    }

    @Test func forwardingTakesAHopAndRecordRoutesTwiceWhereTheTransportsDiffer() async throws {
        try await scoped(try await ProxyBench(), stop: { await $0.stop() }) { bench async throws in
            let request = try bench.request("INVITE", uri: "sip:bob@127.0.0.1:\(bench.uasPort);transport=tcp")
            let answer = await bench.uac.send(request, to: bench.toProxy)
            #expect(answer.statusCode == 200)
            let seen = try #require(bench.atUAS.all.first)
            #expect(seen.headers[.maxForwards] == "69")
            let routes = try seen.headers.recordRoute.compactMap(\.uri.sipURI)
            // RFC 5658: the TCP side (towards the UAS) on top, then the UDP side it came in by.
            #expect(routes.map(\.transport) == ["tcp", "udp"])
            #expect(routes.allSatisfy { $0.isLooseRouting })
            #expect(routes.allSatisfy { Int($0.port ?? 0) == bench.proxyPort })
        }
    }

    @Test func aStrictRouterBeforeUsLeavesTheTargetInTheLastRoute() async throws {
        try await scoped(try await ProxyBench(), stop: { await $0.stop() }) { bench async throws in
            let ours = try #require(bench.proxy.endpoint.recordRouteURI(for: .udp))
            let target = "sip:bob@127.0.0.1:\(bench.uasPort)"
            let request = try bench.request("BYE", uri: ours.description, extra: "Route: <\(target)>\r\n")
            let answer = await bench.uac.send(request, to: bench.toProxy)
            #expect(answer.statusCode == 200)
            let seen = try #require(bench.atUAS.all.first)
            #expect(seen.uri.description == target)
            #expect(!seen.headers.contains(.route))
        }
    }

    @Test func aStrictRouterAfterUsGetsItsURIAsTheRequestURI() async throws {
        try await scoped(try await ProxyBench(), stop: { await $0.stop() }) { bench async throws in
            let ours = try #require(bench.proxy.endpoint.recordRouteURI(for: .udp))
            let strict = "sip:127.0.0.1:\(bench.uasPort)"
            let request = try bench.request(
                "BYE", uri: "sip:bob@example.com", extra: "Route: <\(ours)>, <\(strict)>\r\n")
            let answer = await bench.uac.send(request, to: bench.toProxy)
            #expect(answer.statusCode == 200)
            let seen = try #require(bench.atUAS.all.first)
            #expect(seen.uri.description == strict)  // §16.6 step 7
            #expect(try seen.headers.route.map(\.uri.description) == ["sip:bob@example.com"])
        }
    }

    @Test func timerCCancelsABranchThatOnlyRings() async throws {
        let clock = ManualSIPClock()
        let started = try await ProxyBench(
            clock: clock,
            answer: { request, transaction in
                transaction.whenCancelled {
                    transaction.respond(SIPResponse(replyingTo: request, statusCode: 487, toTag: "uas"))
                }
                transaction.respond(SIPResponse(replyingTo: request, statusCode: 180, toTag: "uas"))
            })
        try await scoped(started, stop: { await $0.stop() }) { bench async throws in
            let responses = Seen<Int>()
            let request = try bench.request("INVITE", uri: "sip:bob@127.0.0.1:\(bench.uasPort)")
            await bench.uac.start(request, to: bench.toProxy) { responses.append($0.statusCode) }
            _ = await responses.first { $0 == 180 }
            clock.advance(by: .seconds(180))
            try await Task.sleep(for: .milliseconds(100))
            #expect(!responses.all.contains(487))
            clock.advance(by: .seconds(1))  // Timer C: 181 s
            let final = await responses.first { $0 >= 200 }
            #expect(final == 487)
            #expect(responses.all.filter { $0 == 100 }.count == 1)  // the proxy's own, at once
        }
    }

    @Test func theBestResponseFollows16_7() {
        func response(_ code: Int, _ challenge: String? = nil) -> SIPResponse {
            var headers = SIPHeaderFields()
            if let challenge { headers.append(code == 401 ? .wwwAuthenticate : .proxyAuthenticate, challenge) }
            return SIPResponse(statusCode: code, headers: headers)
        }
        let request = SIPRequest(method: .invite, uri: .sip(SIPURI(host: "example.com")))
        #expect(ResponseContext.best([response(486), response(603), response(302)], for: request).statusCode == 603)
        #expect(ResponseContext.best([response(486), response(302)], for: request).statusCode == 302)
        #expect(ResponseContext.best([response(486), response(415), response(500)], for: request).statusCode == 415)
        #expect(ResponseContext.best([response(503)], for: request).statusCode == 500)
        // A registrar whose bindings' edges could not be reached says so (issue 32).
        #expect(ResponseContext.best([response(503), response(503)], for: request, unavailable: 480).statusCode == 480)
        let merged = ResponseContext.best(
            [response(401, "Digest realm=\"a\""), response(407, "Digest realm=\"b\"")], for: request)
        #expect(merged.statusCode == 401)
        #expect(merged.headers.fieldValues(.proxyAuthenticate) == ["Digest realm=\"b\""])
        #expect(ResponseContext.best([], for: request).statusCode == 408)
    }
}
