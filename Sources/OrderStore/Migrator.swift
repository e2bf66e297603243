import Foundation
import GRDB
import Synchronization

/// The embedded migrations, run by GRDB's `DatabaseMigrator` (which records them in
/// `grdb_migrations`). Each migration also records itself in `schema_migrations` (version,
/// file name, time), the table the README documents for apps and operators; databases
/// migrated before closeorderd used `DatabaseMigrator` have only that table, and are
/// bridged at the first run.
enum Migrator {
    static var latestVersion: Int { EmbeddedMigration.all.map(\.version).max() ?? 0 }

    /// The migrator; each migration it applies is added to `applied`.
    static func migrator(recordingIn applied: AppliedVersions) -> DatabaseMigrator {
        var migrator = DatabaseMigrator()
        for migration in EmbeddedMigration.all.sorted(by: { $0.version < $1.version }) {
            migrator.registerMigration(migration.fileName, foreignKeyChecks: .immediate) { db in
                try db.execute(sql: migration.sql)
                try db.execute(
                    sql: "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, unixepoch())",
                    arguments: [migration.version, migration.fileName])
                // Counted once its transaction commits (a rolled-back one is run again).
                db.afterNextTransaction { _ in applied.versions.withLock { $0.append(migration.version) } }
            }
        }
        return migrator
    }

    /// Creates `schema_migrations` if needed, tells `DatabaseMigrator` what older builds
    /// applied, and refuses a database from a newer build. One immediate transaction.
    static func prepare(_ db: Database) throws {
        try db.inTransaction(.immediate) {
            try db.execute(
                sql: """
                    CREATE TABLE IF NOT EXISTS schema_migrations (
                        version    INTEGER PRIMARY KEY,
                        name       TEXT    NOT NULL,
                        applied_at INTEGER NOT NULL
                    );
                    CREATE TABLE IF NOT EXISTS grdb_migrations (identifier TEXT NOT NULL PRIMARY KEY);
                    INSERT OR IGNORE INTO grdb_migrations (identifier) SELECT name FROM schema_migrations;
                    """)
            try refuseNewer(db)
            return .commit
        }
    }

    /// Applies what is missing up to `target`; returns the versions applied now. Another
    /// process migrating the same file at once may apply a migration between this one's
    /// reading and applying: the run is then repeated on what remains.
    static func migrate(_ writer: any DatabaseWriter, upTo target: Int = latestVersion) throws -> [Int] {
        let appliedNow = AppliedVersions()
        let migrator = migrator(recordingIn: appliedNow)
        guard
            let identifier = EmbeddedMigration.all.filter({ $0.version <= target }).max(by: { $0.version < $1.version })?.fileName
        else { return [] }
        // Retried only while another process is making progress: each retry must find more
        // versions applied than the round before.
        var applied = try writer.read { db in try appliedVersions(db) }.count
        while true {
            do {
                try writer.barrierWriteWithoutTransaction { db in try prepare(db) }
                try migrator.migrate(writer, upTo: identifier)
                break
            } catch let error as DatabaseError {
                let now = try writer.read { db in try appliedVersions(db) }.count
                guard now > applied else { throw error }
                applied = now
            }
        }
        return appliedNow.versions.withLock { $0 }.sorted()
    }

    static func appliedVersions(_ db: Database) throws -> Set<Int> {
        guard try db.tableExists("schema_migrations") else { return [] }
        return Set(try Int.fetchAll(db, sql: "SELECT version FROM schema_migrations"))
    }

    static func refuseNewer(_ db: Database) throws {
        let newest = try Int.fetchOne(db, sql: "SELECT max(version) FROM schema_migrations") ?? 0
        if newest > latestVersion {
            throw SchemaError.newerThanThisBuild(databaseVersion: newest, knownVersion: latestVersion)
        }
    }

    /// Fails unless the database is at exactly the version this build knows.
    static func checkCurrent(_ db: Database) throws {
        guard try db.tableExists("schema_migrations") else { throw SchemaError.notMigrated }
        try refuseNewer(db)
        let newest = try Int.fetchOne(db, sql: "SELECT max(version) FROM schema_migrations") ?? 0
        if newest < latestVersion { throw SchemaError.notMigrated }
    }
}

/// The versions one migration run applied (a class: migrations record into it as they commit).
final class AppliedVersions: Sendable {
    let versions = Mutex<[Int]>([])
}
