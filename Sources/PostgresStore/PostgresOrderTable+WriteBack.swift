import Foundation
import OrderStore
import PostgresNIO

extension PostgresOrderTable {
    /// Writes attempts back in one transaction. Each row changes only while it is still
    /// `closing` under the record's lease token; every call is appended to the history
    /// either way.
    public func record(_ records: [AttemptRecord]) async throws(StoreError) -> [WriteBackResult] {
        guard !records.isEmpty else { return [] }
        return try await run { [self] in
            try await client.withTransaction(logger: logger) { connection in
                var results: [WriteBackResult] = []
                for record in records {
                    let result = try await update(record, on: connection)
                    try await appendHistory(record, note: result.historyNote, on: connection)
                    results.append(result)
                }
                // Given up on at its deadline (see `withDeadline`): roll back, so that the
                // retry writes the records once.
                try Task.checkCancellation()
                return results
            }
        }
    }

    /// The fenced update: the row changes only while `closing` under the record's lease token.
    private func update(_ record: AttemptRecord, on connection: PostgresConnection) async throws -> WriteBackResult {
        let lastError: String? = record.newState == .closed ? nil : Self.text(record.message)
        let rows = try await connection.query(
            """
            UPDATE orders
               SET state = \(record.newState.rawValue), next_attempt_at = to_timestamp(\(record.nextAttemptAt)),
                   err_code = \(record.errCode.map(Self.text)), err_code_des = \(record.errCodeDes.map(Self.text)),
                   last_error = \(lastError), attempts = attempts - \(record.refundsAttempt ? 1 : 0),
                   trade_state = coalesce(\(record.tradeState.map(Self.text)), trade_state),
                   transaction_id = coalesce(\(record.payment?.transactionID.map(Self.text)), transaction_id),
                   total_fee = coalesce(\(record.payment?.totalFee.map(Int64.init)), total_fee),
                   time_end = coalesce(\(record.payment?.timeEnd.map(Self.text)), time_end),
                   trade_type = coalesce(\(record.payment?.tradeType.map(Self.text)), trade_type),
                   closed_at = CASE WHEN \(record.newState == .closed) THEN to_timestamp(\(record.finishedAt)) ELSE closed_at END,
                   lease_token = NULL, lease_expires_at = NULL, updated_at = to_timestamp(\(record.finishedAt))
             WHERE id = \(record.orderID) AND state = 'closing' AND lease_token = \(record.leaseToken)
            RETURNING id
            """, logger: logger)
        for try await _ in rows.decode(Int64.self) { return .applied }
        let current = try await connection.query("SELECT state FROM orders WHERE id = \(record.orderID)", logger: logger)
        for try await state in current.decode(String.self) { return .superseded(currentState: OrderState(rawValue: state)) }
        return .superseded(currentState: nil)
    }

    /// One history line per call (one `outcomeWithoutCall` line when no call was made);
    /// `note` goes on the last. All lines in one statement.
    private func appendHistory(_ record: AttemptRecord, note: String, on connection: PostgresConnection) async throws {
        struct Line: Encodable {
            var call: String?, host: String?, startedAt: Int64, finishedAt: Int64, latency: Int64?
            var outcome: String, httpStatus: Int64?, errCode: String?, errCodeDes: String?, message: String
        }
        var lines = record.calls.enumerated().map { index, call in
            Line(
                call: call.call.rawValue, host: call.host.isEmpty ? nil : Self.text(call.host), startedAt: call.startedAt,
                finishedAt: call.finishedAt, latency: call.latencyMilliseconds.map(Int64.init),
                outcome: call.outcome.rawValue, httpStatus: call.httpStatus.map(Int64.init),
                errCode: call.errCode.map(Self.text), errCodeDes: call.errCodeDes.map(Self.text),
                message: Self.text(call.message + (index == record.calls.count - 1 ? note : "")))
        }
        if lines.isEmpty {
            lines = [
                Line(
                    call: nil, host: nil, startedAt: record.startedAt, finishedAt: record.finishedAt, latency: nil,
                    outcome: record.outcomeWithoutCall.rawValue, httpStatus: nil, errCode: nil, errCodeDes: nil,
                    message: Self.text(record.message + note))
            ]
        }
        // The lines travel as one JSON array (postgres-nio binds no arrays with NULLs in them).
        let json = String(decoding: try JSONEncoder().encode(lines), as: UTF8.self)
        try await connection.query(
            """
            INSERT INTO close_attempts
                (order_id, attempt, call, host, started_at, finished_at, latency_ms, outcome, http_status,
                 err_code, err_code_des, message)
            SELECT \(record.orderID), \(Int64(record.attempt)), call, host, to_timestamp("startedAt"),
                   to_timestamp("finishedAt"), latency, outcome, "httpStatus", "errCode", "errCodeDes", message
              FROM json_to_recordset(\(json)::json)
                   AS line(call text, host text, "startedAt" bigint, "finishedAt" bigint, latency integer, outcome text,
                           "httpStatus" integer, "errCode" text, "errCodeDes" text, message text)
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
