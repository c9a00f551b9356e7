import ArgumentParser
import Foundation
import SIPCore
import Storage
import WebAuth

/// `webims account …`: the WWSF's web accounts (safe while `serve` runs: same store).
struct AccountCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "account",
        abstract: "Manage WWSF web accounts (log-in names mapped to IMS identities).",
        subcommands: [Add.self, List.self, Remove.self, Passwd.self]
    )

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add or replace a web account.")
        @OptionGroup var storage: StorageOptions
        @Option(help: "Log-in name.") var username: String
        @Option(help: "Password (stored as a PBKDF2-SHA256 hash). Omit to read it from standard input.")
        var password: String?
        @Option(help: "The IMPI the account registers as (must exist in the HSS).") var impi: String
        @Option(help: "An IMPU the account may register; repeatable. Default: the IMPI's whole implicit set.")
        var impu: [String] = []
        @Flag(help: "Scenario 3: serve the account one IMPU from the pool the IMPI owns.") var pool = false

        func run() async throws {
            try await storage.withStore { store in
                guard let subscriber = try await store.subscriber(impi: impi) else {
                    throw ValidationError("no subscriber \(impi) in the HSS; add it with `webims subscriber add` first")
                }
                // The account registers as the IMPI: it may only name IMPUs of its set.
                let owned = Set(subscriber.publicIdentities.map(\.uri))
                for text in impu where !owned.contains(canonicalPublicIdentity(text)) {
                    throw ValidationError("\(text) is not a public identity of \(impi)")
                }
                let secret = try password ?? readPassword()
                guard !secret.isEmpty else { throw ValidationError("empty password") }
                try await store.put(
                    WebAccount(
                        username: username, passwordHash: try PasswordHasher().hash(secret), impi: impi, impus: impu,
                        usesIMPUPool: pool))
            }
            print("account \(username) → \(impi)")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List web accounts.")
        @OptionGroup var storage: StorageOptions

        func run() async throws {
            for account in try await storage.withStore({ try await $0.allAccounts() }) {
                let impus = account.usesIMPUPool ? "(IMPU pool)" : account.impus.joined(separator: " ")
                print("\(account.username)\t\(account.impi)\t\(impus)")
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a web account (its sessions end).")
        @OptionGroup var storage: StorageOptions
        @Option(help: "Log-in name.") var username: String

        func run() async throws {
            let removed = try await storage.withStore { try await $0.removeAccount(username: username) }
            guard removed else { throw ValidationError("no account \(username)") }
            print("removed \(username)")
        }
    }

    struct Passwd: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Set a new password (ends the account's sessions and lifts a lock-out).")
        @OptionGroup var storage: StorageOptions
        @Option(help: "Log-in name.") var username: String
        @Option(help: "New password. Omit to read it from standard input.") var password: String?

        func run() async throws {
            try await storage.withStore { store in
                guard var account = try await store.account(username: username) else {
                    throw ValidationError("no account \(username)")
                }
                let secret = try password ?? readPassword()
                account.passwordHash = try PasswordHasher().hash(secret)
                try await store.put(account)
                try await store.removeSessions(username: username)
            }
            print("password of \(username) changed")
        }
    }
}

/// `webims token …`: tokens exactly as the WAF issues them, and revocation.
struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token",
        abstract: "Issue or revoke WAF access tokens (for operators and load tests).",
        subcommands: [Issue.self, Revoke.self]
    )

    struct Issue: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a token for an account, signed with the WAF's current key.")
        @OptionGroup var storage: StorageOptions
        @OptionGroup var web: WebOptions
        @Option(help: "Home domain (as given to serve).") var homeDomain: String = "ims.example.com"
        @Option(help: "Web account name.") var account: String
        @Option(help: "Lifetime in seconds (at most the WAF's token lifetime).") var ttl: Int?

        func run() async throws {
            let token = try await storage.withStore { store in
                guard let record = try await store.account(username: account) else {
                    throw ValidationError("no account \(account)")
                }
                let server = try await wafServer(store: store, storage: storage, web: web, homeDomain: homeDomain)
                return try await server.issueToken(
                    for: record, client: server.configuration.clients[0], ttl: ttl.map(Int64.init), now: unixNow()
                ).token
            }
            print(token)
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Revoke every token of an account, or one token by its jti.",
            discussion: "The eP-CSCF refuses revoked tokens within 5 seconds, even cached ones.")
        @OptionGroup var storage: StorageOptions
        @Option(help: "Web account whose tokens are revoked.") var account: String?
        @Option(help: "The jti of one token.") var jti: String?

        func run() async throws {
            guard jti != nil || account != nil else { throw ValidationError("give --account or --jti") }
            let now = unixNow()
            try await storage.withStore { store in
                if let jti {
                    try await store.revokeToken(id: jti, expiresAt: now + 7 * 86_400)
                    print("revoked token \(jti)")
                } else if let account {
                    guard let record = try await store.account(username: account) else {
                        throw ValidationError("no account \(account)")
                    }
                    let accounts = AccountService(store: store, subscribers: store)
                    let (impi, impus) = try await accounts.identities(of: record)
                    try await store.revokeTokens(
                        subject: record.usesIMPUPool ? (impus.first ?? impi) : impi, issuedBefore: now)
                    try await store.removeSessions(username: account)
                    print("revoked every token of \(account) issued until now")
                }
            }
        }
    }
}

/// `webims waf …`: the WAF's signing keys.
struct WAFCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "waf",
        abstract: "Manage the WAF's signing keys.",
        subcommands: [RotateKey.self, Keys.self]
    )

    struct RotateKey: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rotate-key",
            abstract: "Add a new signing key; it is published at once and signs after --publish-ahead seconds.",
            discussion: "Older keys stay in the JWKS until the tokens they signed have expired.")
        @OptionGroup var storage: StorageOptions
        @Option(help: "Seconds between publishing the new key and signing with it.") var publishAhead: Int = 60
        @Option(help: "The WAF's token lifetime (keys retire after it).") var tokenLifetime: Int = 3_600

        func run() async throws {
            let kid = try await storage.withStore { store in
                let ring = try await SigningKeyRing.load(
                    store: store, tokenLifetimeLimit: Int64(tokenLifetime), now: unixNow())
                return try await ring.rotate(now: unixNow(), publishAhead: Int64(max(0, publishAhead)))
            }
            print("new signing key \(kid), signing from \(publishAhead) s from now")
        }
    }

    struct Keys: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the signing keys.")
        @OptionGroup var storage: StorageOptions

        func run() async throws {
            for key in try await storage.withStore({ try await $0.signingKeys() }) {
                let retired = key.retiredAt.map { "retired \($0)" } ?? "active"
                print("\(key.kid)\tcreated \(key.createdAt)\tsigns from \(key.usableFrom)\t\(retired)")
            }
        }
    }
}

/// The WAF as `serve` configures it (issuer and audience from endpoints.json when serve
/// has run), for commands that issue tokens.
func wafServer(store: any DataStore, storage: StorageOptions, web: WebOptions, homeDomain: String) async throws
    -> AuthorizationServer
{
    let endpoints = Endpoints.read(dataDir: storage.dataDir)
    let issuer = endpoints?.wafIssuer ?? origin("https", web.publicHost, web.wafPort)
    let wwsf =
        endpoints?.wwsf.map { String($0.dropLast($0.hasSuffix("/") ? 1 : 0)) }
        ?? origin("https", web.publicHost, web.wwsfPort)
    let audience = endpoints?.audience ?? web.audience(homeDomain: homeDomain)
    let lifetime = Int64(max(1, web.tokenLifetime))
    let keys = try await SigningKeyRing.load(store: store, tokenLifetimeLimit: lifetime, now: unixNow())
    let client = OAuthClient(id: "webims-wwsf", redirectURIs: [wwsf + "/oauth/callback"], wwsf: wwsf)
    return AuthorizationServer(
        configuration: WAFConfiguration(issuer: issuer, audience: audience, tokenLifetime: lifetime, clients: [client]),
        keys: keys, accounts: AccountService(store: store, subscribers: store))
}

func readPassword() throws -> String {
    guard let line = readLine(strippingNewline: true) else { throw ValidationError("no password on standard input") }
    return line
}
