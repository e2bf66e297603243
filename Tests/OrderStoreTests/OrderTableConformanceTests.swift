import Foundation
import OrderStore
import TestSupport
import Testing

/// The engines whose order table conformers must pass this suite unchanged.
enum Engine: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case sqlite
    case postgresql

    var testDescription: String { rawValue }

    func harness() async throws -> any OrderTableHarness {
        switch self {
        case .sqlite: try await SQLiteHarness.make()
        case .postgresql: try await PostgresHarness.make()
        }
    }
}

/// The contract of `OrderTable`, written once and run over every engine: due rules, claims
/// and lease expiry, fencing, group commit, release and requeue.
@Suite struct OrderTableConformanceTests {
    let policy = DuePolicy(minOrderAgeSeconds: 300, paymentTimeoutSeconds: 7200)
    let now = Int64(Date().timeIntervalSince1970)

    /// Runs `body` with a fresh table of `engine`, removed afterwards.
    func with(_ engine: Engine, _ body: (any OrderTableHarness) async throws -> Void) async throws {
        let harness = try await engine.harness()
        do {
            try await body(harness)
        } catch {
            await harness.remove()
            throw error
        }
        await harness.remove()
    }

    /// An order inserted `age` seconds ago whose deadline passed `overdue` seconds ago (nil: no deadline).
    func insert(
        _ harness: any OrderTableHarness, _ number: String, age: Int64 = 1200, overdue: Int64? = 60,
        state: OrderState = .pending
    ) async throws {
        try await harness.insert(number, createdAt: now - age, expiresAt: overdue.map { now - $0 }, state: state)
    }

    func claim(_ harness: any OrderTableHarness, at time: Int64? = nil, limit: Int = 100, maxAttempts: Int = 10)
        async throws -> [ClaimedOrder]
    {
        try await harness.table.claimDue(
            now: time ?? now, policy: policy, limit: limit, leaseSeconds: 60, maxAttempts: maxAttempts
        ).orders
    }

    func row(_ harness: any OrderTableHarness, _ number: String) async throws -> OrderRecord {
        try #require(try await harness.table.orders(outTradeNo: number).first)
    }

    func history(_ harness: any OrderTableHarness, _ number: String) async throws -> [AttemptHistoryRecord] {
        try await harness.table.attempts(orderID: try await row(harness, number).id)
    }

    func record(_ order: ClaimedOrder, _ state: OrderState, calls: Int = 1) -> AttemptRecord {
        let lines = (0..<calls).map { index in
            CallRecord(
                call: index == 0 ? .closeorder : .orderquery, host: "http://127.0.0.1:1",
                outcome: state == .paid ? .paid : .closed, httpStatus: 200,
                errCode: state == .paid && index == 0 ? "ORDERPAID" : nil, message: "call \(index)", startedAt: now,
                finishedAt: now, latencyMilliseconds: 5)
        }
        return AttemptRecord(
            orderID: order.id, leaseToken: order.leaseToken, attempt: order.attempt, newState: state,
            errCode: state == .paid ? "ORDERPAID" : nil, message: "m", calls: lines, startedAt: now, finishedAt: now)
    }

    // MARK: Due rules

    @Test(arguments: Engine.allCases)
    func onlyOrdersPastTheirDeadlineAndFiveMinutesOldAreDue(engine: Engine) async throws {
        try await with(engine) { harness in
            try await insert(harness, "DUE0000001")
            try await insert(harness, "YOUNG00001", age: 299, overdue: 10)
            try await insert(harness, "NOTYET0001", overdue: -60)
            try await insert(harness, "NODEADLINE", age: 7201, overdue: nil)
            try await insert(harness, "NODEADLINE2", age: 7000, overdue: nil)
            try await insert(harness, "EXPBEFORECR", age: 301, overdue: 3000)
            #expect(try await claim(harness).map(\.outTradeNo).sorted() == ["DUE0000001", "EXPBEFORECR", "NODEADLINE"])
        }
    }

    @Test(arguments: Engine.allCases)
    func rowsNotPendingAreNeverTouched(engine: Engine) async throws {
        try await with(engine) { harness in
            for state in [OrderState.paid, .closed, .failed] { try await insert(harness, "STATE-\(state)", state: state) }
            #expect(try await claim(harness).isEmpty)
            #expect(try await row(harness, "STATE-paid").state == .paid)
        }
    }

    @Test(arguments: Engine.allCases)
    func backoffDelaysTheNextClaim(engine: Engine) async throws {
        try await with(engine) { harness in
            try await insert(harness, "RETRY00001")
            try await harness.setNextAttempt(of: "RETRY00001", at: now + 100)
            #expect(try await claim(harness).isEmpty)
            #expect(try await claim(harness, at: now + 101).count == 1)
        }
    }

    @Test(arguments: Engine.allCases)
    func aClaimRespectsItsLimit(engine: Engine) async throws {
        try await with(engine) { harness in
            for index in 0..<10 { try await insert(harness, "LIMIT\(1000 + index)") }
            #expect(try await claim(harness, limit: 4).count == 4)
            #expect(try await claim(harness, limit: 100).count == 6)
        }
    }

    // MARK: Claims and leases

    @Test(arguments: Engine.allCases)
    func aClaimedOrderIsLeasedCountsAnAttemptAndIsNotClaimedTwice(engine: Engine) async throws {
        try await with(engine) { harness in
            try await insert(harness, "DUE0000001")
            let claimed = try #require(try await claim(harness).first)
            #expect(claimed.attempt == 1)
            #expect(claimed.leaseExpiresAt == now + 60)
            let row = try await row(harness, "DUE0000001")
            #expect(row.state == .closing)
            #expect(row.attempts == 1)
            #expect(row.leaseExpiresAt == claimed.leaseExpiresAt)
            #expect(try await claim(harness).isEmpty)
            #expect(try await harness.table.isStillClaimed(claimed))
        }
    }

    @Test(arguments: Engine.allCases)
    func anExpiredLeaseIsClaimedAgainAndALiveOneIsNot(engine: Engine) async throws {
        try await with(engine) { harness in
            try await insert(harness, "CRASHED001")
            try await harness.leaveClosing("CRASHED001", attempts: 1, leaseToken: "dead", leaseExpiresAt: now - 1)
            try await insert(harness, "LIVELEASE1")
            try await harness.leaveClosing("LIVELEASE1", attempts: 1, leaseToken: "alive", leaseExpiresAt: now + 60)
            let claimed = try await claim(harness)
            #expect(claimed.map(\.outTradeNo) == ["CRASHED001"])
            #expect(claimed.first?.recoveredFromExpiredLease == true)
            #expect(claimed.first?.attempt == 2)
            #expect(claimed.first?.leaseToken != "dead")
        }
    }

    @Test(arguments: Engine.allCases)
    func anExpiredLeaseWithItsAttemptsSpentFailsWithoutACall(engine: Engine) async throws {
        try await with(engine) { harness in
            try await insert(harness, "SPENT00001")
            try await harness.leaveClosing("SPENT00001", attempts: 3, leaseToken: "dead", leaseExpiresAt: now - 1)
            let batch = try await harness.table.claimDue(
                now: now, policy: policy, limit: 10, leaseSeconds: 60, maxAttempts: 3)
            #expect(batch.orders.isEmpty)
            #expect(batch.failedWithoutCall.count == 1)
            let row = try await row(harness, "SPENT00001")
            #expect(row.state == .failed)
            #expect(row.lastError?.contains("lease expired") == true)
            #expect(try await history(harness, "SPENT00001").map(\.outcome) == [.abandoned])
        }
    }

    @Test(arguments: Engine.allCases)
    func aReleasedOrderIsPendingAgainWithoutCountingTheAttempt(engine: Engine) async throws {
        try await with(engine) { harness in
            try await insert(harness, "RELEASED01")
            let claimed = try await claim(harness)
            try await harness.table.release(claimed, now: now)
            let row = try await row(harness, "RELEASED01")
            #expect(row.state == .pending)
            #expect(row.attempts == 0)
            #expect(row.leaseExpiresAt == nil)
            #expect(try await claim(harness).first?.attempt == 1, "due again at once")
        }
    }

    // MARK: Write-back and fencing

    @Test(arguments: Engine.allCases)
    func aRecordedCloseKeepsItsTimeAndEveryCallInTheHistory(engine: Engine) async throws {
        try await with(engine) { harness in
            try await insert(harness, "CLOSE00001")
            let order = try #require(try await claim(harness).first)
            #expect(try await harness.table.record([record(order, .closed, calls: 2)]) == [.applied])
            let row = try await row(harness, "CLOSE00001")
            #expect(row.state == .closed)
            #expect(row.closedAt == now)
            #expect(row.leaseExpiresAt == nil)
            #expect(row.lastError == nil)
            let history = try await history(harness, "CLOSE00001")
            #expect(history.map(\.call) == [.closeorder, .orderquery])
            #expect(history.map(\.attempt) == [1, 1])
            #expect(try await !harness.table.isStillClaimed(order))
        }
    }

    @Test(arguments: Engine.allCases)
    func theAppsEditWinsOverAnInFlightClose(engine: Engine) async throws {
        try await with(engine) { harness in
            try await insert(harness, "RACE000001")
            let order = try #require(try await claim(harness).first)
            try await harness.setState(of: "RACE000001", to: .paid)
            #expect(try await !harness.table.isStillClaimed(order))
            #expect(try await harness.table.record([record(order, .closed)]) == [.superseded(currentState: .paid)])
            #expect(try await row(harness, "RACE000001").state == .paid)
            #expect(try await history(harness, "RACE000001").first?.message.contains("not written to the row") == true)
        }
    }

    @Test(arguments: Engine.allCases)
    func aBatchFencesEachRecordAloneAndKeepsEveryHistoryLineInOrder(engine: Engine) async throws {
        try await with(engine) { harness in
            for number in ["MIXED00001", "MIXED00002", "MIXED00003"] { try await insert(harness, number) }
            let orders = try await claim(harness).sorted { $0.outTradeNo < $1.outTradeNo }
            try #require(orders.count == 3)
            try await harness.setState(of: "MIXED00002", to: .paid)
            let records = [record(orders[0], .closed, calls: 2), record(orders[1], .closed), record(orders[2], .pending)]
            #expect(
                try await harness.table.record(records) == [.applied, .superseded(currentState: .paid), .applied],
                "each record's result, in the records' order")
            #expect(try await row(harness, "MIXED00001").state == .closed)
            #expect(try await row(harness, "MIXED00002").state == .paid, "the app's edit stands")
            #expect(try await row(harness, "MIXED00003").state == .pending)
            #expect(try await history(harness, "MIXED00001").map(\.call) == [.closeorder, .orderquery])
            #expect(try await history(harness, "MIXED00001").allSatisfy { !$0.message.contains("not written") })
            #expect(
                try await history(harness, "MIXED00002").map(\.message).last?.hasSuffix(
                    WriteBackResult.superseded(currentState: .paid).historyNote) == true)
            #expect(try await history(harness, "MIXED00003").count == 1)
        }
    }

    @Test(arguments: Engine.allCases)
    func aStaleLeaseCannotOverwriteANewerClaim(engine: Engine) async throws {
        try await with(engine) { harness in
            try await insert(harness, "STALE00001")
            let first = try #require(try await claim(harness).first)
            let second = try #require(try await claim(harness, at: now + 61).first, "claimed again once the lease expired")
            #expect(second.leaseToken != first.leaseToken)
            #expect(try await harness.table.record([record(first, .failed)]) == [.superseded(currentState: .closing)])
            #expect(try await harness.table.record([record(second, .closed)]) == [.applied])
            #expect(try await row(harness, "STALE00001").state == .closed)
        }
    }

    @Test(arguments: Engine.allCases)
    func aBatchOfRecordsIsWrittenTogether(engine: Engine) async throws {
        try await with(engine) { harness in
            for index in 0..<5 { try await insert(harness, "BATCH0000\(index)") }
            let orders = try await claim(harness)
            let records = orders.enumerated().map { index, order in record(order, index.isMultiple(of: 2) ? .closed : .paid) }
            #expect(try await harness.table.record(records) == Array(repeating: .applied, count: 5))
            let summary = try await harness.table.summary(now: now, policy: policy)
            #expect(summary.countsByState["closed"] == 3)
            #expect(summary.countsByState["paid"] == 2)
            #expect(summary.due == 0)
        }
    }

    // MARK: Requeue and queries

    @Test(arguments: Engine.allCases)
    func requeueMovesTheSelectedFailedOrdersBackKeepingTheirHistory(engine: Engine) async throws {
        try await with(engine) { harness in
            try await insert(harness, "WRONGKEY01")
            try await harness.leaveFailed("WRONGKEY01", errCode: "SIGNERROR")
            try await insert(harness, "OTHERFAIL1")
            try await harness.leaveFailed("OTHERFAIL1", errCode: "NO_AUTH")
            let result = try await harness.table.requeueFailed(RequeueSelection(errCode: "SIGNERROR"), now: now)
            #expect(result.requeued == 1)
            #expect(result.leftWithBadTimes == 0)
            let requeued = try await row(harness, "WRONGKEY01")
            #expect(requeued.state == .pending)
            #expect(requeued.attempts == 0)
            #expect(try await history(harness, "WRONGKEY01").map(\.outcome) == [.requeued])
            #expect(try await row(harness, "OTHERFAIL1").state == .failed)
            #expect(try await claim(harness).map(\.outTradeNo) == ["WRONGKEY01"])
        }
    }

    @Test(arguments: Engine.allCases)
    func theSummaryCountsEveryStateAndTheDueBacklog(engine: Engine) async throws {
        try await with(engine) { harness in
            try await insert(harness, "DUE0000001", overdue: 600)
            try await insert(harness, "NOTYET0001", overdue: -600)
            try await insert(harness, "FAILED0001")
            try await harness.leaveFailed("FAILED0001", errCode: "SIGNERROR")
            let summary = try await harness.table.summary(now: now, policy: policy)
            #expect(Set(summary.countsByState.keys) == Set(OrderState.allCases.map(\.rawValue)))
            #expect(summary.countsByState["pending"] == 2)
            #expect(summary.failuresByErrCode == ["SIGNERROR": 1])
            #expect(summary.due == 1)
            #expect(summary.oldestDueLatenessSeconds == 600)
            #expect(try await harness.table.orders(inState: .pending, limit: 10).count == 2)
        }
    }

    // MARK: Metrics and recent activity

    @Test(arguments: Engine.allCases)
    func aClaimedOrderSaysWhenItBecameDue(engine: Engine) async throws {
        try await with(engine) { harness in
            try await insert(harness, "DEADLINE01", age: 1200, overdue: 90)
            try await insert(harness, "NODEADLIN1", age: 7500, overdue: nil)
            try await insert(harness, "YOUNGDEAD1", age: 310, overdue: 200)
            let due = Dictionary(uniqueKeysWithValues: try await claim(harness).map { ($0.outTradeNo, $0.dueAt) })
            #expect(due["DEADLINE01"] == now - 90, "its deadline")
            #expect(due["NODEADLIN1"] == now - 7500 + 7200, "created_at plus the payment timeout")
            #expect(due["YOUNGDEAD1"] == now - 310 + 300, "never before it is five minutes old")
        }
    }

    @Test(arguments: Engine.allCases)
    func theDueBacklogCountsDueOrdersAndExpiredLeasesOnly(engine: Engine) async throws {
        try await with(engine) { harness in
            #expect(try await harness.table.dueBacklog(now: now, policy: policy) == DueBacklog(count: 0, oldestDueSeconds: nil))
            try await insert(harness, "DUE0000001", overdue: 600)
            try await insert(harness, "DUE0000002", overdue: 5)
            try await insert(harness, "NOTYET0001", overdue: -600)
            try await insert(harness, "CLOSED0001", overdue: 900, state: .closed)
            try await insert(harness, "LEASED0001")
            try await harness.leaveClosing("LEASED0001", attempts: 1, leaseToken: "t", leaseExpiresAt: now - 30)
            try await insert(harness, "LEASED0002")
            try await harness.leaveClosing("LEASED0002", attempts: 1, leaseToken: "u", leaseExpiresAt: now + 30)
            let backlog = try await harness.table.dueBacklog(now: now, policy: policy)
            #expect(backlog == DueBacklog(count: 3, oldestDueSeconds: 600))
        }
    }

    @Test(arguments: Engine.allCases)
    func recentActivityCountsTheWindowsHistoryAndHowLateOrdersWereClosed(engine: Engine) async throws {
        try await with(engine) { harness in
            for index in 1...4 { try await insert(harness, "LATE00000\(index)", overdue: Int64(index * 10)) }
            try await insert(harness, "PAID000001")
            let claimed = try await claim(harness)
            let records = claimed.map { order in
                record(order, order.outTradeNo == "PAID000001" ? .paid : .closed, calls: order.outTradeNo == "LATE000001" ? 2 : 1)
            }
            _ = try await harness.table.record(records)
            let activity = try await harness.table.activity(since: now - 60, until: now, policy: policy)
            #expect(activity.outcomes["closeorder"] == ["closed": 4, "paid": 1])
            #expect(activity.outcomes["orderquery"] == ["closed": 1])
            #expect(activity.errCodes == ["ORDERPAID": 1])
            // Closed at `now`, due 10 to 40 s before; the order closed by a close and its
            // confirming query counts once.
            #expect(activity.closeLateness == LatenessSummary(distribution: [10: 1, 20: 1, 30: 1, 40: 1]))
            #expect(activity.closeLateness.orders == 4)
            #expect(activity.closeLateness.p50 == 20)
            #expect(activity.closeLateness.max == 40)
            let earlier = try await harness.table.activity(since: now - 600, until: now - 1, policy: policy)
            #expect(earlier.outcomes.isEmpty)
            #expect(earlier.closeLateness.orders == 0)
            #expect(earlier.closeLateness.p99 == nil)
        }
    }
}

@Suite struct LatenessSummaryTests {
    @Test func quantilesAreNearestRankOverTheDistribution() {
        // 100 orders: 90 closed 2 s late, 9 at 30 s, 1 at 600 s.
        let summary = LatenessSummary(distribution: [2: 90, 30: 9, 600: 1])
        #expect(summary.orders == 100)
        #expect(summary.p50 == 2)
        #expect(summary.p90 == 2)
        #expect(summary.p99 == 30)
        #expect(summary.max == 600)
        #expect(LatenessSummary(distribution: [7: 1]).p99 == 7)
    }
}
