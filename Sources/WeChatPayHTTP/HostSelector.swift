import Clocks
import Synchronization

/// Which base URL serves the next call: the primary, or the backup after the primary failed
/// at the connection level or with HTTP 5xx, with a probe of the primary at most every
/// `probeInterval` until it answers again.
///
/// ```swift
/// let hosts = HostSelector(primary: "https://api.mch.weixin.qq.com", backup: "https://api2.mch.weixin.qq.com",
///                          probeInterval: .seconds(30))
/// let host = hosts.hostForNextCall()
/// hosts.report(host: host, failedOver: false)
/// ```
public final class HostSelector: Sendable {
    public let primary: String
    public let backup: String?
    let probeInterval: Duration
    let clock: any DaemonClock
    private let state: Mutex<(onBackup: Bool, lastProbe: ContinuousClock.Instant)>

    /// A selector that starts on `primary`. A `backup` that is empty or the primary itself
    /// counts as none. `clock` times the probes.
    public init(primary: String, backup: String?, probeInterval: Duration, clock: any DaemonClock = SystemClock()) {
        self.primary = primary
        self.backup = backup.flatMap { $0.isEmpty || $0 == primary ? nil : $0 }
        self.probeInterval = probeInterval
        self.clock = clock
        self.state = Mutex((false, clock.now))
    }

    /// Whether calls currently go to the backup.
    public var onBackup: Bool { state.withLock { $0.onBackup } }

    /// The base URL for the next call: the primary when it is in use or a probe of it is
    /// due, the backup otherwise.
    public func hostForNextCall() -> String {
        guard let backup else { return primary }
        return state.withLock { state in
            guard state.onBackup else { return primary }
            let now = clock.now
            if now - state.lastProbe >= probeInterval {
                state.lastProbe = now
                return primary
            }
            return backup
        }
    }

    /// Records how a call to `host` went: a failure of the primary that the backup may
    /// serve (`failedOver`) moves later calls to the backup; any other answer from the
    /// primary brings them back. Reports about the backup change nothing.
    public func report(host: String, failedOver: Bool) {
        guard backup != nil, host == primary else { return }
        state.withLock { state in
            if failedOver && !state.onBackup {
                state.onBackup = true
                state.lastProbe = clock.now
            } else if !failedOver {
                state.onBackup = false
            }
        }
    }
}
