import Foundation
import PostgresNIO
import Simulator
import TestSupport
import Testing

/// The real binary on a PostgreSQL order table of the test cluster: several daemons sharing
/// it, one killed mid-call, migrations racing, and the operator's commands.
@Suite(.serialized) struct PostgresDaemonTests {
    /// An operator's setup whose `database:` is a fresh PostgreSQL database, the password in
    /// a file of mode 600 (not in the URL).
    struct Setup {
        let operatorSetup: OperatorSetup
        let database: TestPostgresDatabase
        /// The URL in the configuration: no password.
        let url: String

        static func make(behaviour: SimulatorBehaviour = SimulatorBehaviour(), extraReaper: String = "") async throws
            -> Setup
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
            #expect(migrated.status == 0, "\(migrated.stderr)")
            return Setup(operatorSetup: operatorSetup, database: database, url: url)
        }

        var simulator: SimulatedWeChatPay { operatorSetup.simulator.simulator }

        func daemon(_ arguments: [String] = []) throws -> DaemonProcess { try operatorSetup.daemon(arguments) }

        /// `count` due orders, as the app inserts them: created 15 minutes ago, past their deadline.
        func insertDue(_ count: Int, prefix: String) async throws {
            try await database.app(
                """
                INSERT INTO orders (mch_id, appid, out_trade_no, created_at, expires_at)
                SELECT \(Fixtures.mchID), \(Fixtures.appid), \(prefix) || (10000 + n)::text,
                       now() - interval '15 minutes', now() - interval '1 second'
                  FROM generate_series(1, \(Int64(count))) AS n
                """)
        }

        func count(_ state: String) async throws -> Int {
            Int(try await database.integers("SELECT count(*) FROM orders WHERE state = \(state)").first ?? -1)
        }

        func tearDown() async {
            await operatorSetup.tearDown()
            await database.remove()
        }
    }

    @Test func threeDaemonsShareOneTableAndNeverCallForOneOrderAtOnce() async throws {
        let setup = try await Setup.make(behaviour: SimulatorBehaviour(latencyMilliseconds: 30))
        defer { Task { await setup.tearDown() } }
        try await setup.insertDue(300, prefix: "SHARED")
        let daemons = try (0..<3).map { _ in try setup.daemon() }
        try await DaemonProcess.waitUntil(timeout: 60, "every order is closed") { try await setup.count("closed") == 300 }
        for daemon in daemons { daemon.signal(SIGTERM) }
        for daemon in daemons { #expect(try await daemon.waitForExit(timeout: 20) == 0) }

        let stats = setup.simulator.stats
        #expect(stats.maxConcurrentCallsPerOrder == 1)
        #expect(stats.closeCalls.count == 300)
        #expect(stats.closeCalls.values.allSatisfy { $0 == 1 }, "no lease expired, so no order was called twice")
        for (index, daemon) in daemons.enumerated() {
            #expect(daemon.stderr.contains("out_trade_no=SHARED"), "daemon \(index) did work")
            #expect(!daemon.stderr.contains("closeorderd-test-password"), "the password is never logged")
            #expect(daemon.stderr.contains("database=\(setup.url)"), "the start line names the database without a password")
        }
        let history = try await setup.database.integers(
            "SELECT count(*) FROM close_attempts WHERE call = 'closeorder' AND outcome = 'closed'")
        #expect(history == [300], "one history line per call")

        let query = try await setup.operatorSetup.run(["query", "--config", setup.operatorSetup.configFile])
        #expect(query.status == 0, "\(query.stderr)")
        #expect(query.stdout.contains("closed   300"), "\(query.stdout)")
        let one = try await setup.operatorSetup.run(["query", "--config", setup.operatorSetup.configFile, "SHARED10001"])
        #expect(one.stdout.contains("closeorder") && one.stdout.contains("closed"), "\(one.stdout)")
    }

    @Test func aKilledDaemonsOrdersAreTakenOverOnceTheirLeaseExpires() async throws {
        let setup = try await Setup.make()
        defer { Task { await setup.tearDown() } }
        let config = try String(contentsOfFile: setup.operatorSetup.configFile, encoding: .utf8)
            .replacingOccurrences(of: "lease_seconds: 30", with: "lease_seconds: 4")
        try config.write(toFile: setup.operatorSetup.configFile, atomically: true, encoding: .utf8)
        // The first daemon's calls never come back: it is killed with its orders `closing`.
        setup.simulator.holdAnswers()
        try await setup.insertDue(5, prefix: "KILLED")
        let first = try setup.daemon()
        try await DaemonProcess.waitUntil(timeout: 30, "the first daemon is calling") {
            setup.simulator.stats.closeCalls.count == 5
        }
        first.signal(SIGKILL)
        _ = try await first.waitForExit(timeout: 10)
        #expect(try await setup.count("closing") == 5)
        setup.simulator.releaseAnswers()

        let started = ContinuousClock.now
        let second = try setup.daemon()
        defer { second.signal(SIGTERM) }
        try await DaemonProcess.waitUntil(timeout: 30, "the second daemon closed them") {
            try await setup.count("closed") == 5
        }
        #expect(ContinuousClock.now - started < .seconds(4 + 10), "claimed again within a poll of the lease's expiry")
        // An earlier call's outcome was unknown: the order was asked about before it was closed again.
        #expect(setup.simulator.stats.queryCalls["KILLED10001"] ?? 0 >= 1)
        #expect(setup.simulator.stats.maxConcurrentCallsPerOrder == 1)
    }

    @Test func tenProcessesMigratingAtOnceApplyEachVersionOnce() async throws {
        let setup = try await Setup.make()
        defer { Task { await setup.tearDown() } }
        let fresh = try await TestPostgresDatabase.make()
        defer { Task { await fresh.remove() } }
        let results = try await withThrowingTaskGroup(of: (status: Int32, stdout: String, stderr: String).self) { group in
            for _ in 0..<10 {
                group.addTask { try await setup.operatorSetup.run(["migrate", "--db", fresh.url]) }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(results.allSatisfy { $0.status == 0 }, "\(results.map(\.stderr))")
        #expect(results.filter { $0.stdout.contains("applied migrations 1") }.count == 1, "\(results.map(\.stdout))")
        #expect(try await fresh.integers("SELECT count(*) FROM schema_migrations") == [1])
        #expect(!results.contains { $0.stdout.contains("closeorderd-test-password") }, "output shows no password")
    }

    @Test func theOperatorsCommandsSayWhatIsWrongWithThePostgresDatabase() async throws {
        let setup = try await Setup.make()
        defer { Task { await setup.tearDown() } }
        let configFile = setup.operatorSetup.configFile
        let wrongPassword = try await setup.operatorSetup.run([
            "query", "--db", setup.url.replacingOccurrences(of: "closeorderd_test@", with: "closeorderd_test:nope@"),
        ])
        #expect(wrongPassword.status == 74)
        #expect(wrongPassword.stderr.contains("password authentication failed"), "\(wrongPassword.stderr)")
        #expect(!wrongPassword.stderr.contains("nope"), "the password is not repeated")

        let missing = try await setup.operatorSetup.run([
            "retry", "--db", setup.database.url.replacingOccurrences(of: setup.database.name, with: "no_such_db"),
            "--state", "failed",
        ])
        #expect(missing.status == 74)
        #expect(missing.stderr.contains("database \"no_such_db\" does not exist"), "\(missing.stderr)")

        let empty = try await TestPostgresDatabase.make()
        defer { Task { await empty.remove() } }
        let unmigrated = try await setup.operatorSetup.run(["query", "--db", empty.url])
        #expect(unmigrated.status == 74)
        #expect(unmigrated.stderr.contains("closeorderd migrate"), "\(unmigrated.stderr)")

        let badMode = try await setup.operatorSetup.run([
            "check-config", "--config", configFile, "--db", "postgresql://u@h/d?sslmode=maybe",
        ])
        #expect(badMode.status == 78)
        #expect(badMode.stderr.contains("sslmode must be one of"), "\(badMode.stderr)")

        let passwordFile = setup.operatorSetup.database.directory.path("postgres.password")
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: passwordFile)
        let readable = try await setup.operatorSetup.run(["check-config", "--config", configFile])
        #expect(readable.status == 78)
        #expect(readable.stderr.contains("database_password_file") && readable.stderr.contains("chmod 600"), "\(readable.stderr)")
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: passwordFile)

        let inURL = try String(contentsOfFile: configFile, encoding: .utf8)
            .replacingOccurrences(of: "closeorderd_test@", with: "closeorderd_test:closeorderd-test-password@")
        let inURLFile = try setup.operatorSetup.database.directory.write("url-password.yaml", inURL)
        let warned = try await setup.operatorSetup.run(["check-config", "--config", inURLFile])
        #expect(warned.status == 0, "\(warned.stderr)")
        #expect((warned.stdout + warned.stderr).contains("database_password_file"), "\(warned.stdout) \(warned.stderr)")
        #expect(!(warned.stdout + warned.stderr).contains("closeorderd-test-password"))
    }
}
