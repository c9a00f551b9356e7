import NIOCore
import SIPCore
import Synchronization
import Utilities

// What an endpoint sends: requests in client transactions (RFC 3261 §17.1), a proxy's
// stateless ACK, and what a proxy needs to know of its own addresses.
extension SIPEndpoint {
    /// Sends a request as a client transaction and returns its final response, with our Via
    /// removed. A timeout gives a local 408 and a transport failure a local 503 (RFC 3261
    /// §8.1.3.1), so the caller always gets an answer.
    public func send(_ request: SIPRequest, to destination: SIPDestination) async -> SIPResponse {
        let prepared: PreparedRequest
        switch await prepare(request, to: destination) {
        case .failure(let failure): return failure
        case .ready(let ready): prepared = ready
        }
        return await send(prepared)
    }

    /// The final answer of a prepared request's client transaction.
    func send(_ prepared: PreparedRequest) async -> SIPResponse {
        let core = self.core
        return await withCheckedContinuation { continuation in
            // Resumed once: by the final answer; later 2xx to an INVITE are not this caller's.
            let answered = Mutex(false)
            core.startClient(prepared.request, key: prepared.key, over: prepared.connection, to: prepared.remote) {
                response in
                guard !response.isProvisional, !answered.withLock({ ($0, $0 = true).0 }) else { return }
                continuation.resume(returning: response)
            }
        }
    }

    /// Starts a client transaction (INVITE or not): every response, provisional ones
    /// included, goes to `onResponse` with our Via removed; the last is final (a local 408
    /// or 503 when nothing came back). Later 2xx to an INVITE come too (RFC 6026 §8.4).
    @discardableResult
    public func start(
        _ request: SIPRequest, to destination: SIPDestination, branchToken: String? = nil,
        onResponse: @escaping @Sendable (SIPResponse) -> Void
    ) async -> SIPClientTransaction {
        switch await prepare(request, to: destination, branchToken: branchToken) {
        case .failure(let failure):
            onResponse(failure)
            return SIPClientTransaction(core: nil, key: nil)
        case .ready(let p):
            core.startClient(p.request, key: p.key, over: p.connection, to: p.remote, onResponse: onResponse)
            return SIPClientTransaction(core: core, key: p.key)
        }
    }

    struct PreparedRequest {
        let request: SIPRequest
        let key: ClientKey
        let connection: any SIPConnection
        let remote: SocketAddress?
    }

    enum Preparation {
        case ready(PreparedRequest)
        /// The local 503 when the destination cannot be reached.
        case failure(SIPResponse)
    }

    /// Our Via and Max-Forwards on the request, and the connection it goes out on.
    /// `branchToken` starts the branch (a proxy's loop-detection hash, RFC 3261 §16.6 step 8).
    private func prepare(_ request: SIPRequest, to destination: SIPDestination, branchToken: String? = nil) async
        -> Preparation
    {
        var request = request
        let branch = SIPVia.magicCookie + (branchToken.map { $0 + "." } ?? "") + randomToken()
        request.headers.prepend(.via, ourVia(for: destination.transport, branch: branch).description)
        if !request.headers.contains(.maxForwards) { request.headers.append(.maxForwards, "70") }
        do {
            let (connection, remote) = try await self.connection(to: destination)
            return .ready(
                PreparedRequest(
                    request: request, key: ClientKey(branch: branch, method: request.method.rawValue),
                    connection: connection, remote: remote))
        } catch {
            core.logger.debug("cannot reach \(destination): \(error)")
            markUnreachable(destination)
            // A flow that has gone: 430 Flow Failed (RFC 5626 §5.3); else 503 (§8.1.3.1).
            var failure = SIPResponse(replyingTo: request, statusCode: destination.flow == nil ? 503 : 430)
            try? failure.headers.removeTopVia()
            return .failure(failure)
        }
    }

    /// Sends a request with no transaction (a proxy's ACK for a 2xx, RFC 3261 §16.11 and
    /// §17.1.1.3): our Via on top, written once.
    public func sendStatelessly(_ request: SIPRequest, to destination: SIPDestination) async {
        var request = request
        request.headers.prepend(
            .via, ourVia(for: destination.transport, branch: SIPVia.magicCookie + randomToken()).description)
        guard let (connection, remote) = try? await connection(to: destination) else { return }
        core.trace?.record(
            .outgoing, .request(request), peer: remote.map { "\($0)" } ?? "connection",
            via: destination.transport.rawValue)
        connection.write(.request(request), to: remote)
    }

    /// The clock the transaction timers run on; a proxy's Timer C runs on it too.
    public var clock: any SIPClock { core.clock }

    /// Whether `host:port` names one of this endpoint's listeners (a Route or Request-URI
    /// that points at us). No port means 5060 (5061 over TLS).
    public func isLocal(host: String, port: UInt16?, secure: Bool = false) -> Bool {
        var host = host.lowercased()
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        let names = [configuration.host, configuration.advertisedHost].compactMap { $0?.lowercased() }
        guard names.contains(host) else { return false }
        let port = Int(port ?? (secure ? 5061 : 5060))
        return bound.withLock { $0.values.contains { $0.port == port } }
    }

    /// The URI this endpoint puts in a Record-Route for a transport (`;lr`, RFC 3261 §16.6
    /// step 4), when it listens on it.
    public func recordRouteURI(for transport: SIPTransportProtocol) -> SIPURI? {
        guard let port = address(transport)?.port else { return nil }
        return SIPURI(
            isSecure: transport == .tls, host: configuration.advertisedHost ?? configuration.host,
            port: UInt16(clamping: port),
            parameters: [SIPParameter("transport", transport.rawValue.lowercased()), SIPParameter("lr")])
    }

    func ourVia(for transport: SIPTransportProtocol, branch: String) -> SIPVia {
        let via = core.state.withLock { $0.viaAddresses[transport] ?? $0.viaAddresses[.udp] }
        var ourVia = SIPVia(
            transport: transport.rawValue, host: via?.host ?? configuration.host, port: via.map { UInt16($0.port) },
            branch: branch)
        ourVia.rport = .requested
        return ourVia
    }
}
