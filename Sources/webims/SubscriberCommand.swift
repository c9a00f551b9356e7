import ArgumentParser
import Foundation
import HSS
import SIPAuth
import SIPCore
import Storage
import Utilities

/// `webims subscriber …`: HSS provisioning.
struct SubscriberCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "subscriber",
        abstract: "Provision IMS subscribers in the HSS.",
        subcommands: [Add.self, List.self, Show.self, Remove.self, Bar.self, Unbar.self]
    )

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add or replace a subscriber.")
        @OptionGroup var storage: StorageOptions
        @Option(help: "Private identity (IMPI), e.g. alice@ims.example.com.") var impi: String
        @Option(help: "Public identity (IMPU); repeat for the implicit set, default first.") var impu: [String] = []
        @Option(help: "Digest realm (the home domain).") var realm: String = "ims.example.com"
        @Option(help: "SIP Digest password (stored only as HA1).") var password: String?
        @Option(help: "IMS AKA key K, 32 hex digits.") var akaK: String?
        @Option(help: "IMS AKA OPc, 32 hex digits.") var akaOpc: String?
        @Option(help: "IMS AKA OP, 32 hex digits (OPc is derived from it).") var akaOp: String?
        @Option(help: "AKA AMF, 4 hex digits.") var amf: String = "8000"
        @Option(help: "Initial SQN (decimal).") var sqn: UInt64 = 0
        @Option(
            help: "Allowed schemes, comma separated: digest, aka, tna. Default: from the credentials given, plus tna.")
        var schemes: String?
        @Option(help: "An allowed third-party WAF identity; repeatable.") var allowedWaf: [String] = []
        @Option(help: "An allowed third-party WWSF identity; repeatable.") var allowedWwsf: [String] = []
        @Option(help: "Add this many subscribers: %d in --impi and --impu becomes 1…N (for load tests).")
        var count: Int = 1
        @Flag(
            help:
                "Every IMPU its own implicit registration set: an IMPU pool whose IMPUs the WWSF hands to different web users (account add --pool)."
        )
        var pool = false

        func run() async throws {
            guard !impu.isEmpty else { throw ValidationError("give at least one --impu") }
            // TS 23.228 4.3.3.2: a public identity is a SIP URI or a tel URI.
            for text in impu {
                switch try? AnyURI.parse(text.replacingOccurrences(of: "%d", with: "1")) {
                case .sip?, .tel?: continue
                case .other?, nil: throw ValidationError("--impu \(text): not a sip:, sips: or tel: URI")
                }
            }
            guard count >= 1, count == 1 || (impi.contains("%d") && impu.allSatisfy { $0.contains("%d") }) else {
                throw ValidationError("--count above 1 needs %d in --impi and every --impu")
            }
            try await storage.withStore { store in
                for n in 1...count {
                    let number = String(n)
                    try await add(
                        to: store, impi: impi.replacingOccurrences(of: "%d", with: number),
                        impus: impu.map { $0.replacingOccurrences(of: "%d", with: number) }, quiet: count > 1)
                }
            }
            if count > 1 { print("added \(count) subscribers") }
        }

        func add(to store: any DataStore, impi: String, impus impu: [String], quiet: Bool) async throws {
            var record = SubscriberRecord(
                impi: impi, realm: realm,
                publicIdentities: impu.enumerated().map { index, uri in
                    PublicIdentity(uri: canonicalPublicIdentity(uri), implicitSet: pool ? index + 1 : 0)
                },
                allowedSchemes: [], akaAMF: try hexArgument(amf, name: "--amf", length: 2), sqn: sqn,
                allowedWAFs: allowedWaf, allowedWWSFs: allowedWwsf)
            if let password {
                let ha1 = digestHA1(impi: impi, realm: realm, password: password)
                record.ha1MD5 = ha1.md5
                record.ha1SHA256 = ha1.sha256
            }
            if let akaK {
                let k = try hexArgument(akaK, name: "--aka-k", length: 16)
                if let akaOpc {
                    record.akaOPc = try hexArgument(akaOpc, name: "--aka-opc", length: 16)
                } else if let akaOp {
                    record.akaOPc = try Milenage.opc(k: k, op: try hexArgument(akaOp, name: "--aka-op", length: 16))
                } else {
                    throw ValidationError("--aka-k needs --aka-opc or --aka-op")
                }
                record.akaK = k
            }
            if let schemes {
                for name in schemes.split(separator: ",") {
                    guard let scheme = AuthScheme(rawValue: name.trimmingCharacters(in: .whitespaces).lowercased())
                    else {
                        throw ValidationError("unknown scheme \(name); use digest, aka or tna")
                    }
                    record.allowedSchemes.insert(scheme)
                }
            } else {
                if record.ha1MD5 != nil { record.allowedSchemes.insert(.digest) }
                if record.akaK != nil { record.allowedSchemes.insert(.aka) }
                record.allowedSchemes.insert(.trustedNode)
            }
            try await store.put(record)
            if quiet { return }
            print(
                "subscriber \(impi): \(record.publicIdentities.map(\.uri).joined(separator: ", ")) [\(record.allowedSchemes.map(\.rawValue).sorted().joined(separator: ","))]"
            )
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List subscribers.")
        @OptionGroup var storage: StorageOptions
        func run() async throws {
            for s in try await storage.withStore({ try await $0.allSubscribers() }) {
                print(
                    "\(s.impi)\t\(s.publicIdentities.map { $0.barred ? "\($0.uri) (barred)" : $0.uri }.joined(separator: ", "))"
                )
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one subscriber (never its secrets).")
        @OptionGroup var storage: StorageOptions
        @Option var impi: String
        func run() async throws {
            guard let s = try await storage.withStore({ try await $0.subscriber(impi: impi) }) else {
                throw ValidationError("no subscriber \(impi)")
            }
            print("impi:      \(s.impi)")
            print("realm:     \(s.realm)")
            for p in s.publicIdentities {
                let set = p.implicitSet == 0 ? "" : " (implicit set \(p.implicitSet))"
                print("impu:      \(p.uri)\(p.barred ? " (barred)" : "")\(set)")
            }
            print("schemes:   \(s.allowedSchemes.map(\.rawValue).sorted().joined(separator: ", "))")
            print("digest:    \(s.ha1MD5 != nil ? "HA1 stored" : "none")")
            print("aka:       \(s.akaK != nil ? "K/OPc stored, AMF \(hex(s.akaAMF)), SQN \(s.sqn)" : "none")")
            if !s.allowedWAFs.isEmpty { print("WAFs:      \(s.allowedWAFs.joined(separator: ", "))") }
            if !s.allowedWWSFs.isEmpty { print("WWSFs:     \(s.allowedWWSFs.joined(separator: ", "))") }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a subscriber.")
        @OptionGroup var storage: StorageOptions
        @Option var impi: String
        func run() async throws {
            let removed = try await storage.withStore { try await $0.removeSubscriber(impi: impi) }
            guard removed else { throw ValidationError("no subscriber \(impi)") }
            print("removed \(impi)")
        }
    }

    struct Bar: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Bar a public identity.")
        @OptionGroup var storage: StorageOptions
        @Option var impu: String
        func run() async throws { try await setBarred(storage: storage, impu: impu, barred: true) }
    }

    struct Unbar: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Lift the bar on a public identity.")
        @OptionGroup var storage: StorageOptions
        @Option var impu: String
        func run() async throws { try await setBarred(storage: storage, impu: impu, barred: false) }
    }
}

func setBarred(storage: StorageOptions, impu: String, barred: Bool) async throws {
    let uri = canonicalPublicIdentity(impu)
    try await storage.withStore { store in
        guard var s = try await store.subscriber(impu: uri) else { throw ValidationError("no subscriber has \(impu)") }
        for i in s.publicIdentities.indices where s.publicIdentities[i].uri == uri {
            s.publicIdentities[i].barred = barred
        }
        try await store.put(s)
    }
    print("\(uri) \(barred ? "barred" : "unbarred")")
}

func hexArgument(_ text: String, name: String, length: Int) throws -> [UInt8] {
    guard let value = bytes(hex: text), value.count == length else {
        throw ValidationError("\(name) takes \(length * 2) hex digits")
    }
    return value
}
