import Foundation
import GRDB

/// One file of `migrations/`, embedded into the binary at build time by the
/// `EmbedMigrationsPlugin` so that a binary copied alone can create a fresh database.
public struct EmbeddedMigration: Sendable {
    /// The file name without `.sql`, e.g. `0001_orders`.
    public let fileName: String
    let sqlBytes: [UInt8]

    /// The version number: the file name's leading digits.
    public var version: Int { Int(fileName.prefix(while: \.isNumber)) ?? 0 }
    public var sql: String { String(decoding: sqlBytes, as: UTF8.self) }
}

/// Why a database cannot be used by this build.
public enum SchemaError: Error, CustomStringConvertible {
    case newerThanThisBuild(databaseVersion: Int, knownVersion: Int)
    case notMigrated

    public var description: String {
        switch self {
        case .newerThanThisBuild(let databaseVersion, let knownVersion):
            "the database has schema version \(databaseVersion), but this closeorderd knows only up to "
                + "\(knownVersion): it was written by a newer closeorderd; upgrade closeorderd instead of using this one"
        case .notMigrated:
            "the database has no closeorderd schema yet: run `closeorderd migrate` (or `closeorderd run`) first"
        }
    }
}

/// Applies the embedded migrations in version order and records each in `schema_migrations`.
enum Migrator {
    static var latestVersion: Int { EmbeddedMigration.all.map(\.version).max() ?? 0 }

    /// Applies what is missing, in one immediate transaction so that two processes
    /// migrating the same file at once cannot both apply a version.
    /// Returns the versions applied now.
    static func migrate(_ db: Database, upTo target: Int = latestVersion) throws -> [Int] {
        try db.execute(
            sql: """
                CREATE TABLE IF NOT EXISTS schema_migrations (
                    version    INTEGER PRIMARY KEY,
                    name       TEXT    NOT NULL,
                    applied_at INTEGER NOT NULL
                )
                """)
        let applied = Set(try Int.fetchAll(db, sql: "SELECT version FROM schema_migrations"))
        if let newest = applied.max(), newest > latestVersion {
            throw SchemaError.newerThanThisBuild(databaseVersion: newest, knownVersion: latestVersion)
        }
        var appliedNow: [Int] = []
        for migration in EmbeddedMigration.all.sorted(by: { $0.version < $1.version })
        where !applied.contains(migration.version) && migration.version <= target {
            try db.execute(sql: migration.sql)
            try db.execute(
                sql: "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, unixepoch())",
                arguments: [migration.version, migration.fileName])
            appliedNow.append(migration.version)
        }
        return appliedNow
    }

    /// Fails unless the database is at exactly the version this build knows.
    static func checkCurrent(_ db: Database) throws {
        guard try db.tableExists("schema_migrations") else { throw SchemaError.notMigrated }
        let newest = try Int.fetchOne(db, sql: "SELECT max(version) FROM schema_migrations") ?? 0
        if newest > latestVersion {
            throw SchemaError.newerThanThisBuild(databaseVersion: newest, knownVersion: latestVersion)
        }
        if newest < latestVersion { throw SchemaError.notMigrated }
    }
}
