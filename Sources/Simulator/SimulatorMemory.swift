/// How much a long-running simulator remembers, so that its memory and `/_sim/stats` stay
/// bounded however many orders merchants' CI runs send through it.
public struct SimulatorMemoryLimits: Sendable, Equatable {
    /// Orders whose trade state and per-order statistics are kept; the oldest is forgotten
    /// first (a forgotten order is NOTPAY again, as if new).
    public var orders: Int
    /// Arrival times kept for `call_times` (the most recent).
    public var callTimes: Int

    public init(orders: Int = 100_000, callTimes: Int = 10_000) {
        self.orders = orders
        self.callTimes = callTimes
    }
}

/// The order numbers seen, oldest first, to know which to forget when there are too many.
struct OrderMemory {
    let limit: Int
    private var numbers: [String] = []
    private var start = 0
    private var known: Set<String> = []

    init(limit: Int) { self.limit = max(1, limit) }

    /// Notes `number`; returns the number to forget when the limit is passed.
    mutating func remember(_ number: String) -> String? {
        guard known.insert(number).inserted else { return nil }
        numbers.append(number)
        guard known.count > limit else { return nil }
        let forgotten = numbers[start]
        start += 1
        known.remove(forgotten)
        if start >= limit {
            numbers.removeFirst(start)
            start = 0
        }
        return forgotten
    }
}

extension SimulatedWeChatPay.State {
    /// Records a signed call's arrival for `number`, forgetting the oldest order when needed.
    mutating func noteCall(_ number: String, at arrived: Double) {
        stats.callTimes.append(arrived)
        if stats.callTimes.count >= 2 * limits.callTimes { stats.callTimes.removeFirst(stats.callTimes.count - limits.callTimes) }
        noteOrder(number)
    }

    mutating func noteOrder(_ number: String) {
        guard let forgotten = memory.remember(number) else { return }
        tradeStates[forgotten] = nil
        faults[forgotten] = nil
        stats.closeCalls[forgotten] = nil
        stats.queryCalls[forgotten] = nil
        stats.lastCloseRequests[forgotten] = nil
    }
}
