import Foundation
import GRDB
import OrderStore
import TestSupport
import Testing

@Suite struct ClaimTests {
    let policy = DuePolicy(minOrderAgeSeconds: 300, paymentTimeoutSeconds: 7200)
    var now: Int64 { Int64(Date().timeIntervalSince1970) }

    func claim(_ database: TestDatabase, at time: Int64? = nil, limit: Int = 100, maxAttempts: Int = 10) async throws
        -> [ClaimedOrder]
    {
        try await database.store.claimDue(
            now: time ?? now, policy: policy, limit: limit, leaseSeconds: 60, maxAttempts: maxAttempts
        ).orders
    }

    @Test func onlyOrdersPastTheirDeadlineAndFiveMinutesOldAreClaimed() async throws {
        let database = try await TestDatabase.make()
        defer { database.remove() }
        try database.insert("DUE0000001", createdAgo: 1200, expiresIn: -60)
        try database.insert("YOUNG00001", createdAgo: 299, expiresIn: -10)
        try database.insert("NOTYET0001", createdAgo: 1200, expiresIn: 60)
        try database.insert("NODEADLINE", createdAgo: 7201, expiresIn: nil)
        try database.insert("NODEADLINE2", createdAgo: 7000, expiresIn: nil)
        try database.insert("EXPBEFORECR", createdAgo: 301, expiresIn: -3000)
        let claimed = try await claim(database).map(\.outTradeNo).sorted()
        #expect(claimed == ["DUE0000001", "EXPBEFORECR", "NODEADLINE"])
    }

    @Test func claimedOrdersAreLeasedAndCountAnAttempt() async throws {
        let database = try await TestDatabase.make()
        defer { database.remove() }
        try database.insert("DUE0000001")
        let claimed = try #require(try await claim(database).first)
        #expect(claimed.attempt == 1)
        let row = try #require(try await database.order("DUE0000001"))
        #expect(row.state == .closing)
        #expect(row.attempts == 1)
        #expect(row.leaseExpiresAt == claimed.leaseExpiresAt)
        #expect(try await claim(database).isEmpty, "a leased order is not claimed twice")
    }

    @Test func rowsNotPendingAreNeverTouched() async throws {
        let database = try await TestDatabase.make()
        defer { database.remove() }
        for state in ["paid", "closed", "failed"] { try database.insert("STATE-\(state)", state: state) }
        #expect(try await claim(database).isEmpty)
    }

    @Test func backoffDelaysTheNextClaim() async throws {
        let database = try await TestDatabase.make()
        defer { database.remove() }
        try database.insert("RETRY00001")
        try await database.app.write { db in try db.execute(sql: "UPDATE orders SET next_attempt_at = unixepoch() + 100") }
        #expect(try await claim(database).isEmpty)
        #expect(try await claim(database, at: now + 101).count == 1)
    }

    @Test func anExpiredLeaseIsRecovered() async throws {
        let database = try await TestDatabase.make()
        defer { database.remove() }
        // The row a process leaves when it dies mid-call.
        try database.insert("CRASHED001")
        try await database.app.write { db in
            try db.execute(
                sql: "UPDATE orders SET state = 'closing', attempts = 1, lease_token = 'dead', lease_expires_at = unixepoch() - 1"
            )
        }
        try database.insert("LIVELEASE1")
        try await database.app.write { db in
            try db.execute(
                sql:
                    "UPDATE orders SET state = 'closing', attempts = 1, lease_token = 'alive', lease_expires_at = unixepoch() + 60 WHERE out_trade_no = 'LIVELEASE1'"
            )
        }
        let claimed = try await claim(database)
        #expect(claimed.map(\.outTradeNo) == ["CRASHED001"])
        #expect(claimed.first?.recoveredFromExpiredLease == true)
        #expect(claimed.first?.attempt == 2)
        #expect(claimed.first?.leaseToken != "dead")
    }

    @Test func anExpiredLeaseWithItsBudgetSpentFails() async throws {
        let database = try await TestDatabase.make()
        defer { database.remove() }
        try database.insert("SPENT00001")
        try await database.app.write { db in
            try db.execute(
                sql: "UPDATE orders SET state = 'closing', attempts = 3, lease_token = 'dead', lease_expires_at = unixepoch() - 1"
            )
        }
        #expect(try await claim(database, maxAttempts: 3).isEmpty)
        let row = try #require(try await database.order("SPENT00001"))
        #expect(row.state == .failed)
        #expect(row.lastError?.contains("lease expired") == true)
        #expect(try await database.history("SPENT00001").map(\.outcome) == [.abandoned])
    }

    @Test func claimRespectsTheLimit() async throws {
        let database = try await TestDatabase.make()
        defer { database.remove() }
        for index in 0..<10 { try database.insert("LIMIT\(1000 + index)") }
        #expect(try await claim(database, limit: 4).count == 4)
        #expect(try await claim(database, limit: 100).count == 6)
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
        let plan = try await database.store.dueQueryPlan(now: now, policy: policy)
        #expect(plan.count >= 3)
        for step in plan where step.contains("orders") {
            #expect(step.contains("USING INDEX") || step.contains("USING COVERING INDEX"), "full scan in plan: \(step)")
        }
        let indexes = plan.joined(separator: "\n")
        #expect(indexes.contains("orders_pending_by_deadline"))
        #expect(indexes.contains("orders_pending_by_creation"))
        #expect(indexes.contains("orders_closing_by_lease"))
    }
}

@Suite struct WriteBackTests {
    let policy = DuePolicy(minOrderAgeSeconds: 300, paymentTimeoutSeconds: 7200)

    func claimOne(_ database: TestDatabase) async throws -> ClaimedOrder {
        let now = Int64(Date().timeIntervalSince1970)
        let claimed = try await database.store.claimDue(now: now, policy: policy, limit: 1, leaseSeconds: 60, maxAttempts: 10)
        return try #require(claimed.orders.first)
    }

    func record(_ order: ClaimedOrder, _ state: OrderState, outcome: HistoryOutcome) -> AttemptRecord {
        let now = Int64(Date().timeIntervalSince1970)
        let call = CallRecord(
            call: .closeorder, host: "http://127.0.0.1:1", outcome: outcome, httpStatus: 200,
            errCode: state == .paid ? "ORDERPAID" : nil, message: "m", startedAt: now, finishedAt: now, latencyMilliseconds: 5)
        return AttemptRecord(
            orderID: order.id, leaseToken: order.leaseToken, attempt: order.attempt, newState: state,
            errCode: state == .paid ? "ORDERPAID" : nil, message: "m", calls: [call], startedAt: now, finishedAt: now)
    }

    @Test func aClosedOrderRecordsItsCloseTimeAndHistory() async throws {
        let database = try await TestDatabase.make()
        defer { database.remove() }
        try database.insert("CLOSE00001")
        let order = try await claimOne(database)
        #expect(try await database.store.record([record(order, .closed, outcome: .closed)]) == [.applied])
        let row = try #require(try await database.order("CLOSE00001"))
        #expect(row.state == .closed)
        #expect(row.closedAt != nil)
        #expect(row.leaseExpiresAt == nil)
        #expect(row.lastError == nil)
        #expect(try await database.history("CLOSE00001").map(\.outcome) == [.closed])
    }

    @Test func theAppsEditWinsOverAnInFlightClose() async throws {
        let database = try await TestDatabase.make()
        defer { database.remove() }
        try database.insert("RACE000001")
        let order = try await claimOne(database)
        // The app learns of the payment while the close call is in flight.
        try await database.app.write { db in
            try db.execute(sql: "UPDATE orders SET state = 'paid' WHERE out_trade_no = 'RACE000001'")
        }
        let result = try await database.store.record([record(order, .closed, outcome: .closed)])
        #expect(result == [.superseded(currentState: .paid)])
        #expect(try await database.order("RACE000001")?.state == .paid)
        let history = try await database.history("RACE000001")
        #expect(history.first?.message.contains("not written to the row") == true)
    }

    @Test func aStaleLeaseCannotOverwriteANewerClaim() async throws {
        let database = try await TestDatabase.make()
        defer { database.remove() }
        try database.insert("STALE00001")
        let first = try await claimOne(database)
        // The first claim's lease expires; another process claims the order again.
        try await database.app.write { db in try db.execute(sql: "UPDATE orders SET lease_expires_at = unixepoch() - 1") }
        let second = try await claimOne(database)
        #expect(second.leaseToken != first.leaseToken)
        #expect(
            try await database.store.record([record(first, .failed, outcome: .failed)]) == [.superseded(currentState: .closing)])
        #expect(try await database.store.record([record(second, .closed, outcome: .closed)]) == [.applied])
        #expect(try await database.order("STALE00001")?.state == .closed)
    }
}
