import Foundation
import Logging
import MediaGateway
import Metrics
import SIPAuth
import SIPCore
import SIPProxy
import SIPTransport
import Synchronization
import Utilities

/// The eP-CSCF's choices for its flows and the S-CSCF side (the transport — WSS, flows,
/// keep-alive — is SIPTransport's).
public struct EdgeConfiguration: Sendable {
    /// Where REGISTERs and other originating requests go.
    public var scscf: SIPDestination
    /// After a flow closes, how long its contacts stay registered before the eP-CSCF
    /// de-registers them (EPC-33) — unless the same instance registered on a new flow.
    public var flowCloseGrace: Duration = .seconds(30)
    /// Our host in Record-Route and Path towards the S-CSCF side.
    public var sipHost = "127.0.0.1"
    /// The S-CSCF in this same process, if any: requests go to it by a function call
    /// instead of over TCP (no serializing, parsing or transaction twice). Requests from the
    /// S-CSCF to the flows arrive by a call too (`SIPEndpoint.linkInProcess`).
    public var localSCSCF: SIPRequestHandler?
    /// Who may send requests down a flow (routed by our Path or Record-Route): only this
    /// eP-CSCF's S-CSCFs (docs/security.md, issue 26 item 8).
    public var terminatingPeers: TerminatingPeers = .inProcessOnly
    /// Remote WAFs whose keys are fetched again when a token names an unknown kid.
    public var keyFetchers: [String: WAFKeyFetcher] = [:]
    /// The eIMS-AGW whose media sessions bridge the WICs' WebRTC media and IMS's RTP; nil
    /// passes SDP through untouched (`--media-gateway none`: WIC to WIC only).
    public var mediaGateway: (any MediaGateway)?

    public init(scscf: SIPDestination) { self.scscf = scscf }
}

/// Whose pages may open a flow (EPC-4, WWSF-6): the WebSocket handshake's Origin.
public struct OriginPolicy: Sendable {
    public var allowed: Set<String>
    /// Lets non-browser clients without an Origin header in (an explicit operator choice).
    public var allowMissing = false

    public init(allowed: Set<String>, allowMissing: Bool = false) {
        self.allowed = allowed
        self.allowMissing = allowMissing
    }

    /// nil to admit; else why the handshake is refused (403).
    public func verdict(_ origin: String?) -> String? {
        guard let origin else { return allowMissing ? nil : "Origin required" }
        return allowed.contains(origin) ? nil : "Origin not allowed"
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
            return peer.remoteIP.map(addresses.contains) ?? false
        }
    }
}

/// The eP-CSCF (TS 24.229 5.2, TS 24.371): what a WIC's request on its flow may do, what
/// goes to the S-CSCF, and which flow a request from the S-CSCF side goes down. It decides;
/// the SIP endpoint (WSS listener, flows, transactions) carries.
public final class EdgeProxy: Sendable {
    public let configuration: EdgeConfiguration
    let processor: RegisterProcessor
    let sip: SIPEndpoint
    let logger: Logger
    /// +sip.instance → the flow that registered it last.
    let latestFlowByInstance = Mutex<[String: String]>([:])
    /// Service-Routes as flows keep them: every flow registered at one S-CSCF has the same
    /// one, held once (`SharedTexts`).
    let sharedServiceRoutes = Mutex(SharedTexts())
    /// What each open flow has registered, by flow token.
    let flowStates = Mutex<[String: FlowState]>([:])
    /// RFC 3261 §16 for what the flows send on: its own Record-Route names the flow.
    let proxy: SIPProxyCore
    /// The media session of each dialog side in the gateway.
    let mediaLegs = MediaLegs()

    public init(configuration: EdgeConfiguration, processor: RegisterProcessor, sip: SIPEndpoint, logger: Logger) {
        self.configuration = configuration
        self.processor = processor
        self.sip = sip
        self.logger = logger
        var proxying = SIPProxyConfiguration()
        proxying.recordRoute = false
        proxy = SIPProxyCore(endpoint: sip, configuration: proxying)
        sip.whenFlowCloses { [weak self] flow in self?.flowEnded(flow) }
    }

    /// Every request the eP-CSCF's endpoint answers once (REGISTER, SUBSCRIBE): from a WIC's
    /// flow, or from the S-CSCF side.
    public func handle(_ request: SIPRequest, from peer: SIPPeer) async -> SIPResponse? {
        guard let flow = peer.flow else { return await terminating(request, from: peer) }
        let state = flowState(flow.token)
        if request.method == .ack { return nil }
        guard request.method == .register else {
            return await forwardOriginating(request, flowToken: flow.token, flow: state)
        }
        return await register(request, flow: flow, state: state)
    }

    /// A REGISTER from a flow (EPC-13 … EPC-21): checked, sent on, its answer noted.
    func register(_ request: SIPRequest, flow: SIPFlow, state: FlowState) async -> SIPResponse {
        if !configuration.keyFetchers.isEmpty, let token = bearerToken(in: request),
            let issuer = processor.tokens.issuerMissingKey(for: token), let fetcher = configuration.keyFetchers[issuer]
        {
            await fetcher.refreshForUnknownKey()
        }
        let boundIMPI = state.state.withLock { $0.boundIMPI }
        switch processor.process(request, flowToken: flow.token, origin: flow.origin, boundIMPI: boundIMPI) {
        case .reject(let response):
            return response
        case .forward(let upstream, let impi, let token, let contacts):
            let start = ContinuousClock.now
            let credentialLess = !upstream.headers.contains(.authorization)
            let answer = processor.processResponse(
                await toSCSCF(upstream), offeringBearerFor: credentialLess ? upstream : nil)
            let elapsed = (ContinuousClock.now - start).components
            EdgeMetrics.registerDuration.recordNanoseconds(
                elapsed.attoseconds / 1_000_000_000 + elapsed.seconds * 1_000_000_000)
            EdgeMetrics.registerAnswered(status: answer.statusCode)
            if answer.statusCode == 200 {
                registered(
                    upstream, contacts: contacts, impi: impi, token: token, answer: answer, on: state,
                    flowToken: flow.token)
            }
            return answer
        }
    }

    /// The flow's connection ended: its state goes, and its registration after the grace.
    func flowEnded(_ flow: SIPFlow) {
        flowMediaEnded(flow.token)
        guard let state = flowStates.withLock({ $0.removeValue(forKey: flow.token) }) else { return }
        Task { await flowClosed(state, flowToken: flow.token) }
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

    /// A reg-event SUBSCRIBE from a flow: the checks and changes of a call's request
    /// (`EdgeSessions.swift`), and only for the flow's own registration; answered once.
    func forwardOriginating(_ request: SIPRequest, flowToken: String, flow: FlowState) async -> SIPResponse {
        var upstream = request
        let route: [SIPAddress]
        switch prepareOriginating(&upstream, flow: flow, flowToken: flowToken) {
        case .refused(let refusal): return refusal
        case .route(let routeSet): route = routeSet
        }
        // One WIC cannot watch another's registration.
        if let target = request.uri.publicIdentity, !flow.state.withLock({ $0.registeredIMPUs.contains(target) }) {
            return refusal(request, 403, "Not Your Registration")
        }
        return await proxy.forward(
            upstream, to: [ProxyTarget(uri: upstream.uri, route: route, destination: configuration.scscf)],
            inbound: .wss)
    }

    /// The S-CSCF as a loose route (`;lr`).
    var scscfRoute: SIPAddress {
        let next = configuration.scscf
        return SIPAddress(
            SIPURI(
                isSecure: false, host: next.host, port: UInt16(clamping: next.port),
                parameters: [SIPParameter("transport", next.transport.rawValue.lowercased()), SIPParameter("lr")]))
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

    /// A request from the S-CSCF side for a flow, answered once (one that is not a call's):
    /// down the WebSocket, and the WIC's answer back.
    public func terminating(_ request: SIPRequest, from peer: SIPPeer) async -> SIPResponse? {
        switch towardsFlow(request, from: peer) {
        case .refused(let refusal): return refusal
        case .down(let downstream, let token):
            if request.method == .ack { return nil }
            return await sip.send(downstream, overFlow: token)
        }
    }
}
