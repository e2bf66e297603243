import Synchronization

/// Thrown when a statement (waiting for a connection included) outlived its deadline.
struct DeadlinePassed: Error {
    let limit: Duration
}

/// Runs `operation` and waits for it at most `limit`. On a cut network link a statement can
/// wait for TCP's own timeout, a quarter of an hour; a task group would wait for it too, as
/// it waits for every child. So the operation runs in a task of its own, which is cancelled
/// and left behind when the deadline passes first: cancelling stops a wait for a pool
/// connection, but a statement already sent runs on (the server's `statement_timeout`
/// ends those), so a transaction checks for cancellation before it commits. Cancelling the
/// caller cancels the operation.
func withDeadline<T: Sendable>(_ limit: Duration, _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
    let race = DeadlineRace<T>()
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { continuation in
            race.start(continuation, limit: limit, operation)
        }
    } onCancel: {
        race.cancel()
    }
}

/// The operation and its timer, the first of which resumes the caller.
private final class DeadlineRace<T: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<T, any Error>?
        var work: Task<Void, Never>?
        var timer: Task<Void, Never>?
        var finished = false
        var timedOut = false
        var cancelled = false
    }

    private let state = Mutex(State())

    func start(
        _ continuation: CheckedContinuation<T, any Error>, limit: Duration,
        _ operation: @escaping @Sendable () async throws -> T
    ) {
        state.withLock { $0.continuation = continuation }
        let work = Task {
            do {
                self.finish(.success(try await operation()))
            } catch {
                self.finish(.failure(error))
            }
        }
        let timer = Task {
            guard (try? await Task.sleep(for: limit)) != nil else { return }
            self.finish(.failure(DeadlinePassed(limit: limit)))
        }
        let (finished, timedOut, cancelled) = state.withLock { state in
            state.work = work
            state.timer = timer
            return (state.finished, state.timedOut, state.cancelled)
        }
        // Either may have ended before the tasks were stored: stop the other now.
        if finished { timer.cancel() }
        if timedOut || cancelled { work.cancel() }
    }

    /// Resumes the caller once, with the first result, and stops whichever is still running.
    private func finish(_ result: Result<T, any Error>) {
        let (continuation, work, timer) = state.withLock { state in
            defer {
                if state.continuation != nil, case .failure(is DeadlinePassed) = result { state.timedOut = true }
                state.continuation = nil
                state.finished = true
            }
            return (state.continuation, state.work, state.timer)
        }
        guard let continuation else { return }
        timer?.cancel()
        if case .failure(is DeadlinePassed) = result { work?.cancel() }
        continuation.resume(with: result)
    }

    func cancel() {
        let work = state.withLock { state in
            state.cancelled = true
            return state.work
        }
        work?.cancel()
    }
}
