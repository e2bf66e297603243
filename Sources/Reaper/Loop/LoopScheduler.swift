/// The poll loop's decisions, pure: from what is queued, in flight and due, whether to claim
/// (and how many), wait for a call slot, pause, or stop. `Reaper` carries them out.
///
/// Claims keep a small queue of orders ahead of the free call slots (at most one more round
/// of `concurrency`), so that a slot freed by a finished call is refilled at once and claims
/// go in batches.
struct LoopScheduler: Equatable {
    var concurrency: Int
    var batchSize: Int
    /// `run --once`: stop once nothing more is due, instead of polling again.
    var untilIdle: Bool

    /// What the loop knows at one turn.
    struct Situation: Equatable {
        /// Claimed orders waiting for a call slot.
        var queued: Int
        /// Calls in flight.
        var inFlight: Int
        /// The last claim found fewer due rows than it asked for.
        var exhausted: Bool
    }

    /// What the loop does next.
    enum Turn: Equatable {
        /// Claim this many due orders.
        case claim(Int)
        /// The breaker allows no claim before this instant: hand back what is queued and pause.
        case pauseUntil(ContinuousClock.Instant)
        /// Nothing is due: pause for the poll interval, then claim again.
        case pollLater
        /// Every slot is busy, or the queue is full: wait until a call finishes.
        case waitForFreeSlot
        /// `run --once` is done.
        case stop
    }

    /// How many orders a claim may take now: enough to fill the free slots and one more round.
    func wanted(_ situation: Situation) -> Int {
        min(batchSize, 2 * concurrency - situation.inFlight - situation.queued)
    }

    /// The next turn. `permission` is asked only when a claim is possible, since a probe
    /// permission is taken by asking.
    func next(_ situation: Situation, permission: () -> OutageBreaker.Permission) -> Turn {
        let wanted = wanted(situation)
        if !situation.exhausted && situation.queued < concurrency && wanted > 0 {
            switch permission() {
            case .claim: return .claim(wanted)
            case .probe: return .claim(1)
            case .waitUntil(let instant): return untilIdle ? .stop : .pauseUntil(instant)
            }
        }
        if situation.queued > 0 { return .waitForFreeSlot }
        if situation.exhausted { return untilIdle ? .stop : .pollLater }
        return .waitForFreeSlot
    }

    /// Whether a queued order's call can still finish, with a second to spare, before its
    /// lease ends; if not, it is handed back instead of called.
    static func canStart(_ leaseExpiresAt: Int64, now: Int64, timeoutSeconds: Double) -> Bool {
        leaseExpiresAt - now > Int64(timeoutSeconds.rounded(.up)) + 1
    }
}
