import Foundation
import Reaper
import Synchronization
import Systemd

/// Tells systemd what the daemon is doing: `READY=1` after the first successful poll,
/// `WATCHDOG=1` from the poll loop itself, `STATUS=` lines, and `STOPPING=1` with more time
/// while calls in flight drain.
final class SystemdReporter: ReaperObserver {
    let notifier: ServiceNotifier
    let drainSeconds: Double
    /// Not more often than this, so a busy loop does not flood the socket.
    let updateInterval: Duration
    private let state = Mutex<(ready: Bool, lastUpdate: ContinuousClock.Instant?)>((false, nil))

    init(notifier: ServiceNotifier, requestTimeoutSeconds: Double) {
        self.notifier = notifier
        self.drainSeconds = requestTimeoutSeconds + 5
        self.updateInterval = min(notifier.watchdogInterval.map { $0 / 2 } ?? .seconds(1), .seconds(1))
    }

    func pollSucceeded(_ report: PollReport) {
        let now = ContinuousClock.now
        let (first, due) = state.withLock { state in
            let first = !state.ready
            let due = first || state.lastUpdate.map { now - $0 >= updateInterval } ?? true
            if due {
                state.ready = true
                state.lastUpdate = now
            }
            return (first, due)
        }
        guard due else { return }
        let totals = report.totals
        var message = first ? "READY=1\n" : ""
        if notifier.watchdogInterval != nil { message += "WATCHDOG=1\n" }
        message +=
            "STATUS=last poll claimed \(report.claimed), \(report.inFlight) in flight; since start \(totals.closed) closed, "
            + "\(totals.paid) paid, \(totals.failed) failed, \(totals.retried) retried"
        notifier.notify(message)
    }

    func pollFailed(_ reason: String) {
        notifier.notify("STATUS=cannot poll the database, retrying: \(reason)")
    }

    func draining(inFlight: Int) {
        var message = "STOPPING=1\nSTATUS=stopping: \(inFlight) calls in flight"
        if inFlight > 0 { message += "\nEXTEND_TIMEOUT_USEC=\(Int64(drainSeconds * 1_000_000))" }
        notifier.notify(message)
    }
}
