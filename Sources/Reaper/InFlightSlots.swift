/// Counts calls in flight and lets the poll loop wait until one of `capacity` slots is free.
actor InFlightSlots {
    let capacity: Int
    private(set) var inUse = 0
    private var waiters: [CheckedContinuation<Void, Never>] = []

    init(capacity: Int) { self.capacity = capacity }

    var free: Int { capacity - inUse }

    func take(_ count: Int) { inUse += count }

    func release() {
        inUse -= 1
        let ready = waiters
        waiters.removeAll()
        for waiter in ready { waiter.resume() }
    }

    /// Returns once at least one slot is free.
    func waitForFreeSlot() async {
        while inUse >= capacity {
            await withCheckedContinuation { waiters.append($0) }
        }
    }
}
