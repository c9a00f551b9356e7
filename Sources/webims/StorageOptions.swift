import ArgumentParser
import Foundation
import Storage

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
        try FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: true)
        return try await openDataStore(database ?? sqlitePath)
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

    /// A secret kept in the data directory, made on first use (e.g. the nonce key).
    func secret(named name: String, length: Int = 32) throws -> [UInt8] {
        try FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: true)
        let path = (dataDir as NSString).appendingPathComponent(name)
        if let data = FileManager.default.contents(atPath: path), data.count == length { return Array(data) }
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
        guard
            FileManager.default.createFile(atPath: path, contents: Data(bytes), attributes: [.posixPermissions: 0o600])
        else {
            throw ValidationError("cannot write \(path)")
        }
        return bytes
    }
}
