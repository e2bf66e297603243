/// Counts calls in flight and lets the poll loop wait until one of `capacity` slots is free.
actor InFlightSlots {
    private(set) var capacity: Int
    private(set) var inUse = 0
    private var waiters: [CheckedContinuation<Void, Never>] = []

    init(capacity: Int) { self.capacity = capacity }

    var free: Int { capacity - inUse }

    func take(_ count: Int) { inUse += count }

    /// Takes one slot if one is free.
    func tryTake() -> Bool {
        guard inUse < capacity else { return false }
        inUse += 1
        return true
    }

    /// A reload may change `concurrency`; calls in flight are not affected.
    func setCapacity(_ capacity: Int) {
        guard capacity != self.capacity else { return }
        self.capacity = capacity
        wakeWaiters()
    }

    func release() {
        inUse -= 1
        wakeWaiters()
    }

    private func wakeWaiters() {
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
