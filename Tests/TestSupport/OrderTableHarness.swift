import Foundation
import GRDB
import OrderStore
import PostgresNIO
import PostgresStore

/// One engine's order table under test, with the app's side of it: what the merchant's app
/// (or a process that died) does to rows, in that engine's own SQL. The conformance suite
/// runs the same tests over every harness.
public protocol OrderTableHarness: Sendable {
    /// The conformer under test.
    var table: any OrderTable { get }
    /// Inserts an order as the app would. Times are seconds since 1970.
    func insert(_ outTradeNo: String, createdAt: Int64, expiresAt: Int64?, state: OrderState) async throws
    /// The app changes an order's state (e.g. marks it paid).
    func setState(of outTradeNo: String, to state: OrderState) async throws
    /// The row is not due again before `time` (as a backoff leaves it).
    func setNextAttempt(of outTradeNo: String, at time: Int64) async throws
    /// Leaves the row as a process that died mid-call leaves it.
    func leaveClosing(_ outTradeNo: String, attempts: Int, leaseToken: String, leaseExpiresAt: Int64) async throws
    /// Marks a row failed with an err_code, as an earlier attempt would have.
    func leaveFailed(_ outTradeNo: String, errCode: String) async throws
    /// Removes everything the harness made.
    func remove() async
}

/// The SQLite conformer, on a real file in a temporary folder.
public struct SQLiteHarness: OrderTableHarness {
    public let database: TestDatabase

    public static func make() async throws -> SQLiteHarness {
        SQLiteHarness(database: try await TestDatabase.make())
    }

    public var table: any OrderTable { database.store }

    public func insert(_ outTradeNo: String, createdAt: Int64, expiresAt: Int64?, state: OrderState) async throws {
        try await app(
            "INSERT INTO orders (mch_id, appid, out_trade_no, created_at, expires_at, state) VALUES (?, ?, ?, ?, ?, ?)",
            [Fixtures.mchID, Fixtures.appid, outTradeNo, createdAt, expiresAt, state.rawValue])
    }

    public func setState(of outTradeNo: String, to state: OrderState) async throws {
        try await app("UPDATE orders SET state = ? WHERE out_trade_no = ?", [state.rawValue, outTradeNo])
    }

    public func setNextAttempt(of outTradeNo: String, at time: Int64) async throws {
        try await app("UPDATE orders SET next_attempt_at = ? WHERE out_trade_no = ?", [time, outTradeNo])
    }

    public func leaveClosing(_ outTradeNo: String, attempts: Int, leaseToken: String, leaseExpiresAt: Int64) async throws {
        try await app(
            "UPDATE orders SET state = 'closing', attempts = ?, lease_token = ?, lease_expires_at = ? WHERE out_trade_no = ?",
            [attempts, leaseToken, leaseExpiresAt, outTradeNo])
    }

    public func leaveFailed(_ outTradeNo: String, errCode: String) async throws {
        try await app(
            "UPDATE orders SET state = 'failed', attempts = 3, err_code = ?, last_error = 'm' WHERE out_trade_no = ?",
            [errCode, outTradeNo])
    }

    public func remove() async { database.remove() }

    private func app(_ sql: String, _ arguments: StatementArguments) async throws {
        try await database.app.write { db in try db.execute(sql: sql, arguments: arguments) }
    }
}

/// The PostgreSQL conformer, on a fresh database of the test cluster that `scripts/test`
/// starts (`CLOSEORDERD_TEST_POSTGRES`), dropped afterwards.
public struct PostgresHarness: OrderTableHarness {
    public let database: TestPostgresDatabase
    let postgres: PostgresOrderTable

    public static func make() async throws -> PostgresHarness {
        let database = try await TestPostgresDatabase.make()
        let table = try PostgresOrderTable(address: database.address, password: nil, logger: TestPostgresDatabase.quiet)
        _ = try await table.migrate()
        return PostgresHarness(database: database, postgres: table)
    }

    public var table: any OrderTable { postgres }

    public func insert(_ outTradeNo: String, createdAt: Int64, expiresAt: Int64?, state: OrderState) async throws {
        try await database.app(
            """
            INSERT INTO orders (mch_id, appid, out_trade_no, created_at, expires_at, state)
            VALUES (\(Fixtures.mchID), \(Fixtures.appid), \(outTradeNo), to_timestamp(\(createdAt)),
                    to_timestamp(\(expiresAt)), \(state.rawValue))
            """)
    }

    public func setState(of outTradeNo: String, to state: OrderState) async throws {
        try await database.app("UPDATE orders SET state = \(state.rawValue) WHERE out_trade_no = \(outTradeNo)")
    }

    public func setNextAttempt(of outTradeNo: String, at time: Int64) async throws {
        try await database.app("UPDATE orders SET next_attempt_at = to_timestamp(\(time)) WHERE out_trade_no = \(outTradeNo)")
    }

    public func leaveClosing(_ outTradeNo: String, attempts: Int, leaseToken: String, leaseExpiresAt: Int64) async throws {
        try await database.app(
            """
            UPDATE orders SET state = 'closing', attempts = \(Int32(attempts)), lease_token = \(leaseToken),
                   lease_expires_at = to_timestamp(\(leaseExpiresAt)) WHERE out_trade_no = \(outTradeNo)
            """)
    }

    public func leaveFailed(_ outTradeNo: String, errCode: String) async throws {
        try await database.app(
            "UPDATE orders SET state = 'failed', attempts = 3, err_code = \(errCode), last_error = 'm' WHERE out_trade_no = \(outTradeNo)"
        )
    }

    public func remove() async {
        postgres.close()
        await database.remove()
    }
}
