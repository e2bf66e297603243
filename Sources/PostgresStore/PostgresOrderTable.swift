import Foundation
import Logging
import NIOPosix
import NIOSSL
import OrderStore
import PostgresNIO

/// The order table on a PostgreSQL server, shared by any number of closeorderd daemons on
/// any number of hosts. Claims take due rows with `FOR UPDATE SKIP LOCKED`, so two daemons
/// never claim one order; write-backs are fenced by the lease token, as on SQLite.
///
/// The connection pool (postgres-nio's `PostgresClient`) runs for the table's lifetime and
/// reconnects by itself: a statement made while the server is away fails (the reaper backs
/// off and tries again), and the next one after it is back succeeds.
///
/// ```swift
/// let table = try PostgresOrderTable(address: address, password: password, logger: logger)
/// _ = try await table.migrate()
/// defer { table.close() }
/// ```
public final class PostgresOrderTable: OrderTable, Sendable {
    /// Where the table is (no password).
    public let address: PostgresAddress
    let client: PostgresClient
    let logger: Logger
    private let running: Task<Void, Never>

    /// How many connections one daemon opens at most: the claim, the write-backs, the
    /// readiness and metrics reads, and `isStillClaimed` checks.
    public static let maximumConnections = 8

    /// Connects lazily (the first statement opens the first connection): an unreachable
    /// server is reported by the first statement, e.g. the migration, naming the address.
    public init(address: PostgresAddress, password: String?, logger: Logger) throws(StoreError) {
        self.address = address
        self.logger = logger
        let user = address.user
        let password = address.password ?? password
        var configuration: PostgresClient.Configuration
        if let socketPath = address.socketPath {
            configuration = .init(unixSocketPath: socketPath, username: user, password: password, database: address.database)
        } else {
            configuration = .init(
                host: address.host ?? "localhost", port: address.port, username: user, password: password,
                database: address.database, tls: Self.tls(address.tlsMode))
        }
        configuration.options.maximumConnections = Self.maximumConnections
        configuration.options.connectTimeout = .seconds(10)
        configuration.options.keepAliveBehavior = .init(frequency: .seconds(15))
        configuration.options.additionalStartupParameters = [("application_name", "closeorderd")]
        let client = PostgresClient(
            configuration: configuration, eventLoopGroup: MultiThreadedEventLoopGroup.singleton, backgroundLogger: logger)
        self.client = client
        running = Task { await client.run() }
    }

    deinit { running.cancel() }

    /// Closes the pool's connections; statements after this fail.
    public func close() { running.cancel() }

    /// libpq's `sslmode` as postgres-nio's TLS setting. `verify-full` checks the chain
    /// against the system's trust store and the host name; `prefer` and `require` encrypt
    /// without verifying, as libpq does.
    static func tls(_ mode: PostgresAddress.TLSMode) -> PostgresClient.Configuration.TLS {
        var unverified = TLSConfiguration.makeClientConfiguration()
        unverified.certificateVerification = .none
        switch mode {
        case .disable: return .disable
        case .prefer: return .prefer(unverified)
        case .require: return .require(unverified)
        case .verifyFull: return .require(.makeClientConfiguration())
        }
    }

    /// There is no file to be replaced under a server's table.
    public func verifyStillOurs() throws(StoreError) {}

    /// Runs `operation`, turning any error into a `StoreError` that names the address
    /// (never the password) and says what the server or the network said.
    func run<T>(_ operation: () async throws -> T) async throws(StoreError) -> T {
        do {
            return try await operation()
        } catch let error as StoreError {
            throw error
        } catch {
            throw StoreError(location: address.redacted, message: "database \(address.redacted): \(Self.describe(error))")
        }
    }

    /// What went wrong, in the server's words where it spoke: postgres-nio's own
    /// description is deliberately vague.
    static func describe(_ error: any Error) -> String {
        if let transaction = error as? PostgresTransactionError {
            if let failure = transaction.closureError ?? transaction.beginError ?? transaction.commitError {
                return describe(failure)
            }
        }
        guard let error = error as? PSQLError else { return "\(error)" }
        if let info = error.serverInfo, let message = info[.message] {
            let state = info[.sqlState].map { " (SQLSTATE \($0))" } ?? ""
            let detail = info[.detail].map { ": \($0)" } ?? ""
            return "\(message)\(detail)\(state)"
        }
        switch error.code {
        case .connectionError, .serverClosedConnection, .clientClosedConnection, .uncleanShutdown:
            let underlying = error.underlying.map { ": \($0)" } ?? ""
            return "cannot reach the server (\(error.code))\(underlying); closeorderd reconnects and retries"
        case .sslUnsupported:
            return "the server does not offer TLS, and sslmode requires it"
        case .authMechanismRequiresPassword:
            return "the server asks for a password: set database_password_file or database_password_credential"
        case .poolClosed:
            return "the connection pool is closed (closeorderd is stopping)"
        default:
            let underlying = error.underlying.map { ": \($0)" } ?? ""
            return "\(error.code)\(underlying)"
        }
    }
}
