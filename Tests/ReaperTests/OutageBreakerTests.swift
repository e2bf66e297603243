import Clocks
import Reaper
import TestSupport
import Testing

/// The outage breaker on a clock the tests move: when it opens, when it probes, what closes it.
@Suite struct OutageBreakerTests {
    /// A breaker that judges the last 10 calls, once 5 are in, and opens at 80 % outage failures.
    static func breaker(
        on clock: ManualClock, firstProbeDelay: Duration = .seconds(1), maximumProbeDelay: Duration = .seconds(60)
    ) -> OutageBreaker {
        OutageBreaker(
            window: 10, minimumCalls: 5, openRatio: 0.8, firstProbeDelay: firstProbeDelay,
            maximumProbeDelay: maximumProbeDelay, clock: clock)
    }

    /// Opens `breaker` with five outage failures; returns the instant it opened.
    static func open(_ breaker: OutageBreaker, on clock: ManualClock) -> ContinuousClock.Instant {
        for _ in 0..<5 { breaker.record(outageFailure: true) }
        return clock.now
    }

    @Test func theBreakerOpensOnMostlyOutageFailuresAndClosesOnAnyAnswer() {
        let clock = ManualClock()
        let breaker = Self.breaker(on: clock)
        for _ in 0..<4 { breaker.record(outageFailure: true) }
        #expect(!breaker.isOpen, "too few calls to judge")
        #expect(breaker.permission() == .claim)
        breaker.record(outageFailure: true)
        #expect(breaker.isOpen)
        #expect(breaker.timesOpened == 1)
        #expect(breaker.permission() == .waitUntil(clock.now + .seconds(1)))
        clock.advance(by: .seconds(1))
        #expect(breaker.permission() == .probe)
        breaker.record(outageFailure: false)
        #expect(!breaker.isOpen)
        #expect(breaker.permission() == .claim)
    }

    @Test func mostlySuccessfulCallsKeepTheBreakerClosed() {
        let clock = ManualClock()
        let breaker = Self.breaker(on: clock)
        for index in 0..<100 {
            breaker.record(outageFailure: index % 3 != 0)
            clock.advance(by: .milliseconds(10))
        }
        #expect(!breaker.isOpen)
        #expect(breaker.timesOpened == 0)
    }

    /// When each probe is due, in milliseconds after the breaker opened, if every probe fails.
    struct ProbeSchedule: Sendable, CustomTestStringConvertible {
        let firstProbeDelay: Duration
        let maximumProbeDelay: Duration
        let probesAt: [Int64]
        var testDescription: String { "first \(firstProbeDelay), at most \(maximumProbeDelay)" }
    }

    @Test(arguments: [
        ProbeSchedule(
            firstProbeDelay: .seconds(1), maximumProbeDelay: .seconds(60),
            probesAt: [1000, 3000, 7000, 15_000, 31_000, 63_000, 123_000, 183_000]),
        ProbeSchedule(
            firstProbeDelay: .seconds(1), maximumProbeDelay: .seconds(8), probesAt: [1000, 3000, 7000, 15_000, 23_000, 31_000]),
        ProbeSchedule(
            firstProbeDelay: .milliseconds(300), maximumProbeDelay: .seconds(1), probesAt: [300, 900, 1900, 2900, 3900]),
        ProbeSchedule(firstProbeDelay: .seconds(5), maximumProbeDelay: .seconds(5), probesAt: [5000, 10_000, 15_000]),
    ])
    func theBreakerProbesAfterTheFirstDelayThenAtDoublingIntervalsUpToTheMaximum(_ schedule: ProbeSchedule) {
        let clock = ManualClock()
        let breaker = Self.breaker(
            on: clock, firstProbeDelay: schedule.firstProbeDelay, maximumProbeDelay: schedule.maximumProbeDelay)
        let opened = Self.open(breaker, on: clock)
        for milliseconds in schedule.probesAt {
            let due = opened + .milliseconds(milliseconds)
            #expect(breaker.permission() == .waitUntil(due))
            clock.advance(by: due - clock.now - .milliseconds(1))
            #expect(breaker.permission() == .waitUntil(due), "not a millisecond early")
            clock.advance(by: .milliseconds(1))
            #expect(breaker.permission() == .probe, "probe due \(milliseconds) ms after opening")
            #expect(
                breaker.permission() == .waitUntil(clock.now + schedule.firstProbeDelay),
                "one probe at a time: the loop looks again after the first delay")
            breaker.record(outageFailure: true)
            #expect(breaker.isOpen)
        }
        #expect(breaker.timesOpened == 1, "failed probes do not count as openings")
    }

    @Test(arguments: [1, 2, 5])
    func anyUsableAnswerClosesTheBreakerWhicheverProbeBringsIt(answeredProbe: Int) {
        let clock = ManualClock()
        let breaker = Self.breaker(on: clock)
        _ = Self.open(breaker, on: clock)
        for probe in 1...answeredProbe {
            if case .waitUntil(let due) = breaker.permission() { clock.advance(by: due - clock.now) }
            #expect(breaker.permission() == .probe)
            breaker.record(outageFailure: probe < answeredProbe)
        }
        #expect(!breaker.isOpen)
        #expect(breaker.permission() == .claim)
        // It judges afresh: four more failures are too few to open it again, the fifth opens it.
        for _ in 0..<4 { breaker.record(outageFailure: true) }
        #expect(!breaker.isOpen)
        breaker.record(outageFailure: true)
        #expect(breaker.isOpen)
        #expect(breaker.timesOpened == 2)
        #expect(breaker.permission() == .waitUntil(clock.now + .seconds(1)), "the schedule starts again at the first delay")
    }

    @Test func aCallStillInFlightWhenTheBreakerOpenedClosesItIfAnswered() {
        let clock = ManualClock()
        let breaker = Self.breaker(on: clock)
        let opened = Self.open(breaker, on: clock)
        breaker.record(outageFailure: true)
        #expect(breaker.permission() == .waitUntil(opened + .seconds(1)), "a late failure does not move the probe")
        breaker.record(outageFailure: false)
        #expect(!breaker.isOpen)
    }

    @Test func aProbeThatFoundNothingToCallLetsTheNextGoAtOnce() {
        let clock = ManualClock()
        let breaker = Self.breaker(on: clock)
        _ = Self.open(breaker, on: clock)
        clock.advance(by: .seconds(1))
        #expect(breaker.permission() == .probe)
        breaker.probeNotSent()
        #expect(breaker.permission() == .probe)
    }
}
