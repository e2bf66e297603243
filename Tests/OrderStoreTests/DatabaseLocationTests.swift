import OrderStore
import Testing

/// `database:` and `--db`: a path is SQLite, a libpq URL is PostgreSQL, and a URL that
/// cannot be used says why without repeating its password.
@Suite struct DatabaseLocationTests {
    @Test func aPathIsSQLite() throws {
        #expect(
            try DatabaseLocation(parsing: "/var/lib/closeorderd/orders.sqlite")
                == .sqlite(path: "/var/lib/closeorderd/orders.sqlite"))
        #expect(try DatabaseLocation(parsing: "orders.sqlite") == .sqlite(path: "orders.sqlite"))
    }

    @Test func aURLIsPostgreSQLWithLibpqsDefaults() throws {
        guard case .postgresql(let address) = try DatabaseLocation(parsing: "postgresql://closeorderd@db.example.com/orders")
        else {
            Issue.record("not PostgreSQL")
            return
        }
        #expect(address.host == "db.example.com")
        #expect(address.port == 5432)
        #expect(address.user == "closeorderd")
        #expect(address.database == "orders")
        #expect(address.tlsMode == .prefer, "libpq's default")
        #expect(address.password == nil)
        #expect(address.socketPath == nil)
    }

    @Test func everyPartOfTheURLIsRead() throws {
        let address = try PostgresAddress(
            url: "postgres://app%40shop:p%40ss@[::1]:6432/shop_orders?sslmode=verify-full&application_name=x")
        #expect(address.user == "app@shop")
        #expect(address.password == "p@ss")
        #expect(address.host == "::1")
        #expect(address.port == 6432)
        #expect(address.database == "shop_orders")
        #expect(address.tlsMode == .verifyFull)
        #expect(address.redacted == "postgresql://app@shop@[::1]:6432/shop_orders?sslmode=verify-full")
    }

    @Test func aUnixSocketIsNamedByTheHostParameter() throws {
        let address = try PostgresAddress(url: "postgresql://closeorderd@/orders?host=/run/postgresql")
        #expect(address.socketPath == "/run/postgresql/.s.PGSQL.5432")
        #expect(address.host == nil)
        let defaulted = try PostgresAddress(url: "postgresql://closeorderd@/orders")
        #expect(defaulted.socketPath == "/var/run/postgresql/.s.PGSQL.5432", "libpq's default on Debian")
        #expect(defaulted.database == "orders")
        #expect(try PostgresAddress(url: "postgresql://closeorderd@localhost").database == "closeorderd", "the user's name")
    }

    @Test(arguments: [
        ("postgresql://u@h/d?sslmode=allow", "sslmode must be one of disable, prefer, require, verify-full"),
        ("postgresql://u@h/d?sslmode=verify-ca", "sslmode must be one of"),
        ("postgresql://u@h/d?connect_timeout=3", "unknown parameter \"connect_timeout\""),
        ("postgresql://u:secret@h/d?password=secret", "database_password_file"),
        ("postgresql://h/d", "name the user"),
        ("postgresql://u@h:0/d", "port must be 1 to 65535"),
        ("postgresql://u@h/d/e", "one path segment"),
        ("postgresql://u@/d?host=/run/postgresql&sslmode=verify-full", "a Unix socket has none"),
    ])
    func aURLThatCannotBeUsedSaysWhy(url: String, reason: String) {
        #expect {
            try DatabaseLocation(parsing: url)
        } throws: { error in
            let text = "\(error)"
            return text.contains(reason) && !text.contains("secret")
        }
    }
}
