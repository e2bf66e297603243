import Clocks
import Synchronization

/// Stops the daemon from burning every due order's attempts during a WeChat Pay outage.
///
/// It watches the last `window` calls. When at least `minimumCalls` of them are in and
/// `openRatio` of them failed for outage reasons (no connection, no answer, HTTP 5xx), it
/// opens: the loop stops claiming and sends single probe calls, the first after
/// `firstProbeDelay`, then at doubling intervals up to `maximumProbeDelay`. Any usable answer
/// closes it. Attempts that fail for outage reasons while it is open do not count against
/// `max_attempts`. All its times come from `clock`.
///
/// ```swift
/// let clock = SystemClock()
/// let breaker = OutageBreaker(clock: clock)
/// if case .waitUntil(let instant) = breaker.permission() { try await clock.sleep(until: instant) }
/// ```
public final class OutageBreaker: Sendable {
    /// What the poll loop may do now.
    public enum Permission: Equatable, Sendable {
        case claim
        /// Claim one order, as a probe.
        case probe
        /// Do not claim before this instant.
        case waitUntil(ContinuousClock.Instant)
    }

    struct State {
        var recent: [Bool] = []
        var open = false
        var probeDelay: Duration = .zero
        var nextProbe: ContinuousClock.Instant
        var probeInFlight = false
        var timesOpened = 0
    }

    let window: Int
    let minimumCalls: Int
    let openRatio: Double
    let firstProbeDelay: Duration
    let maximumProbeDelay: Duration
    let clock: any DaemonClock
    private let state: Mutex<State>

    /// A closed breaker. `clock` says when probes are due.
    public init(
        window: Int = 20, minimumCalls: Int = 10, openRatio: Double = 0.8, firstProbeDelay: Duration = .seconds(1),
        maximumProbeDelay: Duration = .seconds(60), clock: any DaemonClock = SystemClock()
    ) {
        self.window = window
        self.minimumCalls = minimumCalls
        self.openRatio = openRatio
        self.firstProbeDelay = firstProbeDelay
        self.maximumProbeDelay = maximumProbeDelay
        self.clock = clock
        self.state = Mutex(State(nextProbe: clock.now))
    }

    /// Whether the loop should stop claiming (and probe instead).
    public var isOpen: Bool { state.withLock { $0.open } }

    /// How many times the breaker has opened since it was made (for tests and metrics).
    public var timesOpened: Int { state.withLock { $0.timesOpened } }

    /// What the loop may do now: claim as usual, send one probe (counted as in flight until
    /// its result is recorded), or wait.
    public func permission() -> Permission {
        let now = clock.now
        return state.withLock { state in
            guard state.open else { return .claim }
            if state.probeInFlight || now < state.nextProbe {
                return .waitUntil(state.probeInFlight ? now + firstProbeDelay : state.nextProbe)
            }
            state.probeInFlight = true
            return .probe
        }
    }

    /// The probe found nothing due to call: another may go at once.
    public func probeNotSent() {
        state.withLock { $0.probeInFlight = false }
    }

    /// Records one call's result. Returns true if this result opened or closed the breaker.
    @discardableResult
    public func record(outageFailure: Bool) -> Bool {
        let now = clock.now
        return state.withLock { state in
            if state.open {
                if !outageFailure {
                    state = State(nextProbe: now, timesOpened: state.timesOpened)
                    return true
                }
                if state.probeInFlight {
                    state.probeInFlight = false
                    state.probeDelay = min(state.probeDelay * 2, maximumProbeDelay)
                    state.nextProbe = now + state.probeDelay
                }
                return false
            }
            state.recent.append(outageFailure)
            if state.recent.count > window { state.recent.removeFirst(state.recent.count - window) }
            let failures = state.recent.filter { $0 }.count
            guard state.recent.count >= minimumCalls, Double(failures) >= openRatio * Double(state.recent.count) else {
                return false
            }
            state.open = true
            state.timesOpened += 1
            state.probeDelay = firstProbeDelay
            state.nextProbe = now + firstProbeDelay
            return true
        }
    }
}
