import GRDB

/// What closeorderd did in a window of time, read from the history
/// (`closeorderd query --since 1h`).
public struct RecentActivity: Sendable, Codable, Equatable {
    /// The window's start, in Unix seconds (included).
    public var since: Int64
    /// The window's end, in Unix seconds (included).
    public var until: Int64
    /// History lines by call (`closeorder`, `orderquery`, or `none` for a line without a call)
    /// and outcome.
    public var outcomes: [String: [String: Int]]
    /// History lines that carried an err_code, by err_code.
    public var errCodes: [String: Int]
    /// Orders closed in the window, and how late each was closed after it became due.
    public var closeLateness: LatenessSummary

    enum CodingKeys: String, CodingKey {
        case since, until, outcomes
        case errCodes = "err_codes"
        case closeLateness = "close_lateness_seconds"
    }

    /// What the history says of a window.
    public init(
        since: Int64, until: Int64, outcomes: [String: [String: Int]], errCodes: [String: Int],
        closeLateness: LatenessSummary
    ) {
        (self.since, self.until, self.outcomes, self.errCodes, self.closeLateness) =
            (since, until, outcomes, errCodes, closeLateness)
    }
}

/// Quantiles of how late orders were closed, in whole seconds (nearest rank); nil without
/// any closed order.
public struct LatenessSummary: Sendable, Codable, Equatable {
    /// Orders closed.
    public var orders: Int
    /// Half were closed at most this many seconds late.
    public var p50: Int64?
    /// Nine in ten.
    public var p90: Int64?
    /// 99 in 100.
    public var p99: Int64?
    /// The latest.
    public var max: Int64?

    /// Summarises a distribution: seconds late → how many orders.
    public init(distribution: [Int64: Int]) {
        let sorted = distribution.sorted { $0.key < $1.key }
        orders = sorted.reduce(0) { $0 + $1.value }
        func quantile(_ q: Double) -> Int64? {
            guard orders > 0 else { return nil }
            let rank = Swift.max(1, Int((q * Double(orders)).rounded(.up)))
            var seen = 0
            for (seconds, count) in sorted {
                seen += count
                if seen >= rank { return seconds }
            }
            return sorted.last?.key
        }
        (p50, p90, p99, max) = (quantile(0.5), quantile(0.9), quantile(0.99), sorted.last?.key)
    }
}

extension OrderStore {
    /// History lines finished in `since...until`, by call, outcome and err_code, and how late
    /// the orders closed in it were. Reads `close_attempts_by_finish`, so its cost follows the
    /// window, not the history's length.
    public func activity(since: Int64, until: Int64, policy: DuePolicy) async throws(StoreError) -> RecentActivity {
        try await run {
            try await writer.read { db in
                let window: StatementArguments = [
                    "since": since, "until": until, "minAge": policy.minOrderAgeSeconds,
                    "timeout": policy.paymentTimeoutSeconds,
                ]
                var outcomes: [String: [String: Int]] = [:]
                for row in try Row.fetchAll(db, sql: Self.recentOutcomesSQL, arguments: window) {
                    outcomes[row["call"] ?? "?", default: [:]][row["outcome"] ?? "?"] = row["n"]
                }
                var errCodes: [String: Int] = [:]
                for row in try Row.fetchAll(db, sql: Self.recentErrCodesSQL, arguments: window) {
                    errCodes[row["err_code"] ?? "?"] = row["n"]
                }
                return RecentActivity(
                    since: since, until: until, outcomes: outcomes, errCodes: errCodes,
                    closeLateness: LatenessSummary(distribution: try Self.closeLateness(db, window)))
            }
        }
    }

    static let recentOutcomesSQL = """
        SELECT coalesce(call, 'none') AS call, outcome, count(*) AS n FROM close_attempts INDEXED BY close_attempts_by_finish
         WHERE finished_at BETWEEN :since AND :until GROUP BY 1, 2
        """

    static let recentErrCodesSQL = """
        SELECT err_code, count(*) AS n FROM close_attempts INDEXED BY close_attempts_by_finish
         WHERE finished_at BETWEEN :since AND :until AND err_code IS NOT NULL GROUP BY 1
        """

    /// Seconds late → orders, for the orders closed in the window (an order with two `closed`
    /// lines, a close and its confirming query, counts once, at its last). `CROSS JOIN` keeps
    /// the history's time index as the outer loop: without statistics SQLite would rather walk
    /// every closed order.
    static let recentLatenessSQL = """
        SELECT late, count(*) AS n FROM (
            SELECT max(a.finished_at) - \(dueAtSQL) AS late
              FROM close_attempts a INDEXED BY close_attempts_by_finish CROSS JOIN orders o ON o.id = a.order_id
             WHERE a.finished_at BETWEEN :since AND :until AND a.outcome = 'closed' AND o.state = 'closed'
             GROUP BY a.order_id)
         WHERE typeof(late) = 'integer' GROUP BY late
        """

    private static func closeLateness(_ db: Database, _ window: StatementArguments) throws -> [Int64: Int] {
        var distribution: [Int64: Int] = [:]
        for row in try Row.fetchAll(db, sql: recentLatenessSQL, arguments: window) {
            guard let late = Int64.fromDatabaseValue(row["late"] as DatabaseValue),
                let count = Int.fromDatabaseValue(row["n"] as DatabaseValue)
            else { continue }
            distribution[Swift.max(0, late), default: 0] += count
        }
        return distribution
    }
}
