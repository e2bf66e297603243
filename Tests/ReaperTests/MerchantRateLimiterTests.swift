import Clocks
import Reaper
import TestSupport
import Testing

/// The per-merchant rate limiter on a clock the tests move: exact spacing, the halving on
/// FREQUENCY_LIMITED and the climb back, with no real sleeping.
@Suite struct MerchantRateLimiterTests {
    static let merchant = "1900000109"

    /// Makes `count` calls one after another; returns when each was let through, after `start`.
    static func passages(
        _ count: Int, for mchID: String = merchant, limiter: MerchantRateLimiter, clock: ManualClock,
        from start: ContinuousClock.Instant
    ) async throws -> [Duration] {
        var passages: [Duration] = []
        for _ in 0..<count {
            let passed = try await clock.drive {
                await limiter.acquire(mchID)
                return clock.now
            }
            passages.append(passed - start)
        }
        return passages
    }

    /// A limit in calls per second and the gap it leaves between calls.
    struct Spacing: Sendable, CustomTestStringConvertible {
        let rate: Double
        let gap: Duration
        var testDescription: String { "\(rate)/s" }
    }

    @Test(arguments: [
        Spacing(rate: 10, gap: .milliseconds(100)), Spacing(rate: 4, gap: .milliseconds(250)),
        Spacing(rate: 3, gap: .nanoseconds(333_333_333)), Spacing(rate: 0.5, gap: .seconds(2)),
    ])
    func callsAreLetThroughExactlyOneIntervalApart(_ spacing: Spacing) async throws {
        let clock = ManualClock()
        let limiter = MerchantRateLimiter(clock: clock)
        limiter.configure([Self.merchant: spacing.rate])
        let start = clock.now
        let passages = try await Self.passages(5, limiter: limiter, clock: clock, from: start)
        #expect(passages == (0..<5).map { spacing.gap * $0 })
    }

    @Test func aCallerThatComesLateIsSpacedFromWhenItWentNotFromItsSlot() async throws {
        let clock = ManualClock()
        let limiter = MerchantRateLimiter(clock: clock)
        limiter.configure([Self.merchant: 10])
        let start = clock.now
        await limiter.acquire(Self.merchant)
        clock.advance(by: .milliseconds(350))
        let passages = try await Self.passages(3, limiter: limiter, clock: clock, from: start)
        #expect(passages == [.milliseconds(350), .milliseconds(450), .milliseconds(550)], "no burst to catch up")
    }

    @Test func withoutALimitNoCallWaitsAndMerchantsDoNotWaitForEachOther() async throws {
        let clock = ManualClock()
        let limiter = MerchantRateLimiter(clock: clock)
        limiter.configure([Self.merchant: 1, "OTHER": nil])
        let start = clock.now
        #expect(try await Self.passages(1, limiter: limiter, clock: clock, from: start) == [.zero])
        #expect(
            try await Self.passages(50, for: "OTHER", limiter: limiter, clock: clock, from: start)
                == Array(repeating: .zero, count: 50))
        #expect(try await Self.passages(1, limiter: limiter, clock: clock, from: start) == [.seconds(1)])
    }

    /// A configured limit (nil for none), the calls made in the last second, and the rate after FREQUENCY_LIMITED.
    struct Halving: Sendable, CustomTestStringConvertible {
        let configured: Double?
        let callsInTheLastSecond: Int
        let halved: Double
        var testDescription: String { "limit \(configured.map { "\($0)" } ?? "none"), \(callsInTheLastSecond) calls" }
    }

    @Test(arguments: [
        Halving(configured: 40, callsInTheLastSecond: 1, halved: 20),
        Halving(configured: 10, callsInTheLastSecond: 0, halved: 5),
        Halving(configured: 0.15, callsInTheLastSecond: 0, halved: 0.1),
        Halving(configured: nil, callsInTheLastSecond: 8, halved: 4),
        Halving(configured: nil, callsInTheLastSecond: 1, halved: 0.5),
        Halving(configured: nil, callsInTheLastSecond: 0, halved: 0.5),
    ])
    func frequencyLimitedHalvesTheRateInForceOrTheRateOfTheLastSecond(_ halving: Halving) async throws {
        let clock = ManualClock()
        let limiter = MerchantRateLimiter(clock: clock)
        limiter.configure([Self.merchant: halving.configured])
        for _ in 0..<halving.callsInTheLastSecond { await limiter.acquire(Self.merchant) }
        await limiter.throttled(Self.merchant)
        #expect(limiter.currentRate(Self.merchant) == halving.halved, "never below 0.1 a second")
    }

    @Test func manyFrequencyLimitedAnswersInOneSecondHalveTheRateOnce() async throws {
        let clock = ManualClock()
        let limiter = MerchantRateLimiter(clock: clock)
        limiter.configure([Self.merchant: 40])
        for _ in 0..<5 { await limiter.throttled(Self.merchant) }
        #expect(limiter.currentRate(Self.merchant) == 20)
        clock.advance(by: .milliseconds(999))
        await limiter.throttled(Self.merchant)
        #expect(limiter.currentRate(Self.merchant) == 20)
        clock.advance(by: .milliseconds(1))
        await limiter.throttled(Self.merchant)
        #expect(limiter.currentRate(Self.merchant) == 10, "a second later, a new answer halves it again")
    }

    @Test func theHalvedRateSpacesTheCalls() async throws {
        let clock = ManualClock()
        let limiter = MerchantRateLimiter(clock: clock)
        limiter.configure([Self.merchant: 10])
        await limiter.throttled(Self.merchant)
        let start = clock.now
        let passages = try await Self.passages(3, limiter: limiter, clock: clock, from: start)
        #expect(passages == [.zero, .milliseconds(200), .milliseconds(400)])
    }

    /// The rate after FREQUENCY_LIMITED, then after each `recoveryInterval` without another.
    struct Recovery: Sendable, CustomTestStringConvertible {
        let configured: Double?
        let callsBeforeThrottle: Int
        let rates: [Double?]
        var testDescription: String { "limit \(configured.map { "\($0)" } ?? "none")" }
    }

    @Test(arguments: [
        Recovery(configured: 40, callsBeforeThrottle: 0, rates: [20, 30, 40, 40]),
        Recovery(configured: 100, callsBeforeThrottle: 0, rates: [50, 75, 100]),
        Recovery(configured: nil, callsBeforeThrottle: 8, rates: [4, 6, 9, 13.5, 20.25, 30.375, 45.5625, nil, nil]),
    ])
    func frequencyLimitedRecoversByHalfEveryIntervalUpToTheConfiguredLimit(_ recovery: Recovery) async throws {
        let clock = ManualClock()
        let limiter = MerchantRateLimiter(recoveryInterval: .seconds(10), unlimitedAbove: 50, clock: clock)
        limiter.configure([Self.merchant: recovery.configured])
        for _ in 0..<recovery.callsBeforeThrottle { await limiter.acquire(Self.merchant) }
        await limiter.throttled(Self.merchant)
        // The rate changes only when a call asks for it, so a call is made just before each
        // interval ends and one as it ends (which may wait for its slot: the clock moves on).
        var intervalStart = clock.now
        for (step, rate) in recovery.rates.enumerated() {
            #expect(limiter.currentRate(Self.merchant) == rate, "after \(step) intervals")
            clock.advance(by: intervalStart + .seconds(10) - .milliseconds(1) - clock.now)
            try await clock.drive { await limiter.acquire(Self.merchant) }
            #expect(limiter.currentRate(Self.merchant) == rate, "not a millisecond early")
            intervalStart += .seconds(10)
            clock.advance(by: intervalStart - clock.now)
            try await clock.drive { await limiter.acquire(Self.merchant) }
        }
    }

    @Test func anotherFrequencyLimitedRestartsTheRecoveryInterval() async throws {
        let clock = ManualClock()
        let limiter = MerchantRateLimiter(recoveryInterval: .seconds(10), clock: clock)
        limiter.configure([Self.merchant: 40])
        await limiter.throttled(Self.merchant)
        clock.advance(by: .seconds(6))
        await limiter.throttled(Self.merchant)
        #expect(limiter.currentRate(Self.merchant) == 10)
        clock.advance(by: .seconds(6))
        await limiter.acquire(Self.merchant)
        #expect(limiter.currentRate(Self.merchant) == 10, "12 s after the first, 6 s after the second")
        clock.advance(by: .seconds(4))
        await limiter.acquire(Self.merchant)
        #expect(limiter.currentRate(Self.merchant) == 15)
    }
}
