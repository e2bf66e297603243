import GRDB

/// Which failed orders `closeorderd retry` moves back to `pending`.
public struct RequeueSelection: Sendable, Equatable {
    public var outTradeNo: String?
    public var errCode: String?
    public var mchID: String?

    public init(outTradeNo: String? = nil, errCode: String? = nil, mchID: String? = nil) {
        self.outTradeNo = outTradeNo
        self.errCode = errCode
        self.mchID = mchID
    }
}

/// What `closeorderd retry` did.
public struct RequeueResult: Sendable, Equatable {
    /// Orders moved back to `pending`.
    public var requeued: Int
    /// Selected orders left `failed` because `created_at` or `expires_at` is still not Unix
    /// seconds between 2000 and 2200: requeued, they would never become due.
    public var leftWithBadTimes: Int

    public init(requeued: Int, leftWithBadTimes: Int) {
        self.requeued = requeued
        self.leftWithBadTimes = leftWithBadTimes
    }
}

extension OrderStore {
    /// The rows whose times the schema accepts (see `migrations/sqlite/0003_refuse_bad_rows.sql`).
    static let plausibleTimes = """
        created_at BETWEEN 946684800 AND 7258118400
        AND (expires_at IS NULL OR expires_at BETWEEN 946684800 AND 7258118400)
        """

    /// Moves the selected `failed` orders back to `pending` with their attempts reset, so
    /// they are closed at the next poll; their history is kept and gains a `requeued` line.
    /// Orders whose times are implausible stay `failed` (and are counted).
    public func requeueFailed(_ selection: RequeueSelection, now: Int64) async throws(StoreError) -> RequeueResult {
        try await run {
            try await writer.write { db in
                var conditions = ["state = 'failed'"]
                var arguments: [any DatabaseValueConvertible] = []
                if let number = selection.outTradeNo {
                    conditions.append("out_trade_no = ?")
                    arguments.append(number)
                }
                if let code = selection.errCode {
                    conditions.append("err_code IS ?")
                    arguments.append(code)
                }
                if let mchID = selection.mchID {
                    conditions.append("mch_id = ?")
                    arguments.append(mchID)
                }
                let selected = conditions.joined(separator: " AND ")
                let ids = try Int64.fetchAll(
                    db, sql: "SELECT id FROM orders WHERE \(selected) AND \(Self.plausibleTimes)",
                    arguments: StatementArguments(arguments))
                let leftWithBadTimes =
                    try Int.fetchOne(
                        db, sql: "SELECT count(*) FROM orders WHERE \(selected) AND NOT (\(Self.plausibleTimes))",
                        arguments: StatementArguments(arguments)) ?? 0
                for id in ids {
                    try db.execute(
                        sql: """
                            INSERT INTO close_attempts (order_id, attempt, started_at, finished_at, outcome, err_code, message)
                            SELECT id, attempts, ?, ?, ?, err_code,
                                   'requeued by an operator (closeorderd retry); was: ' || coalesce(last_error, 'failed')
                              FROM orders WHERE id = ?
                            """, arguments: [now, now, HistoryOutcome.requeued.rawValue, id])
                    try db.execute(
                        sql: """
                            UPDATE orders SET state = 'pending', attempts = 0, next_attempt_at = NULL, last_error = NULL,
                                   updated_at = ?
                             WHERE id = ? AND state = 'failed'
                            """, arguments: [now, id])
                }
                return RequeueResult(requeued: ids.count, leftWithBadTimes: leftWithBadTimes)
            }
        }
    }
}
