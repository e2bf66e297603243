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
    /// Nil only when the column holds something that is not a state (see `unreadable`).
    public var state: OrderState?
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
        case unreadable = "unreadable_columns"
    }

    /// Columns whose value is not of the column's type, with what they hold instead (for
    /// example `updated_at` written by the app as `CURRENT_TIMESTAMP` text that is not a date).
    public var unreadable: [String: String] = [:]

    /// The select list `init(row:)` reads: text columns as their exact bytes (see `StoredValue`).
    static let selection =
        (["id", "attempts", "total_fee"] + timeColumns
        + textColumns.map(StoredValue.textSelection)).joined(separator: ", ")
    static let textColumns = [
        "mch_id", "appid", "out_trade_no", "sub_mch_id", "sub_appid", "state", "err_code", "err_code_des", "last_error",
        "trade_state", "transaction_id", "time_end", "trade_type",
    ]
    static let timeColumns = [
        "created_at", "expires_at", "next_attempt_at", "lease_expires_at", "closed_at", "updated_at",
    ]

    /// Reads a row whatever the app wrote into it: never traps; a value that is not of its
    /// column's type is shown as it is (see `unreadable`).
    init(row: Row) {
        func text(_ name: String) -> String? { StoredValue.displayText(row, name) }
        var unreadable: [String: String] = [:]
        func seconds(_ name: String) -> Int64? {
            let seconds = StoredValue.displaySeconds(row, name)
            if seconds == nil, let raw = StoredValue.displayRaw(row, name) { unreadable[name] = raw }
            return seconds
        }
        func integer(_ name: String) -> Int? {
            do {
                return try StoredValue.integer(row, name).map { Int(clamping: $0) }
            } catch {
                unreadable[name] = StoredValue.displayRaw(row, name)
                return nil
            }
        }
        id = Int64.fromDatabaseValue(row["id"] as DatabaseValue) ?? 0
        mchID = text("mch_id") ?? ""
        appid = text("appid") ?? ""
        outTradeNo = text("out_trade_no") ?? ""
        subMchID = text("sub_mch_id")
        subAppID = text("sub_appid")
        createdAt = seconds("created_at") ?? 0
        expiresAt = seconds("expires_at")
        state = text("state").flatMap(OrderState.init(rawValue:))
        if state == nil { unreadable["state"] = StoredValue.displayRaw(row, "state") ?? "NULL" }
        attempts = integer("attempts") ?? 0
        nextAttemptAt = seconds("next_attempt_at")
        leaseExpiresAt = seconds("lease_expires_at")
        errCode = text("err_code")
        errCodeDes = text("err_code_des")
        lastError = text("last_error")
        closedAt = seconds("closed_at")
        updatedAt = seconds("updated_at") ?? 0
        tradeState = text("trade_state")
        transactionID = text("transaction_id")
        totalFee = integer("total_fee")
        timeEnd = text("time_end")
        tradeType = text("trade_type")
        self.unreadable = unreadable
    }
}

/// One close attempt from the history.
public struct AttemptHistoryRecord: Sendable, Codable, Equatable {
    public var attempt: Int
    /// Nil when no call was made.
    public var call: CallKind?
    /// The base URL that served the call.
    public var host: String?
    public var startedAt: Int64
    public var finishedAt: Int64
    public var latencyMilliseconds: Int?
    /// Nil only if the column holds an outcome this version does not know.
    public var outcome: HistoryOutcome?
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

    /// One history line.
    public init(
        attempt: Int, call: CallKind?, host: String?, startedAt: Int64, finishedAt: Int64, latencyMilliseconds: Int?,
        outcome: HistoryOutcome?, httpStatus: Int?, errCode: String?, errCodeDes: String?, message: String
    ) {
        (self.attempt, self.call, self.host, self.startedAt, self.finishedAt) = (attempt, call, host, startedAt, finishedAt)
        (self.latencyMilliseconds, self.outcome, self.httpStatus) = (latencyMilliseconds, outcome, httpStatus)
        (self.errCode, self.errCodeDes, self.message) = (errCode, errCodeDes, message)
    }
}

extension AttemptHistoryRecord {
    static let selection =
        (["attempt", "started_at", "finished_at", "latency_ms", "http_status"]
        + ["call", "host", "outcome", "err_code", "err_code_des", "message"].map(StoredValue.textSelection))
        .joined(separator: ", ")

    /// Reads a history line without trapping on a value of the wrong type.
    init(row: Row) {
        func integer(_ name: String) -> Int64? { StoredValue.displaySeconds(row, name) }
        func text(_ name: String) -> String? { StoredValue.displayText(row, name) }
        self.init(
            attempt: Int(clamping: integer("attempt") ?? 0), call: text("call").flatMap(CallKind.init(rawValue:)),
            host: text("host"),
            startedAt: integer("started_at") ?? 0, finishedAt: integer("finished_at") ?? 0,
            latencyMilliseconds: integer("latency_ms").map { Int(clamping: $0) },
            outcome: text("outcome").flatMap(HistoryOutcome.init(rawValue:)),
            httpStatus: integer("http_status").map { Int(clamping: $0) }, errCode: text("err_code"),
            errCodeDes: text("err_code_des"), message: text("message") ?? "")
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

    /// Counts by state and failed err_code, and the due backlog.
    public init(
        countsByState: [String: Int], failuresByErrCode: [String: Int], due: Int, oldestDueLatenessSeconds: Int64?
    ) {
        (self.countsByState, self.failuresByErrCode) = (countsByState, failuresByErrCode)
        (self.due, self.oldestDueLatenessSeconds) = (due, oldestDueLatenessSeconds)
    }
}

/// How many orders are due now, and for how long the oldest has been.
public struct DueBacklog: Sendable, Equatable {
    /// A scrape counts at most this many due rows: in a long outage the backlog can grow
    /// without bound, and the scrape must not. `closeorderd query` counts them all.
    public static let countedAtMost = 10_000

    /// Pending orders due now, and expired leases (at most `countedAtMost` for a scrape).
    public var count: Int
    /// How many seconds ago the oldest due order became due; nil when none is due. Beyond
    /// `countedAtMost`, the oldest of the rows counted: the first of each index, by deadline,
    /// creation and lease.
    public var oldestDueSeconds: Int64?

    /// A backlog as a store reports it.
    public init(count: Int, oldestDueSeconds: Int64?) {
        self.count = count
        self.oldestDueSeconds = oldestDueSeconds
    }
}

extension OrderStore {
    /// The due backlog, read from the poll's partial indexes only: its cost grows with the
    /// orders due, never with finished rows (for each Prometheus scrape).
    public func dueBacklog(now: Int64, policy: DuePolicy) async throws(StoreError) -> DueBacklog {
        try await run {
            try await writer.read { db in
                try Self.dueBacklog(db, now: now, policy: policy, countingAtMost: DueBacklog.countedAtMost)
            }
        }
    }

    /// The due backlog, counted up to `:cap` rows: a scrape in a long outage reads at most
    /// that many, however many are due (`query` counts them all).
    static let dueBacklogSQL = """
        SELECT count(*) AS n,
               min(CASE WHEN state = 'closing' THEN lease_expires_at
                        ELSE max(\(dueAtSQL), coalesce(next_attempt_at, 0)) END) AS since
          FROM orders WHERE id IN (SELECT id FROM (\(dueOrderIDsSQL)) LIMIT :cap)
        """

    /// `countingAtMost` -1 counts every due row (`query`).
    static func dueBacklog(_ db: Database, now: Int64, policy: DuePolicy, countingAtMost cap: Int) throws -> DueBacklog {
        var arguments = Self.dueArguments(now: now, policy: policy)
        arguments += ["minAge": policy.minOrderAgeSeconds, "timeout": policy.paymentTimeoutSeconds, "cap": cap]
        let due = try Row.fetchOne(db.cachedStatement(sql: dueBacklogSQL), arguments: arguments)
        let since: Int64? = due?["since"]
        return DueBacklog(count: due?["n"] ?? 0, oldestDueSeconds: since.map { max(0, now - $0) })
    }

    /// Counts by state, failures by err_code, and how many orders are due and how late.
    public func summary(now: Int64, policy: DuePolicy) async throws(StoreError) -> StoreSummary {
        try await run {
            try await writer.read { db in
                var counts = Dictionary(uniqueKeysWithValues: OrderState.allCases.map { ($0.rawValue, 0) })
                for row in try Row.fetchAll(
                    db, sql: "SELECT \(StoredValue.textSelection("state")), count(*) AS n FROM orders GROUP BY state")
                {
                    counts[StoredValue.displayText(row, "state") ?? "?"] = Int.fromDatabaseValue(row["n"] as DatabaseValue)
                }
                var failures: [String: Int] = [:]
                for row in try Row.fetchAll(
                    db,
                    sql: """
                        SELECT \(StoredValue.textSelection("err_code")), count(*) AS n
                          FROM orders WHERE state = 'failed' GROUP BY err_code
                        """)
                {
                    failures[StoredValue.displayText(row, "err_code") ?? "(none)", default: 0] +=
                        Int.fromDatabaseValue(row["n"] as DatabaseValue) ?? 0
                }
                let backlog = try Self.dueBacklog(db, now: now, policy: policy, countingAtMost: -1)
                return StoreSummary(
                    countsByState: counts, failuresByErrCode: failures, due: backlog.count,
                    oldestDueLatenessSeconds: backlog.oldestDueSeconds)
            }
        }
    }

    /// Orders in `state`, most recently updated first.
    public func orders(inState state: OrderState, limit: Int) async throws(StoreError) -> [OrderRecord] {
        try await run {
            try await writer.read { db in
                try Row.fetchAll(
                    db,
                    sql: "SELECT \(OrderRecord.selection) FROM orders WHERE state = ? ORDER BY updated_at DESC, id DESC LIMIT ?",
                    arguments: [state.rawValue, limit]
                ).map(OrderRecord.init(row:))
            }
        }
    }

    /// Every order with this number (one per merchant and sub-merchant that used it).
    public func orders(outTradeNo: String) async throws(StoreError) -> [OrderRecord] {
        try await run {
            try await writer.read { db in
                try Row.fetchAll(
                    db, sql: "SELECT \(OrderRecord.selection) FROM orders WHERE out_trade_no = ? ORDER BY id",
                    arguments: [outTradeNo]
                )
                .map(OrderRecord.init(row:))
            }
        }
    }

    /// The attempt history of one order, oldest first.
    public func attempts(orderID: Int64) async throws(StoreError) -> [AttemptHistoryRecord] {
        try await run {
            try await writer.read { db in
                try Row.fetchAll(
                    db, sql: "SELECT \(AttemptHistoryRecord.selection) FROM close_attempts WHERE order_id = ? ORDER BY id",
                    arguments: [orderID]
                ).map { row in
                    AttemptHistoryRecord(row: row)
                }
            }
        }
    }

    /// A statement whose plan tests and `bench/` check: each must read indexes, never walk
    /// every row of its table.
    public enum PlannedQuery: Sendable, CaseIterable {
        /// The poll's due-order query.
        case poll
        /// The due backlog each scrape reads.
        case dueBacklog
        /// The history of a window of time by outcome (`query --since`).
        case recentHistory
        /// … by err_code.
        case recentErrCodes
        /// … and how late the orders closed in it were.
        case recentLateness
    }

    /// SQLite's `EXPLAIN QUERY PLAN` for `query`, one step per line.
    public func queryPlan(_ query: PlannedQuery, now: Int64, policy: DuePolicy) async throws(StoreError) -> [String] {
        var arguments = Self.dueArguments(now: now, policy: policy)
        arguments += [
            "limit": 256, "minAge": policy.minOrderAgeSeconds, "timeout": policy.paymentTimeoutSeconds,
            "since": now - 3600, "until": now, "cap": DueBacklog.countedAtMost,
        ]
        let sql =
            switch query {
            case .poll: "SELECT id FROM (\(Self.dueOrderIDsSQL)) LIMIT :limit"
            case .dueBacklog: Self.dueBacklogSQL
            case .recentHistory: Self.recentOutcomesSQL
            case .recentErrCodes: Self.recentErrCodesSQL
            case .recentLateness: Self.recentLatenessSQL
            }
        return try await run {
            try await writer.read { [arguments] db in
                try Row.fetchAll(db, sql: "EXPLAIN QUERY PLAN \(sql)", arguments: arguments).map { $0["detail"] ?? "" }
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
