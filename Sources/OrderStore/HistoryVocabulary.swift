/// The endpoint a history line's call went to, mirrored by the CHECK constraint on
/// `close_attempts.call` (`migrations/sqlite/0002_orderquery_and_hosts.sql`).
public enum CallKind: String, Sendable, CaseIterable, Codable {
    /// `/pay/closeorder` (v2) or `POST …/close` (v3).
    case closeorder
    /// `/pay/orderquery` (v2) or `GET …/out-trade-no/{no}` (v3).
    case orderquery
}

/// What one history line came to, mirrored by the CHECK constraint on
/// `close_attempts.outcome` (`migrations/sqlite/0002_orderquery_and_hosts.sql`).
public enum HistoryOutcome: String, Sendable, CaseIterable, Codable {
    /// Closed at WeChat Pay, already closed, or unknown to it.
    case closed
    /// Paid: never closed.
    case paid
    /// No final answer: tried again later.
    case retry
    /// An error that retrying will not fix.
    case failed
    /// The row could not be read or sent; no call was made.
    case invalid
    /// A call's lease expired with its attempts spent: given up without a call.
    case abandoned
    /// An order query said `NOTPAY`.
    case notPaid = "not_paid"
    /// A payment is under way (`USERPAYING`, `ACCEPT`, v3 `USER_PAYING`).
    case paying
    /// `closeorderd retry` put the row back to `pending`.
    case requeued
}
