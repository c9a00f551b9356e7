import Foundation
import HSS
import LocalPKI
import NIOSSL
import SIPCore
import SIPTransport
import Storage
import Testing
import WebIMSTesting

@testable import SCSCF

/// SCS-1 over TLS: `auth-done` counts only from a trusted address whose verified certificate
/// names a trusted node. A local CA signs the S-CSCF's and the nodes' certificates.
@Suite(.serialized) struct TrustedNodeTLSTests {
    struct Setup {
        let storage: any DataStore
        let location: String
        let server: SIPEndpoint
        let caFile: String
        let directories: [String]

        func client(_ identity: ServerIdentity?) async throws -> SIPEndpoint {
            var config = SIPEndpointConfiguration()
            config.host = "127.0.0.1"
            config.udpPort = 0
            config.timers = SIPTimers(t1: .milliseconds(50))
            if let identity {
                config.tlsClientConfiguration = try SIPNodeTLS.client(
                    certificateChainPEM: identity.certificateChainPEM, privateKeyPEM: identity.privateKeyPEM,
                    caFiles: [caFile])
            } else {
                config.tlsClientConfiguration.additionalTrustRoots = [.file(caFile)]
            }
            let endpoint = try SIPEndpoint(configuration: config) { _, _ in nil }
            try await endpoint.start()
            return endpoint
        }

        func register(from client: SIPEndpoint, over transport: SIPTransportProtocol = .tls) async -> SIPResponse {
            var ua = UA()
            return await client.send(
                ua.register(authorization: ua.tna),
                to: SIPDestination(transport: transport, host: "127.0.0.1", port: server.address(transport)?.port ?? 0))
        }

        func stored() async throws -> Int { try await storage.bindings(aor: aliceIMPU, now: 0).count }

        func stop() async {
            await server.shutdown()
            await storage.close()
            try? FileManager.default.removeItem(atPath: location)
            for directory in directories { try? FileManager.default.removeItem(atPath: directory) }
        }
    }

    static func start(names: Set<String>, requireTLS: Bool = false) async throws -> (Setup, ca: String) {
        let (storage, location) = try await StoreBackend.sqlite.makeFreshStore()
        let ha1 = digestHA1(impi: aliceIMPI, realm: home, password: "alice-secret")
        try await storage.put(
            SubscriberRecord(
                impi: aliceIMPI, realm: home, publicIdentities: [PublicIdentity(uri: aliceIMPU)],
                allowedSchemes: [.digest, .trustedNode], ha1MD5: ha1.md5, ha1SHA256: ha1.sha256))
        var config = SCSCFConfiguration(homeDomain: home, hostPort: "127.0.0.1", trustedNodes: ["127.0.0.1"])
        config.trustedNodeNames = names
        config.trustedNodesRequireTLS = requireTLS
        let registrar = Registrar(configuration: config, hss: HSS(store: storage), bindings: storage)
        let ca = NSTemporaryDirectory() + "webims-node-ca-\(UUID().uuidString)"
        let identity = try LocalCertificateAuthority.serverIdentity(in: ca, hostNames: ["localhost"])
        var serverConfig = SIPEndpointConfiguration()
        serverConfig.host = "127.0.0.1"
        serverConfig.udpPort = 0
        serverConfig.tcpPort = 0
        serverConfig.tlsPort = 0
        serverConfig.tlsServerConfiguration = try SIPNodeTLS.server(
            certificateChainPEM: identity.certificateChainPEM, privateKeyPEM: identity.privateKeyPEM,
            caFiles: [ca + "/ca.pem"])
        let server = try SIPEndpoint(configuration: serverConfig, handler: registrar.handler)
        try await server.start()
        return (
            Setup(
                storage: storage, location: location, server: server, caFile: ca + "/ca.pem", directories: [ca]),
            ca
        )
    }

    @Test func aCertificateNamingATrustedNodeRegistersWithoutChallenge() async throws {
        let (setup, ca) = try await Self.start(names: ["epcscf.test"], requireTLS: true)
        let node = try await setup.client(LocalCertificateAuthority.serverIdentity(in: ca, hostNames: ["epcscf.test"]))
        let response = await setup.register(from: node)
        #expect(response.statusCode == 200)
        #expect(try await setup.stored() == 1)
        await node.shutdown()
        await setup.stop()
    }

    @Test func aCertificateWithAnotherNameIsNotTrusted() async throws {
        let (setup, ca) = try await Self.start(names: ["epcscf.test"])
        let rogue = try await setup.client(LocalCertificateAuthority.serverIdentity(in: ca, hostNames: ["rogue.test"]))
        let response = await setup.register(from: rogue)
        #expect(response.statusCode == 401)  // auth-done ignored: challenged as any UE
        #expect(try await setup.stored() == 0)
        await rogue.shutdown()
        await setup.stop()
    }

    @Test func noClientCertificateIsNotTrustedButStillServed() async throws {
        let (setup, _) = try await Self.start(names: [])
        let ue = try await setup.client(nil)
        let response = await setup.register(from: ue)
        #expect(response.statusCode == 401)
        #expect(try await setup.stored() == 0)
        await ue.shutdown()
        await setup.stop()
    }

    @Test func aCertificateFromAnotherCAIsRefusedAtTheHandshake() async throws {
        let (setup, _) = try await Self.start(names: ["epcscf.test"])
        let otherCA = NSTemporaryDirectory() + "webims-other-ca-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: otherCA) }
        let impostor = try await setup.client(
            LocalCertificateAuthority.serverIdentity(in: otherCA, hostNames: ["epcscf.test"]))
        let response = await setup.register(from: impostor)
        #expect(response.statusCode == 503)  // the handshake failed: a transport error at once
        #expect(try await setup.stored() == 0)
        await impostor.shutdown()
        await setup.stop()
    }

    @Test func requireTLSIgnoresAuthDoneOverTCPFromATrustedAddress() async throws {
        let (setup, _) = try await Self.start(names: [], requireTLS: true)
        let node = try await setup.client(nil)
        let response = await setup.register(from: node, over: .tcp)
        #expect(response.statusCode == 401)
        #expect(try await setup.stored() == 0)
        await node.shutdown()
        await setup.stop()
    }
}
