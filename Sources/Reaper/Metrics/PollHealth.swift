import Clocks
import Synchronization

/// Whether the loop's polls reach the database, for `/-/ready` and `closeorderd_ready`.
///
/// Ready once a poll has reached the database, and while the latest one did and it is
/// recent: a loop that stopped polling (stuck, or every call slot held far longer than calls
/// can last) is not ready either, unless claiming is paused on purpose (WeChat Pay is down;
/// `Reaper.readiness()` then asks the database itself). Not ready while stopping.
public final class PollHealth: Sendable {
    /// Ready, or why not, in a sentence for the operator.
    public enum Status: Equatable, Sendable {
        /// Polls reach the database.
        case ready
        /// They do not, or no longer: the reason.
        case notReady(String)
    }

    private struct State {
        var lastSuccess: ContinuousClock.Instant?
        var failure: String?
        var stopping = false
    }

    private let state = Mutex(State())
    private let clock: any DaemonClock

    /// Not ready until the first poll; times from `clock`.
    public init(clock: any DaemonClock = SystemClock()) {
        self.clock = clock
    }

    func pollSucceeded() {
        let now = clock.now
        state.withLock {
            $0.lastSuccess = now
            $0.failure = nil
        }
    }

    /// The database answered a read while claiming was paused: an earlier failed poll no
    /// longer stands, but no poll is counted.
    func databaseAnswered() {
        state.withLock { $0.failure = nil }
    }

    func pollFailed(_ reason: String) {
        state.withLock { $0.failure = reason }
    }

    func stopping() {
        state.withLock { $0.stopping = true }
    }

    /// The status now, given how long a healthy loop may go between polls; with
    /// `claimingPaused`, a quiet loop is not held against it.
    public func status(staleAfter: Duration, claimingPaused: Bool = false) -> Status {
        let now = clock.now
        return state.withLock { state in
            if state.stopping { return .notReady("stopping") }
            if let failure = state.failure { return .notReady("the last poll could not reach the database: \(failure)") }
            guard let lastSuccess = state.lastSuccess else { return .notReady("starting: no poll has reached the database yet") }
            let quiet = now - lastSuccess
            if quiet > staleAfter && !claimingPaused {
                return .notReady("no poll has reached the database for \(quiet.components.seconds) s")
            }
            return .ready
        }
    }
}
