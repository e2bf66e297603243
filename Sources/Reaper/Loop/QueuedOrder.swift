import OrderStore

/// A claimed order waiting for a free call slot.
struct QueuedOrder: Sendable {
    let order: ClaimedOrder
    let claimedAt: ContinuousClock.Instant
}
