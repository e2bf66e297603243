import Foundation
import OrderStore
import PostgresNIO

extension PostgresQuery {
    /// A statement whose `$1`, `$2`, … are bound to `values`, in order: for SQL assembled
    /// from `PostgresSQL`'s fragments, which name their parameters by number.
    init(_ sql: String, binding values: [any PostgresDynamicTypeEncodable]) {
        var binds = PostgresBindings(capacity: values.count)
        for value in values { binds.append(value) }
        self.init(unsafeSQL: sql, binds: binds)
    }
}

/// SQL fragments shared by the claim and the read-only queries.
enum PostgresSQL {
    /// Unix seconds of a `timestamptz` column (or expression), as `bigint`.
    static func epoch(_ expression: String) -> String { "floor(extract(epoch FROM \(expression)))::bigint" }

    /// When a row became due, given the bound minimum age and payment timeout in seconds:
    /// its deadline, and never before its minimum age (retries and leases aside).
    static func dueAt(_ row: String = "", minAge: String, timeout: String) -> String {
        "greatest(coalesce(\(row)expires_at, \(row)created_at + \(timeout) * interval '1 second'), "
            + "\(row)created_at + \(minAge) * interval '1 second')"
    }

    /// The due rows: pending past deadline, minimum age and backoff, or closing under an
    /// expired lease. Each branch repeats a partial index's WHERE literally, so the planner
    /// reads those indexes (a BitmapOr) and a million finished rows cost nothing.
    static func due(now: String, ageCutoff: String, deadlineCutoff: String) -> String {
        """
        (state = 'pending' AND expires_at IS NOT NULL
             AND expires_at <= \(now) AND created_at <= \(ageCutoff)
             AND (next_attempt_at IS NULL OR next_attempt_at <= \(now)))
          OR (state = 'pending' AND expires_at IS NULL
             AND created_at <= \(deadlineCutoff)
             AND (next_attempt_at IS NULL OR next_attempt_at <= \(now)))
          OR (state = 'closing' AND lease_expires_at <= \(now))
        """
    }
}

extension PostgresOrderTable {
    /// The bound values of the due rules, in the order `PostgresSQL.due` uses them.
    struct DueBounds {
        let now: Int64
        let ageCutoff: Int64
        let deadlineCutoff: Int64
        let minAge: Int64
        let timeout: Int64

        init(now: Int64, policy: DuePolicy) {
            self.now = now
            ageCutoff = now - policy.minOrderAgeSeconds
            deadlineCutoff = now - max(policy.minOrderAgeSeconds, policy.paymentTimeoutSeconds)
            minAge = policy.minOrderAgeSeconds
            timeout = policy.paymentTimeoutSeconds
        }
    }

    /// The claim: `$1` now, `$2` the minimum-age cutoff, `$3` the no-deadline cutoff, `$4`
    /// the minimum age and `$5` the payment timeout in seconds, `$6` the limit, `$7` the
    /// lease token, `$8` the lease's expiry, `$9` how many candidates each kind of due row
    /// offers. Returns each claimed row with its previous state.
    ///
    /// The candidates are the earliest of each kind, each read in its partial index's order
    /// (deadline, creation, lease expiry) and no further, so that a claim reads about `$9`
    /// rows a kind however large the backlog; sorting every due row by due time made each
    /// claim read the whole backlog. Of them, the `$6` most overdue that no other daemon is
    /// claiming right now are taken, the due rules checked again on each row as it is locked.
    static let claimSQL = """
        WITH candidates AS (
            (SELECT id FROM orders
              WHERE state = 'pending' AND expires_at IS NOT NULL
                AND expires_at <= to_timestamp($1) AND created_at <= to_timestamp($2)
                AND (next_attempt_at IS NULL OR next_attempt_at <= to_timestamp($1))
              ORDER BY expires_at LIMIT $9)
            UNION ALL
            (SELECT id FROM orders
              WHERE state = 'pending' AND expires_at IS NULL
                AND created_at <= to_timestamp($3)
                AND (next_attempt_at IS NULL OR next_attempt_at <= to_timestamp($1))
              ORDER BY created_at LIMIT $9)
            UNION ALL
            (SELECT id FROM orders
              WHERE state = 'closing' AND lease_expires_at <= to_timestamp($1)
              ORDER BY lease_expires_at LIMIT $9)),
        due AS (
            SELECT id, state AS previous_state FROM orders
             WHERE id IN (SELECT id FROM candidates)
               AND (\(PostgresSQL.due(now: "to_timestamp($1)", ageCutoff: "to_timestamp($2)", deadlineCutoff: "to_timestamp($3)")))
             ORDER BY \(PostgresSQL.dueAt(minAge: "$4", timeout: "$5"))
             LIMIT $6
             FOR UPDATE SKIP LOCKED)
        UPDATE orders o
           SET state = 'closing', attempts = o.attempts + 1, lease_token = $7,
               lease_expires_at = to_timestamp($8), updated_at = to_timestamp($1)
          FROM due WHERE o.id = due.id
        RETURNING o.id, due.previous_state, o.attempts, o.mch_id, o.appid, o.out_trade_no, o.sub_mch_id,
                  o.sub_appid, o.err_code, o.trade_state,
                  \(PostgresSQL.epoch(PostgresSQL.dueAt("o.", minAge: "$4", timeout: "$5")))
        """

    /// How many candidates of each kind a claim of `limit` reads: enough to spare for the
    /// rows that up to seven other daemons' claims hold locked at the same moment (a row
    /// another claim has committed is no longer due, so only claims under way can hide rows).
    static func candidates(forLimit limit: Int) -> Int64 { Int64(max(8 * limit, 64)) }

    /// Claims up to `limit` due orders in one statement, most overdue first: `FOR UPDATE
    /// SKIP LOCKED` passes over rows another daemon is claiming right now, and each row
    /// taken becomes `closing` under a fresh lease token with its attempt counted. A row
    /// found `closing` under an expired lease whose attempts are spent is failed in the same
    /// transaction instead (its last call's outcome is unknown).
    public func claimDue(
        now: Int64, policy: DuePolicy, limit: Int, leaseSeconds: Int64, maxAttempts: Int
    ) async throws(StoreError) -> ClaimedBatch {
        let token = UUID().uuidString
        let leaseExpiresAt = now + leaseSeconds
        let bounds = DueBounds(now: now, policy: policy)
        return try await run { [self] in
            try await client.withTransaction(logger: logger) { connection in
                let rows = try await connection.query(
                    PostgresQuery(
                        Self.claimSQL,
                        binding: [
                            bounds.now, bounds.ageCutoff, bounds.deadlineCutoff, bounds.minAge, bounds.timeout, Int64(limit),
                            token, leaseExpiresAt, Self.candidates(forLimit: limit),
                        ]),
                    logger: logger)
                var batch = ClaimedBatch()
                var spent: [ClaimedOrder] = []
                for try await (id, previous, attempts, mchID, appid, number, subMchID, subAppID, errCode, tradeState, dueAt)
                    in rows.decode(
                        (Int64, String, Int32, String, String, String, String?, String?, String?, String?, Int64?).self)
                {
                    let order = ClaimedOrder(
                        id: id, mchID: mchID, appid: appid, outTradeNo: number, subMchID: subMchID, subAppID: subAppID,
                        attempt: Int(attempts), leaseToken: token, leaseExpiresAt: leaseExpiresAt,
                        recoveredFromExpiredLease: previous == OrderState.closing.rawValue, previousErrCode: errCode,
                        previousTradeState: tradeState, dueAt: dueAt)
                    if order.recoveredFromExpiredLease && order.attempt > maxAttempts {
                        spent.append(order)
                    } else {
                        batch.orders.append(order)
                    }
                }
                for order in spent {
                    batch.failedWithoutCall.append(try await abandon(order, now: now, on: connection))
                }
                // Given up on at its deadline (see `withDeadline`): roll back, not commit a
                // claim nobody holds.
                try Task.checkCancellation()
                return batch
            }
        }
    }

    /// Fails a row whose last call's outcome is unknown and whose attempts are spent; the
    /// claim that found it is not counted.
    private func abandon(_ order: ClaimedOrder, now: Int64, on connection: PostgresConnection) async throws -> FailedRow {
        let attempts = order.attempt - 1
        let message =
            "gave up after \(attempts) attempts: the last call's lease expired before its outcome "
            + "was recorded (the process stopped mid-call?); check the order at WeChat Pay"
        try await connection.query(
            """
            WITH failed AS (
                UPDATE orders SET state = 'failed', last_error = \(message), lease_token = NULL, attempts = attempts - 1,
                       lease_expires_at = NULL, next_attempt_at = NULL, updated_at = to_timestamp(\(now))
                 WHERE id = \(order.id) AND lease_token = \(order.leaseToken)
                RETURNING id, attempts)
            INSERT INTO close_attempts (order_id, attempt, started_at, finished_at, outcome, message)
            SELECT id, attempts, to_timestamp(\(now)), to_timestamp(\(now)), 'abandoned', \(message) FROM failed
            """, logger: logger)
        return FailedRow(id: order.id, outTradeNo: order.outTradeNo, message: message)
    }

    /// Hands claimed orders back unstarted: `pending` again, the attempt uncounted, where the
    /// row still carries the claim's token.
    public func release(_ orders: [ClaimedOrder], now: Int64) async throws(StoreError) {
        guard !orders.isEmpty else { return }
        try await run { [self] in
            try await client.query(
                """
                UPDATE orders o SET state = 'pending', attempts = o.attempts - 1, lease_token = NULL,
                       lease_expires_at = NULL, updated_at = to_timestamp(\(now))
                  FROM unnest(\(orders.map(\.id))::bigint[], \(orders.map(\.leaseToken))::text[]) AS r(id, token)
                 WHERE o.id = r.id AND o.state = 'closing' AND o.lease_token = r.token
                """, logger: logger)
        }
    }

    /// Whether `order` is still `closing` under its claim's lease.
    public func isStillClaimed(_ order: ClaimedOrder) async throws(StoreError) -> Bool {
        try await run { [self] in
            let rows = try await client.query(
                """
                SELECT count(*) FROM orders WHERE id = \(order.id) AND state = 'closing' AND lease_token = \(order.leaseToken)
                """, logger: logger)
            for try await count in rows.decode(Int64.self) { return count == 1 }
            return false
        }
    }
}
