import Foundation
import OrderStore
import PostgresNIO

extension PostgresOrderTable {
    /// Writes attempts back in one transaction of two statements, however many records:
    /// one fenced `UPDATE` for all rows (each changes only while it is still `closing` under
    /// its record's lease token), then one `INSERT` of every call into the history, either
    /// way.
    public func record(_ records: [AttemptRecord]) async throws(StoreError) -> [WriteBackResult] {
        guard !records.isEmpty else { return [] }
        return try await run { [self] in
            try await client.withTransaction(logger: logger) { connection in
                let results = try await update(records, on: connection)
                try await appendHistory(zip(records, results).map { ($0, $1.historyNote) }, on: connection)
                // Given up on at its deadline (see `withDeadline`): roll back, so that the
                // retry writes the records once.
                try Task.checkCancellation()
                return results
            }
        }
    }

    /// The fenced update of every record's row, in one statement; each record's result,
    /// in order (a row left alone is reported with its state now).
    private func update(_ records: [AttemptRecord], on connection: PostgresConnection) async throws -> [WriteBackResult] {
        struct Row: Encodable {
            var n: Int, id: Int64, token: String, state: String, next: Int64?, errCode: String?, errCodeDes: String?
            var lastError: String?, refund: Int, tradeState: String?, transactionID: String?, totalFee: Int64?
            var timeEnd: String?, tradeType: String?, finished: Int64
        }
        let input = records.enumerated().map { n, record in
            Row(
                n: n, id: record.orderID, token: record.leaseToken, state: record.newState.rawValue,
                next: record.nextAttemptAt, errCode: record.errCode.map(Self.text), errCodeDes: record.errCodeDes.map(Self.text),
                lastError: record.newState == .closed ? nil : Self.text(record.message), refund: record.refundsAttempt ? 1 : 0,
                tradeState: record.tradeState.map(Self.text), transactionID: record.payment?.transactionID.map(Self.text),
                totalFee: record.payment?.totalFee.map(Int64.init), timeEnd: record.payment?.timeEnd.map(Self.text),
                tradeType: record.payment?.tradeType.map(Self.text), finished: record.finishedAt)
        }
        // The rows travel as one JSON array (postgres-nio binds no arrays with NULLs in them).
        let json = String(decoding: try JSONEncoder().encode(input), as: UTF8.self)
        let rows = try await connection.query(
            """
            WITH input AS (
                SELECT * FROM json_to_recordset(\(json)::json)
                    AS r(n integer, id bigint, token text, state text, next bigint, "errCode" text, "errCodeDes" text,
                         "lastError" text, refund integer, "tradeState" text, "transactionID" text, "totalFee" bigint,
                         "timeEnd" text, "tradeType" text, finished bigint)),
            updated AS (
                UPDATE orders o
                   SET state = i.state, next_attempt_at = to_timestamp(i.next), err_code = i."errCode",
                       err_code_des = i."errCodeDes", last_error = i."lastError", attempts = o.attempts - i.refund,
                       trade_state = coalesce(i."tradeState", o.trade_state),
                       transaction_id = coalesce(i."transactionID", o.transaction_id),
                       total_fee = coalesce(i."totalFee", o.total_fee),
                       time_end = coalesce(i."timeEnd", o.time_end),
                       trade_type = coalesce(i."tradeType", o.trade_type),
                       closed_at = CASE WHEN i.state = 'closed' THEN to_timestamp(i.finished) ELSE o.closed_at END,
                       lease_token = NULL, lease_expires_at = NULL, updated_at = to_timestamp(i.finished)
                  FROM input i
                 WHERE o.id = i.id AND o.state = 'closing' AND o.lease_token = i.token
                RETURNING i.n)
            SELECT i.n, u.n IS NOT NULL, current.state
              FROM input i LEFT JOIN updated u ON u.n = i.n LEFT JOIN orders current ON current.id = i.id
            """, logger: logger)
        var results = Array(repeating: WriteBackResult.superseded(currentState: nil), count: records.count)
        for try await (n, applied, state) in rows.decode((Int32, Bool, String?).self) {
            results[Int(n)] = applied ? .applied : .superseded(currentState: state.flatMap(OrderState.init(rawValue:)))
        }
        return results
    }

    /// One history line per call (one `outcomeWithoutCall` line when no call was made) of
    /// every record, each record's `note` on its last; all in one statement, in order.
    private func appendHistory(_ records: [(AttemptRecord, note: String)], on connection: PostgresConnection) async throws {
        struct Line: Encodable {
            var n: Int, order: Int64, attempt: Int, call: String?, host: String?, startedAt: Int64, finishedAt: Int64
            var latency: Int64?, outcome: String, httpStatus: Int64?, errCode: String?, errCodeDes: String?
            var message: String
        }
        var lines: [Line] = []
        for (record, note) in records {
            for (index, call) in record.calls.enumerated() {
                lines.append(
                    Line(
                        n: lines.count, order: record.orderID, attempt: record.attempt, call: call.call.rawValue,
                        host: call.host.isEmpty ? nil : Self.text(call.host), startedAt: call.startedAt,
                        finishedAt: call.finishedAt, latency: call.latencyMilliseconds.map(Int64.init),
                        outcome: call.outcome.rawValue, httpStatus: call.httpStatus.map(Int64.init),
                        errCode: call.errCode.map(Self.text), errCodeDes: call.errCodeDes.map(Self.text),
                        message: Self.text(call.message + (index == record.calls.count - 1 ? note : ""))))
            }
            if record.calls.isEmpty {
                lines.append(
                    Line(
                        n: lines.count, order: record.orderID, attempt: record.attempt, call: nil, host: nil,
                        startedAt: record.startedAt, finishedAt: record.finishedAt, latency: nil,
                        outcome: record.outcomeWithoutCall.rawValue, httpStatus: nil, errCode: nil, errCodeDes: nil,
                        message: Self.text(record.message + note)))
            }
        }
        let json = String(decoding: try JSONEncoder().encode(lines), as: UTF8.self)
        try await connection.query(
            """
            INSERT INTO close_attempts
                (order_id, attempt, call, host, started_at, finished_at, latency_ms, outcome, http_status,
                 err_code, err_code_des, message)
            SELECT "order", attempt, call, host, to_timestamp("startedAt"), to_timestamp("finishedAt"), latency, outcome,
                   "httpStatus", "errCode", "errCodeDes", message
              FROM json_to_recordset(\(json)::json)
                   AS line(n integer, "order" bigint, attempt integer, call text, host text, "startedAt" bigint,
                           "finishedAt" bigint, latency integer, outcome text, "httpStatus" integer, "errCode" text,
                           "errCodeDes" text, message text)
             ORDER BY n
            """, logger: logger)
    }

    /// Text as PostgreSQL can store it: a server's answer may carry NUL characters, which
    /// `text` cannot hold; each becomes U+FFFD, as an unreadable byte does.
    static func text(_ value: String) -> String {
        value.contains("\u{0}") ? value.replacingOccurrences(of: "\u{0}", with: "\u{FFFD}") : value
    }

    /// Moves the selected `failed` orders back to `pending` with their attempts reset; their
    /// history gains a `requeued` line. (The schema refuses implausible times on PostgreSQL,
    /// so none is left behind for them.)
    public func requeueFailed(_ selection: RequeueSelection, now: Int64) async throws(StoreError) -> RequeueResult {
        try await run(within: nil) { [self] in
            let rows = try await client.query(
                """
                WITH selected AS (
                    SELECT id, attempts, err_code, last_error FROM orders
                     WHERE state = 'failed'
                       AND (\(selection.outTradeNo)::text IS NULL OR out_trade_no = \(selection.outTradeNo))
                       AND (\(selection.errCode)::text IS NULL OR err_code = \(selection.errCode))
                       AND (\(selection.mchID)::text IS NULL OR mch_id = \(selection.mchID))
                       FOR UPDATE),
                history AS (
                    INSERT INTO close_attempts (order_id, attempt, started_at, finished_at, outcome, err_code, message)
                    SELECT id, attempts, to_timestamp(\(now)), to_timestamp(\(now)), 'requeued', err_code,
                           'requeued by an operator (closeorderd retry); was: ' || coalesce(last_error, 'failed')
                      FROM selected)
                UPDATE orders o SET state = 'pending', attempts = 0, next_attempt_at = NULL, last_error = NULL,
                       updated_at = to_timestamp(\(now))
                  FROM selected WHERE o.id = selected.id
                RETURNING o.id
                """, logger: logger)
            var requeued = 0
            for try await _ in rows.decode(Int64.self) { requeued += 1 }
            return RequeueResult(requeued: requeued, leftWithBadTimes: 0)
        }
    }
}
