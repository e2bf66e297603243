import Foundation
import GRDB

/// The order table: opening the file, migrations, the claim, fenced write-back and
/// read-only queries. All of closeorderd's SQL lives in this module.
///
/// The file is shared with the merchant's app, so it runs in WAL mode (readers never
/// block the writer) and every connection waits on a busy lock instead of failing.
///
/// ```swift
/// let store = try OrderStore(path: "/var/lib/closeorderd/orders.sqlite")
/// try await store.migrate()
/// let claimed = try await store.claimDue(now: now, policy: policy, limit: 256)
/// ```
public final class OrderStore: Sendable {
    /// How long a statement waits for another process's write lock before failing.
    public static let defaultBusyTimeout: TimeInterval = 10

    let writer: any DatabaseWriter
    public let path: String
    /// The device and inode of the file when it was opened, to notice it being replaced or deleted.
    let fileIdentity: FileIdentity?

    /// Opens the database for reading and writing, in WAL mode; with `create` (the daemon and
    /// `migrate`) a missing file is created, otherwise (`retry`) it is an error naming the path.
    public init(
        path: String, create: Bool = true, busyTimeout: TimeInterval = OrderStore.defaultBusyTimeout
    ) throws(StoreError) {
        self.path = path
        try Self.refuseNonFile(at: path)
        guard create || FileManager.default.fileExists(atPath: path) else {
            throw StoreError(path: path, message: "no database file at \(path) (check --db or the configuration's database)")
        }
        if create { Self.createSharedFile(at: path) }
        var configuration = Configuration()
        configuration.busyMode = .timeout(busyTimeout)
        configuration.foreignKeysEnabled = false
        configuration.prepareDatabase { db in
            // WAL survives process crashes with NORMAL; see README "Durability".
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
        }
        do {
            writer = try DatabasePool(path: path, configuration: configuration)
        } catch {
            throw StoreError(path: path, underlying: error)
        }
        fileIdentity = FileIdentity(path: path)
    }

    /// The mode of a database file closeorderd creates: read-write for its owner and group
    /// (the merchant's app joins the group), whatever the umask. SQLite gives the `-wal` and
    /// `-shm` files it creates later the database file's mode, so they are shared too.
    public static let fileMode: mode_t = 0o660

    /// Creates an empty database file with `fileMode` if none exists. SQLite would create it
    /// 0644 less the umask: `UMask=0007` gives 0640, and the app could not write.
    static func createSharedFile(at path: String) {
        let descriptor = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, fileMode)
        guard descriptor >= 0 else { return }  // there already (or not creatable: SQLite says why)
        fchmod(descriptor, fileMode)
        close(descriptor)
    }

    private init(path: String, reader: DatabaseQueue) {
        self.path = path
        self.writer = reader
        self.fileIdentity = FileIdentity(path: path)
    }

    /// Fails if the file at `path` is no longer the one this store opened: it was deleted or
    /// replaced (restored from a backup, moved aside). Writing on would go to a file nobody
    /// reads; the daemon stops instead, and its supervisor starts it again on the new file.
    public func verifyStillOurs() throws(StoreError) {
        guard let fileIdentity else { return }
        guard let current = FileIdentity(path: path) else {
            throw StoreError(
                path: path,
                message: "database \(path) was deleted while closeorderd had it open; restart to create or open it again")
        }
        guard current == fileIdentity else {
            throw StoreError(
                path: path,
                message:
                    "database \(path) was replaced by another file while closeorderd had it open; restart to open the new one")
        }
    }

    /// Opens an existing database read-only, for `closeorderd query`: it never writes and
    /// never blocks the daemon or the app.
    public static func openReadOnly(path: String) throws(StoreError) -> OrderStore {
        guard FileManager.default.fileExists(atPath: path) else {
            throw StoreError(path: path, message: "no database file at \(path) (check --db or the configuration's database)")
        }
        try refuseNonFile(at: path)
        var configuration = Configuration()
        configuration.readonly = true
        configuration.busyMode = .timeout(defaultBusyTimeout)
        do {
            let queue = try DatabaseQueue(path: path, configuration: configuration)
            try queue.read { db in try Migrator.checkCurrent(db) }
            return OrderStore(path: path, reader: queue)
        } catch let error as SchemaError {
            throw StoreError(path: path, message: error.description)
        } catch {
            throw StoreError(path: path, underlying: error)
        }
    }

    /// Opens an existing closeorderd database for reading and writing, without migrating it:
    /// for `closeorderd retry`, which must not turn a mistyped path to another SQLite file (or
    /// an empty file) into an order database.
    public static func openExisting(path: String) throws(StoreError) -> OrderStore {
        // Checked read-only first: opening for writing would switch any SQLite file to WAL mode.
        _ = try openReadOnly(path: path)
        return try OrderStore(path: path, create: false)
    }

    /// Fails with a sentence that fits when `path` is a directory or a device, not a file.
    static func refuseNonFile(at path: String) throws(StoreError) {
        var status = stat()
        guard stat(path, &status) == 0 else { return }
        switch status.st_mode & S_IFMT {
        case S_IFREG: return
        case S_IFDIR:
            throw StoreError(path: path, message: "\(path) is a directory, not a database file (check --db or database)")
        default: throw StoreError(path: path, message: "\(path) is not a regular file (check --db or database)")
        }
    }

    /// Brings the schema up to this build's version; refuses a database from a newer build.
    /// Returns the versions applied now (empty when it was current).
    @discardableResult
    public func migrate() async throws(StoreError) -> [Int] {
        try await migrate(upTo: Migrator.latestVersion)
    }

    /// Applies the migrations up to `version` only: for tests of upgrades from older schemas.
    func migrate(upTo version: Int) async throws(StoreError) -> [Int] {
        let writer = self.writer
        return try await run {
            // DatabaseMigrator's own calls are synchronous: run them off Swift's cooperative pool.
            try await withCheckedThrowingContinuation { (done: CheckedContinuation<[Int], any Error>) in
                DispatchQueue.global().async { done.resume(with: Result { try Migrator.migrate(writer, upTo: version) }) }
            }
        }
    }

    /// The schema version this build creates.
    public static var schemaVersion: Int { Migrator.latestVersion }

    /// Runs a database operation, turning any failure into a `StoreError` that names the file.
    func run<T>(_ operation: () async throws -> T) async throws(StoreError) -> T {
        do {
            return try await operation()
        } catch let error as SchemaError {
            throw StoreError(path: path, message: error.description)
        } catch {
            throw StoreError(path: path, underlying: error)
        }
    }
}

/// Which file a path names: its device and inode.
struct FileIdentity: Equatable, Sendable {
    let device: UInt64
    let inode: UInt64

    init?(path: String) {
        var status = stat()
        guard stat(path, &status) == 0 else { return nil }
        device = UInt64(status.st_dev)
        inode = UInt64(status.st_ino)
    }
}

/// A database failure, with the file it concerns and a sentence saying what went wrong.
public struct StoreError: Error, CustomStringConvertible {
    public let path: String
    public let message: String

    init(path: String, message: String) {
        self.path = path
        self.message = message
    }

    init(path: String, underlying: any Error) {
        self.path = path
        if let error = underlying as? DatabaseError {
            let hint: String =
                switch error.resultCode {
                case .SQLITE_BUSY, .SQLITE_LOCKED: " (another process held the lock past the busy timeout)"
                case .SQLITE_CANTOPEN: " (check that the file's directory exists and is writable)"
                case .SQLITE_READONLY: " (the file or its directory is not writable by this user)"
                case .SQLITE_FULL: " (the disk is full)"
                case .SQLITE_IOERR: " (check the disk: is it full, read-only or failing?)"
                default: ""
                }
            self.message = "database \(path): \(error.message ?? "\(error.resultCode)")\(hint)"
        } else {
            self.message = "database \(path): \(underlying)"
        }
    }

    public var description: String { message }
}
