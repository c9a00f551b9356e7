import ArgumentParser
import Foundation
import Storage

/// `webims registrations`: what the S-CSCF has bound right now (from the store).
struct RegistrationsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "registrations",
        abstract: "List the current registrations (bindings) at the S-CSCF.")
    @OptionGroup var storage: StorageOptions
    @Option(help: "Only this public identity.") var impu: String?
    @Flag(help: "One JSON object per line.") var json = false

    func run() async throws {
        let now = Int64(Date().timeIntervalSince1970)
        let bindings = try await storage.withStore { store in
            if let impu { return try await store.bindings(aor: impu, now: now) }
            return try await store.allBindings(now: now)
        }
        for b in bindings {
            if json {
                let object: [String: Any] = [
                    "aor": b.aor, "contact": b.contact, "instance": b.instance ?? "", "impi": b.impi,
                    "expires_in": b.expiresAt - now, "path": b.path, "scheme": b.scheme.rawValue, "call_id": b.callID,
                    "cseq": b.cseq,
                ]
                let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
                print(String(decoding: data, as: UTF8.self))
            } else {
                print("\(b.aor)\t\(b.contact)\t\(b.scheme.rawValue)\texpires in \(b.expiresAt - now) s")
            }
        }
    }
}
