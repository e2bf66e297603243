import Foundation
import Logging
import OrderStore
import PostgresStore

/// Opens the order table that a `database:` value or `--db` names, on its engine: a path is
/// SQLite, a `postgresql://` URL is PostgreSQL.
enum OrderTables {
    /// What the command needs of the table.
    enum Access {
        /// The daemon: a missing SQLite file is created (the migration follows); each
        /// PostgreSQL statement waits at most `PostgresOrderTable`'s default deadline.
        case daemon
        /// `migrate`: a missing SQLite file is created (the migration follows).
        case create
        /// `retry`: the table must exist and be current.
        case existing
        /// `query`: read only; the table must exist and be current.
        case readOnly
    }

    /// Opens `database`. A PostgreSQL password comes from the URL, else `password` (the
    /// configuration's `database_password_file` or `_credential`), else `$PGPASSWORD`.
    static func open(_ database: String, password: String?, access: Access, logger: Logger) async throws(StoreError)
        -> any OrderTable
    {
        switch try location(database) {
        case .sqlite(let path):
            switch access {
            case .daemon, .create: return try OrderStore(path: path)
            case .existing: return try OrderStore.openExisting(path: path)
            case .readOnly: return try OrderStore.openReadOnly(path: path)
            }
        case .postgresql(let address):
            let password = password ?? ProcessInfo.processInfo.environment["PGPASSWORD"]
            let table = try PostgresOrderTable(
                address: address, password: password, logger: logger, statementDeadline: access == .daemon ? .seconds(10) : nil)
            try await table.verifyReachable()
            if access == .existing || access == .readOnly { try await table.checkSchema() }
            return table
        }
    }

    /// The newest schema version this build knows for `database`'s engine.
    static func schemaVersion(of database: String) -> Int {
        if case .postgresql = try? DatabaseLocation(parsing: database) { return PostgresOrderTable.latestVersion }
        return OrderStore.schemaVersion
    }

    /// `database` for messages: the path, or the URL without its password.
    static func redacted(_ database: String) -> String {
        (try? DatabaseLocation(parsing: database))?.redacted ?? database
    }

    private static func location(_ database: String) throws(StoreError) -> DatabaseLocation {
        do {
            return try DatabaseLocation(parsing: database)
        } catch {
            throw StoreError(location: redacted(database), message: error.description)
        }
    }
}
