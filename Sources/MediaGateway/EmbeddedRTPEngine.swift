import Foundation
import NIOCore
import Synchronization

/// rtpengine run by `webims serve` itself (the embedded default): userspace forwarding only
/// (`--table=-1`, no kernel module, no privileges), on loopback, its own port range, started,
/// restarted when it dies and stopped on shutdown (CALLS.md, "rtpengine as the eIMS-AGW").
public final class EmbeddedRTPEngine: Sendable {
    public struct Configuration: Sendable {
        public var executable: String
        /// The address media flows on, both sides (loopback by default: PROJECT DECISION,
        /// servers listen on loopback unless configured otherwise).
        public var interface: String
        public var ngPort: Int
        public var mediaPorts: ClosedRange<Int>
        /// rtpengine's own log (stderr), or nil for none.
        public var logFile: String?
        /// Where its process ID is kept: one left by a server that was killed (SIGKILL gives
        /// no chance to stop children) is stopped before a new one starts.
        public var pidFile: String?

        public init(
            executable: String, interface: String = "127.0.0.1", ngPort: Int, mediaPorts: ClosedRange<Int>,
            logFile: String? = nil, pidFile: String? = nil
        ) {
            self.executable = executable
            self.interface = interface
            self.ngPort = ngPort
            self.mediaPorts = mediaPorts
            self.logFile = logFile
            self.pidFile = pidFile
        }

        var arguments: [String] {
            [
                "--config-file=none", "--table=-1", "--interface=\(interface)",
                "--listen-ng=\(interface):\(ngPort)", "--foreground", "--log-stderr",
                "--port-min=\(mediaPorts.lowerBound)", "--port-max=\(mediaPorts.upperBound)",
                // A deleted session leaves at once (the default keeps it 30 s), so `list`
                // shows exactly the dialogs that are up.
                "--delete-delay=0",
                // A session whose media stopped for a minute goes; none lives past a day.
                "--timeout=60", "--silent-timeout=3600", "--final-timeout=86400",
            ]
        }
    }

    public let configuration: Configuration
    private let state = Mutex(State())

    private struct State: Sendable {
        var process: Process?
        var stopping = false
        var restarts = 0
        var onRestart: (@Sendable (Int32) -> Void)?
    }

    public init(configuration: Configuration) {
        self.configuration = configuration
    }

    /// `rtpengine` on the PATH (Debian's `rtpengine-daemon` puts it in /usr/bin), or nil.
    public static func locate(environment: [String: String] = ProcessInfo.processInfo.environment) -> String? {
        let path = environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for directory in path.split(separator: ":") {
            let candidate = "\(directory)/rtpengine"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// Where its ng control port is.
    public var ngAddress: SocketAddress {
        get throws { try SocketAddress(ipAddress: configuration.interface, port: configuration.ngPort) }
    }

    /// How many times it has been started again after dying.
    public var restarts: Int { state.withLock { $0.restarts } }

    /// Called with the exit status each time it dies unasked (before it is started again).
    public func onRestart(_ handler: @escaping @Sendable (Int32) -> Void) {
        state.withLock { $0.onRestart = handler }
    }

    /// Starts it and waits until it answers an ng `ping` (at most `readyWithin`).
    public func start(readyWithin: Duration = .seconds(10)) async throws {
        try launch()
        let client = try await NGClient.connect(to: try ngAddress, attempts: 1, retryInterval: .milliseconds(200))
        defer { Task { await client.close() } }
        let clock = ContinuousClock()
        let deadline = clock.now + readyWithin
        while clock.now < deadline {
            if await client.ping() { return }
            guard state.withLock({ $0.process?.isRunning ?? false }) else { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        await stop()
        throw EmbeddedRTPEngineError.notReady(logFile: configuration.logFile)
    }

    /// Stops it (SIGTERM, then SIGKILL after two seconds) and does not restart it.
    public func stop() async {
        let process = state.withLock { state -> Process? in
            state.stopping = true
            return state.process
        }
        guard let process, process.isRunning else { return }
        process.terminate()
        for _ in 0..<40 where process.isRunning { try? await Task.sleep(for: .milliseconds(50)) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    private func launch() throws {
        if let pidFile = configuration.pidFile { Self.stopLeftover(pidFile: pidFile) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: configuration.executable)
        process.arguments = configuration.arguments
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        if let logFile = configuration.logFile {
            _ = FileManager.default.createFile(atPath: logFile, contents: nil)
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: logFile))
            handle.seekToEndOfFile()
            process.standardError = handle
        } else {
            process.standardError = FileHandle.nullDevice
        }
        process.terminationHandler = { [weak self] ended in self?.ended(ended) }
        try process.run()
        state.withLock { $0.process = process }
        if let pidFile = configuration.pidFile {
            try? "\(process.processIdentifier)\n".write(toFile: pidFile, atomically: true, encoding: .utf8)
        }
    }

    /// SIGKILLs the rtpengine `pidFile` names, if that process is still an rtpengine.
    static func stopLeftover(pidFile: String) {
        guard let text = try? String(contentsOfFile: pidFile, encoding: .utf8),
            let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 1,
            let command = try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8),
            command.trimmingCharacters(in: .whitespacesAndNewlines) == "rtpengine"
        else { return }
        kill(pid, SIGKILL)
    }

    /// Supervision: a death nobody asked for is followed by a fresh start a second later.
    private func ended(_ process: Process) {
        let (restart, handler) = state.withLock { state -> (Bool, (@Sendable (Int32) -> Void)?) in
            guard !state.stopping, state.process === process else { return (false, nil) }
            state.restarts += 1
            return (true, state.onRestart)
        }
        guard restart else { return }
        handler?(process.terminationStatus)
        Task {
            try? await Task.sleep(for: .seconds(1))
            guard !self.state.withLock({ $0.stopping }) else { return }
            try? self.launch()
        }
    }
}

public enum EmbeddedRTPEngineError: Error, CustomStringConvertible {
    case notReady(logFile: String?)

    public var description: String {
        switch self {
        case .notReady(let logFile):
            "rtpengine did not answer on its ng port" + (logFile.map { " (its log: \($0))" } ?? "")
        }
    }
}
