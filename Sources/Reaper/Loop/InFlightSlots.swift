import Synchronization

/// Counts calls in flight and lets the poll loop wait until one of `capacity` slots is free.
/// A lock, not an actor: every call takes and releases a slot, and an executor hop each
/// time cost more than the bookkeeping.
final class InFlightSlots: Sendable {
    private struct State {
        var capacity: Int
        var inUse = 0
        var waiter: CheckedContinuation<Void, Never>?
    }

    private let state: Mutex<State>

    init(capacity: Int) { state = Mutex(State(capacity: capacity)) }

    var inUse: Int { state.withLock { $0.inUse } }

    /// Takes one slot if one is free.
    func tryTake() -> Bool {
        state.withLock { state in
            guard state.inUse < state.capacity else { return false }
            state.inUse += 1
            return true
        }
    }

    /// A reload may change `concurrency`; calls in flight are not affected.
    func setCapacity(_ capacity: Int) {
        state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.capacity = capacity
            return state.inUse < capacity ? state.waiter.take() : nil
        }?.resume()
    }

    func release() {
        state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.inUse -= 1
            return state.waiter.take()
        }?.resume()
    }

    /// Returns once at least one slot is free, or the task is cancelled (graceful shutdown
    /// must not wait for a call to end). Only the poll loop waits, so one waiter at most.
    func waitForFreeSlot() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (waiter: CheckedContinuation<Void, Never>) in
                let ready = state.withLock { state -> Bool in
                    if state.inUse < state.capacity || Task.isCancelled { return true }
                    state.waiter = waiter
                    return false
                }
                if ready { waiter.resume() }
            }
        } onCancel: {
            state.withLock { $0.waiter.take() }?.resume()
        }
    }
}
