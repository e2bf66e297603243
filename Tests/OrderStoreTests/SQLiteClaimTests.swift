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
        let history = try await database.store.queryPlan(.recentHistory, now: now, policy: policy)
        #expect(history.joined(separator: "\n").contains("close_attempts_by_finish"), "\(history)")
        #expect(!history.contains { $0.hasPrefix("SCAN close_attempts") && !$0.contains("INDEX") }, "\(history)")
    }
}
