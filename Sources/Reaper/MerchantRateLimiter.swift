import Clocks
import Foundation
import Logging
import OrderStore
import Synchronization

/// Lets at most a merchant's rate of calls go out in any window, across all of this
/// process's workers, and slows a merchant down on its own when WeChat Pay says it calls
/// too often.
///
/// At rate r, calls are let through at least 1/r seconds apart, measured from when the
/// previous one was actually let through, so late wake-ups never bunch calls together.
///
/// A merchant's limit is `max_requests_per_second` (none by default). On `FREQUENCY_LIMITED`
/// it halves: from the limit in force, or without one from the rate of the last second.
/// After `recoveryInterval` without another such answer it grows by half, until it is back
/// at the configured limit (or, with none configured, past `unlimitedAbove`, when it is lifted).
/// All its times come from `clock`, and it waits with `clock.sleep`.
///
/// With a `shared` budget (several daemons on one PostgreSQL table), the merchant's limit
/// holds for all of them together: each call reserves its slot in the database, spaced
/// `sharedHeadroom / rate` apart, and a slow-down any daemon meets is recorded there and
/// adopted by the others (on their next reservation, or within a second for a merchant
/// without a limit). Should the database not answer, this process's own spacing applies.
///
/// ```swift
/// let limiter = MerchantRateLimiter()
/// limiter.configure(["1900000109": 10])
/// await limiter.acquire("1900000109")   // at most 10 a second get past here
/// ```
public final class MerchantRateLimiter: Sendable {
    struct Merchant {
        var configured: Double?
        var adaptive: Double?
        /// The earliest the next call may go.
        var nextSlot: ContinuousClock.Instant
        /// Calls let through in the current one-second window, and in the one before.
        var windowStart: ContinuousClock.Instant
        var callsThisWindow = 0
        var callsLastWindow = 0
        var lastThrottle: ContinuousClock.Instant?
        var lastRecovery: ContinuousClock.Instant?
        /// When the shared budget was last asked for a slow-down, for a merchant without a rate.
        var lastSharedCheck: ContinuousClock.Instant?
        /// Whether this process reserved a shared slot for the merchant yet.
        var reservedShared = false

        init(now: ContinuousClock.Instant) {
            nextSlot = now
            windowStart = now
        }

        var rate: Double? {
            switch (configured, adaptive) {
            case (let configured?, let adaptive?): min(configured, adaptive)
            case (let configured?, nil): configured
            case (nil, let adaptive?): adaptive
            case (nil, nil): nil
            }
        }
    }

    private let merchants = Mutex<[String: Merchant]>([:])
    let recoveryInterval: Duration
    let unlimitedAbove: Double
    let clock: any DaemonClock
    let shared: (any MerchantCallSpacing)?
    /// Where a shared budget that cannot be reached is reported.
    let logger: Logger?

    /// Shared slots are 10 % wider than `1 / rate`: between reserving a slot and the call
    /// reaching WeChat Pay lie a database answer, a wake-up and a request on each host, and
    /// the limit must hold in every one-second window whatever those took (up to 100 ms in
    /// a second's calls).
    public static let sharedHeadroom = 1.1

    /// This process's first shared slot for a merchant is this much longer: its first call
    /// opens a connection (and, in a process just started, pays one-time costs), so it can
    /// reach WeChat Pay that much later than its slot, closer to the next daemon's call.
    public static let firstCallAllowance: Duration = .milliseconds(250)

    /// How late past its shared slot a call may still go: half the 100 ms the headroom
    /// leaves in a second's calls.
    static let lateCall: Duration = .milliseconds(50)
    /// The quickest reservation this process saw: the database's distance, without a busy
    /// host's delays.
    private let quickestReservation = Mutex<Duration?>(nil)
    /// When a shared budget that cannot be reached was last reported.
    private let lastAloneWarning = Mutex<ContinuousClock.Instant?>(nil)

    /// A limiter with no limits until `configure` sets some; with `shared`, its limits and
    /// slow-downs hold across every daemon sharing that budget.
    public init(
        recoveryInterval: Duration = .seconds(10), unlimitedAbove: Double = 1000, clock: any DaemonClock = SystemClock(),
        shared: (any MerchantCallSpacing)? = nil, logger: Logger? = nil
    ) {
        self.recoveryInterval = recoveryInterval
        self.unlimitedAbove = unlimitedAbove
        self.clock = clock
        self.shared = shared
        self.logger = logger
    }

    /// Sets the configured limits (on start and on reload); adaptive slow-downs are kept.
    public func configure(_ limits: [String: Double?]) {
        let now = clock.now
        merchants.withLock { merchants in
            for (mchID, limit) in limits { merchants[mchID, default: Merchant(now: now)].configured = limit }
        }
    }

    /// The calls per second `mchID` may make now; nil for no limit.
    public func currentRate(_ mchID: String) -> Double? { merchants.withLock { $0[mchID]?.rate } }

    /// Waits until `mchID` may make a call, and counts it. Returns at once if the task is cancelled.
    public func acquire(_ mchID: String) async {
        if let shared, await acquireShared(mchID, from: shared) { return }
        while true {
            let now = clock.now
            // Mutated in place: a copy of the entry per call would cost more than the call.
            let wait: Duration? = merchants.withLock { merchants in
                Self.tryAcquire(
                    &merchants[mchID, default: Merchant(now: now)], now: now, recoveryInterval: recoveryInterval,
                    unlimitedAbove: unlimitedAbove)
            }
            guard let wait else { return }
            try? await clock.sleep(for: wait)
            if Task.isCancelled { return }
        }
    }

    /// Waits for a slot reserved in the shared budget, if a rate is in force; returns false
    /// when the local spacing is to decide instead (no rate, or the database did not answer).
    private func acquireShared(_ mchID: String, from shared: any MerchantCallSpacing) async -> Bool {
        let now = clock.now
        var (rate, askForSlowDown, first) = merchants.withLock { merchants in
            Self.sharedRate(
                &merchants[mchID, default: Merchant(now: now)], now: now, recoveryInterval: recoveryInterval,
                unlimitedAbove: unlimitedAbove)
        }
        if askForSlowDown, let slowDown = try? await shared.slowDown(for: mchID) {
            rate = adopt(slowDown, for: mchID)
        }
        guard let rate else { return false }
        for forfeited in 0... {
            let spacing =
                Duration.seconds(Self.sharedHeadroom / rate) + (first && forfeited == 0 ? Self.firstCallAllowance : .zero)
            let sentAt = clock.now
            let slot: ReservedCall
            do {
                slot = try await shared.reserveCall(for: mchID, spacing: spacing)
            } catch {
                warnSpacingAlone(mchID, error)
                return false
            }
            let answeredAt = clock.now
            if let slowDown = slot.slowDown { adopt(slowDown, for: mchID) }
            // The slot is the database's now plus the wait, and that now lies between
            // sending and the answer: waiting from the answer, the call is never early.
            if slot.wait > .zero { try? await clock.sleep(for: slot.wait) }
            // A call far past its slot (the answer or the wake-up came late on a busy host)
            // would crowd the next daemon's: such a slot is given up for a new one, ten times
            // at most. The slot was decided half the quickest round trip after sending, plus
            // the time the reservation queued behind others'.
            let quickest = quickestReservation.withLock { quickest in
                quickest = min(quickest ?? .seconds(1), answeredAt - sentAt - slot.queued)
                return quickest ?? .zero
            }
            let late = clock.now - (sentAt + quickest / 2 + slot.queued + slot.wait)
            if late <= Self.lateCall || forfeited == 9 || Task.isCancelled { break }
        }
        let calledAt = clock.now
        merchants.withLock { merchants in
            Self.count(&merchants[mchID, default: Merchant(now: calledAt)], now: calledAt)
        }
        return true
    }

    /// Says, at most once a minute, that the shared budget could not be reached.
    private func warnSpacingAlone(_ mchID: String, _ error: StoreError) {
        let now = clock.now
        let due = lastAloneWarning.withLock { last in
            guard last.map({ now - $0 >= .seconds(60) }) ?? true else { return false }
            last = now
            return true
        }
        guard due else { return }
        logger?.warning(
            "cannot reserve calls in the rate limit shared with the other daemons; spacing this daemon's calls alone (said once a minute while it lasts)",
            metadata: ["mch_id": "\(mchID)", "error": "\(error)"])
    }

    /// The rate in force for a shared reservation, whether to ask the shared budget for a
    /// slow-down first (a merchant without a rate, at most once a second), and whether this
    /// is this process's first reservation for the merchant.
    private static func sharedRate(
        _ merchant: inout Merchant, now: ContinuousClock.Instant, recoveryInterval: Duration, unlimitedAbove: Double
    ) -> (rate: Double?, askForSlowDown: Bool, first: Bool) {
        recover(&merchant, now: now, recoveryInterval: recoveryInterval, unlimitedAbove: unlimitedAbove)
        let first = !merchant.reservedShared
        if let rate = merchant.rate {
            merchant.reservedShared = true
            return (rate, false, first)
        }
        if let last = merchant.lastSharedCheck, now - last < .seconds(1) { return (nil, false, first) }
        merchant.lastSharedCheck = now
        return (nil, true, first)
    }

    /// Lets a call through (nil) or says how long to wait.
    private static func tryAcquire(
        _ merchant: inout Merchant, now: ContinuousClock.Instant, recoveryInterval: Duration, unlimitedAbove: Double
    ) -> Duration? {
        recover(&merchant, now: now, recoveryInterval: recoveryInterval, unlimitedAbove: unlimitedAbove)
        if let rate = merchant.rate {
            guard now >= merchant.nextSlot else { return merchant.nextSlot - now }
            merchant.nextSlot = now + .nanoseconds(Int64(1_000_000_000 / rate))
        }
        count(&merchant, now: now)
        return nil
    }

    /// Counts a call let through in its one-second window.
    private static func count(_ merchant: inout Merchant, now: ContinuousClock.Instant) {
        if now - merchant.windowStart >= .seconds(1) {
            merchant.callsLastWindow = now - merchant.windowStart >= .seconds(2) ? 0 : merchant.callsThisWindow
            merchant.callsThisWindow = 0
            merchant.windowStart = now
        }
        merchant.callsThisWindow += 1
    }

    /// WeChat Pay said `mchID` calls too often: halve its rate, and with a shared budget,
    /// record the slow-down for the other daemons (or adopt theirs, if one came first).
    public func throttled(_ mchID: String) async {
        let now = clock.now
        let slowedTo: Double? = merchants.withLock { merchants in
            var merchant = merchants[mchID, default: Merchant(now: now)]
            // Several calls in flight may all come back limited: one slow-down per second.
            if let last = merchant.lastThrottle, now - last < .seconds(1) { return nil }
            let observed = Double(max(merchant.callsThisWindow, merchant.callsLastWindow))
            let base = merchant.rate ?? max(observed, 1)
            merchant.adaptive = max(0.1, base / 2)
            merchant.lastThrottle = now
            merchant.lastRecovery = now
            merchants[mchID] = merchant
            return merchant.adaptive
        }
        guard let shared, let slowedTo, let standing = try? await shared.recordSlowDown(for: mchID, to: slowedTo) else {
            return
        }
        adopt(standing, for: mchID, evenIfOlder: true)
    }

    /// Takes on a slow-down recorded in the shared budget, unless it is the one in force
    /// here already, replaying the recoveries due since; returns the rate now in force.
    @discardableResult
    private func adopt(_ slowDown: SharedSlowDown, for mchID: String, evenIfOlder: Bool = false) -> Double? {
        let now = clock.now
        return merchants.withLock { merchants in
            var merchant = merchants[mchID, default: Merchant(now: now)]
            defer { merchants[mchID] = merchant }
            let slowedAt = now - slowDown.age
            // The same slow-down read back later differs by the database's answer times only.
            if let last = merchant.lastThrottle, !evenIfOlder, slowedAt < last + .milliseconds(500) {
                return merchant.rate
            }
            merchant.adaptive = slowDown.rate
            merchant.lastThrottle = slowedAt
            merchant.lastRecovery = slowedAt
            while recoveryInterval > .zero, merchant.adaptive != nil, let last = merchant.lastRecovery,
                now - last >= recoveryInterval
            {
                Self.recover(
                    &merchant, now: last + recoveryInterval, recoveryInterval: recoveryInterval, unlimitedAbove: unlimitedAbove)
            }
            return merchant.rate
        }
    }

    private static func recover(
        _ merchant: inout Merchant, now: ContinuousClock.Instant, recoveryInterval: Duration, unlimitedAbove: Double
    ) {
        guard let adaptive = merchant.adaptive, let last = merchant.lastRecovery, now - last >= recoveryInterval else { return }
        let raised = adaptive * 1.5
        if let configured = merchant.configured, raised >= configured {
            merchant.adaptive = nil
        } else if merchant.configured == nil && raised >= unlimitedAbove {
            merchant.adaptive = nil
        } else {
            merchant.adaptive = raised
        }
        merchant.lastRecovery = now
    }
}
