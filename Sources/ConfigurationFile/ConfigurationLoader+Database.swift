import Foundation
import OrderStore

/// `database:` and the PostgreSQL password keys.
extension ConfigurationLoader {
    /// `database:`, unless `--db` overrides it (the key is still checked for shape): a SQLite
    /// path, or a PostgreSQL URL that must parse.
    static func readDatabase(_ root: MappingReader, override: String?) throws(ConfigurationError) -> String {
        let value = try root.string("database")
        if let override {
            do {
                _ = try DatabaseLocation(parsing: override)
            } catch {
                throw root.fail("--db", error.description)
            }
            return override
        }
        guard let value, !value.isEmpty else {
            throw root.fail(
                "database", "required: the path of the SQLite order database, or a postgresql:// URL")
        }
        do {
            _ = try DatabaseLocation(parsing: value)
        } catch {
            throw root.fail("database", error.description)
        }
        return value
    }

    /// The password of a PostgreSQL `database:`, from `database_password_file` or
    /// `database_password_credential` (a systemd credential); nil when neither is given
    /// (the URL's own password, `PGPASSWORD` or a trust/peer login then apply). The file must
    /// be readable by its owner only; surrounding whitespace is not part of the password.
    /// The keys must go with the file's own `database:` (a `--db` override does not change
    /// what the file means).
    static func readDatabasePassword(_ root: MappingReader, context: ConfigurationContext)
        throws(ConfigurationError) -> String?
    {
        let file = try root.string("database_password_file")
        let credential = try root.string("database_password_credential")
        guard file != nil || credential != nil else { return nil }
        let database = try root.string("database") ?? ""
        guard case .postgresql = try? DatabaseLocation(parsing: database) else {
            throw root.fail(
                file != nil ? "database_password_file" : "database_password_credential",
                "only a PostgreSQL database (a postgresql:// URL) has a password; \(database) is a SQLite file")
        }
        guard
            let (key, path) = try locate(
                root, name: "database_password", what: "the PostgreSQL user's password", context: context)
        else { return nil }
        let text = try readText(at: path, key: key, ownerOnly: true, what: "password file", fail: context.fail)
        let password = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !password.isEmpty else { throw context.fail(key, "password file \(path) is empty") }
        return password
    }
}
