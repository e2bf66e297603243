/// Counts of what the reaper did since it started.
public struct OutcomeTotals: Sendable, Equatable {
    public var closed = 0
    public var paid = 0
    public var failed = 0
    public var retried = 0
    public init() {}
}

/// What one successful poll found.
public struct PollReport: Sendable, Equatable {
    /// Orders claimed by this poll.
    public var claimed: Int
    /// Calls in flight after it.
    public var inFlight: Int
    public var totals: OutcomeTotals
}

/// Told what the loop is doing, for a service manager: `pollSucceeded` comes from the loop
/// itself after every poll that reached the database, so a stuck loop goes quiet.
public protocol ReaperObserver: Sendable {
    func pollSucceeded(_ report: PollReport)
    /// A poll could not reach the database; the loop will try again.
    func pollFailed(_ reason: String)
    /// Graceful shutdown began; `inFlight` calls are still to be recorded.
    func draining(inFlight: Int)
}
