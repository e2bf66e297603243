import GRDB

/// The result of one attempt, to be written back on the row it was claimed from.
public struct AttemptRecord: Sendable, Equatable {
    public var orderID: Int64
    public var leaseToken: String
    public var attempt: Int
    /// The row's new state: `pending` to retry, or a final state.
    public var newState: OrderState
    /// When a `pending` row becomes due again.
    public var nextAttemptAt: Int64?
    /// What the attempt itself came to, for the history: `closed`, `paid`, `retry`, `failed` or `invalid`.
    public var outcome: String
    public var errCode: String?
    public var errCodeDes: String?
    /// A sentence an operator can act on.
    public var message: String
    public var httpStatus: Int?
    public var startedAt: Int64
    public var finishedAt: Int64
    public var latencyMilliseconds: Int?

    public init(
        orderID: Int64, leaseToken: String, attempt: Int, newState: OrderState, nextAttemptAt: Int64? = nil,
        outcome: String, errCode: String? = nil, errCodeDes: String? = nil, message: String,
        httpStatus: Int? = nil, startedAt: Int64, finishedAt: Int64, latencyMilliseconds: Int? = nil
    ) {
        self.orderID = orderID
        self.leaseToken = leaseToken
        self.attempt = attempt
        self.newState = newState
        self.nextAttemptAt = nextAttemptAt
        self.outcome = outcome
        self.errCode = errCode
        self.errCodeDes = errCodeDes
        self.message = message
        self.httpStatus = httpStatus
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.latencyMilliseconds = latencyMilliseconds
    }
}

/// Whether a write-back changed the row.
public enum WriteBackResult: Sendable, Equatable {
    case applied
    /// The row no longer carried this claim's lease (the app edited it, or another process
    /// took it over after the lease expired): it was left as it is, the attempt kept in history.
    case superseded(currentState: OrderState?)
}

extension OrderStore {
    /// Writes attempts back in one transaction. Each row changes only if it is still
    /// `closing` under the record's lease token; every attempt is appended to the history
    /// either way.
    public func record(_ records: [AttemptRecord]) async throws(StoreError) -> [WriteBackResult] {
        try await run {
            try await writer.write { db in
                try records.map { record in try Self.record(record, in: db) }
            }
        }
    }

    private static func record(_ record: AttemptRecord, in db: Database) throws -> WriteBackResult {
        let lastError: String? = record.newState == .closed ? nil : record.message
        try db.execute(
            sql: """
                UPDATE orders
                   SET state = :state, next_attempt_at = :next, err_code = :errCode,
                       err_code_des = :errCodeDes, last_error = :lastError,
                       closed_at = CASE WHEN :state = 'closed' THEN :now ELSE closed_at END,
                       lease_token = NULL, lease_expires_at = NULL, updated_at = :now
                 WHERE id = :id AND state = 'closing' AND lease_token = :token
                """,
            arguments: [
                "state": record.newState.rawValue, "next": record.nextAttemptAt, "errCode": record.errCode,
                "errCodeDes": record.errCodeDes, "lastError": lastError, "now": record.finishedAt,
                "id": record.orderID, "token": record.leaseToken,
            ])
        let result: WriteBackResult
        var message = record.message
        if db.changesCount == 1 {
            result = .applied
        } else {
            let current = try String.fetchOne(db, sql: "SELECT state FROM orders WHERE id = ?", arguments: [record.orderID])
            result = .superseded(currentState: current.flatMap(OrderState.init(rawValue:)))
            message += " [not written to the row: it changed while the call was in flight; now \(current ?? "deleted")]"
        }
        try db.execute(
            sql: """
                INSERT INTO close_attempts
                    (order_id, attempt, started_at, finished_at, latency_ms, outcome, http_status,
                     err_code, err_code_des, message)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
            arguments: [
                record.orderID, record.attempt, record.startedAt, record.finishedAt, record.latencyMilliseconds,
                record.outcome, record.httpStatus, record.errCode, record.errCodeDes, message,
            ])
        return result
    }
}
