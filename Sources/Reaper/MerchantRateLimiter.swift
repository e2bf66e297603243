import Clocks
import Foundation
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

    /// A limiter with no limits until `configure` sets some.
    public init(recoveryInterval: Duration = .seconds(10), unlimitedAbove: Double = 1000, clock: any DaemonClock = SystemClock())
    {
        self.recoveryInterval = recoveryInterval
        self.unlimitedAbove = unlimitedAbove
        self.clock = clock
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

    /// Lets a call through (nil) or says how long to wait.
    private static func tryAcquire(
        _ merchant: inout Merchant, now: ContinuousClock.Instant, recoveryInterval: Duration, unlimitedAbove: Double
    ) -> Duration? {
        recover(&merchant, now: now, recoveryInterval: recoveryInterval, unlimitedAbove: unlimitedAbove)
        if let rate = merchant.rate {
            guard now >= merchant.nextSlot else { return merchant.nextSlot - now }
            merchant.nextSlot = now + .nanoseconds(Int64(1_000_000_000 / rate))
        }
        if now - merchant.windowStart >= .seconds(1) {
            merchant.callsLastWindow = now - merchant.windowStart >= .seconds(2) ? 0 : merchant.callsThisWindow
            merchant.callsThisWindow = 0
            merchant.windowStart = now
        }
        merchant.callsThisWindow += 1
        return nil
    }

    /// WeChat Pay said `mchID` calls too often: halve its rate.
    public func throttled(_ mchID: String) {
        let now = clock.now
        merchants.withLock { merchants in
            var merchant = merchants[mchID, default: Merchant(now: now)]
            // Several calls in flight may all come back limited: one slow-down per second.
            if let last = merchant.lastThrottle, now - last < .seconds(1) { return }
            let observed = Double(max(merchant.callsThisWindow, merchant.callsLastWindow))
            let base = merchant.rate ?? max(observed, 1)
            merchant.adaptive = max(0.1, base / 2)
            merchant.lastThrottle = now
            merchant.lastRecovery = now
            merchants[mchID] = merchant
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
