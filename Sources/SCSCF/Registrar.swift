import Foundation
import HSS
import Logging
import SIPAuth
import SIPCore
import SIPProxy
import SIPTransport
import Storage
import Synchronization
import Utilities

/// The S-CSCF registrar (TS 24.229 §5.4.1; spec.md §7): picks the authentication scheme,
/// challenges with Digest or IMS AKA from HSS data, honours `auth-done` only from trusted
/// nodes, and keeps bindings that are stored before the 200 OK is sent.
public final class Registrar: Sendable {
    public let configuration: SCSCFConfiguration
    let hss: HSS
    let bindings: any BindingStore
    let nonces: NonceMinter
    let nonceCounts: NonceCountTracker
    /// IMS AKA challenges waiting for their answer, by IMPI, each for its Call-ID (issue 26
    /// item 6): at most `akaChallengesPerIMPI` per IMPI, so a stranger's credential-less
    /// REGISTERs can neither overwrite the user's challenge nor grow the table.
    let akaChallenges: Mutex<AgedTable<String, [PendingAKA]>>
    static let akaChallengesPerIMPI = 8
    /// Wrong Digest answers by IMPI (issue 26 item 7): after a few, Digest for that IMPI
    /// waits, twice as long after each further one. Token registrations (TNA) never do.
    let digestFailures = Mutex(AgedTable<String, DigestFailures>(capacity: 100_000, lifetime: 900))
    let registrationTurns = RegistrationTurns()
    let logger: Logger
    let clock: @Sendable () -> Date
    let regEvent: RegEventService
    /// The proxy core its terminating requests go through (set by `attach`).
    let proxy = Mutex<SIPProxyCore?>(nil)
    var proxyCore: SIPProxyCore? { proxy.withLock { $0 } }
    let untrustedLog = LogThrottle(interval: 10)
    /// `Digest realm="<home domain>", nonce="`: the start of every Digest challenge.
    let challengeRealmPrefix: String

    struct DigestFailures: Sendable {
        var count = 0
        /// Seconds since 1970 before which Digest answers for the IMPI are not checked.
        var blockedUntil: Double = 0
    }

    /// Failures allowed before the waiting starts, and the longest wait (seconds).
    static let digestFailuresAllowed = 5
    static let longestDigestWait = 300.0

    /// Seconds left before a Digest answer for `impi` is checked again, if any.
    func digestWait(impi: String, now: Date) -> Int? {
        let seconds = now.timeIntervalSince1970
        guard let entry = digestFailures.withLock({ $0.value(for: impi, now: seconds) }),
            entry.blockedUntil > seconds
        else { return nil }
        return Int((entry.blockedUntil - seconds).rounded(.up))
    }

    func recordDigestFailure(impi: String, now: Date) {
        let seconds = now.timeIntervalSince1970
        digestFailures.withLock { table in
            var entry = table.value(for: impi, now: seconds) ?? DigestFailures()
            entry.count += 1
            let over = entry.count - Self.digestFailuresAllowed
            if over >= 0 {
                entry.blockedUntil = seconds + min(Self.longestDigestWait, Double(1 << min(over, 16)))
            }
            table.set(impi, entry, now: seconds)
        }
        RegistrarMetrics.digestFailures.increment()
    }

    struct PendingAKA: Sendable {
        var vector: AuthVector
        var nonce: String
        var callID: String
        var issued: Date
    }

    public init(
        configuration: SCSCFConfiguration, hss: HSS, bindings: any BindingStore,
        logger: Logger = Logger(label: "webims.scscf"), clock: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.configuration = configuration
        self.hss = hss
        self.bindings = bindings
        self.nonces = NonceMinter(key: configuration.nonceKey, lifetime: configuration.nonceLifetime)
        self.nonceCounts = NonceCountTracker(lifetime: configuration.nonceLifetime)
        self.akaChallenges = Mutex(
            AgedTable(capacity: 200_000, lifetime: Double(configuration.akaChallengeLifetime.components.seconds)))
        self.logger = logger
        self.clock = clock
        self.challengeRealmPrefix = "Digest realm=" + quote(configuration.homeDomain) + ", nonce=\""
        self.regEvent = RegEventService(contactURI: "sip:scscf@\(configuration.hostPort)", logger: logger)
    }

    /// How many reg-event subscriptions this S-CSCF holds (for operators and tests).
    public var regEventSubscriptionCount: Int { regEvent.subscriptions.withLock { $0.count } }

    /// The endpoint NOTIFYs go out on (the reg event package needs to send requests).
    public func attach(_ endpoint: SIPEndpoint) {
        regEvent.endpoint.withLock { $0 = endpoint }
        // Record-Route (the proxy core's default): a dialog's later requests come back
        // through the S-CSCF, the one hop that can reach both a phone and a WIC's eP-CSCF.
        proxy.withLock { $0 = SIPProxyCore(endpoint: endpoint) }
    }

    /// The request handler for a SIPEndpoint.
    public var handler: SIPRequestHandler {
        { request, peer in await self.handle(request, from: peer) }
    }

    public func handle(_ request: SIPRequest, from peer: SIPPeer) async -> SIPResponse? {
        guard request.method == .register else { return await handleOther(request, from: peer) }
        let start = ContinuousClock.now
        let (response, claimed) = await register(request, from: peer)
        RegistrarMetrics.record(claimed, response, since: start)
        return response
    }

    /// Everything but REGISTER, out of line: inlined, these paths' locals would sit in the
    /// async frame of every REGISTER too. On an endpoint with a session handler only
    /// SUBSCRIBE comes here; the rest is for an endpoint that answers everything once.
    @inline(never)
    func handleOther(_ request: SIPRequest, from peer: SIPPeer) async -> SIPResponse? {
        switch request.method {
        case .subscribe:
            return await subscribe(request, from: peer)
        case .ack:
            return nil
        default:
            var response = reply(request, 405)
            response.headers.append(.allow, "REGISTER, SUBSCRIBE")
            return response
        }
    }

    // MARK: REGISTER

    /// What a REGISTER needs once its headers are read.
    enum RegisterStart {
        case answer(SIPResponse)
        case trustedNode(TrustedNodeAuthorization, impu: String, callID: String, cseq: UInt32)
        case authenticate(impu: String, authorization: SIPAuthField?, callID: String, cseq: SIPCSeq)
    }

    /// The answer, and the scheme the request claimed (the metrics label).
    func register(_ request: SIPRequest, from peer: SIPPeer) async -> (SIPResponse, RegistrarMetrics.Scheme) {
        let (step, claimed) = start(request, from: peer)
        switch step {
        case .answer(let response):
            return (response, claimed)
        case .trustedNode(let tna, let impu, let callID, let cseq):
            let response = await completeRegistration(
                request, impi: tna.impi, impu: impu, scheme: .trustedNode, tna: tna, callID: callID, cseq: cseq)
            return (response, claimed)
        case .authenticate(let impu, let authorization, let callID, let cseq):
            let response = await authenticate(
                request, impu: impu, authorization: authorization, callID: callID, cseq: cseq)
            return (response, claimed)
        }
    }

    /// Everything before the first suspension, kept out of line: a synchronous function's
    /// locals live on the thread's stack, where inlined into `register` they made its async
    /// frame 4 KiB, a heap slab per REGISTER.
    @inline(never)
    func start(_ request: SIPRequest, from peer: SIPPeer) -> (RegisterStart, RegistrarMetrics.Scheme) {
        let to: SIPAddress
        let callID: String
        let cseq: SIPCSeq
        let authorization: SIPAuthField?
        do {
            to = try request.headers.to
            callID = try request.headers.callID
            cseq = try request.headers.cseq
            authorization = try request.headers.authorizations().first { $0.isDigest }
        } catch {
            return (.answer(reply(request, 400, error.reasonPhrase)), RegistrarMetrics.scheme(of: request))
        }
        let claimed = RegistrarMetrics.scheme(claimedBy: authorization, in: request)
        // RFC 3261 §8.2.2.3: option tags we do not support in Require.
        let unsupported = request.headers.require.filter { !["path", "outbound", "gruu"].contains($0.lowercased()) }
        if !unsupported.isEmpty {
            var response = reply(request, 420)
            response.headers.append(.unsupported, unsupported.joined(separator: ", "))
            return (.answer(response), claimed)
        }
        guard let impu = to.uri.publicIdentity else {
            return (.answer(reply(request, 403, "Unsupported Identity")), claimed)
        }

        // SCS-1: `auth-done` counts only from a trusted node; from anyone else it is ignored.
        if let authorization, let tna = TrustedNodeAuthorization(authorization) {
            if isTrusted(peer), fromTrustedNetwork(request, peer) {
                return (.trustedNode(tna, impu: impu, callID: callID, cseq: cseq.sequence), claimed)
            }
            RegistrarMetrics.untrustedAuthDone.increment()
            // Anyone can send these: at most one line every 10 s, with how many it stands for.
            if let count = untrustedLog.due(now: clock().timeIntervalSince1970) {
                logger.notice(
                    "auth-done from untrusted \(peer.remoteAddress) or network: ignored (\(count) since the last line)")
            }
        }
        return (.authenticate(impu: impu, authorization: authorization, callID: callID, cseq: cseq), claimed)
    }

    /// The HSS's registration data: from its cache without an async call when it is there
    /// (inlined, so the hit costs the task no frame of its own), else read.
    @inline(__always)
    func registrationData(impi: String, impu: String) async throws -> RegistrationData {
        if let cached = try hss.cachedRegistrationData(impi: impi, impu: impu) { return cached }
        return try await hss.registrationData(impi: impi, impu: impu)
    }

    /// SIP Digest or IMS AKA, as the subscriber's schemes and the request's algorithm say.
    @inline(never)
    func authenticate(
        _ request: SIPRequest, impu: String, authorization: SIPAuthField?, callID: String, cseq: SIPCSeq
    ) async -> SIPResponse {
        // IMPI from the Authorization username; without one, the subscription that owns the
        // IMPU (24.229 5.4.1.1 item 3 derives the IMPI from the public identity).
        let subscriber: SubscriberRecord
        do {
            if let username = authorization?.username, !username.isEmpty {
                subscriber = try await registrationData(impi: username, impu: impu).subscriber
            } else if let owner = try await hss.subscriber(impu: impu) {
                subscriber = owner
            } else {
                subscriber = try await hss.registrationData(impi: derivedIMPI(from: impu), impu: impu).subscriber
            }
        } catch {
            return reply(request, 403, "Forbidden")
        }
        let impi = subscriber.impi
        let wantsAKA =
            subscriber.allowedSchemes.contains(.aka)
            && (!subscriber.allowedSchemes.contains(.digest)
                || (authorization?.algorithm?.uppercased().hasPrefix("AKA") ?? false))
        if wantsAKA {
            return await akaRegister(
                request, impi: impi, impu: impu, authorization: authorization, callID: callID, cseq: cseq)
        }
        guard subscriber.allowedSchemes.contains(.digest) else { return reply(request, 403, "Scheme Not Allowed") }
        return await digestRegister(
            request, subscriber: subscriber, impu: impu, authorization: authorization, callID: callID, cseq: cseq)
    }

    // MARK: reg event (SCS-31)

    /// SUBSCRIBE to `reg` for a public identity. Only from a trusted node (the eP-CSCF that
    /// relays the UE's own subscription, or subscribes itself): this S-CSCF authenticates
    /// nothing but REGISTER.
    func subscribe(_ request: SIPRequest, from peer: SIPPeer) async -> SIPResponse {
        guard
            request.headers[.event].map({ equalsIgnoringASCIICase($0.split(separator: ";").first ?? "", "reg") })
                ?? false
        else {
            var response = reply(request, 489)
            response.headers.append(.allowEvents, "reg")
            return response
        }
        guard isTrusted(peer) else { return reply(request, 403, "Not A Trusted Node") }
        guard let target = request.uri.publicIdentity else { return reply(request, 404) }
        let requested: UInt32
        do { requested = try request.headers.expires ?? 600_000 } catch {
            return reply(request, 400, error.reasonPhrase)
        }
        let registration: RegistrationData
        do {
            guard let owner = try await hss.subscriber(impu: target) else { return reply(request, 404) }
            registration = try await hss.registrationData(impi: owner.impi, impu: target)
        } catch {
            return reply(request, 404)
        }
        let now = clock()
        let (response, key) = regEvent.subscribe(
            request, registration: registration, expires: min(requested, configuration.maxExpires),
            toTag: toTag(for: request), now: now)
        if let key {
            let nowSeconds = Int64(now.timeIntervalSince1970)
            var state: [String: [Binding]] = [:]
            for aor in registration.implicitSet {
                state[aor] = (try? await bindings.bindings(aor: aor, now: nowSeconds)) ?? []
            }
            let service = regEvent
            // RFC 6665 §4.2.1.4: the first NOTIFY follows the 200 at once.
            Task { await service.notify(key, bindings: state, now: now) }
        }
        return response
    }

    /// SCS-1: a trusted node is the eP-CSCF in this process (it calls in, no network in
    /// between), or a node over TLS whose verified certificate carries a configured name —
    /// never an address alone (docs/security.md). Plain UDP/TCP counts only in lab mode.
    func isTrusted(_ peer: SIPPeer) -> Bool {
        if peer.connection.isInProcess { return true }
        let address = peer.remoteAddress.ipAddress
        guard peer.transport == .tls else {
            guard configuration.labTrustsPlainTransport, let address else { return false }
            return configuration.trustedNodes.contains(address)
        }
        let names = configuration.trustedNodeNames
        guard !names.isEmpty, peer.certificateNames.contains(where: { names.contains($0.lowercased()) }) else {
            return false
        }
        if configuration.trustedNodes.isEmpty { return true }
        return address.map(configuration.trustedNodes.contains) ?? false
    }

    /// SCS-1: with a trusted-network list, a TNA REGISTER names one of them in
    /// P-Visited-Network-ID (TS 24.229 5.4.1.2.1A's visited-network check, done here for want
    /// of an I-CSCF). The co-located eP-CSCF is this network.
    func fromTrustedNetwork(_ request: SIPRequest, _ peer: SIPPeer) -> Bool {
        let allowed = configuration.trustedNetworkIDs
        if allowed.isEmpty || peer.connection.isInProcess { return true }
        return request.headers.pVisitedNetworkIDs.contains(where: allowed.contains)
    }

    func derivedIMPI(from impu: String) -> String {
        // 24.229 §5.4.1.1 item 3: without credentials the IMPI comes from the public identity.
        if impu.hasPrefix("sip:") { return String(impu.dropFirst(4)) }
        if impu.hasPrefix("sips:") { return String(impu.dropFirst(5)) }
        return impu
    }

    func reply(_ request: SIPRequest, _ code: Int, _ reason: String? = nil) -> SIPResponse {
        SIPResponse(replyingTo: request, statusCode: code, reasonPhrase: reason, toTag: toTag(for: request))
    }

    /// A stable To tag per dialog-less request, so retransmitted answers match.
    func toTag(for request: SIPRequest) -> String {
        let callID = (try? request.headers.callID) ?? ""
        var hasher = Hasher()
        hasher.combine(callID)
        return "sc" + String(UInt64(bitPattern: Int64(hasher.finalize())) & 0xFF_FFFF_FFFF, radix: 36)
    }
}

/// At most one log line per `interval` seconds for an event anyone can cause, saying how
/// many events it stands for.
final class LogThrottle: Sendable {
    let interval: Double
    let state = Mutex<(last: Double, count: Int)>((-Double.infinity, 0))

    init(interval: Double) { self.interval = interval }

    /// The number of events since the last line when a line is due now; else nil.
    func due(now: Double) -> Int? {
        state.withLock { state in
            state.count += 1
            guard now - state.last >= interval else { return nil }
            defer { state = (now, 0) }
            return state.count
        }
    }
}
