import EPCSCF
import Logging
import SCSCF
import SIPTransport
import ServiceLifecycle
import Storage
import WebAuth

// The services `serve` runs in one ServiceGroup. The group starts them together and, on
// SIGTERM or SIGINT, shuts them down one at a time in reverse order: the announcement, the
// web listeners, housekeeping, the eP-CSCF (its flows told to go), the S-CSCF last, so that
// the de-registrations of closing flows still reach it.

/// A SIP function's endpoint, started before the group runs: on graceful shutdown its
/// WICs are told it is going away (close 1001) and its listeners close.
struct SIPFunctionService: Service, CustomStringConvertible {
    let description: String
    let endpoint: SIPEndpoint
    /// How long the WICs' flows get to close by themselves; nil: no flows here.
    let flowGrace: Duration?

    func run() async throws {
        try? await gracefulShutdown()
        if let flowGrace { await endpoint.closeFlows(grace: flowGrace) }
        await endpoint.shutdown()
    }
}

/// Every 5 s: expired bindings leave the store; a key rotated by another node or by
/// `webims waf rotate-key`, and new revocations, reach the eP-CSCF; freed heap goes back
/// after a burst of connections. Remote WAFs' keys are fetched alongside.
struct HousekeepingService: Service, CustomStringConvertible {
    var description: String { "housekeeping" }
    let store: any DataStore
    let registrar: Registrar?
    let keys: SigningKeyRing?
    let localIssuer: String
    let tokens: TokenValidator?
    let fetchers: [WAFKeyFetcher]
    let edgeEndpoint: SIPEndpoint?
    /// The eP-CSCF, whose media legs follow its gateway (every 12th tick: a minute).
    var edge: EdgeProxy? = nil

    func run() async throws {
        await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                for fetcher in fetchers { group.addTask { await fetcher.run() } }
                group.addTask { await tick() }
            }
        }
    }

    private func tick() async {
        var ticks = 0
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(5))
            if Task.isCancelled { return }
            ticks += 1
            if ticks % 12 == 0 { await edge?.reconcileMedia() }
            await registrar?.removeExpiredBindings()
            if let keys {
                try? await keys.reload(now: unixNow())
                tokens?.setKeys(keys.publicKeys(), issuer: localIssuer)
            }
            if let tokens, let list = try? await store.revocations(now: unixNow()) {
                tokens.setRevocations(tokenIDs: list.tokenIDs, subjects: list.subjects)
            }
            if let edgeEndpoint { MemoryTrimmer.afterLoad(edgeEndpoint.takeConnectionHighWater()) }
        }
    }
}

/// The HTTPS listeners (WWSF, WAF) and the metrics endpoint. A listener that cannot bind
/// stops `serve` with the ports it tried.
struct WebService: Service, CustomStringConvertible {
    var description: String { "web" }
    let servers: HTTPSServers
    let ports: String
    /// Told when the servers stop, so that nobody waits for listeners that will not come.
    let stopped: @Sendable () -> Void

    func run() async throws {
        defer { stopped() }
        do {
            try await withGracefulShutdownHandler {
                try await servers.run()
            } onGracefulShutdown: {
                Task { await servers.shutdown() }
            }
        } catch {
            throw ServeError(description: "cannot listen on \(ports): \(error)")
        }
    }
}

/// Waits for every web listener to be up, then says so (endpoints.json, the lines scripts
/// and people read, `ready`); on graceful shutdown logs that it is shutting down.
struct ReadinessService: Service, CustomStringConvertible {
    var description: String { "readiness" }
    let listeners: Int
    let listening: AsyncStream<Int>
    let logger: Logger
    let announce: @Sendable () throws -> Void

    func run() async throws {
        var up = 0
        if listeners > 0 {
            for await _ in listening {
                up += 1
                if up == listeners { break }
            }
        }
        guard up == listeners else {
            // The web listeners stopped before all were up; their service says why.
            try await gracefulShutdown()
            return
        }
        try announce()
        logger.info("ready")
        try? await gracefulShutdown()
        logger.info("shutting down")
    }
}
