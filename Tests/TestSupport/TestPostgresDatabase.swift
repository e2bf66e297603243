import Foundation
import Logging
import NIOPosix
import OrderStore
import PostgresNIO

/// A fresh database on the test cluster `scripts/test` starts (its URL is in
/// `CLOSEORDERD_TEST_POSTGRES`), with a connection for the app's side, dropped by `remove()`.
public struct TestPostgresDatabase: Sendable {
    /// The cluster's URL, naming its `postgres` database (password included: a test cluster).
    public static func clusterURL() throws -> String {
        guard let url = ProcessInfo.processInfo.environment["CLOSEORDERD_TEST_POSTGRES"], !url.isEmpty else {
            throw TestPostgresError(
                description: "CLOSEORDERD_TEST_POSTGRES is not set: run the tests with scripts/test, which starts a "
                    + "throw-away PostgreSQL cluster (or start one with scripts/postgres-cluster start DIR)")
        }
        return url
    }

    /// A logger that drops everything, for tables under test.
    public static let quiet = Logger(label: "closeorderd.test.postgres", factory: { _ in SwiftLogNoOpLogHandler() })

    /// The new database's name, e.g. `closeorderd_test_3f2a…`.
    public let name: String
    /// Its address, password included.
    public let address: PostgresAddress
    /// Its URL, password included, for a daemon's `database:` or `--db`.
    public var url: String {
        "postgresql://\(address.user):\(address.password ?? "")@\(address.host ?? "127.0.0.1"):\(address.port)/\(name)?sslmode=disable"
    }
    let appClient: RunningClient

    /// Creates a database of its own on the test cluster.
    public static func make() async throws -> TestPostgresDatabase {
        let cluster = try PostgresAddress(url: try clusterURL())
        let name = "closeorderd_test_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        let admin = RunningClient(cluster)
        defer { admin.close() }
        try await admin.client.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"), logger: quiet)
        var address = cluster
        address.database = name
        return TestPostgresDatabase(name: name, address: address, appClient: RunningClient(address))
    }

    /// Runs `query` as the merchant's app would, on a connection of its own.
    public func app(_ query: PostgresQuery) async throws {
        try await appClient.client.query(query, logger: Self.quiet)
    }

    /// Runs `query` and returns its first column's integers.
    public func integers(_ query: PostgresQuery) async throws -> [Int64] {
        var values: [Int64] = []
        for try await value in try await appClient.client.query(query, logger: Self.quiet).decode(Int64.self) {
            values.append(value)
        }
        return values
    }

    /// Runs `body` while the app holds `lock` (e.g. `LOCK TABLE orders`) in an open transaction.
    public func whileHolding<T: Sendable>(_ lock: PostgresQuery, _ body: () async throws -> T) async throws -> T {
        try await appClient.client.withTransaction(logger: Self.quiet) { connection in
            try await connection.query(lock, logger: Self.quiet)
            return try await body()
        }
    }

    /// Plays a server that went away for closeorderd: its connections are cut and new ones
    /// refused (the app's own connection stays), until `acceptConnections()`.
    public func refuseConnections() async throws {
        try await admin(
            """
            ALTER DATABASE \(unescaped: name) ALLOW_CONNECTIONS false
            """)
        try await admin(
            """
            SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = \(name) AND application_name = 'closeorderd'
            """)
    }

    /// Lets closeorderd connect again after `refuseConnections()`.
    public func acceptConnections() async throws {
        try await admin("ALTER DATABASE \(unescaped: name) ALLOW_CONNECTIONS true")
    }

    /// Runs `query` on the cluster's own database, as its superuser.
    private func admin(_ query: PostgresQuery) async throws {
        let admin = RunningClient(try PostgresAddress(url: try Self.clusterURL()))
        defer { admin.close() }
        try await admin.client.query(query, logger: Self.quiet)
    }

    /// Drops the database (closing whatever still uses it).
    public func remove() async {
        appClient.close()
        guard let cluster = try? PostgresAddress(url: try Self.clusterURL()) else { return }
        let admin = RunningClient(cluster)
        defer { admin.close() }
        _ = try? await admin.client.query(
            PostgresQuery(unsafeSQL: "DROP DATABASE IF EXISTS \(name) WITH (FORCE)"), logger: Self.quiet)
    }
}

/// Why the PostgreSQL tests cannot run.
public struct TestPostgresError: Error, CustomStringConvertible {
    public let description: String
}

/// A `PostgresClient` and the task running it.
final class RunningClient: Sendable {
    let client: PostgresClient
    private let task: Task<Void, Never>

    init(_ address: PostgresAddress) {
        let configuration = PostgresClient.Configuration(
            host: address.host ?? "127.0.0.1", port: address.port, username: address.user, password: address.password,
            database: address.database, tls: .disable)
        let client = PostgresClient(
            configuration: configuration, eventLoopGroup: MultiThreadedEventLoopGroup.singleton,
            backgroundLogger: TestPostgresDatabase.quiet)
        self.client = client
        task = Task { await client.run() }
    }

    func close() { task.cancel() }
}
