import Foundation
import OrderStore
import PostgresNIO
import TestSupport
import Testing

@testable import PostgresStore

/// What only the PostgreSQL conformer has: its migration script splitter, text it cannot
/// store, and the poll's plan over a table of finished rows.
@Suite struct PostgresStoreTests {
    @Test func aMigrationScriptSplitsAtSemicolonsOutsideQuotesAndComments() {
        let script = """
            -- a comment; with a semicolon
            CREATE TABLE t (x text DEFAULT 'a;b');
            /* block; comment */
            CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'no; never'; END
            $$;
            SELECT $tag$ ; $tag$, "odd;name" FROM t WHERE x = $1;
            -- only a comment at the end;
            """
        let statements = SQLScript.statements(script)
        #expect(statements.count == 3, "\(statements)")
        #expect(statements.first?.hasSuffix("DEFAULT 'a;b')") == true)
        #expect(statements[1].hasSuffix("END\n$$"))
        #expect(statements[2].hasSuffix("WHERE x = $1"))
    }

    @Test func everyShippedMigrationSplitsIntoStatementsPostgreSQLAccepts() async throws {
        let harness = try await PostgresHarness.make()
        defer { Task { await harness.remove() } }
        let tables = try await harness.database.integers(
            "SELECT count(*) FROM information_schema.tables WHERE table_name IN ('orders', 'close_attempts', 'schema_migrations', 'merchant_call_spacing')"
        )
        #expect(tables == [4])
        #expect(try await harness.table.migrate() == [], "migrating again applies nothing")
    }

    @Test func aStatementPastItsDeadlineIsCancelledByTheServerAndLeavesNothingBehind() async throws {
        let harness = try await PostgresHarness.make()
        defer { Task { await harness.remove() } }
        let table = try PostgresOrderTable(
            address: harness.database.address, password: nil, logger: TestPostgresDatabase.quiet,
            statementDeadline: .seconds(1))
        defer { table.close() }
        let now = Int64(Date().timeIntervalSince1970)
        let policy = DuePolicy(minOrderAgeSeconds: 300, paymentTimeoutSeconds: 7200)
        try await harness.insert("LOCKEDOUT", createdAt: now - 1200, expiresAt: now - 60, state: .pending)
        let started = ContinuousClock.now
        let message = try await harness.database.whileHolding("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE") {
            do {
                _ = try await table.claimDue(now: now, policy: policy, limit: 10, leaseSeconds: 60, maxAttempts: 3)
                return "claimed under a lock"
            } catch {
                return (error as? StoreError)?.message ?? "\(error)"
            }
        }
        #expect(ContinuousClock.now - started < .seconds(6), "the deadline, not the lock, ended the wait")
        // The server cancels at 90 % of the deadline; on a busy machine the daemon's own
        // deadline (which counts the wait for a connection too) may speak first.
        #expect(
            message.contains("canceling statement due to statement timeout") || message.contains("no answer within 1.0 seconds"),
            "\(message)")
        // Had the claim only been given up by the daemon, it would run once the lock is gone,
        // leaving the order `closing` under a lease nobody holds.
        try await Task.sleep(for: .milliseconds(500))
        #expect(try await harness.database.integers("SELECT attempts FROM orders WHERE state = 'pending'") == [0])
        let batch = try await table.claimDue(now: now, policy: policy, limit: 10, leaseSeconds: 60, maxAttempts: 3)
        #expect(batch.orders.map { $0.outTradeNo } == ["LOCKEDOUT"], "the next poll claims it")
    }

    @Test func aServerThatCutsAndRefusesConnectionsIsNamedAndReconnectedTo() async throws {
        let harness = try await PostgresHarness.make()
        defer { Task { await harness.remove() } }
        let table = try PostgresOrderTable(
            address: harness.database.address, password: nil, logger: TestPostgresDatabase.quiet,
            statementDeadline: .seconds(2))
        defer { table.close() }
        let now = Int64(Date().timeIntervalSince1970)
        let policy = DuePolicy(minOrderAgeSeconds: 300, paymentTimeoutSeconds: 7200)
        #expect(try await table.claimDue(now: now, policy: policy, limit: 10, leaseSeconds: 60, maxAttempts: 3).orders.isEmpty)
        try await harness.insert("COMEBACK", createdAt: now - 1200, expiresAt: now - 60, state: .pending)

        try await harness.database.refuseConnections()
        // The first statements may still meet cut connections of the pool; then a new one is
        // needed, and refused.
        var messages: [String] = []
        for _ in 0..<5 where !(messages.last ?? "").contains("is not currently accepting connections") {
            let started = ContinuousClock.now
            do {
                _ = try await table.claimDue(now: now, policy: policy, limit: 10, leaseSeconds: 60, maxAttempts: 3)
                messages.append("claimed while refused")
            } catch {
                messages.append(error.message)
            }
            #expect(ContinuousClock.now - started < .seconds(10), "a poll fails within its deadline and a connection attempt")
        }
        #expect(messages.last?.contains("is not currently accepting connections") == true, "the server's own words: \(messages)")
        #expect(!messages.joined().contains("closeorderd-test-password"))

        try await harness.database.acceptConnections()
        // The pool connects again by itself, after its own backoff.
        var claimed: [String] = []
        try await DaemonProcess.waitUntil(timeout: 30, "a claim succeeds again") {
            guard let batch = try? await table.claimDue(now: now, policy: policy, limit: 10, leaseSeconds: 60, maxAttempts: 3)
            else { return false }
            claimed += batch.orders.map { $0.outTradeNo }
            return true
        }
        #expect(claimed == ["COMEBACK"])
    }

    @Test func aNULInAServersMessageIsStoredAsAReplacementCharacter() async throws {
        let harness = try await PostgresHarness.make()
        defer { Task { await harness.remove() } }
        let now = Int64(Date().timeIntervalSince1970)
        try await harness.insert("NULMESSAGE", createdAt: now - 1200, expiresAt: now - 60, state: .pending)
        let policy = DuePolicy(minOrderAgeSeconds: 300, paymentTimeoutSeconds: 7200)
        let order = try #require(
            try await harness.table.claimDue(now: now, policy: policy, limit: 1, leaseSeconds: 60, maxAttempts: 3).orders.first)
        let record = AttemptRecord(
            orderID: order.id, leaseToken: order.leaseToken, attempt: order.attempt, newState: .pending,
            nextAttemptAt: now + 5, errCode: "SYSTEM\u{0}ERROR", message: "the server said a\u{0}b",
            calls: [
                CallRecord(
                    call: .closeorder, host: "http://127.0.0.1:1", outcome: .retry, httpStatus: 200,
                    errCode: "SYSTEM\u{0}ERROR", errCodeDes: "x\u{0}y", message: "a\u{0}b", startedAt: now, finishedAt: now)
            ], startedAt: now, finishedAt: now)
        #expect(try await harness.table.record([record]) == [.applied])
        let row = try #require(try await harness.table.orders(outTradeNo: "NULMESSAGE").first)
        #expect(row.lastError == "the server said a\u{FFFD}b")
        #expect(try await harness.table.attempts(orderID: order.id).first?.errCodeDes == "x\u{FFFD}y")
    }

    @Test func theIdlePollOverManyFinishedRowsReadsOnlyThePartialIndexes() async throws {
        let harness = try await PostgresHarness.make()
        defer { Task { await harness.remove() } }
        try await harness.database.app(
            """
            INSERT INTO orders (mch_id, appid, out_trade_no, created_at, expires_at, state, closed_at)
            SELECT '1900000109', 'wx2421b1c4370ec43b', 'FINISHED' || n, now() - interval '2 days',
                   now() - interval '1 day', 'closed', now() - interval '1 day'
              FROM generate_series(1, 200000) AS n
            """)
        try await harness.database.app("ANALYZE orders")
        let table = try #require(harness.table as? PostgresOrderTable)
        let plan = try await table.pollPlan(
            now: Int64(Date().timeIntervalSince1970), policy: DuePolicy(minOrderAgeSeconds: 300, paymentTimeoutSeconds: 7200))
        let text = plan.joined(separator: "\n")
        #expect(!text.contains("Seq Scan"), "\(text)")
        for index in ["orders_pending_by_deadline", "orders_pending_by_creation", "orders_closing_by_lease"] {
            #expect(text.contains(index), "\(index) in\n\(text)")
        }
    }
}
