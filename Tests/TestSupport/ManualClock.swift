import Clocks
import Foundation
import Reaper
import Synchronization

/// A clock that moves only when a test advances it, so that timing logic is tested without
/// sleeping. Sleepers wake when `advance(by:)` carries `now` past their deadline.
///
/// ```swift
/// let clock = ManualClock()
/// async let woke: Void = clock.sleep(for: .seconds(5))
/// await clock.waitForSleepers(1)
/// clock.advance(by: .seconds(5))
/// try await woke
/// ```
public final class ManualClock: DaemonClock {
    private struct Sleeper {
        let id: Int
        let deadline: ContinuousClock.Instant
        let continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var offset: Duration = .zero
        var sleepers: [Sleeper] = []
        var nextID = 0
    }

    private let start: ContinuousClock.Instant
    private let startSeconds: Int64
    private let state = Mutex(State())

    /// A clock that starts at the real time now (or at `secondsSince1970` for rows).
    public init(secondsSince1970: Int64 = Int64(Date().timeIntervalSince1970)) {
        self.start = .now
        self.startSeconds = secondsSince1970
    }

    public var now: ContinuousClock.Instant { start + state.withLock { $0.offset } }

    public var secondsSince1970: Int64 {
        startSeconds + state.withLock { $0.offset }.components.seconds
    }

    /// How many tasks are sleeping on this clock.
    public var sleepers: Int { state.withLock { $0.sleepers.count } }

    /// Moves the clock forward and wakes every sleeper whose deadline has come.
    public func advance(by duration: Duration) {
        let woken = state.withLock { state -> [Sleeper] in
            state.offset += duration
            let now = start + state.offset
            let due = state.sleepers.filter { $0.deadline <= now }
            state.sleepers.removeAll { $0.deadline <= now }
            return due
        }
        for sleeper in woken { sleeper.continuation.resume() }
    }

    /// The earliest deadline any task sleeps until, if one sleeps.
    public var nextDeadline: ContinuousClock.Instant? { state.withLock { $0.sleepers.map(\.deadline).min() } }

    /// Moves the clock to the earliest sleeper's deadline, waking it (and any due with it).
    /// Does nothing if no task sleeps.
    public func advanceToNextDeadline() {
        guard let deadline = nextDeadline else { return }
        advance(by: max(.zero, deadline - now))
    }

    /// Runs `work` to its end, moving the clock to each deadline it sleeps until, so that time
    /// passes only while `work` waits on this clock. Throws if `work` has not ended within
    /// `limit` of real time (it waits on something else).
    ///
    /// ```swift
    /// let passedAt = try await clock.drive { await limiter.acquire("1900000109"); return clock.now }
    /// ```
    public func drive<T: Sendable>(
        within limit: Duration = .seconds(60), _ work: @escaping @Sendable () async -> T
    ) async throws -> T {
        let outcome = Outcome<T>()
        let task = Task {
            let value = await work()
            outcome.value.withLock { $0 = value }
        }
        let giveUp = ContinuousClock.now + limit
        while true {
            if let value = outcome.value.withLock({ $0 }) { return value }
            guard ContinuousClock.now < giveUp else {
                task.cancel()
                throw ManualClockError(message: "the work did not end within \(limit) (\(sleepers) sleepers)")
            }
            // One deadline at a time, then real time for the woken tasks to run (and sleep
            // again, perhaps until an earlier instant than the next sleeper's).
            if sleepers > 0 { advanceToNextDeadline() }
            try await Task.sleep(for: .milliseconds(1))
        }
    }

    /// Waits (in real time, without blocking a thread) until `count` tasks sleep on this clock.
    public func waitForSleepers(_ count: Int, within limit: Duration = .seconds(60)) async throws {
        let giveUp = ContinuousClock.now + limit
        while sleepers < count {
            guard ContinuousClock.now < giveUp else {
                throw ManualClockError(message: "\(sleepers) sleepers after \(limit), expected \(count)")
            }
            try await Task.sleep(for: .milliseconds(2))
        }
    }

    public func sleep(until deadline: ContinuousClock.Instant) async throws {
        let id = state.withLock { state in
            state.nextID += 1
            return state.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let resumeNow: (any Error)?? = state.withLock { state in
                    if Task.isCancelled { return .some(CancellationError()) }
                    if deadline <= start + state.offset { return .some(nil) }
                    state.sleepers.append(Sleeper(id: id, deadline: deadline, continuation: continuation))
                    return .none
                }
                switch resumeNow {
                case .some(.some(let error)): continuation.resume(throwing: error)
                case .some(.none): continuation.resume()
                case .none: break
                }
            }
        } onCancel: {
            let cancelled = state.withLock { state -> Sleeper? in
                guard let index = state.sleepers.firstIndex(where: { $0.id == id }) else { return nil }
                return state.sleepers.remove(at: index)
            }
            cancelled?.continuation.resume(throwing: CancellationError())
        }
    }
}

private final class Outcome<T: Sendable>: Sendable {
    let value = Mutex<T?>(nil)
}

/// A test waited on the clock for sleepers, or for work, that never came.
public struct ManualClockError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}
