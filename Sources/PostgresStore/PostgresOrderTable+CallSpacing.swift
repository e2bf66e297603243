import OrderStore
import PostgresNIO

/// The merchants' call budget, shared through `merchant_call_spacing` (one row per merchant,
/// see migrations/postgresql/0002): one upsert per call reserves its slot, by the server's
/// clock, so every daemon on this table together keeps to the merchant's limit.
extension PostgresOrderTable: MerchantCallSpacing {
    public var callSpacing: (any MerchantCallSpacing)? { self }

    /// Microseconds between two `timestamptz` expressions, as `bigint`.
    private static func microseconds(_ from: String, _ to: String) -> String {
        "floor(extract(epoch FROM \(to) - \(from)) * 1000000)::bigint"
    }

    /// Reserves the merchant's next slot. The clock is read once the row is locked
    /// (`clock_timestamp()`, not the statement's start), so that a reservation queued behind
    /// others still gets its wait from the moment its slot was decided; how long it queued is
    /// returned too. It waits at most 2 s: past that, the daemon spaces its calls alone.
    public func reserveCall(for mchID: String, spacing: Duration) async throws(StoreError) -> ReservedCall {
        let spacingMicroseconds = max(0, Int64(spacing / .microseconds(1)))
        return try await run(within: .seconds(2)) { [self] in
            let rows = try await client.query(
                """
                INSERT INTO merchant_call_spacing AS s (mch_id, next_call_at)
                VALUES (\(mchID), clock_timestamp() + \(spacingMicroseconds) * interval '1 microsecond')
                ON CONFLICT (mch_id) DO UPDATE
                   SET next_call_at = greatest(s.next_call_at, clock_timestamp())
                                      + \(spacingMicroseconds) * interval '1 microsecond'
                RETURNING \(unescaped: Self.microseconds("clock_timestamp()", "s.next_call_at")) - \(spacingMicroseconds),
                          \(unescaped: Self.microseconds("now()", "clock_timestamp()")),
                          s.slowed_to, \(unescaped: Self.microseconds("s.slowed_at", "now()"))
                """, logger: logger)
            for try await (wait, queued, rate, age) in rows.decode((Int64, Int64, Double?, Int64?).self) {
                return ReservedCall(
                    wait: .microseconds(max(0, wait)), queued: .microseconds(max(0, queued)),
                    slowDown: Self.slowDown(rate, age))
            }
            return ReservedCall(wait: .zero, queued: .zero, slowDown: nil)
        }
    }

    public func recordSlowDown(for mchID: String, to rate: Double) async throws(StoreError) -> SharedSlowDown {
        try await run(within: .seconds(2)) { [self] in
            // One slow-down a second for all daemons: several calls in flight on several
            // hosts may all come back limited at once.
            let rows = try await client.query(
                """
                INSERT INTO merchant_call_spacing AS s (mch_id, next_call_at, slowed_to, slowed_at)
                VALUES (\(mchID), now(), \(rate), now())
                ON CONFLICT (mch_id) DO UPDATE
                   SET slowed_to = CASE WHEN s.slowed_at > now() - interval '1 second' THEN s.slowed_to ELSE excluded.slowed_to END,
                       slowed_at = CASE WHEN s.slowed_at > now() - interval '1 second' THEN s.slowed_at ELSE now() END
                RETURNING s.slowed_to, \(unescaped: Self.microseconds("s.slowed_at", "now()"))
                """, logger: logger)
            for try await (rate, age) in rows.decode((Double?, Int64?).self) {
                if let slowDown = Self.slowDown(rate, age) { return slowDown }
            }
            return SharedSlowDown(rate: rate, age: .zero)
        }
    }

    public func slowDown(for mchID: String) async throws(StoreError) -> SharedSlowDown? {
        try await run(within: .seconds(2)) { [self] in
            let rows = try await client.query(
                """
                SELECT slowed_to, \(unescaped: Self.microseconds("slowed_at", "now()"))
                  FROM merchant_call_spacing WHERE mch_id = \(mchID)
                """, logger: logger)
            for try await (rate, age) in rows.decode((Double?, Int64?).self) { return Self.slowDown(rate, age) }
            return nil
        }
    }

    private static func slowDown(_ rate: Double?, _ ageMicroseconds: Int64?) -> SharedSlowDown? {
        guard let rate, let ageMicroseconds else { return nil }
        return SharedSlowDown(rate: rate, age: .microseconds(max(0, ageMicroseconds)))
    }
}
