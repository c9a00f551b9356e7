// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "webims",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "webims", targets: ["webims"]),
        .library(name: "SIPCore", targets: ["SIPCore"]),
        .library(name: "SIPTransport", targets: ["SIPTransport"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        // Exact: LeanTLS uses its internal CNIOBoringSSL (scripts/check-internal-modules).
        .package(url: "https://github.com/apple/swift-nio-ssl.git", exact: "2.37.6"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        // Exact: SQLiteBindingWriter uses its internal VaporCSQLite (scripts/check-internal-modules).
        .package(url: "https://github.com/vapor/sqlite-nio.git", exact: "1.13.2"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1", traits: []),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    ],
    targets: [
        // What SIP and web code both use: base64url, hex, constant-time comparison, random
        // tokens, markup escaping, the aged table of short-lived state, process limits.
        // No dependencies.
        .target(name: "Utilities"),
        // Pure SIP values: no I/O and no dependencies, so the fuzz build stays quick.
        .target(name: "SIPCore"),
        // Digest, Milenage and IMS AKA: pure functions over bytes.
        .target(
            name: "SIPAuth",
            dependencies: [
                "SIPCore", "Utilities",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
            ]
        ),
        // Subscriber and binding stores: protocols, and the SQLite implementation.
        .target(
            name: "Storage",
            dependencies: [
                .product(name: "SQLiteNIO", package: "sqlite-nio"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Subscriber model, authentication vectors, provisioning.
        .target(name: "HSS", dependencies: ["SIPCore", "SIPAuth", "Storage", "Utilities"]),
        // The registrar.
        .target(
            name: "SCSCF",
            dependencies: [
                "SIPCore", "SIPAuth", "SIPTransport", "SIPProxy", "HSS", "Storage", "Utilities",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        // The eP-CSCF's decisions: REGISTER processing, token validation, which flow a
        // request goes down. No NIO: the transport is SIPTransport's.
        .target(
            name: "EPCSCF",
            dependencies: [
                "SIPCore", "SIPAuth", "SIPTransport", "SIPProxy", "HTTPSClient", "MediaGateway", "Utilities",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        // Every transport — UDP, TCP, TLS and WSS (RFC 7118, with its lean TLS layer) — and
        // the one transaction layer (RFC 3261 §17).
        .target(
            name: "SIPTransport",
            dependencies: [
                "SIPCore", "TLSPolicy", "Utilities",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                // NIOSSL, and the BoringSSL inside it: LeanTLS reads and writes TLS records
                // through BoringSSL itself (docs/architecture.md, "Reaching into other
                // packages").
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        // The eIMS-AGW seam: the MediaGateway protocol, rtpengine's ng client (bencode over
        // UDP) and a pool of gateways, and what the eP-CSCF reads of SDP.
        .target(
            name: "MediaGateway",
            dependencies: [
                "Utilities", .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        // The stateful proxy of RFC 3261 §16 that the eP-CSCF and the S-CSCF share.
        .target(
            name: "SIPProxy",
            dependencies: ["SIPCore", "SIPTransport", "Utilities", .product(name: "NIOCore", package: "swift-nio")]
        ),
        // The local CA and server certificates `serve` generates on first start.
        .target(
            name: "LocalPKI",
            dependencies: [
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        // The TLS versions and cipher suites of every listener and client (docs/security.md).
        .target(name: "TLSPolicy", dependencies: [.product(name: "NIOSSL", package: "swift-nio-ssl")]),
        // A small HTTPS client: WAF metadata/JWKS for the eP-CSCF, a remote WAF's token
        // endpoint for the WWSF.
        .target(
            name: "HTTPSClient",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        // WWSF (web login, the WIC's token endpoint, discovery) and WAF (OAuth 2.0
        // authorization server issuing RFC 9068 access tokens) over HTTPS.
        .target(
            name: "WebAuth",
            dependencies: [
                "Storage", "Utilities", "HTTPSClient", "TLSPolicy",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        // `webims bench`'s engine: WICs over TLS WebSockets registering with tokens or Digest,
        // paced, counted, with the server's CPU seconds and memory beside them.
        .target(
            name: "LoadGenerator",
            dependencies: [
                "SIPCore", "SIPAuth", "SIPTransport", "Utilities",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        .executableTarget(
            name: "webims",
            dependencies: [
                "SIPCore", "SIPAuth", "SIPTransport", "Storage", "HSS", "SCSCF", "EPCSCF", "WebAuth", "LocalPKI",
                "TLSPolicy", "HTTPSClient", "Utilities", "LoadGenerator", "MediaGateway",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        // The spec.md §9 messages and a typed-view walker: shared by tests, fuzz target and
        // benchmark, and light (SIPCore only) so the release benchmark build stays small.
        .target(name: "SIPExamples", dependencies: ["SIPCore"]),
        // What tests share: fresh SQLite/PostgreSQL stores, TLS certificates, a test WAF, the
        // hand-written WSS client, and the eP-CSCF-in-front-of-an-S-CSCF harness with
        // scoped teardown (`EdgeHarness.with { … }`).
        .target(
            name: "WebIMSTesting",
            dependencies: [
                "Storage", "EPCSCF", "SCSCF", "HSS", "SIPCore", "SIPTransport", "LoadGenerator", "Utilities",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        // Plain executable (release, one core): `scripts/bench-sipcore`.
        .executableTarget(
            name: "SIPCoreBenchmark", dependencies: ["SIPCore", "SIPExamples"], path: "Benchmarks/SIPCoreBenchmark"),
        .testTarget(name: "UtilitiesTests", dependencies: ["Utilities"]),
        .testTarget(name: "SIPCoreTests", dependencies: ["SIPCore", "SIPExamples"]),
        // SIPp's scenarios are read from the source tree when the tests run.
        .testTarget(
            name: "SIPProxyTests",
            dependencies: [
                "SIPProxy", "SIPCore", "SIPTransport", "Utilities", "WebIMSTesting",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            exclude: ["Scenarios"]
        ),
        // rtpengine itself is started by some tests (scripts/test installs rtpengine-daemon).
        .testTarget(
            name: "MediaGatewayTests",
            dependencies: [
                "MediaGateway", .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "SIPAuthTests",
            dependencies: ["SIPAuth", "SIPCore", "Utilities", .product(name: "Crypto", package: "swift-crypto")]),
        .testTarget(name: "StorageTests", dependencies: ["Storage", "WebIMSTesting"]),
        .testTarget(
            name: "WebAuthTests",
            dependencies: [
                "WebAuth", "Storage", "Utilities", "WebIMSTesting",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ]
        ),
        .testTarget(
            name: "EPCSCFTests",
            dependencies: [
                "EPCSCF", "SCSCF", "HSS", "Storage", "SIPAuth", "SIPCore", "SIPTransport", "Utilities", "WebIMSTesting",
                "SIPExamples",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        .testTarget(
            name: "SCSCFTests",
            dependencies: [
                "SCSCF", "HSS", "SIPAuth", "SIPCore", "SIPProxy", "SIPTransport", "Storage", "Utilities",
                "WebIMSTesting",
                "LocalPKI", .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "SIPTransportTests",
            dependencies: [
                "SIPCore",
                "SIPTransport",
                "Utilities",
                "WebIMSTesting",
                "LoadGenerator",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
