import Foundation
import GRDB

/// When a pending order becomes due.
public struct DuePolicy: Sendable, Equatable {
    /// An order younger than this is never sent (WeChat Pay forbids closing within 5 minutes).
    public var minOrderAgeSeconds: Int64
    /// The deadline of an order whose `expires_at` is NULL: `created_at` plus this.
    public var paymentTimeoutSeconds: Int64

    public init(minOrderAgeSeconds: Int64, paymentTimeoutSeconds: Int64) {
        self.minOrderAgeSeconds = minOrderAgeSeconds
        self.paymentTimeoutSeconds = paymentTimeoutSeconds
    }
}

/// An order this process has claimed: its lease is held until `leaseExpiresAt`.
public struct ClaimedOrder: Sendable, Equatable {
    /// More attempts than any configuration allows (`max_attempts` is at most 1000), and the
    /// most the schema accepts (`migrations/sqlite/0003_refuse_bad_rows.sql`): a row that would
    /// pass it was written by someone else.
    static let maximumAttempts = 1_000_000

    public let id: Int64
    public let mchID: String
    public let appid: String
    public let outTradeNo: String
    public let subMchID: String?
    public let subAppID: String?
    /// The number of this attempt (attempts are counted when claimed, so a crash mid-call counts).
    public let attempt: Int
    /// Fences the write-back: the row changes only while it still carries this token.
    public let leaseToken: String
    public let leaseExpiresAt: Int64
    /// The row was `closing` under an expired lease: an earlier call's outcome is unknown.
    public let recoveredFromExpiredLease: Bool
    /// The err_code the previous attempt left, e.g. `FREQUENCY_LIMITED`.
    public let previousErrCode: String?
    /// The trade_state the previous order query returned, e.g. `USERPAYING`.
    public let previousTradeState: String?
    /// When the order became due: its deadline, and never before its minimum age (nil when
    /// the row's times cannot say). How late it was closed is measured from here.
    public let dueAt: Int64?

    /// An order as a claim hands it out (a store conformer builds it from its row; tests
    /// build it to exercise the attempt policy without a database).
    public init(
        id: Int64, mchID: String, appid: String, outTradeNo: String, subMchID: String? = nil, subAppID: String? = nil,
        attempt: Int, leaseToken: String, leaseExpiresAt: Int64, recoveredFromExpiredLease: Bool = false,
        previousErrCode: String? = nil, previousTradeState: String? = nil, dueAt: Int64? = nil
    ) {
        self.id = id
        self.mchID = mchID
        self.appid = appid
        self.outTradeNo = outTradeNo
        self.subMchID = subMchID
        self.subAppID = subAppID
        self.attempt = attempt
        self.leaseToken = leaseToken
        self.leaseExpiresAt = leaseExpiresAt
        self.recoveredFromExpiredLease = recoveredFromExpiredLease
        self.previousErrCode = previousErrCode
        self.previousTradeState = previousTradeState
        self.dueAt = dueAt
    }
}

/// What one claim did: the orders it claimed, and the due rows it failed at once without a
/// call (a row that cannot be read, or a lost call whose attempts are spent).
public struct ClaimedBatch: Sendable, Equatable {
    public var orders: [ClaimedOrder] = []
    public var failedWithoutCall: [FailedRow] = []

    public init(orders: [ClaimedOrder] = [], failedWithoutCall: [FailedRow] = []) {
        self.orders = orders
        self.failedWithoutCall = failedWithoutCall
    }

    /// How many due rows the claim settled: when fewer than asked for, nothing more is due.
    public var rowsTaken: Int { orders.count + failedWithoutCall.count }
}

/// A due row the claim failed without a call, for the log: the row's id, its order number
/// if it could be read, and the `last_error` written.
public struct FailedRow: Sendable, Equatable {
    public let id: Int64
    public let outTradeNo: String?
    public let message: String

    public init(id: Int64, outTradeNo: String?, message: String) {
        self.id = id
        self.outTradeNo = outTradeNo
        self.message = message
    }
}

extension ClaimedOrder {
    /// Reads a claimed row's attempts, identity and previous outcome; fails naming the first
    /// column that cannot be used.
    init(
        row: Row, positions: ColumnPositions, id: Int64, leaseToken: String, leaseExpiresAt: Int64, recovered: Bool
    ) throws(ColumnProblem) {
        let stored = try StoredValue.integer(row, "attempts", positions: positions) ?? 0
        guard (0..<Int64(Self.maximumAttempts)).contains(stored) else {
            throw ColumnProblem(
                column: "attempts", reason: "holds \(stored), not a count of attempts (0 to \(Self.maximumAttempts - 1))")
        }
        let attempt = Int(stored) + 1
        func required(_ name: String) throws(ColumnProblem) -> String {
            guard let text = try StoredValue.text(row, name, positions: positions) else {
                throw ColumnProblem(column: name, reason: "is NULL")
            }
            return text
        }
        self.init(
            id: id, mchID: try required("mch_id"), appid: try required("appid"),
            outTradeNo: try required("out_trade_no"),
            subMchID: try StoredValue.text(row, "sub_mch_id", positions: positions),
            subAppID: try StoredValue.text(row, "sub_appid", positions: positions), attempt: attempt,
            leaseToken: leaseToken, leaseExpiresAt: leaseExpiresAt, recoveredFromExpiredLease: recovered,
            previousErrCode: try StoredValue.text(row, "err_code", positions: positions),
            previousTradeState: try StoredValue.text(row, "trade_state", positions: positions),
            dueAt: positions.plain["due_at"].flatMap { Int64.fromDatabaseValue(row[$0] as DatabaseValue) })
    }
}

extension OrderStore {
    /// The due-order query: pending orders past their deadline and minimum age whose
    /// backoff has passed, and orders whose lease expired. Each branch reads a partial
    /// index whose WHERE it repeats literally, so finished rows cost nothing. `INDEXED BY`
    /// pins the plan: without table statistics SQLite preferred `orders_by_state`, which
    /// also walks every pending row that is not yet due.
    static let dueOrderIDsSQL = """
        SELECT id FROM orders INDEXED BY orders_pending_by_deadline
         WHERE state = 'pending' AND expires_at IS NOT NULL
           AND expires_at <= :now AND created_at <= :ageCutoff
           AND (next_attempt_at IS NULL OR next_attempt_at <= :now)
        UNION ALL
        SELECT id FROM orders INDEXED BY orders_pending_by_creation
         WHERE state = 'pending' AND expires_at IS NULL
           AND created_at <= :deadlineCutoff
           AND (next_attempt_at IS NULL OR next_attempt_at <= :now)
        UNION ALL
        SELECT id FROM orders INDEXED BY orders_closing_by_lease
         WHERE state = 'closing' AND lease_expires_at <= :now
        """

    /// When a row became due, given `:minAge` and `:timeout`: its deadline, and never before
    /// its minimum age (retries and leases aside).
    static let dueAtSQL = "max(coalesce(expires_at, created_at + :timeout), created_at + :minAge)"

    static func dueArguments(now: Int64, policy: DuePolicy) -> StatementArguments {
        [
            "now": now,
            "ageCutoff": now - policy.minOrderAgeSeconds,
            "deadlineCutoff": now - max(policy.minOrderAgeSeconds, policy.paymentTimeoutSeconds),
        ]
    }

    /// Claims up to `limit` due orders in one short write transaction, committed before
    /// any call is made: each becomes `closing` under a new lease token, its `attempts`
    /// goes up by one.
    ///
    /// A row found `closing` under an expired lease whose attempts are already at
    /// `maxAttempts` is not claimed again: it becomes `failed`, since the outcome of its
    /// last call is unknown and its budget is spent.
    public func claimDue(
        now: Int64, policy: DuePolicy, limit: Int, leaseSeconds: Int64, maxAttempts: Int
    ) async throws(StoreError) -> ClaimedBatch {
        let token = UUID().uuidString
        let leaseExpiresAt = now + leaseSeconds
        var arguments = Self.dueArguments(now: now, policy: policy)
        arguments += ["limit": limit, "minAge": policy.minOrderAgeSeconds, "timeout": policy.paymentTimeoutSeconds]
        return try await run {
            // An idle poll only reads: no write lock is taken, nothing is written.
            let anyDue = try await writer.read { [arguments] db in
                try Bool.fetchOne(
                    db.cachedStatement(sql: "SELECT EXISTS (\(Self.dueOrderIDsSQL))"), arguments: arguments) ?? false
            }
            guard anyDue else { return ClaimedBatch() }
            return try await writer.write { [arguments] db in
                try Self.claim(
                    in: db, arguments: arguments, token: token, leaseExpiresAt: leaseExpiresAt, now: now,
                    maxAttempts: maxAttempts)
            }
        }
    }

    /// The claim's transaction: each due row is claimed, or failed at once when it cannot be
    /// read or its lost call's attempts are spent.
    private static func claim(
        in db: Database, arguments: StatementArguments, token: String, leaseExpiresAt: Int64, now: Int64, maxAttempts: Int
    ) throws -> ClaimedBatch {
        let rows = try Row.fetchAll(
            db.cachedStatement(
                sql: """
                    SELECT id, attempts, state, \(claimedTextColumns.map(StoredValue.textSelection).joined(separator: ", ")),
                           \(dueAtSQL) AS due_at
                      FROM orders WHERE id IN (SELECT id FROM (\(dueOrderIDsSQL)) LIMIT :limit)
                    """),
            arguments: arguments)
        var batch = ClaimedBatch()
        guard let first = rows.first else { return batch }
        let positions = ColumnPositions(Array(first.columnNames))
        let (idAt, stateAt) = (positions.plain["id"] ?? 0, positions.plain["state"] ?? 0)
        let claim = try db.cachedStatement(
            sql: """
                UPDATE orders
                   SET state = 'closing', attempts = attempts + 1, lease_token = ?,
                       lease_expires_at = ?, updated_at = ?
                 WHERE id = ?
                """)
        for row in rows {
            let id: Int64 = Int64.fromDatabaseValue(row[idAt] as DatabaseValue) ?? 0
            let recovered = String.fromDatabaseValue(row[stateAt] as DatabaseValue) == OrderState.closing.rawValue
            let order: ClaimedOrder
            do throws(ColumnProblem) {
                order = try ClaimedOrder(
                    row: row, positions: positions, id: id, leaseToken: token, leaseExpiresAt: leaseExpiresAt,
                    recovered: recovered)
            } catch {
                let number = try? StoredValue.text(row, "out_trade_no", positions: positions)
                batch.failedWithoutCall.append(try reject(db, id: id, outTradeNo: number, problem: error, now: now))
                continue
            }
            if recovered && order.attempt > maxAttempts {
                batch.failedWithoutCall.append(
                    try abandon(db, id: id, outTradeNo: order.outTradeNo, attempts: order.attempt - 1, now: now))
                continue
            }
            try claim.execute(arguments: [token, leaseExpiresAt, now, id])
            batch.orders.append(order)
        }
        return batch
    }

    /// Hands claimed orders back unstarted: each becomes `pending` again with the claim's
    /// attempt uncounted, if it still carries the claim's lease token.
    public func release(_ orders: [ClaimedOrder], now: Int64) async throws(StoreError) {
        try await run {
            try await writer.write { db in
                let release = try db.cachedStatement(
                    sql: """
                        UPDATE orders SET state = 'pending', attempts = attempts - 1, lease_token = NULL,
                               lease_expires_at = NULL, updated_at = ?
                         WHERE id = ? AND state = 'closing' AND lease_token = ?
                        """)
                for order in orders { try release.execute(arguments: [now, order.id, order.leaseToken]) }
            }
        }
    }

    /// The text columns the claim reads, each failably (see `StoredValue`).
    static let claimedTextColumns = ["mch_id", "appid", "out_trade_no", "sub_mch_id", "sub_appid", "err_code", "trade_state"]

    /// Fails a due row that cannot be read, without any call: `last_error` names the column
    /// and what it holds, and the history gets an `invalid` line. The claim counts as an attempt.
    private static func reject(
        _ db: Database, id: Int64, outTradeNo: String?, problem: ColumnProblem, now: Int64
    ) throws -> FailedRow {
        let message = "not sent: \(problem)"
        try fail(db, id: id, outcome: .invalid, message: message, countingAnAttempt: true, now: now)
        return FailedRow(id: id, outTradeNo: outTradeNo, message: message)
    }

    /// Fails a row whose last call's outcome is unknown and whose attempts are spent.
    private static func abandon(
        _ db: Database, id: Int64, outTradeNo: String, attempts: Int, now: Int64
    ) throws -> FailedRow {
        let message =
            "gave up after \(attempts) attempts: the last call's lease expired before its outcome "
            + "was recorded (the process stopped mid-call?); check the order at WeChat Pay"
        try fail(db, id: id, outcome: .abandoned, message: message, countingAnAttempt: false, now: now)
        return FailedRow(id: id, outTradeNo: outTradeNo, message: message)
    }

    private static func fail(
        _ db: Database, id: Int64, outcome: HistoryOutcome, message: String, countingAnAttempt: Bool, now: Int64
    ) throws {
        try db.execute(
            sql: """
                UPDATE orders SET state = 'failed', last_error = ?, lease_token = NULL,
                       attempts = CASE WHEN typeof(attempts) = 'integer' AND attempts BETWEEN 0 AND 999999
                                       THEN attempts + ? ELSE 1 END,
                       lease_expires_at = NULL, next_attempt_at = NULL, updated_at = ?
                 WHERE id = ?
                """,
            arguments: [message, countingAnAttempt ? 1 : 0, now, id])
        try db.execute(
            sql: """
                INSERT INTO close_attempts (order_id, attempt, started_at, finished_at, outcome, message)
                SELECT id, attempts, ?, ?, ?, ? FROM orders WHERE id = ?
                """,
            arguments: [now, now, outcome.rawValue, message, id])
    }
}

extension OrderStore {
    /// Whether `order` is still `closing` under this claim's lease: false when the app
    /// changed it meanwhile (set it `paid`, deleted it) or another process took it over.
    /// The reaper asks before calling for an order that waited in its queue.
    public func isStillClaimed(_ order: ClaimedOrder) async throws(StoreError) -> Bool {
        try await run {
            try await writer.read { db in
                let row = try Row.fetchOne(
                    db.cachedStatement(sql: "SELECT state, lease_token FROM orders WHERE id = ?"), arguments: [order.id])
                guard let row else { return false }
                return String.fromDatabaseValue(row["state"] as DatabaseValue) == OrderState.closing.rawValue
                    && String.fromDatabaseValue(row["lease_token"] as DatabaseValue) == order.leaseToken
            }
        }
    }
}
