/// A merchant's call budget shared by every daemon on one order table, so that
/// `max_requests_per_second` holds for all of them together and a `FREQUENCY_LIMITED`
/// slow-down one daemon meets slows them all. The PostgreSQL table provides one (a row per
/// merchant); a SQLite file, used by one daemon, needs none.
///
/// Times are durations measured by the database's own clock, so the hosts' clocks need not
/// agree.
///
/// ```swift
/// let slot = try await spacing.reserveCall(for: "1900000109", spacing: .milliseconds(105))
/// try await Task.sleep(for: slot.wait)   // then make the call
/// ```
public protocol MerchantCallSpacing: Sendable {
    /// Reserves the merchant's next call: `spacing` after the slot any daemon reserved
    /// last, or now if that is past. Returns how long to wait for the slot, how long the
    /// reservation queued behind others first, and the merchant's latest slow-down.
    func reserveCall(for mchID: String, spacing: Duration) async throws(StoreError) -> ReservedCall

    /// Records that WeChat Pay slowed the merchant down to `rate` calls a second, unless
    /// another daemon recorded one in the last second; returns the slow-down that stands.
    func recordSlowDown(for mchID: String, to rate: Double) async throws(StoreError) -> SharedSlowDown

    /// The merchant's latest slow-down, if any.
    func slowDown(for mchID: String) async throws(StoreError) -> SharedSlowDown?
}

/// A call slot reserved in a `MerchantCallSpacing`.
public struct ReservedCall: Sendable, Equatable {
    /// How long from when the slot was decided until the slot.
    public var wait: Duration
    /// How long the reservation waited behind others' before its slot was decided.
    public var queued: Duration
    /// The merchant's latest slow-down, if any.
    public var slowDown: SharedSlowDown?

    public init(wait: Duration, queued: Duration = .zero, slowDown: SharedSlowDown?) {
        self.wait = wait
        self.queued = queued
        self.slowDown = slowDown
    }
}

/// A `FREQUENCY_LIMITED` slow-down as one daemon recorded it for all.
public struct SharedSlowDown: Sendable, Equatable {
    /// The calls per second the merchant was slowed down to.
    public var rate: Double
    /// How long ago, by the database's clock.
    public var age: Duration

    public init(rate: Double, age: Duration) {
        self.rate = rate
        self.age = age
    }
}
