import Foundation
import Logging
import Metrics
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOWebSocket
import SIPAuth
import SIPCore
import SIPTransport
import Synchronization

/// The W2 listener: SIP over secure WebSocket (RFC 7118) for WICs, in front of the S-CSCF.
public struct WebSocketServerConfiguration: Sendable {
    public var host = "127.0.0.1"
    public var port = 7443
    /// nil only for tests of the plain-HTTP refusal; WICs always get WSS (EPC-2).
    public var tls: TLSConfiguration?
    /// WWSF origins whose pages may open a flow (EPC-4, WWSF-6).
    public var allowedOrigins: Set<String>
    /// Lets non-browser clients without an Origin header in (an explicit operator choice).
    public var allowMissingOrigin = false
    /// Largest SIP message (one WebSocket message) accepted.
    public var maxMessageSize = 65_536
    /// Where REGISTERs go.
    public var scscf: SIPDestination
    /// After a flow closes, how long its contacts stay registered before the eP-CSCF
    /// de-registers them (EPC-33) — unless the same instance registered on a new flow.
    public var flowCloseGrace: Duration = .seconds(30)
    /// Our host in Record-Route and Via towards the S-CSCF side.
    public var sipHost = "127.0.0.1"
    /// A WebSocket ping goes to every flow this often (RFC 6455 §5.5.2); a flow silent for
    /// `idleTimeout` (no frame at all, not even a pong) is closed.
    public var pingInterval: Duration = .seconds(30)
    public var idleTimeout: Duration = .seconds(95)
    /// TLS and the WebSocket handshake must be done this soon after connecting.
    public var handshakeTimeout: Duration = .seconds(10)
    /// Open connections from one address, and in all: one client cannot starve the others.
    public var maxConnectionsPerAddress = 500
    public var maxConnections = 50_000
    /// SIP messages a flow may send: a burst, then this many per second; beyond it the
    /// flow is closed (1008 policy violation).
    public var messageBurst = 60
    public var messagesPerSecond = 20
    /// The S-CSCF in this same process, if any: requests go to it by a function call
    /// instead of over TCP (no serializing, parsing or transaction twice). Requests from the
    /// S-CSCF to the flows still arrive over SIP, by the Path.
    public var localSCSCF: SIPRequestHandler?
    /// Who may send requests down a flow (routed by our Path or Record-Route): only this
    /// eP-CSCF's S-CSCFs (docs/security.md, issue 26 item 8).
    public var terminatingPeers: TerminatingPeers = .inProcessOnly
    /// Logs every SIP message of every flow (redacted) when set (`--sip-trace`).
    public var trace: SIPTrace?
    /// Remote WAFs whose keys are fetched again when a token names an unknown kid.
    public var keyFetchers: [String: WAFKeyFetcher] = [:]

    public init(allowedOrigins: Set<String>, scscf: SIPDestination) {
        self.allowedOrigins = allowedOrigins
        self.scscf = scscf
    }
}

/// The peers whose requests the eP-CSCF hands down a WIC's flow.
public enum TerminatingPeers: Sendable, Hashable {
    /// The S-CSCF runs in this process and calls in: the SIP port takes nothing from outside.
    case inProcessOnly
    /// Over TLS, a certificate the listener verified that carries one of these names (DNS
    /// or IP subject alternative names): the S-CSCFs of a split deployment (TS 33.210).
    case certificateNames(Set<String>)
    /// LAB ONLY (`--lab-plain-sip-trust`): any transport, from these source addresses.
    case labAddresses(Set<String>)

    public func admits(_ peer: SIPPeer) -> Bool {
        if peer.connection.isInProcess { return true }
        switch self {
        case .inProcessOnly:
            return false
        case .certificateNames(let names):
            return peer.transport == .tls && peer.certificateNames.contains { names.contains($0.lowercased()) }
        case .labAddresses(let addresses):
            return peer.remoteAddress.ipAddress.map(addresses.contains) ?? false
        }
    }
}

public final class WebSocketServer: Sendable {
    public let configuration: WebSocketServerConfiguration
    let processor: RegisterProcessor
    let sip: SIPEndpoint
    let logger: Logger
    let channel = Mutex<(any Channel)?>(nil)
    let tlsContext: LeanTLSContext?
    /// +sip.instance → the flow that registered it last.
    let latestFlowByInstance = Mutex<[String: String]>([:])
    /// Open flows by token, for requests routed back to them (EPC-6).
    let flows = Mutex<[String: (channel: any Channel, state: FlowState)]>([:])
    /// Open connections by remote address (handshaking or not).
    let connections = Mutex<(total: Int, byAddress: [String: Int], highWater: Int)>((0, [:], 0))

    public init(
        configuration: WebSocketServerConfiguration, processor: RegisterProcessor, sip: SIPEndpoint, logger: Logger
    ) throws {
        self.configuration = configuration
        self.processor = processor
        self.sip = sip
        self.logger = logger
        self.tlsContext = try configuration.tls.map { try LeanTLSContext($0) }
    }

    public var port: Int? { channel.withLock { $0?.localAddress?.port } }

    /// Open TCP connections (flows plus handshakes in progress).
    public var openConnections: Int { connections.withLock { $0.total } }

    /// The most connections open at once since the last call, and now.
    public func takeConnectionHighWater() -> (highWater: Int, now: Int) {
        connections.withLock { state in
            defer { state.highWater = state.total }
            return (state.highWater, state.total)
        }
    }

    public func start() async throws {
        let server = self
        let bound = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 4096)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try server.setUp(channel) }
            }
            .bind(host: configuration.host, port: configuration.port).get()
        channel.withLock { $0 = bound }
    }

    /// Stops accepting, tells every WIC it is going away (close 1001, RFC 6455 §7.4.1) so it
    /// reconnects elsewhere or later, and lets requests in flight finish for up to `grace`.
    public func shutdown(grace: Duration = .seconds(2)) async {
        let open = channel.withLock { $0 }
        try? await open?.close().get()
        let channels = flows.withLock { $0.values.map(\.channel) }
        for channel in channels {
            var code = channel.allocator.buffer(capacity: 2)
            code.write(webSocketErrorCode: .goingAway)
            channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .connectionClose, data: code), promise: nil)
        }
        let deadline = ContinuousClock.now + grace
        while ContinuousClock.now < deadline, flows.withLock({ !$0.isEmpty }) {
            try? await Task.sleep(for: .milliseconds(50))
        }
        for channel in channels { try? await channel.close().get() }
    }

    func setUp(_ channel: any Channel) throws {
        // Caps first, before any TLS work is spent on the connection.
        let address = channel.remoteAddress?.ipAddress ?? "?"
        let admitted = connections.withLock { state -> Bool in
            guard state.total < configuration.maxConnections,
                state.byAddress[address, default: 0] < configuration.maxConnectionsPerAddress
            else { return false }
            state.total += 1
            state.highWater = max(state.highWater, state.total)
            state.byAddress[address, default: 0] += 1
            return true
        }
        guard admitted else {
            EdgeMetrics.refused.increment()
            channel.close(promise: nil)
            return
        }
        channel.closeFuture.whenComplete { [server = self] _ in
            server.connections.withLock { state in
                state.total -= 1
                let left = state.byAddress[address, default: 1] - 1
                state.byAddress[address] = left > 0 ? left : nil
            }
        }
        // A connection that never finishes TLS and the upgrade is closed.
        channel.eventLoop.scheduleTask(in: .init(configuration.handshakeTimeout)) {
            channel.pipeline.handler(type: SIPWebSocketHandler.self).whenFailure { _ in channel.close(promise: nil) }
        }
        let sync = channel.pipeline.syncOperations
        if let tlsContext {
            try sync.addHandler(LeanTLSServerHandler(context: tlsContext, allocator: channel.allocator))
        }
        let server = self
        let upgrader = NIOWebSocketServerUpgrader(
            maxFrameSize: configuration.maxMessageSize,
            shouldUpgrade: { channel, head in
                channel.eventLoop.makeSucceededFuture(
                    server.handshakeVerdict(head) == nil ? HTTPHeaders([("Sec-WebSocket-Protocol", "sip")]) : nil)
            },
            upgradePipelineHandler: { channel, head in
                channel.eventLoop.makeCompletedFuture {
                    let origin = head.headers.first(name: "origin")
                    // The refusal handler is for HTTP; frames must not reach it.
                    channel.pipeline.syncOperations.removeHandler(name: "handshake-refusal", promise: nil)
                    try channel.pipeline.syncOperations.addHandler(
                        SIPWebSocketHandler(server: server, origin: origin, flowToken: "fl-" + randomToken(length: 12)))
                }
            })
        try sync.configureHTTPServerPipeline(withServerUpgrade: (upgraders: [upgrader], completionHandler: { _ in }))
        try sync.addHandler(HandshakeRefusal(server: server), name: "handshake-refusal")
    }

    /// nil to upgrade; else the HTTP status that refuses the handshake and why.
    func handshakeVerdict(_ head: HTTPRequestHead) -> (HTTPResponseStatus, String)? {
        let origin = head.headers.first(name: "origin")
        if let origin {
            guard configuration.allowedOrigins.contains(origin) else { return (.forbidden, "Origin not allowed") }
        } else if !configuration.allowMissingOrigin {
            return (.forbidden, "Origin required")
        }
        // A client may offer several protocols in one header (`foo, sip`).
        let offered = head.headers["sec-websocket-protocol"].flatMap { $0.split(separator: ",") }
            .map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        guard offered.contains("sip") else { return (.badRequest, "Subprotocol sip required") }
        guard head.headers.first(name: "upgrade")?.lowercased() == "websocket" else {
            return (.upgradeRequired, "WebSocket only")
        }
        return nil
    }

    /// Handles one SIP message from a flow and returns what goes back down it.
    func handle(
        _ bytes: [UInt8], flowToken: String, origin: String?, flow: FlowState, remote: SocketAddress? = nil
    ) async -> SIPResponse? {
        var request: SIPRequest
        switch SIPParser(limits: SIPParserLimits(maxMessageSize: configuration.maxMessageSize)).parseInbound(
            bytes, framing: .message)
        {
        case .malformed(_, let answer):
            return answer
        case .message(.response(let response)):
            // The answer to a request we sent down this flow (matched by our Via branch).
            if let branch = try? response.headers.topVia.branch {
                let waiter = flow.state.withLock { $0.waiting.removeValue(forKey: branch) }
                var answer = response
                if let index = answer.headers.firstIndex(named: .via) {
                    answer.headers.remove(at: index)
                }
                waiter?.continuation.resume(returning: answer)
            }
            return nil
        case .message(.request(let r)):
            request = r
        }
        // RFC 7118 §5.3 / RFC 3261 §18.2.1: note where the request really came from (the
        // WIC's Via names a `.invalid` host), so nothing ever routes by that name.
        // The same syntax check as on every other transport, before any decision (RFC 4475).
        do {
            if let remote { _ = try stampReceived(&request.headers, from: remote) }
            try request.checkSyntax()
        } catch {
            if request.method == .ack { return nil }
            return SIPResponse(replyingTo: request, statusCode: 400, reasonPhrase: error.reasonPhrase, toTag: "e400")
        }
        guard request.method == .register else {
            if request.method == .ack { return nil }
            return await forwardOriginating(request, flowToken: flowToken, flow: flow)
        }
        if !configuration.keyFetchers.isEmpty, let token = bearerToken(in: request),
            let issuer = processor.tokens.issuerMissingKey(for: token), let fetcher = configuration.keyFetchers[issuer]
        {
            await fetcher.refreshForUnknownKey()
        }
        let boundIMPI = flow.state.withLock { $0.boundIMPI }
        switch processor.process(request, flowToken: flowToken, origin: origin, boundIMPI: boundIMPI) {
        case .reject(let response):
            return response
        case .forward(let upstream, let impi, let token):
            let start = ContinuousClock.now
            let credentialLess = !upstream.headers.contains(.authorization)
            let answer = processor.processResponse(
                await toSCSCF(upstream), offeringBearerFor: credentialLess ? upstream : nil)
            EdgeMetrics.registerDuration.recordNanoseconds(
                (ContinuousClock.now - start).components.attoseconds / 1_000_000_000
                    + (ContinuousClock.now - start).components.seconds * 1_000_000_000)
            EdgeMetrics.registerAnswered(status: answer.statusCode)
            if answer.statusCode == 200 {
                registered(upstream, impi: impi, token: token, answer: answer, on: flow, flowToken: flowToken)
            }
            return answer
        }
    }

    /// Sends a request on to the S-CSCF: in process when it runs here, else over SIP.
    func toSCSCF(_ request: SIPRequest) async -> SIPResponse {
        guard let local = configuration.localSCSCF else { return await sip.send(request, to: configuration.scscf) }
        var request = request
        if !request.headers.contains(.maxForwards) { request.headers.append(.maxForwards, "70") }
        return await local(request, .inProcess()) ?? SIPResponse(replyingTo: request, statusCode: 500)
    }

    func bearerToken(in request: SIPRequest) -> String? {
        guard let fields = try? request.headers.authorizations() else { return nil }
        return fields.lazy.compactMap(\.bearerToken).first
    }

    /// Other requests from a registered flow (e.g. a reg-event SUBSCRIBE) go to the S-CSCF
    /// with our Record-Route naming the flow, so what comes back for the dialog finds it.
    /// A flow that has not registered may send nothing else (EPC-34: 403).
    func forwardOriginating(_ request: SIPRequest, flowToken: String, flow: FlowState) async -> SIPResponse {
        let registered: Set<String>
        switch credentialGate(flow) {
        case .registered(let identities): registered = identities
        case .tokenEnded: return processor.tokenEnded(request)
        case .notRegistered(let reason):
            return SIPResponse(
                replyingTo: request, statusCode: 403, reasonPhrase: reason, toTag: randomToken(length: 8))
        }
        // Only identities registered over this flow may be asserted (P-Asserted-Identity) or
        // watched (reg event): one WIC cannot speak or listen for another.
        guard let from = (try? request.headers.from)?.uri.publicIdentity, registered.contains(from) else {
            return SIPResponse(
                replyingTo: request, statusCode: 403, reasonPhrase: "Identity Not Registered",
                toTag: randomToken(length: 8))
        }
        if request.method == .subscribe, let target = request.uri.publicIdentity, !registered.contains(target) {
            return SIPResponse(
                replyingTo: request, statusCode: 403, reasonPhrase: "Not Your Registration",
                toTag: randomToken(length: 8))
        }
        var upstream = request
        if let refusal = processor.decrementMaxForwards(&upstream) { return refusal }
        // Our own Route entries (the Path the WIC learnt) are consumed here.
        upstream.headers.removeAll { field in
            field.name == .route && (try? SIPAddress.parse(field.value))?.uri.sipURI?.user == flowToken
        }
        upstream.headers.removeAll(.pAssertedIdentity)
        if let from = try? upstream.headers.from {
            upstream.headers.append(.pAssertedIdentity, SIPAddress(uri: from.uri).description)
        }
        upstream.headers.prepend(.recordRoute, flowURI(flowToken).description)
        return await toSCSCF(upstream)
    }

    enum CredentialVerdict {
        /// The identities the flow may assert.
        case registered(Set<String>)
        /// Its token expired or was revoked: 401 `invalid_token`.
        case tokenEnded
        /// It never registered, de-registered, or its registration lapsed: 403.
        case notRegistered(String)
    }

    /// Issue 26 item 5: every request a flow originates is checked against what registered
    /// it — the token (expired, revoked) and the registration (de-registered, lapsed). When
    /// that has ended the flow's identities are dropped: it may assert nothing until it
    /// registers again.
    func credentialGate(_ flow: FlowState) -> CredentialVerdict {
        let now = Int64(processor.clock().timeIntervalSince1970)
        let (identities, token, until) = flow.state.withLock { ($0.registeredIMPUs, $0.token, $0.registeredUntil) }
        guard !identities.isEmpty else { return .notRegistered("Register First") }
        let ended: CredentialVerdict
        if let token, !processor.tokens.stillValid(token) {
            ended = .tokenEnded
        } else if let until, until <= now {
            ended = .notRegistered("Registration Lapsed")
        } else {
            return .registered(identities)
        }
        EdgeMetrics.endedCredentialRequests.increment()
        flow.state.withLock { state in
            state.registeredIMPUs = []
            state.registeredFrom = nil
            state.token = nil
        }
        return ended
    }

    /// Our URI for a flow, reachable from the S-CSCF side.
    func flowURI(_ flowToken: String) -> SIPAddress {
        let transport = configuration.scscf.transport
        let port = sip.address(transport)?.port ?? 0
        return SIPAddress(
            SIPURI(
                user: flowToken, host: configuration.sipHost, port: UInt16(clamping: port),
                parameters: [SIPParameter("lr"), SIPParameter("transport", transport.rawValue.lowercased())]))
    }

    /// A request from the S-CSCF side for a flow (by the flow token in the top Route):
    /// down the WebSocket, and the WIC's answer back; 430 when the flow is gone (RFC 5626).
    public func terminating(_ request: SIPRequest, from peer: SIPPeer) async -> SIPResponse? {
        guard configuration.terminatingPeers.admits(peer) else {
            // Counted, logged at debug only: anyone who reaches the port could flood the log.
            EdgeMetrics.foreignFlowRequests.increment()
            logger.debug("request for a flow from \(peer), not one of our S-CSCFs: refused")
            if request.method == .ack { return nil }
            return SIPResponse(
                replyingTo: request, statusCode: 403, reasonPhrase: "Not A Trusted Node", toTag: randomToken(length: 8))
        }
        var downstream = request
        guard let index = downstream.headers.firstIndex(named: .route),
            let route = try? SIPAddress.parse(downstream.headers[index].value), let token = route.uri.sipURI?.user
        else { return SIPResponse(replyingTo: request, statusCode: 404, toTag: randomToken(length: 8)) }
        downstream.headers.remove(at: index)
        guard let (channel, state) = flows.withLock({ $0[token] }), channel.isActive else {
            return SIPResponse(replyingTo: request, statusCode: 430, toTag: randomToken(length: 8))
        }
        if request.method == .ack { return nil }
        let branch = SIPVia.magicCookie + randomToken()
        downstream.headers.prepend(
            .via, SIPVia(transport: "WSS", host: configuration.sipHost, branch: branch).description)
        let bytes = downstream.serialized()
        configuration.trace?.record(
            .outgoing, .request(downstream), peer: channel.remoteAddress.map { "\($0)" } ?? "?",
            via: "WSS flow \(token)")
        let answer: SIPResponse = await withCheckedContinuation { continuation in
            state.state.withLock { $0.waiting[branch] = (continuation, request) }
            writeTextFrame(bytes, on: channel)
            // Timer F's worth of patience, then 408 (RFC 3261 §17.1.2.2).
            channel.eventLoop.scheduleTask(in: .seconds(32)) {
                let waiter = state.state.withLock { $0.waiting.removeValue(forKey: branch) }
                waiter?.continuation.resume(returning: SIPResponse(replyingTo: request, statusCode: 408))
            }
        }
        return answer
    }

    /// EPC-13/EPC-21: a 200 binds the IMPI to this TLS session and flow; remember what to
    /// de-register should the flow die.
    func registered(
        _ upstream: SIPRequest, impi: String?, token: TokenCredential?, answer: SIPResponse, on flow: FlowState,
        flowToken: String
    ) {
        // TS 24.229 5.2.6.3.4: the identities this flow may assert are the registered set.
        let associatedText = answer.headers.fieldValues(.pAssociatedURI).joined(separator: ", ")
        let known = flow.state.withLock { $0.registeredFrom == associatedText ? $0.registeredIMPUs : nil }
        var associated =
            known
            ?? Set(((try? answer.headers.pAssociatedURI) ?? []).compactMap { $0.uri.publicIdentity })
        // A token registration asserts only what its token names (issue 26 item 4), however
        // wide the subscription's set; then the text is not a shortcut for the next time.
        var associatedFrom: String? = associatedText
        if let token, !associated.allSatisfy(token.impus.contains) {
            associated = associated.filter(token.impus.contains)
            associatedFrom = nil
        }
        var ours: SIPContact?
        let headerExpires = (try? upstream.headers.expires) ?? nil
        var removing = headerExpires == 0
        if case .contacts(let contacts)? = try? upstream.headers.contact {
            ours = contacts.first
            if contacts.allSatisfy({ $0.expires == 0 }) { removing = true }
        }
        let instance = ours?.instance
        let cseq = (try? upstream.headers.cseq)?.sequence ?? 0
        // A refresh of what the flow keeps changes only its CSeq; anything else is kept anew.
        let (kept, grantedAsAsked) =
            removing ? (nil, 0) : flow.state.withLock { ($0.lastRegister, $0.grantedAsAsked) }
        // How long the registration lasts. The S-CSCF grants min(asked, its maximum): once
        // an expiry was granted as asked, any shorter one is too, and the answer need not be
        // read again (a refresh nearly always asks the same or less).
        var until: Int64?
        var askedAndGranted = grantedAsAsked
        if !removing, let ours {
            let requested = ours.expires ?? headerExpires
            let seconds: Int64?
            if let requested, requested <= grantedAsAsked {
                seconds = Int64(requested)
            } else {
                seconds = Self.grantedSeconds(ours, instance: instance, requested: requested, answer: answer)
                if let requested, seconds == Int64(requested) { askedAndGranted = max(grantedAsAsked, requested) }
            }
            until = seconds.map { Int64(processor.clock().timeIntervalSince1970) + $0 }
        }
        let refresh = kept.map { KeptRegistration.isRefresh(upstream, of: $0) } ?? false
        let replacement = removing || refresh ? nil : KeptRegistration(upstream)
        let current = removing ? nil : instance
        let previousInstance = flow.state.withLock { state -> String? in
            defer { state.instance = current }
            if let impi { state.boundIMPI = impi }
            if removing {
                state.lastRegister = nil
            } else if let replacement {
                state.lastRegister = replacement.request
                state.lastRegisterIMPI = replacement.impi
            }
            state.lastCSeq = cseq
            state.registeredIMPUs = removing ? [] : associated
            state.registeredFrom = removing ? nil : associatedFrom
            state.token = removing ? nil : token
            state.registeredUntil = until
            state.grantedAsAsked = askedAndGranted
            return state.instance
        }
        noteInstance(current, replacing: previousInstance, flowToken: flowToken)
    }

    /// Issue 26 item 13: the instance table holds at most one entry per flow — the instance
    /// of its current registration. Registering another instance, de-registering, or the
    /// flow's end takes the flow's old entry out (unless another flow has the instance now).
    func noteInstance(_ instance: String?, of flow: FlowState, flowToken: String) {
        let previous = flow.state.withLock { state -> String? in
            defer { state.instance = instance }
            return state.instance
        }
        noteInstance(instance, replacing: previous, flowToken: flowToken)
    }

    func noteInstance(_ instance: String?, replacing previous: String?, flowToken: String) {
        guard previous != nil || instance != nil else { return }
        latestFlowByInstance.withLock { table in
            if let previous, previous != instance, table[previous] == flowToken { table[previous] = nil }
            if let instance { table[instance] = flowToken }
        }
    }

    /// How many instances the eP-CSCF remembers a flow for (operators and tests).
    public var rememberedInstances: Int { latestFlowByInstance.withLock { $0.count } }

    /// How long the registration of `ours` lasts, as the 200 OK granted it: the `expires` of
    /// our contact there, else what was asked. The answer lists every binding of the
    /// identity, one Contact field each; only ours (found by its instance, or its URI) is
    /// parsed — the whole list cost a parse per binding on every registration.
    static func grantedSeconds(_ ours: SIPContact, instance: String?, requested: UInt32?, answer: SIPResponse)
        -> Int64?
    {
        let needle = instance ?? ours.address.uri.description
        for index in answer.headers.positions(of: .contact) {
            let value = answer.headers[index].value
            guard value.contains(needle), let address = try? SIPAddress.parse(value) else { continue }
            let contact = SIPContact(address)
            let sameBinding = instance != nil ? contact.instance == instance : address.uri == ours.address.uri
            if sameBinding, let expires = contact.expires { return Int64(expires) }
        }
        return requested.map(Int64.init)
    }

    /// EPC-33: the flow is gone; after the grace period, de-register what it registered,
    /// unless its instance has registered again on another flow meanwhile.
    func flowClosed(_ flow: FlowState, flowToken: String) async {
        try? await Task.sleep(for: configuration.flowCloseGrace)
        let kept = flow.state.withLock { state in
            state.lastRegister.map {
                (request: $0, impi: state.boundIMPI ?? state.lastRegisterIMPI, cseq: state.lastCSeq)
            }
        }
        guard let kept else {
            noteInstance(nil, of: flow, flowToken: flowToken)
            return
        }
        let last = kept.request
        if case .contacts(let contacts)? = try? last.headers.contact, let instance = contacts.first?.instance {
            let stillOurs = latestFlowByInstance.withLock { table -> Bool in
                guard table[instance] == flowToken else { return false }
                table.removeValue(forKey: instance)
                return true
            }
            guard stillOurs else { return }
        }
        noteInstance(nil, of: flow, flowToken: flowToken)
        guard let impi = kept.impi else { return }
        var request = last
        request.headers.append(
            .authorization,
            TrustedNodeAuthorization(
                impi: impi, realm: processor.configuration.homeDomain, uri: request.uri.description
            )
            .headerValue)
        request.headers[.expires] = "0"
        if let index = request.headers.firstIndex(named: .contact),
            var list = try? SIPAddress.parseList(request.headers[index].value)
        {
            for i in list.indices { list[i].parameters.remove("expires") }
            request.headers[index].value = list.map(\.description).joined(separator: ", ")
        }
        request.headers[.cseq] = SIPCSeq(kept.cseq &+ 1, .register).description
        let answer = await toSCSCF(request)
        logger.info("flow \(flowToken) closed: de-registered its contacts (\(answer.statusCode))")
    }
}

/// Answers handshakes that were not upgraded: 403 for a foreign or missing Origin, 400
/// without subprotocol `sip`, 426 for plain HTTP; then closes.
final class HandshakeRefusal: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    let server: WebSocketServer

    init(server: WebSocketServer) { self.server = server }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(let head) = unwrapInboundIn(data) else { return }
        let (status, reason) = server.handshakeVerdict(head) ?? (.badRequest, "Bad handshake")
        var headers = HTTPHeaders([("Content-Type", "text/plain"), ("Connection", "close")])
        headers.add(name: "Content-Length", value: String(reason.utf8.count + 1))
        context.write(
            wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(
            wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: reason + "\n")))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { [channel = context.channel] _ in
            channel.close(promise: nil)
        }
    }
}

/// One WIC flow: a SIP message per WebSocket message (RFC 7118 §5), text or binary.
final class SIPWebSocketHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame
    let server: WebSocketServer
    let origin: String?
    let flowToken: String
    let flow = FlowState()
    var assembling: [UInt8]?
    var lastFrame = NIODeadline.now()
    var keepAlive: RepeatedTask?
    /// Token bucket of SIP messages.
    var allowance: Double
    var allowanceAt = NIODeadline.now()

    init(server: WebSocketServer, origin: String?, flowToken: String) {
        self.server = server
        self.origin = origin
        self.flowToken = flowToken
        self.allowance = Double(server.configuration.messageBurst)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let entry = (channel: context.channel, state: flow)
        let open = server.flows.withLock { flows in
            flows[flowToken] = entry
            return flows.count
        }
        EdgeMetrics.flows.record(open)
        let interval = TimeAmount(server.configuration.pingInterval)
        let idle = TimeAmount(server.configuration.idleTimeout)
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        keepAlive = context.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
            let (handler, context) = loopBound.value
            if NIODeadline.now() - handler.lastFrame > idle {
                context.close(promise: nil)
            } else {
                context.writeAndFlush(
                    handler.wrapOutboundOut(WebSocketFrame(fin: true, opcode: .ping, data: ByteBuffer())),
                    promise: nil)
            }
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        keepAlive?.cancel()
        keepAlive = nil
    }

    /// Takes one message from the bucket; false when the flow is over its rate.
    func admitMessage() -> Bool {
        let now = NIODeadline.now()
        let elapsed = Double((now - allowanceAt).nanoseconds) / 1e9
        allowanceAt = now
        allowance = min(
            Double(server.configuration.messageBurst),
            allowance + elapsed * Double(server.configuration.messagesPerSecond))
        guard allowance >= 1 else { return false }
        allowance -= 1
        return true
    }

    func channelInactive(context: ChannelHandlerContext) {
        let server = self.server
        let flow = self.flow
        let flowToken = self.flowToken
        let open = server.flows.withLock { flows in
            flows.removeValue(forKey: flowToken)
            return flows.count
        }
        EdgeMetrics.flows.record(open)
        // Nobody will answer what is still waiting: 430 (RFC 5626 §5.3).
        for waiter in flow.state.withLock({ state in
            defer { state.waiting.removeAll() }
            return Array(state.waiting.values)
        }) {
            waiter.continuation.resume(returning: SIPResponse(replyingTo: waiter.request, statusCode: 430))
        }
        Task { await server.flowClosed(flow, flowToken: flowToken) }
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        lastFrame = .now()
        switch frame.opcode {
        case .ping:
            context.writeAndFlush(
                wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
            return
        case .connectionClose:
            context.writeAndFlush(
                wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: ByteBuffer()))
            )
            .whenComplete { [channel = context.channel] _ in channel.close(promise: nil) }
            return
        case .text, .binary:
            var message: [UInt8] = []
            message.reserveCapacity(frame.length)
            frame.appendUnmaskedPayload(to: &message)
            assembling = message
        case .continuation:
            guard var message = assembling else { return }
            assembling = nil  // the only reference, so the append does not copy the array
            frame.appendUnmaskedPayload(to: &message)
            assembling = message
        default:
            return
        }
        guard frame.fin, let message = assembling else {
            if (assembling?.count ?? 0) > server.configuration.maxMessageSize {
                // Too large: close with 1009 (RFC 6455 §7.4.1).
                var code = context.channel.allocator.buffer(capacity: 2)
                code.write(webSocketErrorCode: .messageTooLarge)
                context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: code)))
                    .whenComplete { [channel = context.channel] _ in channel.close(promise: nil) }
            }
            return
        }
        assembling = nil
        guard admitMessage() else {
            // Over its message rate: 1008 policy violation (RFC 6455 §7.4.1).
            var code = context.channel.allocator.buffer(capacity: 2)
            code.write(webSocketErrorCode: .policyViolation)
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: code)))
                .whenComplete { [channel = context.channel] _ in channel.close(promise: nil) }
            return
        }
        let channel = context.channel
        let server = self.server
        let flowToken = self.flowToken
        let origin = self.origin
        let flow = self.flow
        let trace = server.configuration.trace
        // Only a trace needs the peer as text; formatting an address per message is not free.
        let peer = trace == nil ? "" : channel.remoteAddress.map { "\($0)" } ?? "?"
        trace?.record(.incoming, bytes: message, peer: peer, via: "WSS flow \(flowToken)")
        Task(executorPreference: EventLoopExecutor.of(context.eventLoop)) {
            let response = await server.handle(
                message, flowToken: flowToken, origin: origin, flow: flow, remote: channel.remoteAddress)
            guard let response, channel.isActive else { return }
            trace?.record(.outgoing, .response(response), peer: peer, via: "WSS flow \(flowToken)")
            let bytes = response.serialized()
            writeTextFrame(bytes, on: channel)
        }
    }

}

/// The REGISTER a flow keeps for its flow-close de-registration (EPC-33): without Via and
/// Authorization, copied out of the received message. The flow holds no bearer token or
/// Digest answer for its lifetime, and an idle connection holds ~550 bytes less than with
/// the received message, its token and the fields the eP-CSCF added (BENCHMARKS.md).
struct KeptRegistration {
    var request: SIPRequest
    var impi: String?
    /// Whether the copy left the received message behind (it always should).
    var copied = false

    init(_ upstream: SIPRequest) {
        impi = (try? upstream.headers.authorizations())?.first?.username
        var request = upstream
        request.headers.removeAll(.authorization)
        // Removed fields still sit in the message's buffer; a fresh parse leaves them behind.
        // Via goes after it: a request without one does not parse.
        if case .request(let compact)? = try? SIPParser().parse(request.serialized()) {
            request = compact
            copied = true
        }
        request.headers.removeAll(.via)
        self.request = request
    }

    /// Whether `upstream` registers what `kept` holds again: same Call-ID, To, Contact and
    /// Path. Then the flow needs only its new CSeq.
    static func isRefresh(_ upstream: SIPRequest, of kept: SIPRequest) -> Bool {
        refreshFields.allSatisfy { kept.headers.sameValues($0, as: upstream.headers) }
    }

    static let refreshFields: [SIPHeaderName] = [.callID, .to, .contact, .path]
}

/// What a flow knows across its messages; shared with the tasks that handle them.
final class FlowState: Sendable {
    struct State {
        /// The IMPI a 200 OK bound to this TLS session (EPC-13, EPC-21).
        var boundIMPI: String?
        /// The last REGISTER forwarded and accepted, as `KeptRegistration` keeps it: what to
        /// undo if the flow dies.
        var lastRegister: SIPRequest?
        /// The IMPI its Authorization named (the Authorization itself is not kept).
        var lastRegisterIMPI: String?
        /// The CSeq of the last accepted REGISTER; a refresh updates only this.
        var lastCSeq: UInt32 = 0
        /// The public identities registered over this flow (P-Associated-URI of the 200).
        var registeredIMPUs: Set<String> = []
        /// The P-Associated-URI text they were read from: a refresh nearly always brings the
        /// same text, and then it need not be parsed again.
        var registeredFrom: String?
        /// The token the last registration rested on (nil for Digest and AKA).
        var token: TokenCredential?
        /// When the last registration ends (unix seconds).
        var registeredUntil: Int64?
        /// The +sip.instance of its current registration (its entry in the instance table).
        var instance: String?
        /// The longest expiry the S-CSCF granted as asked on this flow (seconds).
        var grantedAsAsked: UInt32 = 0
        /// Requests sent down the flow, waiting for the WIC's answer, by Via branch.
        var waiting: [String: (continuation: CheckedContinuation<SIPResponse, Never>, request: SIPRequest)] = [:]
    }
    let state = Mutex(State())
}
