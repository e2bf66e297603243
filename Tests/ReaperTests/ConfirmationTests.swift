import Foundation
import OrderStore
import Reaper
import Simulator
import TestSupport
import Testing
import WeChatPay

/// Order queries where a close's outcome is unclear, and `reaper.confirm`.
@Suite struct ConfirmationTests {
    @Test func aLatePaymentIsRecordedForReconciliation() async throws {
        let world = try await ReaperWorld.make()
        defer { Task { await world.tearDown() } }
        try world.database.insert("LATEPAID001")
        world.simulator.simulator.markPaid("LATEPAID001")
        try await world.reaper.runOnce()
        let row = try #require(try await world.database.order("LATEPAID001"))
        #expect(row.state == .paid)
        #expect(row.errCode == "ORDERPAID")
        #expect(row.tradeState == "SUCCESS")
        #expect(row.transactionID?.hasPrefix("4200") == true)
        #expect(row.totalFee == 101)
        #expect(row.timeEnd == "20261129120000")
        #expect(row.tradeType == "JSAPI")
        #expect(try await world.database.history("LATEPAID001").map(\.call) == [.closeorder, .orderquery])
    }

    /// A lease that expired mid-call: the close may or may not have happened, so ask first.
    @Test(arguments: [
        ("SUCCESS", "paid", nil as String?, false), ("REFUND", "paid", nil, false), ("CLOSED", "closed", nil, false),
        ("REVOKED", "closed", nil, false), ("PAYERROR", "closed", nil, false), ("NOTPAY", "closed", nil, true),
        ("(nonexistent)", "closed", "ORDERNOTEXIST", false), ("USERPAYING", "pending", nil, false),
        ("ACCEPT", "pending", nil, false),
    ])
    func anUnknownOutcomeIsQueriedBeforeClosingAgain(tradeState: String, state: String, errCode: String?, closes: Bool)
        async throws
    {
        let world = try await ReaperWorld.make()
        defer { Task { await world.tearDown() } }
        try world.crashMidCall("UNKNOWN0001")
        world.simulator.simulator.setTradeState(tradeState, for: "UNKNOWN0001")
        try await world.reaper.runOnce()
        let row = try #require(try await world.database.order("UNKNOWN0001"))
        #expect(row.state?.rawValue == state)
        #expect(row.errCode == errCode)
        #expect(world.stats.queryCalls["UNKNOWN0001"] == 1)
        #expect((world.stats.closeCalls["UNKNOWN0001"] ?? 0) == (closes ? 1 : 0))
        #expect(world.stats.closesWhilePaying == 0, "never close under a paying user")
        if state == "pending" {
            #expect(row.attempts == 1, "waiting for a paying user does not use up attempts")
            #expect(row.lastError?.contains("payment is under way") == true)
        }
    }

    @Test func aPayingUserIsWaitedForThenTheOrderIsClosed() async throws {
        let world = try await ReaperWorld.make()
        defer { Task { await world.tearDown() } }
        try world.crashMidCall("PAYINGUSER1")
        world.simulator.simulator.markPaying("PAYINGUSER1")
        try await world.reaper.runOnce()
        #expect(try await world.database.order("PAYINGUSER1")?.tradeState == "USERPAYING")
        world.clock.advance(by: 120)
        try await world.reaper.runOnce()
        #expect(try await world.database.order("PAYINGUSER1")?.state == .pending, "still paying: asked again, not closed")
        // The user gave up: the payment window passed without a payment.
        world.simulator.simulator.setTradeState("NOTPAY", for: "PAYINGUSER1")
        world.clock.advance(by: 120)
        try await world.reaper.runOnce()
        let row = try #require(try await world.database.order("PAYINGUSER1"))
        #expect(row.state == .closed)
        #expect(world.stats.closesWhilePaying == 0)
        let calls = try await world.database.history("PAYINGUSER1").map {
            "\($0.call?.rawValue ?? "-"):\($0.outcome?.rawValue ?? "?")"
        }
        #expect(calls == ["orderquery:paying", "orderquery:paying", "orderquery:not_paid", "closeorder:closed"])
    }

    @Test func repeatedFrequencyLimitsAreQueriedBeforeTheNextClose() async throws {
        let world = try await ReaperWorld.make()
        defer { Task { await world.tearDown() } }
        try world.database.insert("RATELIMIT01")
        world.simulator.simulator.setFault(FaultPlan(.frequencyLimited, times: 1), for: "RATELIMIT01")
        try await world.reaper.runOnce()
        #expect(try await world.database.order("RATELIMIT01")?.errCode == "FREQUENCY_LIMITED")
        world.clock.advance(by: 10)
        try await world.reaper.runOnce()
        #expect(try await world.database.order("RATELIMIT01")?.state == .closed)
        let calls = try await world.database.history("RATELIMIT01").map {
            "\($0.call?.rawValue ?? "-"):\($0.outcome?.rawValue ?? "?")"
        }
        #expect(calls == ["closeorder:retry", "orderquery:not_paid", "closeorder:closed"])
    }

    @Test func theLastAttemptAsksBeforeClosing() async throws {
        let world = try await ReaperWorld.make(maxAttempts: 2)
        defer { Task { await world.tearDown() } }
        try world.database.insert("LASTCHANCE1")
        world.simulator.simulator.setFault(FaultPlan(.http503, times: 1), for: "LASTCHANCE1")
        try await world.reaper.runOnce()
        // Meanwhile the customer paid.
        world.simulator.simulator.markPaid("LASTCHANCE1")
        world.clock.advance(by: 10)
        try await world.reaper.runOnce()
        let row = try #require(try await world.database.order("LASTCHANCE1"))
        #expect(row.state == .paid)
        #expect(world.stats.closeCalls["LASTCHANCE1"] == 1, "no close after the query said paid")
    }

    @Test func confirmBeforeQueriesEveryOrderAndClosesOnlyUnpaidOnes() async throws {
        let world = try await ReaperWorld.make(confirm: .before)
        defer { Task { await world.tearDown() } }
        try world.database.insert("BEFOREOPEN1")
        try world.database.insert("BEFOREPAID1")
        world.simulator.simulator.markPaid("BEFOREPAID1")
        try await world.reaper.runOnce()
        #expect(try await world.database.order("BEFOREOPEN1")?.state == .closed)
        #expect(try await world.database.order("BEFOREPAID1")?.state == .paid)
        #expect(world.stats.queryCalls == ["BEFOREOPEN1": 1, "BEFOREPAID1": 1])
        #expect(world.stats.closeCalls == ["BEFOREOPEN1": 1])
    }

    @Test func confirmAfterQueriesEveryClosedOrder() async throws {
        let world = try await ReaperWorld.make(confirm: .after)
        defer { Task { await world.tearDown() } }
        try world.database.insert("AFTERCLOSE1")
        try await world.reaper.runOnce()
        let row = try #require(try await world.database.order("AFTERCLOSE1"))
        #expect(row.state == .closed)
        #expect(row.tradeState == "CLOSED")
        #expect(try await world.database.history("AFTERCLOSE1").map(\.call) == [.closeorder, .orderquery])
    }
}
