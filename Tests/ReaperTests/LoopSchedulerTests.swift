import Testing

@testable import Reaper

/// The poll loop's decisions, without a loop: claim how many, wait, pause or stop.
@Suite struct LoopSchedulerTests {
    let daemon = LoopScheduler(concurrency: 4, batchSize: 256, untilIdle: false)
    let once = LoopScheduler(concurrency: 4, batchSize: 256, untilIdle: true)
    let later = ContinuousClock.now + .seconds(5)

    func situation(queued: Int = 0, inFlight: Int = 0, exhausted: Bool = false) -> LoopScheduler.Situation {
        .init(queued: queued, inFlight: inFlight, exhausted: exhausted)
    }

    @Test func anIdleLoopClaimsTwoRoundsOfConcurrency() {
        #expect(daemon.next(situation(), permission: { .claim }) == .claim(8))
        #expect(daemon.next(situation(inFlight: 4, exhausted: false), permission: { .claim }) == .claim(4))
        #expect(daemon.next(situation(queued: 2, inFlight: 4), permission: { .claim }) == .claim(2))
    }

    @Test func theBatchSizeCapsAClaim() {
        let small = LoopScheduler(concurrency: 200, batchSize: 50, untilIdle: false)
        #expect(small.next(situation(), permission: { .claim }) == .claim(50))
    }

    @Test func aFullQueueWaitsForASlotWithoutAskingTheBreaker() {
        var asked = false
        let turn = daemon.next(situation(queued: 4, inFlight: 4)) {
            asked = true
            return .claim
        }
        #expect(turn == .waitForFreeSlot)
        #expect(!asked, "asking would take a probe permission")
    }

    @Test func nothingDueMeansPollLaterOrStopForOnce() {
        #expect(daemon.next(situation(exhausted: true), permission: { .claim }) == .pollLater)
        #expect(once.next(situation(exhausted: true), permission: { .claim }) == .stop)
        #expect(
            once.next(situation(queued: 1, exhausted: true), permission: { .claim }) == .waitForFreeSlot,
            "queued orders are called before a once pass ends")
    }

    @Test func anOpenBreakerAllowsOneProbeOrAPause() {
        #expect(daemon.next(situation(), permission: { .probe }) == .claim(1))
        #expect(daemon.next(situation(), permission: { .waitUntil(later) }) == .pauseUntil(later))
        #expect(once.next(situation(), permission: { .waitUntil(later) }) == .stop)
    }

    @Test(arguments: [(100, 1000, 10.0, false), (1012, 1000, 10.0, true), (1011, 1000, 10.0, false), (1012, 1000, 9.5, true)])
    func anOrderStartsOnlyIfItsCallCanEndASecondBeforeItsLease(
        leaseExpiresAt: Int64, now: Int64, timeout: Double, starts: Bool
    ) {
        #expect(LoopScheduler.canStart(leaseExpiresAt, now: now, timeoutSeconds: timeout) == starts)
    }
}
