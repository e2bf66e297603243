import Foundation
import PostgresNIO
import Simulator

/// An operator's setup (simulator, key file, configuration) whose `database:` is a fresh
/// PostgreSQL database of the test cluster, migrated, the password in a file of mode 600.
public struct PostgresOperatorSetup: Sendable {
    public let operatorSetup: OperatorSetup
    public let database: TestPostgresDatabase
    /// The URL in the configuration: no password.
    public let url: String

    /// Makes one and runs `closeorderd migrate` on it.
    public static func make(behaviour: SimulatorBehaviour = SimulatorBehaviour(), extraReaper: String = "") async throws
        -> PostgresOperatorSetup
    {
        let operatorSetup = try await OperatorSetup.make(behaviour: behaviour, extraReaper: extraReaper)
        let database = try await TestPostgresDatabase.make()
        let address = database.address
        let url =
            "postgresql://\(address.user)@\(address.host ?? "127.0.0.1"):\(address.port)/\(database.name)?sslmode=disable"
        let passwordFile = try operatorSetup.database.directory.write("postgres.password", (address.password ?? "") + "\n")
        let config = try String(contentsOfFile: operatorSetup.configFile, encoding: .utf8)
            .replacingOccurrences(
                of: "database: \(operatorSetup.database.path)",
                with: "database: \(url)\ndatabase_password_file: \(passwordFile)")
        try config.write(toFile: operatorSetup.configFile, atomically: true, encoding: .utf8)
        let migrated = try await operatorSetup.run(["migrate", "--config", operatorSetup.configFile])
        guard migrated.status == 0 else { throw TestPostgresError(description: "migrate failed: \(migrated.stderr)") }
        return PostgresOperatorSetup(operatorSetup: operatorSetup, database: database, url: url)
    }

    /// Rewrites the configuration with `replacement` for `text` (e.g. a shorter lease).
    public func editConfiguration(replacing text: String, with replacement: String) throws {
        let config = try String(contentsOfFile: operatorSetup.configFile, encoding: .utf8)
        guard config.contains(text) else { throw TestPostgresError(description: "the configuration has no \(text)") }
        try config.replacingOccurrences(of: text, with: replacement)
            .write(toFile: operatorSetup.configFile, atomically: true, encoding: .utf8)
    }

    /// The in-process simulator the daemons call.
    public var simulator: SimulatedWeChatPay { operatorSetup.simulator.simulator }

    /// Starts the real binary on this setup's configuration.
    public func daemon(_ arguments: [String] = []) throws -> DaemonProcess { try operatorSetup.daemon(arguments) }

    /// `count` due orders, as the app inserts them: created 15 minutes ago, past their deadline.
    public func insertDue(_ count: Int, prefix: String) async throws {
        try await database.app(
            """
            INSERT INTO orders (mch_id, appid, out_trade_no, created_at, expires_at)
            SELECT \(Fixtures.mchID), \(Fixtures.appid), \(prefix) || (10000 + n)::text,
                   now() - interval '15 minutes', now() - interval '1 second'
              FROM generate_series(1, \(Int64(count))) AS n
            """)
    }

    /// How many orders are in `state`.
    public func count(_ state: String) async throws -> Int {
        Int(try await database.integers("SELECT count(*) FROM orders WHERE state = \(state)").first ?? -1)
    }

    /// Stops the simulator and drops the database.
    public func tearDown() async {
        await operatorSetup.tearDown()
        await database.remove()
    }
}
