import Foundation
import GRDB
import OrderStore
import TestSupport
import Testing

/// What only SQLite can show about the claim: an idle poll commits nothing, and the due
/// query's plan reads partial indexes. The engine-neutral contract is in
/// `OrderTableConformanceTests`.
@Suite struct SQLiteClaimTests {
    let policy = DuePolicy(minOrderAgeSeconds: 300, paymentTimeoutSeconds: 7200)
    var now: Int64 { Int64(Date().timeIntervalSince1970) }

    func claim(_ database: TestDatabase) async throws -> [ClaimedOrder] {
        try await database.store.claimDue(now: now, policy: policy, limit: 100, leaseSeconds: 60, maxAttempts: 10).orders
    }

    @Test func anIdlePollWritesNothing() async throws {
        let database = try await TestDatabase.make()
        defer { database.remove() }
        try database.insert("FINISHED01", state: "closed")
        try database.insert("NOTYET0001", expiresIn: 600)
        let before = try await database.app.read { db in try Int.fetchOne(db, sql: "PRAGMA data_version") }
        let walBefore = try FileManager.default.attributesOfItem(atPath: database.path + "-wal")[.size] as? Int
        #expect(try await claim(database).isEmpty)
        let after = try await database.app.read { db in try Int.fetchOne(db, sql: "PRAGMA data_version") }
        let walAfter = try FileManager.default.attributesOfItem(atPath: database.path + "-wal")[.size] as? Int
        #expect(before == after, "no other connection committed")
        #expect(walBefore == walAfter)
    }

    @Test func theDueQueryReadsIndexesNotTheTable() async throws {
        let database = try await TestDatabase.make()
        defer { database.remove() }
        let plan = try await database.store.queryPlan(.poll, now: now, policy: policy)
        #expect(plan.count >= 3)
        for step in plan where step.contains("orders") {
            #expect(step.contains("USING INDEX") || step.contains("USING COVERING INDEX"), "full scan in plan: \(step)")
        }
        let indexes = plan.joined(separator: "\n")
        #expect(indexes.contains("orders_pending_by_deadline"))
        #expect(indexes.contains("orders_pending_by_creation"))
        #expect(indexes.contains("orders_closing_by_lease"))
    }

    @Test func theScrapesBacklogAndTheRecentHistoryReadIndexesNotTheTables() async throws {
        let database = try await TestDatabase.make()
        defer { database.remove() }
        let backlog = try await database.store.queryPlan(.dueBacklog, now: now, policy: policy)
        for step in backlog where step.contains("orders") && !step.contains("LIST SUBQUERY") {
            #expect(
                step.contains("USING INDEX") || step.contains("USING COVERING INDEX") || step.contains("INTEGER PRIMARY KEY"),
                "full scan in plan: \(step)")
        }
        #expect(!backlog.contains { $0.hasPrefix("SCAN orders") }, "\(backlog)")
        for query in [OrderStore.PlannedQuery.recentHistory, .recentErrCodes, .recentLateness] {
            let plan = try await database.store.queryPlan(query, now: now, policy: policy)
            #expect(plan.first { $0.contains("close_attempts") }?.contains("close_attempts_by_finish") == true, "\(plan)")
            // Scanning a subquery's own rows is fine; scanning a table is not.
            #expect(
                !plan.contains { $0.hasPrefix("SCAN") && !$0.contains("INDEX") && !$0.contains("(subquery") }, "\(query): \(plan)"
            )
            #expect(!plan.contains { $0.contains("orders_by_state") }, "no walk over every closed order: \(plan)")
        }
    }

    @Test func aScrapeCountsAtMostTenThousandDueOrdersWhereQueryCountsThemAll() async throws {
        let database = try await TestDatabase.make()
        defer { database.remove() }
        let now = self.now
        try await database.app.write { db in
            try db.execute(
                sql: """
                    WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10005)
                    INSERT INTO orders (mch_id, appid, out_trade_no, created_at, expires_at)
                    SELECT '1900000109', 'wx8888888888888888', 'BACKLOG' || printf('%06d', i), ? - 86400, ? - 600 - i FROM n
                    """, arguments: [now, now])
        }
        let backlog = try await database.store.dueBacklog(now: now, policy: policy)
        #expect(backlog.count == DueBacklog.countedAtMost)
        #expect(backlog.oldestDueSeconds == Int64(600 + 10005), "the oldest is among the rows counted")
        #expect(try await database.store.summary(now: now, policy: policy).due == 10005)
    }
}
