// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "closeorderd",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "closeorderd", targets: ["closeorderd"]),
        // The protocol module alone, for the fuzz package in fuzz/.
        .library(name: "WeChatPay", targets: ["WeChatPay"]),
    ],
    dependencies: [
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
    ],
    targets: [
        // The protocol: parameters, signatures, the flat-XML codec, outcomes. No I/O.
        .target(
            name: "WeChatPay",
            dependencies: [
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
            ]
        ),
        // The order table on SQLite: migrations (embedded from migrations/sqlite/*.sql), claim,
        // fenced write-back, queries; and the OrderTable seam every engine conforms to.
        .target(
            name: "OrderStore",
            dependencies: [.product(name: "GRDB", package: "GRDB.swift")],
            plugins: ["EmbedMigrationsPlugin"]
        ),
        // The order table on PostgreSQL (migrations/postgresql/*.sql), shared by many daemons.
        .target(
            name: "PostgresStore",
            dependencies: [
                "OrderStore",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "_ConnectionPoolModule", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            plugins: ["EmbedMigrationsPlugin"]
        ),
        // The daemon's one clock, injectable so that tests advance time instead of sleeping.
        .target(name: "Clocks"),
        // The YAML configuration: its types, and one small reader per section.
        .target(
            name: "ConfigurationFile",
            dependencies: ["WeChatPay", "OrderStore", .product(name: "Yams", package: "Yams")]
        ),
        // WeChat Pay over HTTP: one deadline per call, the backup domain, answers read by WeChatPay.
        .target(
            name: "WeChatPayHTTP",
            dependencies: [
                "WeChatPay", "Clocks",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        // Log lines for operators: logfmt or JSON, control characters escaped.
        .target(name: "DaemonLogging", dependencies: ["WeChatPay", .product(name: "Logging", package: "swift-log")]),
        // The daemon's loop: the attempt policy, the scheduler, the breaker and the rate limiter.
        .target(
            name: "Reaper",
            dependencies: [
                "WeChatPay", "OrderStore", "Clocks", "ConfigurationFile", "WeChatPayHTTP",
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        // The Prometheus endpoint: /metrics, /-/healthy and /-/ready over NIO's HTTP server.
        .target(
            name: "MetricsEndpoint",
            dependencies: [
                "Reaper", "ConfigurationFile",
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // A local WeChat Pay v2 stand-in built on the same protocol module.
        .target(
            name: "Simulator",
            dependencies: [
                "WeChatPay",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
            ]
        ),
        // systemd's notify protocol and journal detection, on the socket directly (no libsystemd).
        .target(name: "Systemd"),
        .executableTarget(
            name: "closeorderd",
            dependencies: [
                "WeChatPay", "OrderStore", "PostgresStore", "Clocks", "ConfigurationFile", "WeChatPayHTTP", "DaemonLogging",
                "Reaper", "MetricsEndpoint", "Simulator", "Systemd",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(name: "EmbedMigrations"),
        // The poll's cost on a million-row table, for bench/run.
        .executableTarget(name: "PollBench", dependencies: ["OrderStore"], path: "bench/PollBench"),
        .plugin(
            name: "EmbedMigrationsPlugin",
            capability: .buildTool(),
            dependencies: ["EmbedMigrations"]
        ),
        .target(
            name: "TestSupport",
            dependencies: [
                "WeChatPay", "OrderStore", "PostgresStore",
                .product(name: "PostgresNIO", package: "postgres-nio"), "Clocks", "ConfigurationFile", "WeChatPayHTTP", "Reaper", "Simulator",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            path: "Tests/TestSupport"
        ),
        .testTarget(
            name: "WeChatPayTests",
            dependencies: ["WeChatPay", "TestSupport", .product(name: "_CryptoExtras", package: "swift-crypto")]
        ),
        .testTarget(
            name: "SystemdTests",
            dependencies: [
                "Systemd", "TestSupport", "OrderStore", "Simulator", "WeChatPay",
                .product(name: "GRDB", package: "GRDB.swift"),
            ]
        ),
        .testTarget(
            name: "OrderStoreTests",
            dependencies: [
                "OrderStore", "PostgresStore", "TestSupport",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ]
        ),
        .testTarget(
            name: "ReaperTests",
            dependencies: [
                "Reaper", "Simulator", "OrderStore", "WeChatPay", "Clocks", "ConfigurationFile", "WeChatPayHTTP",
                "DaemonLogging", "TestSupport",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
            ]
        ),
        .testTarget(
            name: "MetricsEndpointTests",
            dependencies: [
                "MetricsEndpoint", "Reaper", "OrderStore", "Clocks", "Simulator", "TestSupport", "WeChatPayHTTP",
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "GRDB", package: "GRDB.swift"),
            ]
        ),
    ]
)
