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
    ) async throws(StoreError) -> [ClaimedOrder] {
        let token = UUID().uuidString
        let leaseExpiresAt = now + leaseSeconds
        var arguments = Self.dueArguments(now: now, policy: policy)
        arguments += ["limit": limit]
        return try await run {
            // An idle poll only reads: no write lock is taken, nothing is written.
            let anyDue = try await writer.read { [arguments] db in
                try Bool.fetchOne(
                    db.cachedStatement(sql: "SELECT EXISTS (\(Self.dueOrderIDsSQL))"), arguments: arguments) ?? false
            }
            guard anyDue else { return [] }
            return try await writer.write { [arguments] db in
                let rows = try Row.fetchAll(
                    db.cachedStatement(
                        sql: """
                            SELECT id, mch_id, appid, out_trade_no, sub_mch_id, sub_appid, attempts, state, err_code, trade_state
                              FROM orders WHERE id IN (SELECT id FROM (\(Self.dueOrderIDsSQL)) LIMIT :limit)
                            """),
                    arguments: arguments)
                var claimed: [ClaimedOrder] = []
                let claim = try db.cachedStatement(
                    sql: """
                        UPDATE orders
                           SET state = 'closing', attempts = attempts + 1, lease_token = ?,
                               lease_expires_at = ?, updated_at = ?
                         WHERE id = ?
                        """)
                for row in rows {
                    let id: Int64 = row["id"]
                    let attempts: Int = row["attempts"]
                    let recovered = (row["state"] as String) == OrderState.closing.rawValue
                    if recovered && attempts >= maxAttempts {
                        try Self.abandon(db, id: id, attempts: attempts, now: now)
                        continue
                    }
                    try claim.execute(arguments: [token, leaseExpiresAt, now, id])
                    claimed.append(
                        ClaimedOrder(
                            id: id, mchID: row["mch_id"] ?? "", appid: row["appid"] ?? "",
                            outTradeNo: row["out_trade_no"] ?? "", subMchID: row["sub_mch_id"],
                            subAppID: row["sub_appid"], attempt: attempts + 1, leaseToken: token,
                            leaseExpiresAt: leaseExpiresAt, recoveredFromExpiredLease: recovered,
                            previousErrCode: row["err_code"], previousTradeState: row["trade_state"]))
                }
                return claimed
            }
        }
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

    private static func abandon(_ db: Database, id: Int64, attempts: Int, now: Int64) throws {
        let message =
            "gave up after \(attempts) attempts: the last call's lease expired before its outcome "
            + "was recorded (the process stopped mid-call?); check the order at WeChat Pay"
        try db.execute(
            sql: """
                UPDATE orders SET state = 'failed', last_error = ?, lease_token = NULL,
                       lease_expires_at = NULL, next_attempt_at = NULL, updated_at = ?
                 WHERE id = ?
                """,
            arguments: [message, now, id])
        try db.execute(
            sql: """
                INSERT INTO close_attempts (order_id, attempt, started_at, finished_at, outcome, message)
                VALUES (?, ?, ?, ?, 'abandoned', ?)
                """,
            arguments: [id, attempts, now, now, message])
    }
}
