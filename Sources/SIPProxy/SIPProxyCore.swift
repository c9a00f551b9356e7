import NIOCore
import SIPCore
import SIPTransport
import Synchronization
import Utilities

/// Where a copy of a request goes (§16.5, §16.6 step 2): its Request-URI, and a route set
/// to reach it by — a contact's Path (RFC 3327), a peer — put in front of any Route.
public struct ProxyTarget: Sendable, Hashable {
    public var uri: AnyURI
    public var route: [SIPAddress]
    /// Where the copy goes whatever its Route and Request-URI say: a WIC's flow, or the
    /// one S-CSCF an eP-CSCF sends to. nil: the next hop by §16.6 steps 6–7.
    public var destination: SIPDestination?

    public init(uri: AnyURI, route: [SIPAddress] = [], destination: SIPDestination? = nil) {
        self.uri = uri
        self.route = route
        self.destination = destination
    }
}

/// How a proxy core forwards.
public struct SIPProxyConfiguration: Sendable {
    /// Record-Route on dialog-creating requests, so the dialog's later requests come back
    /// through this proxy (RFC 3261 §16.6 step 4).
    public var recordRoute = true
    /// Timer C (§16.8): how long an INVITE branch may go without a provisional response.
    public var timerC: TimeAmount = .seconds(181)

    public init() {}
}

/// The stateful proxy of RFC 3261 §16, for any transaction user that routes requests (the
/// eP-CSCF, the S-CSCF): request validation (§16.3), Route processing (§16.4), forwarding
/// to a target set in parallel (§16.6), the response context (§16.7), Timer C (§16.8) and
/// CANCEL (§16.10). Which targets a request goes to is the TU's decision, not this core's.
public final class SIPProxyCore: Sendable {
    public let endpoint: SIPEndpoint
    public let configuration: SIPProxyConfiguration

    public init(endpoint: SIPEndpoint, configuration: SIPProxyConfiguration = SIPProxyConfiguration()) {
        self.endpoint = endpoint
        self.configuration = configuration
    }

    /// The four steps for a request whose targets `locate` finds (§16.5); a request that
    /// still has a Route after preprocessing, or none of ours, goes to its Request-URI.
    public func route(
        _ request: SIPRequest, transaction: SIPServerTransaction, locate: (SIPRequest) async -> [AnyURI]
    ) async {
        var request = request
        if request.method == .ack {
            await forwardACK(request)
            return
        }
        if let refusal = validate(&request) {
            transaction.respond(refusal)
            return
        }
        preprocessRoute(&request)
        let targets = request.headers.contains(.route) ? [request.uri] : await locate(request)
        await forward(request, transaction: transaction, targets: targets)
    }

    /// §16.3: nil when the request may go on, with one hop less (step 3); else the answer —
    /// 483 with no hop left, 482 for a loop (step 4), 420 for a Proxy-Require (step 5).
    public func validate(_ request: inout SIPRequest) -> SIPResponse? {
        let original = request
        if let (status, reason) = request.takeHop() {
            return SIPResponse(replyingTo: original, statusCode: status, reasonPhrase: reason, toTag: toTag())
        }
        if isLoop(original) {
            return SIPResponse(replyingTo: original, statusCode: 482, toTag: toTag())
        }
        let required = request.headers.proxyRequire
        if !required.isEmpty {
            var refusal = SIPResponse(replyingTo: original, statusCode: 420, toTag: toTag())
            refusal.headers.append(.unsupported, required.joined(separator: ", "))
            return refusal
        }
        return nil
    }

    /// §16.4: a Request-URI that is a Record-Route of ours came from a strict router, and
    /// the last Route is the real target; Route entries naming us are done with (both of
    /// a double Record-Route, RFC 5658).
    /// Returns the entries of ours it took off the top (the S-CSCF reads `orig` in them).
    @discardableResult
    public func preprocessRoute(_ request: inout SIPRequest) -> [SIPAddress] {
        guard request.headers.contains(.route), var routes = try? request.headers.route else { return [] }
        let before = routes.count
        if let uri = request.uri.sipURI, uri.user == nil, uri.isLooseRouting, isOurs(uri), let last = routes.last {
            request.uri = last.uri
            routes.removeLast()
        }
        var ours: [SIPAddress] = []
        while let first = routes.first, let uri = first.uri.sipURI, isOurs(uri) { ours.append(routes.removeFirst()) }
        guard routes.count != before else { return ours }
        request.headers.removeAll(.route)
        for route in routes { request.headers.append(.route, route.description) }
        return ours
    }

    /// An ACK for a 2xx goes on statelessly, by Route or Request-URI (§16.11, §17.1.1.3),
    /// or to `destination` when the TU names one.
    public func forwardACK(_ request: SIPRequest, to destination: SIPDestination? = nil) async {
        var request = request
        guard validate(&request) == nil else { return }
        preprocessRoute(&request)
        if let destination {
            await endpoint.sendStatelessly(request, to: destination)
            return
        }
        guard let (outgoing, destination) = nextHop(request) else { return }
        await endpoint.sendStatelessly(outgoing, to: destination)
    }

    /// §16.6–§16.10: a copy of the request to every target at once, each in a client
    /// transaction of its own; the best answer goes back through `transaction`.
    public func forward(_ request: SIPRequest, transaction: SIPServerTransaction, targets: [AnyURI]) async {
        await forward(request, transaction: transaction, to: targets.map { ProxyTarget(uri: $0) })
    }

    /// `rewriting`, when given, sees each response before it goes back (the eP-CSCF's SDP
    /// through its media gateway); responses keep their order however long it takes.
    /// `unavailable`: what a best answer of 503 goes up as (§16.7 step 6: not 503).
    public func forward(
        _ request: SIPRequest, transaction: SIPServerTransaction, to targets: [ProxyTarget],
        rewriting: SIPResponseRewriter? = nil, unavailable: Int = 500
    ) async {
        if request.method == .invite, !targets.isEmpty {
            // §16.2: say at once that the INVITE is being worked on, so the UAC stops resending.
            transaction.respond(SIPResponse(replyingTo: request, statusCode: 100))
        }
        let respond: @Sendable (SIPResponse) -> Void
        if let rewriting {
            let relay = OrderedRelay(rewriting: rewriting) { transaction.respond($0) }
            respond = { relay.pass($0) }
        } else {
            respond = { transaction.respond($0) }
        }
        let context = await fork(
            request, to: targets, inbound: transaction.peer.transport, unavailable: unavailable, respond: respond)
        transaction.whenCancelled { context?.cancelAll() }
    }

    /// The same for a transaction user that answers each request once (provisional answers
    /// are not passed on): the best final answer, the first 2xx as soon as it comes.
    public func forward(_ request: SIPRequest, to targets: [ProxyTarget], inbound: SIPTransportProtocol = .tcp)
        async -> SIPResponse
    {
        let answered = Once()
        return await withCheckedContinuation { continuation in
            Task {
                _ = await fork(request, to: targets, inbound: inbound) { response in
                    guard !response.isProvisional, answered.first() else { return }
                    continuation.resume(returning: response)
                }
            }
        }
    }

    /// Sends the copies; nil when there was nothing to send (the answer, 480, is given).
    private func fork(
        _ request: SIPRequest, to targets: [ProxyTarget], inbound: SIPTransportProtocol, unavailable: Int = 500,
        respond: @escaping @Sendable (SIPResponse) -> Void
    ) async -> ResponseContext? {
        guard !targets.isEmpty else {
            respond(SIPResponse(replyingTo: request, statusCode: 480, toTag: toTag()))
            return nil
        }
        let context = ResponseContext(
            request: request, branches: targets.count, clock: endpoint.clock,
            timerC: request.method == .invite ? configuration.timerC : nil, unavailable: unavailable, respond: respond)
        let loopToken = Self.loopToken(request)
        for (index, target) in targets.enumerated() {
            var copy = request
            copy.uri = target.uri
            for hop in target.route.reversed() { copy.headers.prepend(.route, hop.description) }
            if configuration.recordRoute, Self.createsDialog(request) {
                addRecordRoute(to: &copy, inbound: inbound, target: target.uri)
            }
            guard let (outgoing, destination) = target.destination.map({ (copy, $0) }) ?? nextHop(copy) else {
                context.receive(SIPResponse(replyingTo: request, statusCode: 416), branch: index)
                continue
            }
            let client = await endpoint.start(outgoing, to: destination, branchToken: loopToken) { response in
                context.receive(response, branch: index)
            }
            context.started(client, branch: index)
        }
        return context
    }

    // MARK: the parts

    /// §16.6 steps 6–7: the next hop is the top Route, else the Request-URI; a strict
    /// router's Route (no `lr`) takes the Request-URI's place, which goes to the end.
    func nextHop(_ request: SIPRequest) -> (SIPRequest, SIPDestination)? {
        var request = request
        var hop = request.uri
        if request.headers.contains(.route), var routes = try? request.headers.route, let top = routes.first {
            hop = top.uri
            if let uri = top.uri.sipURI, !uri.isLooseRouting {
                routes.removeFirst()
                routes.append(SIPAddress(uri: request.uri))
                request.uri = top.uri
                request.headers.removeAll(.route)
                for route in routes { request.headers.append(.route, route.description) }
            }
        }
        guard let uri = hop.sipURI, let destination = SIPDestination(uri: uri) else { return nil }
        return (request, destination)
    }

    /// §16.6 step 4, RFC 5658: our Record-Route for the side it leaves by, and another for
    /// the side it came in by when the transports differ.
    func addRecordRoute(to request: inout SIPRequest, inbound: SIPTransportProtocol, target: AnyURI) {
        let next = (try? request.headers.route.first?.uri) ?? target
        let outbound = next.sipURI.flatMap(SIPDestination.init(uri:))?.transport ?? .udp
        let inboundURI = endpoint.recordRouteURI(for: inbound)
        let outboundURI = endpoint.recordRouteURI(for: outbound)
        if let inboundURI { request.headers.prepend(.recordRoute, SIPAddress(inboundURI).description) }
        if let outboundURI, outboundURI != inboundURI {
            request.headers.prepend(.recordRoute, SIPAddress(outboundURI).description)
        }
    }

    public func isOurs(_ uri: SIPURI) -> Bool { endpoint.isLocal(host: uri.host, port: uri.port, secure: uri.isSecure) }

    /// §16.3 step 4: a Via of ours whose branch carries the hash this request had when we
    /// sent it (worked out with the Via below ours as the top one, as it was then) means it
    /// came back unchanged — a loop, where a spiral would have a new Request-URI or Route.
    func isLoop(_ request: SIPRequest) -> Bool {
        guard let vias = try? request.headers.vias, vias.count > 1 else { return false }
        for index in vias.indices.dropLast() where endpoint.isLocal(host: vias[index].host, port: vias[index].port) {
            let token = SIPVia.magicCookie + Self.loopToken(request, topVia: vias[index + 1]) + "."
            if vias[index].branch?.hasPrefix(token) ?? false { return true }
        }
        return false
    }

    /// §16.6 step 8: a hash over what makes a request the same request at this hop.
    static func loopToken(_ request: SIPRequest, topVia: SIPVia? = nil) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325  // FNV-1a: the same on every node
        func mix(_ text: String) {
            for byte in text.utf8 {
                hash ^= UInt64(byte)
                hash = hash &* 0x100_0000_01b3
            }
            hash ^= 0xff
        }
        mix(request.uri.description)
        for name in [SIPHeaderName.to, .from, .callID, .proxyRequire, .proxyAuthorization, .route] {
            for value in request.headers.fieldValues(name) { mix(value) }
        }
        if let via = topVia ?? (try? request.headers.topVia) { mix(via.description) }
        if let cseq = try? request.headers.cseq { mix(String(cseq.sequence)) }
        return String(hash, radix: 36)
    }

    public static func createsDialog(_ request: SIPRequest) -> Bool {
        guard [SIPMethod.invite, .subscribe, .refer].contains(request.method) else { return false }
        return (try? request.headers.to.tag) == nil
    }
}

func toTag() -> String { randomToken(length: 8) }

/// A response's last change before it goes back to the client.
public typealias SIPResponseRewriter = @Sendable (SIPResponse) async -> SIPResponse

/// Responses rewritten one after another, in the order they came: a 183's SDP is rewritten
/// and sent before the 200 behind it.
final class OrderedRelay: Sendable {
    private let rewriting: SIPResponseRewriter
    private let respond: @Sendable (SIPResponse) -> Void
    private let tail = Mutex<Task<Void, Never>?>(nil)

    init(rewriting: @escaping SIPResponseRewriter, respond: @escaping @Sendable (SIPResponse) -> Void) {
        self.rewriting = rewriting
        self.respond = respond
    }

    func pass(_ response: SIPResponse) {
        tail.withLock { tail in
            let previous = tail
            tail = Task { [rewriting, respond] in
                await previous?.value
                respond(await rewriting(response))
            }
        }
    }
}

/// True the first time only.
final class Once: Sendable {
    private let done = Mutex(false)
    func first() -> Bool { done.withLock { ($0, $0 = true).0 == false } }
}
