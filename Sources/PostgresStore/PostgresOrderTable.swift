import Foundation
import Logging
import NIOPosix
import NIOSSL
import OrderStore
import PostgresNIO
import _ConnectionPoolModule

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
    /// The password in use (the URL's, else the one given), for `connectionProblem()`.
    private let password: String?
    private let running: Task<Void, Never>

    /// How many connections one daemon opens at most: the claim, the write-backs, the
    /// readiness and metrics reads, and `isStillClaimed` checks.
    public static let maximumConnections = 8

    /// How long one of the daemon's statements may take, waiting for a connection included,
    /// before it gives up on it: a poll that cannot reach the server fails within this (the
    /// loop backs off and tries again, readiness says why, and the systemd watchdog is no
    /// longer fed) instead of waiting for the pool, or for TCP on a cut link. The server is
    /// told to cancel a statement at 90 % of it (`statement_timeout`), so that a statement
    /// given up on is not carried out later: a claim nobody holds, a write-back twice. Nil
    /// for the operator's commands and migrations, which take as long as they take.
    public let statementDeadline: Duration?

    /// Connects lazily (the first statement opens the first connection): an unreachable
    /// server is reported by the first statement, e.g. the migration, naming the address.
    public init(
        address: PostgresAddress, password: String?, logger: Logger, statementDeadline: Duration? = .seconds(10)
    ) throws(StoreError) {
        self.address = address
        self.statementDeadline = statementDeadline
        self.logger = logger
        let user = address.user
        let password = address.password ?? password
        self.password = password
        var configuration: PostgresClient.Configuration
        if let socketPath = address.socketPath {
            configuration = .init(unixSocketPath: socketPath, username: user, password: password, database: address.database)
        } else {
            configuration = .init(
                host: address.host ?? "localhost", port: address.port, username: user, password: password,
                database: address.database, tls: Self.tls(address.tlsMode))
        }
        configuration.options.maximumConnections = Self.maximumConnections
        configuration.options.connectTimeout = .seconds(5)
        configuration.options.keepAliveBehavior = .init(frequency: .seconds(15))
        // A daemon paused or cut off inside a transaction (SIGSTOP, a lost link) would keep its
        // rows locked, and the others' `SKIP LOCKED` claims would pass over them past their
        // lease: the server ends such a session after 5 s. The daemon's transactions hold no
        // call to WeChat Pay, only statements, so a healthy one is never idle that long.
        configuration.options.additionalStartupParameters = [
            ("application_name", "closeorderd"), ("idle_in_transaction_session_timeout", "5s"),
        ]
        if let statementDeadline {
            let milliseconds = statementDeadline / .milliseconds(1) * 0.9
            configuration.options.additionalStartupParameters.append(("statement_timeout", "\(Int(milliseconds))ms"))
        }
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
        switch mode {
        case .disable: return .disable
        case .prefer: return .prefer(Self.unverified)
        case .require: return .require(Self.unverified)
        case .verifyFull: return .require(.makeClientConfiguration())
        }
    }

    /// TLS that encrypts without checking the certificate (`prefer`, `require`).
    static var unverified: TLSConfiguration {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = .none
        return configuration
    }

    /// There is no file to be replaced under a server's table.
    public func verifyStillOurs() throws(StoreError) {}

    /// Runs `operation`, waiting at most `statementDeadline`, and turns any error into a
    /// `StoreError` that names the address (never the password) and says what the server or
    /// the network said.
    func run<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T) async throws(StoreError) -> T {
        try await run(within: statementDeadline, operation)
    }

    /// Runs `operation` as `run(_:)` does, waiting at most `limit` (nil: as long as it takes).
    func run<T: Sendable>(
        within limit: Duration?, _ operation: @escaping @Sendable () async throws -> T
    ) async throws(StoreError) -> T {
        do {
            guard let limit else { return try await operation() }
            return try await withDeadline(limit, operation)
        } catch let error as StoreError {
            throw error
        } catch let error as DeadlinePassed {
            let reason =
                await connectionProblem().map { "no answer within \(error.limit): \($0)" }
                ?? "no answer within \(error.limit), though a new connection succeeds now (the pool may still be waiting "
                + "to reconnect after an outage, or a lock is held)"
            throw StoreError(location: address.redacted, message: "database \(address.redacted): \(reason)")
        } catch is ConnectionPoolError {
            // The pool says only that connecting kept failing: one connection of our own says why.
            let reason = await connectionProblem() ?? "connections to the server keep failing"
            throw StoreError(location: address.redacted, message: "database \(address.redacted): \(reason)")
        } catch {
            throw StoreError(location: address.redacted, message: "database \(address.redacted): \(Self.describe(error))")
        }
    }

    /// Connects once, outside the pool, and says why that failed (nil if it worked): the
    /// server's own words for a refused login or a missing database, the network's for an
    /// unreachable host. Commands call it first, so that they fail at once, with the reason.
    public func connectionProblem() async -> String? {
        do {
            var configuration: PostgresConnection.Configuration
            if let socketPath = address.socketPath {
                configuration = .init(
                    unixSocketPath: socketPath, username: address.user, password: password, database: address.database)
            } else {
                let tls: PostgresConnection.Configuration.TLS =
                    switch address.tlsMode {
                    case .disable: .disable
                    case .prefer: .prefer(try NIOSSLContext(configuration: Self.unverified))
                    case .require: .require(try NIOSSLContext(configuration: Self.unverified))
                    case .verifyFull: .require(try NIOSSLContext(configuration: .makeClientConfiguration()))
                    }
                configuration = .init(
                    host: address.host ?? "localhost", port: address.port, username: address.user, password: password,
                    database: address.database, tls: tls)
            }
            configuration.options.connectTimeout = .seconds(3)
            let connection = try await PostgresConnection.connect(
                on: MultiThreadedEventLoopGroup.singleton.next(), configuration: configuration, id: 0, logger: logger
            ).get()
            try? await connection.close()
            return nil
        } catch {
            return Self.describe(error)
        }
    }

    /// Fails with the reason unless a connection can be made now.
    public func verifyReachable() async throws(StoreError) {
        if let problem = await connectionProblem() {
            throw StoreError(location: address.redacted, message: "database \(address.redacted): \(problem)")
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
        guard let error = error as? PSQLError else {
            if let error = error as? NIOConnectionError, let failure = error.connectionErrors.first {
                return "cannot connect to \(failure.target): \(failure.error)"
            }
            return "\(error)"
        }
        if let info = error.serverInfo, info[.sqlState] == "42P01" {
            return "\(SchemaError.notMigrated) (\(info[.message] ?? "a table is missing"))"
        }
        if let info = error.serverInfo, info[.sqlState] == "57014", let message = info[.message] {
            return "\(message) (SQLSTATE 57014): the server cancelled it at closeorderd's deadline; a lock held long?"
        }
        if let info = error.serverInfo, let message = info[.message] {
            let state = info[.sqlState].map { " (SQLSTATE \($0))" } ?? ""
            let detail = info[.detail].map { ": \($0)" } ?? ""
            return "\(message)\(detail)\(state)"
        }
        switch error.code {
        case .connectionError, .serverClosedConnection, .clientClosedConnection, .uncleanShutdown:
            if let failure = (error.underlying as? NIOConnectionError)?.connectionErrors.first {
                return "cannot connect to \(failure.target): \(failure.error)"
            }
            // The connection was cut: the underlying error is often the server's own word why.
            let underlying = error.underlying.map { ": \(describe($0))" } ?? ""
            return "cannot reach the server (\(error.code))\(underlying)"
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
