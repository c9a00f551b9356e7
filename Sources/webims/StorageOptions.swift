import ArgumentParser
import Foundation
import Storage
import Utilities

#if canImport(Glibc)
    import Glibc
#endif

/// Where the data lives: shared by `serve` and the provisioning commands, so they work on
/// the same store — also while `serve` runs (SQLite WAL allows it).
struct StorageOptions: ParsableArguments {
    @Option(help: "Directory for the database, certificates and keys.")
    var dataDir: String = "./webims-data"

    @Option(
        help:
            "Database: postgres://user[:password]@host[:port]/db for PostgreSQL, or a SQLite file path. Default: SQLite in the data directory."
    )
    var database: String?

    var sqlitePath: String { (dataDir as NSString).appendingPathComponent("webims.sqlite") }

    func open() async throws -> any DataStore {
        try prepareDataDirectory()
        return try await openDataStore(database ?? sqlitePath)
    }

    /// The data directory holds the WAF's private keys, HA1s and AKA K/OPc: only its owner
    /// may read it (issue 26 item 10). Everything this process creates from here on — the
    /// SQLite file, its -wal and -shm, keys, certificates — is owner-only (umask 077); what
    /// already exists wider is reported at start-up, not silently changed.
    func prepareDataDirectory() throws {
        umask(0o077)
        try FileManager.default.createDirectory(
            atPath: dataDir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        var wide: [String] = []
        for (path, limit) in [(dataDir, 0o700), (sqlitePath, 0o600), (sqlitePath + "-wal", 0o600)] {
            guard let mode = (try? FileManager.default.attributesOfItem(atPath: path))?[.posixPermissions] as? Int
            else { continue }
            if mode & ~limit & 0o077 != 0 { wide.append("\(path) is \(String(mode, radix: 8))") }
        }
        for line in wide {
            FileHandle.standardError.write(
                Data("webims: warning: \(line): it holds secrets; chmod go-rwx it (issue 26, docs/security.md)\n".utf8))
        }
    }

    /// Opens the store, runs `body` on it and closes it, also when `body` throws (a bad
    /// argument found after opening): the file is left clean either way.
    func withStore<T>(_ body: (any DataStore) async throws -> T) async throws -> T {
        let store = try await open()
        let result: T
        do {
            result = try await body(store)
        } catch {
            await store.close()
            throw error
        }
        await store.close()
        return result
    }

    /// A secret every node on the database shares (the nonce key: a challenge from one
    /// S-CSCF answered at another), made by the first node to ask. A file of that name an
    /// older version left in the data directory is offered first, so a node upgraded in
    /// place keeps its outstanding nonces valid.
    func sharedSecret(named name: String, in store: any SharedSecretStore, length: Int = 32) async throws -> [UInt8] {
        let path = (dataDir as NSString).appendingPathComponent(name)
        let left = FileManager.default.contents(atPath: path).map(Array.init)
        let candidate = left?.count == length ? left ?? [] : randomBytes(length)
        return try await store.sharedSecret(named: name, candidate: candidate)
    }
}
