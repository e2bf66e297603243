/// The order table as the daemon and its commands use it, whatever the engine: the seam a
/// second engine conforms to. `OrderStore` (SQLite) is one conformer; the conformance suite
/// in `Tests/OrderStoreTests/OrderTableConformanceTests.swift` pins the contract every
/// conformer keeps:
///
/// - **Due rules.** A `pending` order is due once it is `DuePolicy.minOrderAgeSeconds` old
///   and past its deadline (`expires_at`, or `created_at` plus the payment timeout when that
///   is NULL) and past `next_attempt_at`. A `closing` order is due once its lease expired.
///   Rows in other states are never touched.
/// - **Claims.** A claimed order becomes `closing` under a fresh lease token, and its attempt
///   is counted. An expired lease is claimed again (`recoveredFromExpiredLease`), or failed
///   without a call when its attempts are spent. Unreadable rows fail alone.
/// - **Fencing.** A write-back changes a row only while it is `closing` under the record's
///   lease token; otherwise the row is left as it is and the history still gains the calls.
/// - **Group commit.** `record` writes a batch of attempts in one transaction.
/// - **Release and requeue.** Released orders go back to `pending` without counting the
///   attempt; `requeueFailed` moves `failed` rows back with their attempts reset and a
///   `requeued` history line.
public protocol OrderTable: Sendable {
    /// Creates or upgrades the schema; returns the versions applied.
    func migrate() async throws(StoreError) -> [Int]

    /// Fails if the table this store opened is no longer the one at its address (for SQLite:
    /// the file was deleted or replaced). The loop stops rather than write where nobody reads.
    func verifyStillOurs() throws(StoreError)

    /// Claims up to `limit` due orders under a lease of `leaseSeconds`.
    func claimDue(now: Int64, policy: DuePolicy, limit: Int, leaseSeconds: Int64, maxAttempts: Int)
        async throws(StoreError) -> ClaimedBatch

    /// Hands claimed orders back unstarted: `pending` again, the attempt not counted.
    func release(_ orders: [ClaimedOrder], now: Int64) async throws(StoreError)

    /// Whether `order` is still `closing` under its claim's lease.
    func isStillClaimed(_ order: ClaimedOrder) async throws(StoreError) -> Bool

    /// Writes attempts back in one transaction, each fenced by its lease token.
    func record(_ records: [AttemptRecord]) async throws(StoreError) -> [WriteBackResult]

    /// Moves the selected `failed` orders back to `pending` (`closeorderd retry`).
    func requeueFailed(_ selection: RequeueSelection, now: Int64) async throws(StoreError) -> RequeueResult

    /// Counts by state and err_code, and the due backlog (`closeorderd query`).
    func summary(now: Int64, policy: DuePolicy) async throws(StoreError) -> StoreSummary

    /// The due backlog, from indexes over unfinished rows only, counting at most
    /// `DueBacklog.countedAtMost` rows (each Prometheus scrape).
    func dueBacklog(now: Int64, policy: DuePolicy) async throws(StoreError) -> DueBacklog

    /// What the history says happened in `since...until` (`closeorderd query --since`).
    func activity(since: Int64, until: Int64, policy: DuePolicy) async throws(StoreError) -> RecentActivity

    /// The most recently updated orders in `state`.
    func orders(inState state: OrderState, limit: Int) async throws(StoreError) -> [OrderRecord]

    /// Every order with this number (one per merchant and sub-merchant that used it), oldest first.
    func orders(outTradeNo: String) async throws(StoreError) -> [OrderRecord]

    /// An order's history, oldest first.
    func attempts(orderID: Int64) async throws(StoreError) -> [AttemptHistoryRecord]

    /// The merchants' call budget shared with the other daemons on this table, if several
    /// can share it (nil: this daemon's own limits are the whole story).
    var callSpacing: (any MerchantCallSpacing)? { get }
}

extension OrderTable {
    public var callSpacing: (any MerchantCallSpacing)? { nil }
}

extension OrderStore: OrderTable {}
