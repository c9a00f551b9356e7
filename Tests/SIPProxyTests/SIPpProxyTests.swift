import Foundation
import NIOCore
import NIOPosix
import SIPCore
import SIPProxy
import SIPTransport
import Testing

/// SIPp (Debian's sip-tester) as UAC and UAS on either side of a proxy core, all over real
/// UDP sockets on loopback.
struct SIPp {
    static let scenarios = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
        "Scenarios")

    let process = Process()
    let output = Pipe()

    /// Starts `sipp` with `arguments`; it stops by itself after its calls or `-timeout`.
    init(_ arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/sipp")
        process.arguments = arguments + ["-timeout", "30s", "-timeout_error", "-nostdin", "-trace_err"]
        process.currentDirectoryURL = FileManager.default.temporaryDirectory
        process.standardOutput = output
        process.standardError = output
        try process.run()
    }

    /// SIPp's exit status: 0 when every call succeeded.
    func finish() async -> (status: Int32, output: String) {
        while process.isRunning { try? await Task.sleep(for: .milliseconds(20)) }
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        return (process.terminationStatus, String(text.suffix(3000)))
    }

    static func uas(port: Int, scenario: String = "uas", calls: Int = 1, extra: [String] = []) throws -> SIPp {
        try SIPp(scenarioArguments(scenario) + ["-i", "127.0.0.1", "-p", "\(port)", "-m", "\(calls)"] + extra)
    }

    static func uac(
        to uasPort: Int, via proxy: Int, service: String = "bob", scenario: String = "uac", calls: Int = 1,
        extra: [String] = []
    ) throws -> SIPp {
        try SIPp(
            scenarioArguments(scenario) + [
                "127.0.0.1:\(uasPort)", "-rsa", "127.0.0.1:\(proxy)", "-s", service, "-i", "127.0.0.1", "-p",
                "\(try freeUDPPort())", "-m", "\(calls)",
            ] + extra)
    }

    static func scenarioArguments(_ name: String) -> [String] {
        name == "uac" || name == "uas" ? ["-sn", name] : ["-sf", scenarios.appendingPathComponent(name + ".xml").path]
    }
}

func freeUDPPort() throws -> Int {
    let channel = try DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0)
        .wait()
    defer { try? channel.close().wait() }
    return channel.localAddress?.port ?? 0
}

/// A proxy on a UDP port: user `fork` rings both `forkTo` ports at once; anyone else is
/// reached at the Request-URI as it stands.
final class ProxyRig: Sendable {
    let endpoint: SIPEndpoint
    let proxy: SIPProxyCore

    init(forkTo ports: [Int] = []) async throws {
        var configuration = SIPEndpointConfiguration()
        configuration.udpPort = 0
        let box = ProxyBox()
        endpoint = try SIPEndpoint(configuration: configuration) { request, transaction in
            await box.proxy?.route(request, transaction: transaction) { request in
                guard request.uri.sipURI?.user == "fork", (try? request.headers.to.tag) == nil else {
                    return [request.uri]
                }
                return ports.map { .sip(SIPURI(user: "fork", host: "127.0.0.1", port: UInt16($0))) }
            }
        }
        proxy = SIPProxyCore(endpoint: endpoint)
        box.set(proxy)
        try await endpoint.start()
    }

    var port: Int { endpoint.address(.udp)?.port ?? 0 }

    func stop() async { await endpoint.shutdown() }
}

/// The proxy is made after the endpoint whose handler uses it.
final class ProxyBox: @unchecked Sendable {
    private let lock = NSLock()
    private var value: SIPProxyCore?
    var proxy: SIPProxyCore? { lock.withLock { value } }
    func set(_ proxy: SIPProxyCore) { lock.withLock { value = proxy } }
}

@Suite(.serialized) struct SIPpProxyTests {
    @Test func aCallGoesThroughInviteRingingOkAckAndBye() async throws {
        let rig = try await ProxyRig()
        let uasPort = try freeUDPPort()
        let uas = try SIPp.uas(port: uasPort, calls: 3)
        try await Task.sleep(for: .milliseconds(300))
        let uac = try SIPp.uac(to: uasPort, via: rig.port, calls: 3)
        let (uacStatus, uacOutput) = await uac.finish()
        let (uasStatus, uasOutput) = await uas.finish()
        await rig.stop()
        #expect(uacStatus == 0, "\(uacOutput)")
        #expect(uasStatus == 0, "\(uasOutput)")
    }

    @Test func aCancelledCallEndsIn487() async throws {
        let rig = try await ProxyRig()
        let uasPort = try freeUDPPort()
        let uas = try SIPp.uas(port: uasPort, scenario: "uas_ring_cancel", calls: 2)
        try await Task.sleep(for: .milliseconds(300))
        let uac = try SIPp.uac(to: uasPort, via: rig.port, scenario: "uac_cancel", calls: 2)
        let (uacStatus, uacOutput) = await uac.finish()
        let (uasStatus, uasOutput) = await uas.finish()
        await rig.stop()
        #expect(uacStatus == 0, "\(uacOutput)")
        #expect(uasStatus == 0, "\(uasOutput)")
    }

    @Test func aBusyAnswerIsPassedBackAndACKedOnBothSides() async throws {
        let rig = try await ProxyRig()
        let uasPort = try freeUDPPort()
        let uas = try SIPp.uas(port: uasPort, scenario: "uas_busy", calls: 2)
        try await Task.sleep(for: .milliseconds(300))
        let uac = try SIPp.uac(to: uasPort, via: rig.port, scenario: "uac_busy", calls: 2)
        let (uacStatus, uacOutput) = await uac.finish()
        let (uasStatus, uasOutput) = await uas.finish()
        await rig.stop()
        #expect(uacStatus == 0, "\(uacOutput)")
        #expect(uasStatus == 0, "\(uasOutput)")
    }

    @Test func twoBranchesForkInParallelTheFirst200WinsAndTheOtherIsCancelled() async throws {
        let answering = try freeUDPPort()
        let ringing = try freeUDPPort()
        let rig = try await ProxyRig(forkTo: [answering, ringing])
        let uas1 = try SIPp.uas(port: answering, calls: 1)
        let uas2 = try SIPp.uas(port: ringing, scenario: "uas_ring_cancel", calls: 1)
        try await Task.sleep(for: .milliseconds(300))
        let uac = try SIPp.uac(to: answering, via: rig.port, service: "fork", calls: 1)
        let (uacStatus, uacOutput) = await uac.finish()
        let (status1, output1) = await uas1.finish()
        let (status2, output2) = await uas2.finish()
        await rig.stop()
        #expect(uacStatus == 0, "\(uacOutput)")
        #expect(status1 == 0, "\(output1)")
        #expect(status2 == 0, "the ringing branch was not cancelled: \(output2)")
    }

    @Test func callsStillCompleteWithOnePacketInTenLost() async throws {
        let rig = try await ProxyRig()
        let uasPort = try freeUDPPort()
        // Loss on the UAC's side: its INVITEs, ACKs, BYEs and their answers. (SIPp's built-in
        // UAS aborts a call when an INVITE retransmission reaches it while it waits for the
        // ACK, which our Timer A rightly sends when its 180 and 200 were lost.)
        let uas = try SIPp.uas(port: uasPort, calls: 10)
        try await Task.sleep(for: .milliseconds(300))
        let uac = try SIPp.uac(to: uasPort, via: rig.port, calls: 10, extra: ["-lost", "10", "-r", "5", "-d", "2000"])
        let (uacStatus, uacOutput) = await uac.finish()
        let (uasStatus, uasOutput) = await uas.finish()
        await rig.stop()
        #expect(uacStatus == 0, "\(uacOutput)")
        #expect(uasStatus == 0, "\(uasOutput)")
    }
}
