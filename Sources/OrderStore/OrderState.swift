/// The states of an order row, mirrored by the CHECK constraint in `migrations/sqlite/0001_orders.sql`.
public enum OrderState: String, Sendable, CaseIterable, Codable {
    /// Waiting for its deadline, or for its next attempt after a transient failure.
    case pending
    /// Claimed by a closeorderd process under a lease; a call is in flight.
    case closing
    /// Closed at WeChat Pay: nobody can pay it any more.
    case closed
    /// Paid, as WeChat Pay or the merchant's app reported: never closed.
    case paid
    /// Closing stopped: a bad row, a configuration error, or retries exhausted. `last_error` says why.
    case failed
}
