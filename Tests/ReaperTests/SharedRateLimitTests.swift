import Foundation
import Logging
import OrderStore
import PostgresStore
import Reaper
import TestSupport
import Testing

/// A merchant's limit and its `FREQUENCY_LIMITED` slow-downs held across daemons that share
/// one PostgreSQL table: each limiter here has a table (a connection pool) of its own, as
/// each daemon does, on one database of the test cluster.
@Suite(.serialized) struct SharedRateLimitTests {
    static let merchant = "1900000109"

    /// Limiters sharing one database's budget, each on a table (a pool) of its own.
    struct SharedBudget {
        let limiters: [MerchantRateLimiter]
        let tables: [PostgresOrderTable]
        let database: TestPostgresDatabase

        static func make(_ count: Int, limit: Double?) async throws -> SharedBudget {
            let database = try await TestPostgresDatabase.make()
            let tables = try (0..<count).map { _ in
                try PostgresOrderTable(address: database.address, password: nil, logger: TestPostgresDatabase.quiet)
            }
            _ = try await tables[0].migrate()
            let logger = Logger(label: "test", factory: { StreamLogHandler.standardError(label: $0) })
            let limiters = tables.map { MerchantRateLimiter(shared: $0, logger: logger) }
            for limiter in limiters { limiter.configure([merchant: limit]) }
            return SharedBudget(limiters: limiters, tables: tables, database: database)
        }

        func tearDown() async {
            tables.forEach { $0.close() }
            await database.remove()
        }
    }

    @Test func twoDaemonsTogetherKeepTheMerchantsLimitInEverySecond() async throws {
        let budget = try await SharedBudget.make(2, limit: 20)
        defer { Task { await budget.tearDown() } }
        let (limiters, tables, database) = (budget.limiters, budget.tables, budget.database)
        let instants = await withTaskGroup(of: [ContinuousClock.Instant].self) { group in
            for limiter in limiters {
                for _ in 0..<4 {
                    group.addTask {
                        var calls: [ContinuousClock.Instant] = []
                        for _ in 0..<6 {
                            await limiter.acquire(Self.merchant)
                            calls.append(.now)
                        }
                        return calls
                    }
                }
            }
            return await group.reduce(into: []) { $0 += $1 }.sorted()
        }
        #expect(instants.count == 48)
        let seconds = instants.map { Double(($0 - instants[0]) / .milliseconds(1)) / 1000 }
        #expect(mostCallsInAnySecond(seconds) <= 20, "at most the limit in any second, across both")
        // Alone, each would have let its 24 through in 1.2 s: together 48 take 47 slots.
        let span = try #require(instants.last) - instants[0]
        #expect(span >= .seconds(47 * MerchantRateLimiter.sharedHeadroom / 20) - .milliseconds(100), "\(span)")
        // A busy machine costs slots (a call that would go too late takes a new one): not too many.
        #expect(span < .seconds(2 * 47 * MerchantRateLimiter.sharedHeadroom / 20) + .seconds(1.5), "\(span)")
    }

    @Test func aSlowDownOneDaemonMeetsSlowsTheOtherOnItsNextCall() async throws {
        let budget = try await SharedBudget.make(2, limit: 20)
        defer { Task { await budget.tearDown() } }
        let (limiters, tables, database) = (budget.limiters, budget.tables, budget.database)
        await limiters[0].acquire(Self.merchant)
        await limiters[0].throttled(Self.merchant)
        #expect(limiters[0].currentRate(Self.merchant) == 10)
        await limiters[1].acquire(Self.merchant)
        #expect(limiters[1].currentRate(Self.merchant) == 10, "adopted from the reservation")
        // The other daemon's calls in flight come back limited too, within the second: the
        // slow-down that stands is the first one, not a second halving.
        await limiters[1].throttled(Self.merchant)
        #expect(limiters[1].currentRate(Self.merchant) == 10)
    }

    @Test func theFirstSlowDownInASecondStandsForEveryDaemon() async throws {
        let budget = try await SharedBudget.make(2, limit: nil)
        defer { Task { await budget.tearDown() } }
        let (tables, database) = (budget.tables, budget.database)
        #expect(try await tables[0].recordSlowDown(for: Self.merchant, to: 8).rate == 8)
        #expect(try await tables[1].recordSlowDown(for: Self.merchant, to: 2).rate == 8, "calls in flight elsewhere")
        try await database.app("UPDATE merchant_call_spacing SET slowed_at = now() - interval '2 seconds'")
        let later = try await tables[1].recordSlowDown(for: Self.merchant, to: 2)
        #expect(later.rate == 2 && later.age < .seconds(1), "a second later, a new slow-down")
        #expect(try await tables[0].slowDown(for: Self.merchant)?.rate == 2, "the other daemon reads it")
    }

    @Test func aMerchantWithoutALimitLearnsAnotherDaemonsSlowDownWithinASecond() async throws {
        let budget = try await SharedBudget.make(2, limit: nil)
        defer { Task { await budget.tearDown() } }
        let (limiters, tables, database) = (budget.limiters, budget.tables, budget.database)
        for _ in 0..<6 { await limiters[0].acquire(Self.merchant) }
        await limiters[0].throttled(Self.merchant)
        #expect(limiters[0].currentRate(Self.merchant) == 3, "half the 6 calls of the last second")
        #expect(limiters[1].currentRate(Self.merchant) == nil)
        await limiters[1].acquire(Self.merchant)
        #expect(limiters[1].currentRate(Self.merchant) == 3)
    }

    @Test func aSlowDownRecordedEarlierIsTakenOnWithTheRecoveriesDueSince() async throws {
        let budget = try await SharedBudget.make(2, limit: 100)
        defer { Task { await budget.tearDown() } }
        let (limiters, tables, database) = (budget.limiters, budget.tables, budget.database)
        await limiters[0].acquire(Self.merchant)
        await limiters[0].throttled(Self.merchant)
        // As if it happened 15 s ago: one recovery interval (10 s) has passed since.
        try await database.app("UPDATE merchant_call_spacing SET slowed_at = now() - interval '15 seconds'")
        await limiters[1].acquire(Self.merchant)
        #expect(limiters[1].currentRate(Self.merchant) == 50 * 1.5)
        // 25 s: a second step would pass the limit, so the slow-down is over.
        let third = MerchantRateLimiter(shared: tables[1])
        third.configure([Self.merchant: 100])
        try await database.app("UPDATE merchant_call_spacing SET slowed_at = now() - interval '25 seconds'")
        await third.acquire(Self.merchant)
        #expect(third.currentRate(Self.merchant) == 100)
    }

    @Test func reservationsAreSpacedByTheServersClock() async throws {
        let budget = try await SharedBudget.make(2, limit: nil)
        defer { Task { await budget.tearDown() } }
        let (tables, database) = (budget.tables, budget.database)
        var waits: [Duration] = []
        for table in tables + tables {
            waits.append(try await table.reserveCall(for: Self.merchant, spacing: .seconds(10)).wait)
        }
        #expect(waits[0] == .zero, "the first slot is now")
        for (index, wait) in waits.enumerated().dropFirst() {
            let expected = Duration.seconds(10 * index)
            #expect(wait <= expected && wait > expected - .seconds(1), "slot \(index): \(wait)")
        }
        #expect(try await tables[1].slowDown(for: Self.merchant) == nil)
        #expect(try await tables[0].slowDown(for: "1900000999") == nil, "an unknown merchant")
    }
}
