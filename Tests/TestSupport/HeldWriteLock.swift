import GRDB

/// A database's write lock, held by a connection of the test's own, as an app in a long
/// transaction holds it, until `release()`.
///
/// ```swift
/// let lock = try await HeldWriteLock(path: database.path)
/// // … a daemon started now waits for the lock …
/// try await lock.release()
/// ```
public final class HeldWriteLock: Sendable {
    let queue: DatabaseQueue

    /// Opens `path` and begins an immediate transaction: the lock is held when this returns.
    public init(path: String) async throws {
        var configuration = Configuration()
        configuration.allowsUnsafeTransactions = true
        queue = try DatabaseQueue(path: path, configuration: configuration)
        try await queue.writeWithoutTransaction { try $0.execute(sql: "BEGIN IMMEDIATE") }
    }

    /// Ends the transaction, which wrote nothing.
    public func release() async throws {
        try await queue.writeWithoutTransaction { try $0.execute(sql: "COMMIT") }
    }
}
