/// Exponential backoff, capped, with full jitter: after attempt `n` the wait is uniform in
/// `[0, min(max, base × 2^(n-1))]`, so that orders failing together do not retry together.
public struct Backoff: Sendable, Equatable {
    public var baseSeconds: Double
    public var maxSeconds: Double

    public init(baseSeconds: Double, maxSeconds: Double) {
        self.baseSeconds = baseSeconds
        self.maxSeconds = maxSeconds
    }

    /// The largest wait after attempt `attempt` (1-based).
    public func cap(afterAttempt attempt: Int) -> Double {
        let exponent = UInt64(max(0, min(attempt - 1, 62)))
        return min(maxSeconds, baseSeconds * Double(UInt64(1) << exponent))
    }

    /// When an order that failed attempt `attempt` at `now` becomes due again: `jitter` (0 to 1)
    /// of the way into the window, and at least a second later.
    public func nextAttempt(afterAttempt attempt: Int, now: Int64, jitter: Double) -> Int64 {
        let wait = min(max(jitter, 0), 1) * cap(afterAttempt: attempt)
        return now + max(1, Int64(wait.rounded(.up)))
    }
}
