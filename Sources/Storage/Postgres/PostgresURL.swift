import Foundation

/// `postgres://user[:password]@host[:port]/database`.
struct PostgresURL {
    var user: String
    var password: String?
    var host: String
    var port: Int
    var database: String?

    init?(_ text: String) {
        guard let components = URLComponents(string: text),
            ["postgres", "postgresql"].contains(components.scheme ?? ""),
            let host = components.host, !host.isEmpty
        else { return nil }
        self.user = components.user ?? "postgres"
        self.password = components.password
        self.host = host
        self.port = components.port ?? 5432
        let path = components.path.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        self.database = path.isEmpty ? nil : path
    }
}
