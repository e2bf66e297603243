import OrderStore
import PostgresNIO

extension PostgresOrderTable {
    /// The advisory lock every closeorderd takes while it migrates: ten daemons starting at
    /// once migrate once, the others wait and then find nothing to do. (`'closeorderd'` as a
    /// 64-bit number; any constant works as long as every version uses the same.)
    static let migrationLock: Int64 = 0x636c_6f73_656f_7264

    /// The newest schema version this binary knows.
    public static var latestVersion: Int { EmbeddedMigration.all.map(\.version).max() ?? 0 }

    /// Creates or upgrades the schema under the advisory lock, in one transaction; refuses a
    /// database migrated by a newer closeorderd. Returns the versions applied.
    public func migrate() async throws(StoreError) -> [Int] {
        try await run(within: nil) { [self] in
            try await client.withTransaction(logger: logger) { connection in
                // A migration takes as long as it takes (an index over a big table), whatever
                // the session's statement_timeout.
                try await connection.query("SET LOCAL statement_timeout = 0", logger: logger)
                try await connection.query("SELECT pg_advisory_xact_lock(\(Self.migrationLock))", logger: logger)
                try await connection.query(
                    """
                    CREATE TABLE IF NOT EXISTS schema_migrations (
                        version    integer     PRIMARY KEY,
                        name       text        NOT NULL,
                        applied_at timestamptz NOT NULL DEFAULT now())
                    """, logger: logger)
                var applied: Set<Int> = []
                for try await version in try await connection.query(
                    "SELECT version FROM schema_migrations", logger: logger
                ).decode(Int32.self) {
                    applied.insert(Int(version))
                }
                if let newest = applied.max(), newest > Self.latestVersion {
                    throw StoreError(
                        location: address.redacted,
                        message:
                            "database \(address.redacted): "
                            + "\(SchemaError.newerThanThisBuild(databaseVersion: newest, knownVersion: Self.latestVersion))")
                }
                var done: [Int] = []
                for migration in EmbeddedMigration.all.sorted(by: { $0.version < $1.version })
                where !applied.contains(migration.version) {
                    for statement in SQLScript.statements(migration.sql) {
                        try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                    }
                    try await connection.query(
                        "INSERT INTO schema_migrations (version, name) VALUES (\(migration.version), \(migration.fileName))",
                        logger: logger)
                    done.append(migration.version)
                }
                return done
            }
        }
    }
}

extension PostgresOrderTable {
    /// Fails unless the schema exists and this build knows its version: for `query` and
    /// `retry`, which never migrate.
    public func checkSchema() async throws(StoreError) {
        let newest: Int? = try await run(within: nil) { [self] in
            let exists = try await client.query("SELECT to_regclass('schema_migrations') IS NOT NULL", logger: logger)
            for try await present in exists.decode(Bool.self) where !present { return nil }
            for try await version in try await client.query(
                "SELECT max(version) FROM schema_migrations", logger: logger
            ).decode(Int32?.self) {
                return version.map(Int.init)
            }
            return nil
        }
        guard let newest else {
            throw StoreError(
                location: address.redacted, message: "database \(address.redacted): \(SchemaError.notMigrated)")
        }
        if newest > Self.latestVersion {
            throw StoreError(
                location: address.redacted,
                message:
                    "database \(address.redacted): \(SchemaError.newerThanThisBuild(databaseVersion: newest, knownVersion: Self.latestVersion))"
            )
        }
    }
}
