#if canImport(Storage)
    import Foundation
    import Logging
    import PostgresNIO
    import Storage

    /// The store back-ends a test suite runs against: SQLite always, PostgreSQL when the test
    /// command started a server (`WEBIMS_TEST_POSTGRES_URL`, see scripts/postgres-test-server).
    public enum StoreBackend: String, Sendable, CaseIterable, CustomStringConvertible {
        case sqlite
        case postgres

        public var description: String { rawValue }

        public static var postgresURL: String? { ProcessInfo.processInfo.environment["WEBIMS_TEST_POSTGRES_URL"] }

        /// SQLite, plus PostgreSQL when a test server is there.
        public static var available: [StoreBackend] { postgresURL == nil ? [.sqlite] : [.sqlite, .postgres] }

        /// A fresh, empty store: a new SQLite file, or a new PostgreSQL database. The returned
        /// location reopens the same data (a file path or a postgres:// URL).
        public func makeFreshStore() async throws -> (store: any DataStore, location: String) {
            switch self {
            case .sqlite:
                let path = FileManager.default.temporaryDirectory.appendingPathComponent(
                    "webims-\(UUID().uuidString).sqlite"
                ).path
                return (try await SQLiteStorage.open(path: path), path)
            case .postgres:
                guard let admin = Self.postgresURL, var components = URLComponents(string: admin) else {
                    throw TestDatabaseError.noPostgresServer
                }
                let name = "t_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
                var logger = Logger(label: "webims.test.postgres")
                logger.logLevel = .error
                let client = PostgresClient(
                    configuration: .init(
                        host: components.host ?? "127.0.0.1", port: components.port ?? 5432,
                        username: components.user ?? "postgres", password: components.password,
                        database: components.path.trimmingCharacters(in: CharacterSet(charactersIn: "/")), tls: .disable
                    ),
                    backgroundLogger: logger)
                let runner = Task { await client.run() }
                defer { runner.cancel() }
                try await client.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"), logger: logger)
                components.path = "/" + name
                let url = components.string ?? admin
                return (try await PostgresStorage.open(url: url), url)
            }
        }
    }

    public enum TestDatabaseError: Error { case noPostgresServer }
#endif
