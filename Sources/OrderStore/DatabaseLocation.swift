import Foundation

/// Where the order table is: a SQLite file, or a PostgreSQL server named by a libpq URL.
/// The `database:` key and `--db` take either; the engine follows from the value.
public enum DatabaseLocation: Sendable, Equatable {
    case sqlite(path: String)
    case postgresql(PostgresAddress)

    /// Reads a `database:` value: a `postgres://` or `postgresql://` URL is PostgreSQL,
    /// anything else is a SQLite path. Throws a sentence saying what is wrong with a URL.
    public init(parsing value: String) throws(DatabaseLocationError) {
        if PostgresAddress.isURL(value) {
            self = .postgresql(try PostgresAddress(url: value))
        } else {
            self = .sqlite(path: value)
        }
    }

    /// For logs and messages: the path, or the URL without its password.
    public var redacted: String {
        switch self {
        case .sqlite(let path): path
        case .postgresql(let address): address.redacted
        }
    }
}

/// Why a `database:` URL cannot be used.
public struct DatabaseLocationError: Error, CustomStringConvertible, Equatable {
    public let description: String
}

/// A PostgreSQL server, database and user, from a libpq connection URL:
/// `postgresql://USER[:PASSWORD]@HOST:PORT/DBNAME?sslmode=...` or, for a Unix socket,
/// `postgresql://USER@/DBNAME?host=/run/postgresql`.
public struct PostgresAddress: Sendable, Equatable {
    /// libpq's `sslmode` values closeorderd supports.
    public enum TLSMode: String, Sendable, CaseIterable {
        /// Never TLS.
        case disable
        /// TLS when the server offers it, unverified (libpq's default).
        case prefer
        /// TLS always, the certificate unverified.
        case require
        /// TLS always, the certificate checked against the system's trust store and the host name.
        case verifyFull = "verify-full"
    }

    public var user: String
    /// A password written in the URL (`check-config` warns: use `database_password_file`).
    public var password: String?
    /// A host name or IP address; nil with `socketDirectory`.
    public var host: String?
    /// The directory of the server's Unix socket (`?host=/run/postgresql`).
    public var socketDirectory: String?
    public var port: Int
    public var database: String
    public var tlsMode: TLSMode

    /// The socket file, for a Unix-socket address: `DIR/.s.PGSQL.PORT`.
    public var socketPath: String? { socketDirectory.map { "\($0)/.s.PGSQL.\(port)" } }

    /// The URL without its password, for logs, messages and `query` output.
    public var redacted: String {
        var text = "postgresql://\(user)@\(host.map { $0.contains(":") ? "[\($0)]" : $0 } ?? ""):\(port)/\(database)"
        var parameters = ["sslmode=\(tlsMode.rawValue)"]
        if let socketDirectory { parameters.append("host=\(socketDirectory)") }
        text += "?" + parameters.joined(separator: "&")
        return text
    }

    static func isURL(_ value: String) -> Bool {
        value.hasPrefix("postgresql://") || value.hasPrefix("postgres://")
    }

    /// Parses a libpq URL. The query may carry `sslmode`, `host` (a socket directory or a host
    /// name), `port`, `user`, `dbname` and `application_name`; anything else is refused by name.
    public init(url text: String) throws(DatabaseLocationError) {
        func fail(_ reason: String) -> DatabaseLocationError {
            DatabaseLocationError(description: "\(Self.redact(text)): \(reason)")
        }
        guard Self.isURL(text) else { throw fail("a PostgreSQL URL starts with postgresql:// or postgres://") }
        guard let components = URLComponents(string: text) else {
            throw fail("not a URL (percent-encode special characters in the user name and password)")
        }
        var user = components.percentEncodedUser.flatMap { $0.removingPercentEncoding }
        password = components.percentEncodedPassword.flatMap { $0.removingPercentEncoding }
        var host = components.percentEncodedHost.flatMap { $0.removingPercentEncoding }.flatMap { $0.isEmpty ? nil : $0 }
        if let bracketed = host, bracketed.hasPrefix("["), bracketed.hasSuffix("]") {
            host = String(bracketed.dropFirst().dropLast())
        }
        var port = components.port
        var database = String(components.percentEncodedPath.drop { $0 == "/" }).removingPercentEncoding ?? ""
        guard !database.contains("/") else { throw fail("the database name is one path segment, got \"\(database)\"") }
        var tlsMode = TLSMode.prefer
        var socketDirectory: String?
        for item in components.queryItems ?? [] {
            let value = item.value ?? ""
            switch item.name {
            case "sslmode":
                guard let mode = TLSMode(rawValue: value) else {
                    throw fail(
                        "sslmode must be one of \(TLSMode.allCases.map(\.rawValue).joined(separator: ", ")), got \"\(value)\"")
                }
                tlsMode = mode
            case "host":
                if value.hasPrefix("/") { socketDirectory = value } else { host = value }
            case "port":
                guard let number = Int(value) else { throw fail("port must be a number, got \"\(value)\"") }
                port = number
            case "user": user = value
            case "dbname": database = value
            case "application_name": break
            case "password":
                throw fail("put the password in database_password_file or database_password_credential, not the URL's query")
            default:
                throw fail(
                    "unknown parameter \"\(item.name)\" (closeorderd reads sslmode, host, port, user, dbname, application_name)")
            }
        }
        if host == nil && socketDirectory == nil { socketDirectory = "/var/run/postgresql" }
        if socketDirectory != nil { host = nil }
        let resolvedPort = port ?? 5432
        guard (1...65535).contains(resolvedPort) else { throw fail("port must be 1 to 65535, got \(resolvedPort)") }
        guard let user = user.flatMap({ $0.isEmpty ? nil : $0 }) else {
            throw fail("name the user: postgresql://USER@HOST:PORT/DBNAME")
        }
        if socketDirectory != nil && tlsMode == .verifyFull {
            throw fail("sslmode=verify-full needs a host name to verify: a Unix socket has none")
        }
        self.user = user
        self.host = host
        self.socketDirectory = socketDirectory
        self.port = resolvedPort
        self.database = database.isEmpty ? user : database
        self.tlsMode = tlsMode
    }

    /// `text` with any password (between `//USER:` and `@`, or a `password=` parameter)
    /// replaced by `***`.
    static func redact(_ text: String) -> String {
        let text = text.replacing(/([?&]password=)[^&]*/) { match in "\(match.output.1)***" }
        guard let scheme = text.range(of: "://") else { return text }
        let authority = text[scheme.upperBound...].prefix { $0 != "/" && $0 != "?" }
        guard let at = authority.lastIndex(of: "@") else { return text }
        let credentials = text[scheme.upperBound..<at]
        guard let colon = credentials.firstIndex(of: ":") else { return text }
        return String(text[..<colon]) + ":***" + String(text[at...])
    }
}
