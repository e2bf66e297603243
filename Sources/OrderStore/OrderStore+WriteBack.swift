import GRDB

/// One HTTP call made during an attempt, for the history.
public struct CallRecord: Sendable, Equatable {
    public var call: CallKind
    /// The base URL that served it.
    public var host: String
    /// What the call came to.
    public var outcome: HistoryOutcome
    public var httpStatus: Int?
    public var errCode: String?
    public var errCodeDes: String?
    public var message: String
    public var startedAt: Int64
    public var finishedAt: Int64
    public var latencyMilliseconds: Int?

    public init(
        call: CallKind, host: String, outcome: HistoryOutcome, httpStatus: Int? = nil, errCode: String? = nil,
        errCodeDes: String? = nil, message: String, startedAt: Int64, finishedAt: Int64, latencyMilliseconds: Int? = nil
    ) {
        self.call = call
        self.host = host
        self.outcome = outcome
        self.httpStatus = httpStatus
        self.errCode = errCode
        self.errCodeDes = errCodeDes
        self.message = message
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.latencyMilliseconds = latencyMilliseconds
    }
}

/// What an order query reported about a payment, kept on the row for reconciliation.
public struct PaymentColumns: Sendable, Equatable {
    public var transactionID: String?
    public var totalFee: Int?
    public var timeEnd: String?
    public var tradeType: String?

    public init(transactionID: String? = nil, totalFee: Int? = nil, timeEnd: String? = nil, tradeType: String? = nil) {
        self.transactionID = transactionID
        self.totalFee = totalFee
        self.timeEnd = timeEnd
        self.tradeType = tradeType
    }
}

/// The result of one attempt, to be written back on the row it was claimed from.
public struct AttemptRecord: Sendable, Equatable {
    public var orderID: Int64
    public var leaseToken: String
    public var attempt: Int
    /// The row's new state: `pending` to try again, or a final state.
    public var newState: OrderState
    /// When a `pending` row becomes due again.
    public var nextAttemptAt: Int64?
    /// This attempt does not count against `max_attempts` (a user was paying; WeChat Pay was down).
    public var refundsAttempt = false
    public var errCode: String?
    public var errCodeDes: String?
    /// A sentence an operator can act on.
    public var message: String
    /// The last `trade_state` an order query returned, if one was made.
    public var tradeState: String?
    public var payment: PaymentColumns?
    /// The HTTP calls made, in order; none for an order that failed validation.
    public var calls: [CallRecord] = []
    /// The history outcome when no call was made.
    public var outcomeWithoutCall = HistoryOutcome.invalid
    public var startedAt: Int64
    public var finishedAt: Int64

    public init(
        orderID: Int64, leaseToken: String, attempt: Int, newState: OrderState, nextAttemptAt: Int64? = nil,
        errCode: String? = nil, errCodeDes: String? = nil, message: String, calls: [CallRecord] = [],
        startedAt: Int64, finishedAt: Int64
    ) {
        self.orderID = orderID
        self.leaseToken = leaseToken
        self.attempt = attempt
        self.newState = newState
        self.nextAttemptAt = nextAttemptAt
        self.errCode = errCode
        self.errCodeDes = errCodeDes
        self.message = message
        self.calls = calls
        self.startedAt = startedAt
        self.finishedAt = finishedAt
    }
}

/// Whether a write-back changed the row.
public enum WriteBackResult: Sendable, Equatable {
    case applied
    /// The row no longer carried this claim's lease (the app edited it, or another process
    /// took it over after the lease expired): it was left as it is, the attempt kept in history.
    case superseded(currentState: OrderState?)

    /// What the history line of this write-back carries after its message: nothing when
    /// applied; when superseded, that the row was left, and its state now (every engine
    /// writes the same words, which operators and the long suites read).
    public var historyNote: String {
        guard case .superseded(let current) = self else { return "" }
        return " [not written to the row: it changed while the call was in flight; now \(current?.rawValue ?? "deleted")]"
    }
}

extension OrderStore {
    /// Writes attempts back in one transaction. Each row changes only if it is still
    /// `closing` under the record's lease token; every call is appended to the history
    /// either way.
    public func record(_ records: [AttemptRecord]) async throws(StoreError) -> [WriteBackResult] {
        try await run {
            try await writer.write { db in
                try records.map { record in try Self.record(record, in: db) }
            }
        }
    }

    /// Writes one record: the row if it still carries the lease, the history either way.
    private static func record(_ record: AttemptRecord, in db: Database) throws -> WriteBackResult {
        let result = try update(record, in: db)
        try appendHistory(record, note: result.historyNote, in: db)
        return result
    }

    /// The fenced update: the row changes only while `closing` under the record's lease token.
    private static func update(_ record: AttemptRecord, in db: Database) throws -> WriteBackResult {
        let lastError: String? = record.newState == .closed ? nil : record.message
        // Numbered parameters (bound by position; ?1 and ?12 appear twice): binding by name
        // looked each name up per record.
        try db.cachedStatement(
            sql: """
                UPDATE orders
                   SET state = ?1, next_attempt_at = ?2, err_code = ?3,
                       err_code_des = ?4, last_error = ?5,
                       attempts = attempts - ?6,
                       trade_state = coalesce(?7, trade_state),
                       transaction_id = coalesce(?8, transaction_id),
                       total_fee = coalesce(?9, total_fee),
                       time_end = coalesce(?10, time_end),
                       trade_type = coalesce(?11, trade_type),
                       closed_at = CASE WHEN ?1 = 'closed' THEN ?12 ELSE closed_at END,
                       lease_token = NULL, lease_expires_at = NULL, updated_at = ?12
                 WHERE id = ?13 AND state = 'closing' AND lease_token = ?14
                """
        ).execute(
            arguments: [
                record.newState.rawValue, record.nextAttemptAt, record.errCode, record.errCodeDes, lastError,
                record.refundsAttempt ? 1 : 0, record.tradeState, record.payment?.transactionID, record.payment?.totalFee,
                record.payment?.timeEnd, record.payment?.tradeType, record.finishedAt, record.orderID, record.leaseToken,
            ])
        if db.changesCount == 1 { return .applied }
        let current = try String.fetchOne(db, sql: "SELECT state FROM orders WHERE id = ?", arguments: [record.orderID])
        return .superseded(currentState: current.flatMap(OrderState.init(rawValue:)))
    }

    /// One history line per call (one `outcomeWithoutCall` line when no call was made);
    /// `note` goes on the last.
    private static func appendHistory(_ record: AttemptRecord, note: String, in db: Database) throws {
        let insert = try db.cachedStatement(
            sql: """
                INSERT INTO close_attempts
                    (order_id, attempt, call, host, started_at, finished_at, latency_ms, outcome, http_status,
                     err_code, err_code_des, message)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """)
        guard !record.calls.isEmpty else {
            try insert.execute(
                arguments: [
                    record.orderID, record.attempt, nil, nil, record.startedAt, record.finishedAt, nil,
                    record.outcomeWithoutCall.rawValue, nil, nil, nil, record.message + note,
                ])
            return
        }
        for (index, call) in record.calls.enumerated() {
            try insert.execute(
                arguments: [
                    record.orderID, record.attempt, call.call.rawValue, call.host.isEmpty ? nil : call.host, call.startedAt,
                    call.finishedAt, call.latencyMilliseconds, call.outcome.rawValue, call.httpStatus, call.errCode,
                    call.errCodeDes, call.message + (index == record.calls.count - 1 ? note : ""),
                ])
        }
    }
}
