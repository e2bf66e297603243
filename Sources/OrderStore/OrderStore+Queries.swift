import GRDB

/// One row of the order table, as `closeorderd query` shows it.
public struct OrderRecord: Sendable, Codable, Equatable {
    public var id: Int64
    public var mchID: String
    public var appid: String
    public var outTradeNo: String
    public var subMchID: String?
    public var subAppID: String?
    public var createdAt: Int64
    public var expiresAt: Int64?
    public var state: String
    public var attempts: Int
    public var nextAttemptAt: Int64?
    public var leaseExpiresAt: Int64?
    public var errCode: String?
    public var errCodeDes: String?
    public var lastError: String?
    public var closedAt: Int64?
    public var updatedAt: Int64
    public var tradeState: String?
    public var transactionID: String?
    public var totalFee: Int?
    public var timeEnd: String?
    public var tradeType: String?

    enum CodingKeys: String, CodingKey {
        case id, appid, state, attempts
        case tradeState = "trade_state"
        case transactionID = "transaction_id"
        case totalFee = "total_fee"
        case timeEnd = "time_end"
        case tradeType = "trade_type"
        case mchID = "mch_id"
        case outTradeNo = "out_trade_no"
        case subMchID = "sub_mch_id"
        case subAppID = "sub_appid"
        case createdAt = "created_at"
        case expiresAt = "expires_at"
        case nextAttemptAt = "next_attempt_at"
        case leaseExpiresAt = "lease_expires_at"
        case errCode = "err_code"
        case errCodeDes = "err_code_des"
        case lastError = "last_error"
        case closedAt = "closed_at"
        case updatedAt = "updated_at"
    }

    init(row: Row) {
        id = row["id"]
        mchID = row["mch_id"] ?? ""
        appid = row["appid"] ?? ""
        outTradeNo = row["out_trade_no"] ?? ""
        subMchID = row["sub_mch_id"]
        subAppID = row["sub_appid"]
        createdAt = row["created_at"] ?? 0
        expiresAt = row["expires_at"]
        state = row["state"] ?? ""
        attempts = row["attempts"] ?? 0
        nextAttemptAt = row["next_attempt_at"]
        leaseExpiresAt = row["lease_expires_at"]
        errCode = row["err_code"]
        errCodeDes = row["err_code_des"]
        lastError = row["last_error"]
        closedAt = row["closed_at"]
        updatedAt = row["updated_at"] ?? 0
        tradeState = row["trade_state"]
        transactionID = row["transaction_id"]
        totalFee = row["total_fee"]
        timeEnd = row["time_end"]
        tradeType = row["trade_type"]
    }
}

/// One close attempt from the history.
public struct AttemptHistoryRecord: Sendable, Codable, Equatable {
    public var attempt: Int
    /// `closeorder`, `orderquery`, or nil when no call was made.
    public var call: String?
    /// The base URL that served the call.
    public var host: String?
    public var startedAt: Int64
    public var finishedAt: Int64
    public var latencyMilliseconds: Int?
    public var outcome: String
    public var httpStatus: Int?
    public var errCode: String?
    public var errCodeDes: String?
    public var message: String

    enum CodingKeys: String, CodingKey {
        case attempt, outcome, message, call, host
        case startedAt = "started_at"
        case finishedAt = "finished_at"
        case latencyMilliseconds = "latency_ms"
        case httpStatus = "http_status"
        case errCode = "err_code"
        case errCodeDes = "err_code_des"
    }
}

/// What `closeorderd query` prints with no argument.
public struct StoreSummary: Sendable, Codable, Equatable {
    /// Rows per state, every state present (zero when none).
    public var countsByState: [String: Int]
    /// Failed rows per err_code; rows without one count under `(none)`.
    public var failuresByErrCode: [String: Int]
    /// Pending orders due now, and expired leases.
    public var due: Int
    /// How many seconds ago the oldest due order became due.
    public var oldestDueLatenessSeconds: Int64?

    enum CodingKeys: String, CodingKey {
        case due
        case countsByState = "counts_by_state"
        case failuresByErrCode = "failures_by_err_code"
        case oldestDueLatenessSeconds = "oldest_due_lateness_seconds"
    }
}

extension OrderStore {
    /// Counts by state, failures by err_code, and how many orders are due and how late.
    public func summary(now: Int64, policy: DuePolicy) async throws(StoreError) -> StoreSummary {
        try await run {
            try await writer.read { db in
                var counts = Dictionary(uniqueKeysWithValues: OrderState.allCases.map { ($0.rawValue, 0) })
                for row in try Row.fetchAll(db, sql: "SELECT state, count(*) AS n FROM orders GROUP BY state") {
                    counts[row["state"] ?? "?"] = row["n"]
                }
                var failures: [String: Int] = [:]
                for row in try Row.fetchAll(
                    db, sql: "SELECT err_code, count(*) AS n FROM orders WHERE state = 'failed' GROUP BY err_code")
                {
                    failures[(row["err_code"] as String?) ?? "(none)"] = row["n"]
                }
                var arguments = Self.dueArguments(now: now, policy: policy)
                arguments += ["minAge": policy.minOrderAgeSeconds, "timeout": policy.paymentTimeoutSeconds]
                let due = try Row.fetchOne(
                    db,
                    sql: """
                        SELECT count(*) AS n,
                               min(CASE WHEN state = 'closing' THEN lease_expires_at
                                        ELSE max(coalesce(expires_at, created_at + :timeout),
                                                 created_at + :minAge, coalesce(next_attempt_at, 0)) END) AS since
                          FROM orders WHERE id IN (\(Self.dueOrderIDsSQL))
                        """,
                    arguments: arguments)
                let since: Int64? = due?["since"]
                return StoreSummary(
                    countsByState: counts, failuresByErrCode: failures, due: due?["n"] ?? 0,
                    oldestDueLatenessSeconds: since.map { max(0, now - $0) })
            }
        }
    }

    /// Orders in `state`, most recently updated first.
    public func orders(inState state: OrderState, limit: Int) async throws(StoreError) -> [OrderRecord] {
        try await run {
            try await writer.read { db in
                try Row.fetchAll(
                    db, sql: "SELECT * FROM orders WHERE state = ? ORDER BY updated_at DESC, id DESC LIMIT ?",
                    arguments: [state.rawValue, limit]
                ).map(OrderRecord.init(row:))
            }
        }
    }

    /// Every order with this number (one per merchant and sub-merchant that used it).
    public func orders(outTradeNo: String) async throws(StoreError) -> [OrderRecord] {
        try await run {
            try await writer.read { db in
                try Row.fetchAll(db, sql: "SELECT * FROM orders WHERE out_trade_no = ? ORDER BY id", arguments: [outTradeNo])
                    .map(OrderRecord.init(row:))
            }
        }
    }

    /// The attempt history of one order, oldest first.
    public func attempts(orderID: Int64) async throws(StoreError) -> [AttemptHistoryRecord] {
        try await run {
            try await writer.read { db in
                try Row.fetchAll(
                    db, sql: "SELECT * FROM close_attempts WHERE order_id = ? ORDER BY id", arguments: [orderID]
                ).map { row in
                    AttemptHistoryRecord(
                        attempt: row["attempt"], call: row["call"], host: row["host"], startedAt: row["started_at"],
                        finishedAt: row["finished_at"],
                        latencyMilliseconds: row["latency_ms"], outcome: row["outcome"], httpStatus: row["http_status"],
                        errCode: row["err_code"], errCodeDes: row["err_code_des"], message: row["message"])
                }
            }
        }
    }

    /// SQLite's plan for the due-order query, one line per step: the benchmark and the
    /// tests use it to show that the poll reads indexes, never the whole table.
    public func dueQueryPlan(now: Int64, policy: DuePolicy) async throws(StoreError) -> [String] {
        try await run {
            try await writer.read { db in
                var arguments = Self.dueArguments(now: now, policy: policy)
                arguments += ["limit": 256]
                return try Row.fetchAll(
                    db, sql: "EXPLAIN QUERY PLAN SELECT id FROM (\(Self.dueOrderIDsSQL)) LIMIT :limit",
                    arguments: arguments
                ).map { $0["detail"] ?? "" }
            }
        }
    }

    /// Runs `body` in a write transaction. For tests and tools that stage rows the way the app would.
    public func withWriteTransaction<T: Sendable>(_ body: @Sendable @escaping (Database) throws -> T) async throws(StoreError)
        -> T
    {
        try await run { try await writer.write(body) }
    }
}
