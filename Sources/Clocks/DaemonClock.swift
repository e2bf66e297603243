import Foundation

/// The daemon's one source of time, injected into the loop, the outage breaker, the rate
/// limiter and the host selector, so that tests can advance it instead of sleeping.
///
/// Two readings of one clock: `now` is monotonic (it spaces calls, probes and pauses);
/// `secondsSince1970` is what rows record (due times, leases, history).
///
/// ```swift
/// let clock = SystemClock()
/// try await clock.sleep(until: clock.now + .seconds(1))
/// ```
public protocol DaemonClock: Sendable {
    /// Now, on the monotonic clock.
    var now: ContinuousClock.Instant { get }
    /// Now, in whole seconds since 1970 (UTC), as rows record it.
    var secondsSince1970: Int64 { get }
    /// Returns once `now` has reached `deadline`; throws `CancellationError` if the task is
    /// cancelled first.
    func sleep(until deadline: ContinuousClock.Instant) async throws
}

extension DaemonClock {
    /// Sleeps for `duration` of this clock's time.
    public func sleep(for duration: Duration) async throws {
        try await sleep(until: now + duration)
    }
}

/// The machine's clocks: `ContinuousClock` and the system's wall clock.
public struct SystemClock: DaemonClock {
    public init() {}

    public var now: ContinuousClock.Instant { .now }

    public var secondsSince1970: Int64 { Int64(Date().timeIntervalSince1970) }

    public func sleep(until deadline: ContinuousClock.Instant) async throws {
        try await Task.sleep(until: deadline, clock: .continuous)
    }
}
