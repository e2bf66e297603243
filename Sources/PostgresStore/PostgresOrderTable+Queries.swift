import OrderStore
import PostgresNIO

extension PostgresOrderTable {
    /// The due backlog: `$1`…`$5` as in the claim, `$6` the most rows counted.
    static let dueBacklogSQL = """
        SELECT count(*), \(PostgresSQL.epoch("min(since)")) FROM (
            SELECT CASE WHEN state = 'closing' THEN lease_expires_at
                        ELSE greatest(\(PostgresSQL.dueAt(minAge: "$4", timeout: "$5")),
                                      coalesce(next_attempt_at, 'epoch'::timestamptz)) END AS since
              FROM orders
             WHERE \(PostgresSQL.due(now: "to_timestamp($1)", ageCutoff: "to_timestamp($2)", deadlineCutoff: "to_timestamp($3)"))
             LIMIT $6) AS due
        """

    private func dueBacklog(now: Int64, policy: DuePolicy, countingAtMost cap: Int?) async throws -> DueBacklog {
        let bounds = DueBounds(now: now, policy: policy)
        let query = PostgresQuery(
            Self.dueBacklogSQL,
            binding: [
                bounds.now, bounds.ageCutoff, bounds.deadlineCutoff, bounds.minAge, bounds.timeout, Int64(cap ?? Int.max),
            ])
        for try await (count, since) in try await client.query(query, logger: logger).decode((Int64, Int64?).self) {
            return DueBacklog(count: Int(count), oldestDueSeconds: since.map { max(0, now - $0) })
        }
        return DueBacklog(count: 0, oldestDueSeconds: nil)
    }

    /// The due backlog, counting at most `DueBacklog.countedAtMost` rows, from the partial
    /// indexes. A scrape waits for it: it gives up after 2 s, so that a scrape of a daemon
    /// whose server is away still answers within Prometheus's timeout.
    public func dueBacklog(now: Int64, policy: DuePolicy) async throws(StoreError) -> DueBacklog {
        try await run(within: .seconds(2)) { [self] in
            try await dueBacklog(now: now, policy: policy, countingAtMost: DueBacklog.countedAtMost)
        }
    }

    /// Counts by state and failed err_code, and the whole due backlog.
    public func summary(now: Int64, policy: DuePolicy) async throws(StoreError) -> StoreSummary {
        try await run(within: nil) { [self] in
            var counts = Dictionary(uniqueKeysWithValues: OrderState.allCases.map { ($0.rawValue, 0) })
            for try await (state, count) in try await client.query(
                "SELECT state, count(*) FROM orders GROUP BY state", logger: logger
            ).decode((String, Int64).self) {
                counts[state] = Int(count)
            }
            var failures: [String: Int] = [:]
            for try await (code, count) in try await client.query(
                "SELECT err_code, count(*) FROM orders WHERE state = 'failed' GROUP BY err_code", logger: logger
            ).decode((String?, Int64).self) {
                failures[code ?? "(none)", default: 0] += Int(count)
            }
            let backlog = try await dueBacklog(now: now, policy: policy, countingAtMost: nil)
            return StoreSummary(
                countsByState: counts, failuresByErrCode: failures, due: backlog.count,
                oldestDueLatenessSeconds: backlog.oldestDueSeconds)
        }
    }

    /// History lines finished in `since...until`, by call, outcome and err_code, and how late
    /// the orders closed in it were (`close_attempts_by_finish` bounds the read to the window).
    public func activity(since: Int64, until: Int64, policy: DuePolicy) async throws(StoreError) -> RecentActivity {
        try await run(within: nil) { [self] in
            var outcomes: [String: [String: Int]] = [:]
            for try await (call, outcome, count) in try await client.query(
                """
                SELECT coalesce(call, 'none'), outcome, count(*) FROM close_attempts
                 WHERE finished_at BETWEEN to_timestamp(\(since)) AND to_timestamp(\(until)) GROUP BY 1, 2
                """, logger: logger
            ).decode((String, String, Int64).self) {
                outcomes[call, default: [:]][outcome] = Int(count)
            }
            var errCodes: [String: Int] = [:]
            for try await (code, count) in try await client.query(
                """
                SELECT err_code, count(*) FROM close_attempts
                 WHERE finished_at BETWEEN to_timestamp(\(since)) AND to_timestamp(\(until)) AND err_code IS NOT NULL
                 GROUP BY 1
                """, logger: logger
            ).decode((String, Int64).self) {
                errCodes[code] = Int(count)
            }
            var distribution: [Int64: Int] = [:]
            let lateness = PostgresQuery(
                """
                SELECT late, count(*) FROM (
                    SELECT \(PostgresSQL.epoch("max(a.finished_at) - \(PostgresSQL.dueAt("o.", minAge: "$3", timeout: "$4"))")) AS late
                      FROM close_attempts a JOIN orders o ON o.id = a.order_id
                     WHERE a.finished_at BETWEEN to_timestamp($1) AND to_timestamp($2)
                       AND a.outcome = 'closed' AND o.state = 'closed'
                     GROUP BY a.order_id, o.expires_at, o.created_at) AS closed
                 GROUP BY late
                """, binding: [since, until, policy.minOrderAgeSeconds, policy.paymentTimeoutSeconds])
            for try await (late, count) in try await client.query(lateness, logger: logger).decode((Int64, Int64).self) {
                distribution[max(0, late), default: 0] += Int(count)
            }
            return RecentActivity(
                since: since, until: until, outcomes: outcomes, errCodes: errCodes,
                closeLateness: LatenessSummary(distribution: distribution))
        }
    }

    /// The columns of `OrderRecord`, times as Unix seconds.
    static let orderColumns = """
        id, mch_id, appid, out_trade_no, sub_mch_id, sub_appid, \(PostgresSQL.epoch("created_at")),
        \(PostgresSQL.epoch("expires_at")), state, attempts, \(PostgresSQL.epoch("next_attempt_at")),
        \(PostgresSQL.epoch("lease_expires_at")), err_code, err_code_des, last_error, \(PostgresSQL.epoch("closed_at")),
        \(PostgresSQL.epoch("updated_at")), trade_state, transaction_id, total_fee, time_end, trade_type
        """

    private func orderRecords(_ query: PostgresQuery) async throws -> [OrderRecord] {
        var records: [OrderRecord] = []
        for try await row in try await client.query(query, logger: logger) {
            let c = try row.decode(
                (
                    Int64, String, String, String, String?, String?, Int64, Int64?, String, Int32, Int64?, Int64?, String?,
                    String?, String?, Int64?, Int64, String?, String?, Int64?, String?, String?
                ).self)
            records.append(
                OrderRecord(
                    id: c.0, mchID: c.1, appid: c.2, outTradeNo: c.3, subMchID: c.4, subAppID: c.5, createdAt: c.6,
                    expiresAt: c.7, state: OrderState(rawValue: c.8), attempts: Int(c.9), nextAttemptAt: c.10,
                    leaseExpiresAt: c.11, errCode: c.12, errCodeDes: c.13, lastError: c.14, closedAt: c.15,
                    updatedAt: c.16, tradeState: c.17, transactionID: c.18, totalFee: c.19.map { Int(clamping: $0) },
                    timeEnd: c.20, tradeType: c.21))
        }
        return records
    }

    /// The most recently updated orders in `state`.
    public func orders(inState state: OrderState, limit: Int) async throws(StoreError) -> [OrderRecord] {
        try await run(within: nil) { [self] in
            try await orderRecords(
                PostgresQuery(
                    "SELECT \(Self.orderColumns) FROM orders WHERE state = $1 ORDER BY updated_at DESC, id DESC LIMIT $2",
                    binding: [state.rawValue, Int64(limit)]))
        }
    }

    /// Every order with this number, oldest first.
    public func orders(outTradeNo: String) async throws(StoreError) -> [OrderRecord] {
        try await run(within: nil) { [self] in
            try await orderRecords(
                PostgresQuery(
                    "SELECT \(Self.orderColumns) FROM orders WHERE out_trade_no = $1 ORDER BY id", binding: [outTradeNo]))
        }
    }

    /// An order's history, oldest first.
    public func attempts(orderID: Int64) async throws(StoreError) -> [AttemptHistoryRecord] {
        try await run(within: nil) { [self] in
            var lines: [AttemptHistoryRecord] = []
            let rows = try await client.query(
                PostgresQuery(
                    """
                    SELECT attempt, call, host, \(PostgresSQL.epoch("started_at")), \(PostgresSQL.epoch("finished_at")),
                           latency_ms, outcome, http_status, err_code, err_code_des, message
                      FROM close_attempts WHERE order_id = $1 ORDER BY id
                    """, binding: [orderID]), logger: logger)
            for try await (attempt, call, host, startedAt, finishedAt, latency, outcome, status, code, description, message)
                in rows.decode((Int32, String?, String?, Int64, Int64, Int32?, String, Int32?, String?, String?, String).self)
            {
                lines.append(
                    AttemptHistoryRecord(
                        attempt: Int(attempt), call: call.flatMap(CallKind.init(rawValue:)), host: host,
                        startedAt: startedAt, finishedAt: finishedAt, latencyMilliseconds: latency.map(Int.init),
                        outcome: HistoryOutcome(rawValue: outcome), httpStatus: status.map(Int.init), errCode: code,
                        errCodeDes: description, message: message))
            }
            return lines
        }
    }

    /// The plan PostgreSQL chooses for the poll's claim (as a read-only `SELECT … FOR UPDATE
    /// SKIP LOCKED` with the claim's WHERE), for the README and the plan test.
    public func pollPlan(now: Int64, policy: DuePolicy) async throws(StoreError) -> [String] {
        let bounds = DueBounds(now: now, policy: policy)
        return try await run(within: nil) { [self] in
            let query = PostgresQuery(
                """
                EXPLAIN SELECT id FROM orders
                 WHERE \(PostgresSQL.due(now: "to_timestamp($1)", ageCutoff: "to_timestamp($2)", deadlineCutoff: "to_timestamp($3)"))
                 LIMIT 256 FOR UPDATE SKIP LOCKED
                """, binding: [bounds.now, bounds.ageCutoff, bounds.deadlineCutoff])
            var lines: [String] = []
            for try await line in try await client.query(query, logger: logger).decode(String.self) { lines.append(line) }
            return lines
        }
    }

    /// Runs one statement as the merchant's app would (`closeorderd demo` inserts its
    /// orders with it).
    public func execute(_ statement: String) async throws(StoreError) {
        try await run(within: nil) { [self] in
            try await client.query(PostgresQuery(unsafeSQL: statement), logger: logger)
        }
    }
}
