import Foundation
import PostgresNIO
import Simulator
import TestSupport
import Testing

/// The real binary on a PostgreSQL order table of the test cluster: several daemons sharing
/// it, one killed mid-call, migrations racing, and the operator's commands.
@Suite(.serialized) struct PostgresDaemonTests {
    typealias Setup = PostgresOperatorSetup

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

    @Test func threeDaemonsTogetherKeepTheMerchantsLimitInEverySecond() async throws {
        // Few slots and small claims, so that every daemon takes a share of the orders.
        let setup = try await Setup.make(extraReaper: "  concurrency: 2\n  batch_size: 2")
        defer { Task { await setup.tearDown() } }
        try setup.editConfiguration(replacing: "key_file:", with: "max_requests_per_second: 10\n    key_file:")
        let daemons = try (0..<3).map { _ in try setup.daemon() }
        for daemon in daemons {
            try await DaemonProcess.waitUntil(timeout: 60, "the daemon started") { daemon.stderr.contains("INFO starting") }
        }
        try await setup.insertDue(36, prefix: "LIMITED")
        try await DaemonProcess.waitUntil(timeout: 60, "every order is closed") { try await setup.count("closed") == 36 }
        for daemon in daemons { daemon.signal(SIGTERM) }
        for daemon in daemons { #expect(try await daemon.waitForExit(timeout: 20) == 0) }

        let times = setup.simulator.stats.callTimes.sorted()
        #expect(times.count == 36)
        #expect(
            mostCallsInAnySecond(times) <= 10,
            "at most the merchant's limit in any second of the simulator's log, from all three together: \(zip(times.dropFirst(), times).map { Int(($0 - $1) * 1000) }) ms apart"
        )
        let span = (times.last ?? 0) - (times.first ?? 0)
        #expect(span >= 35 * 1.1 / 10 - 0.1, "36 calls took 35 shared slots: \(span) s")
        for (index, daemon) in daemons.enumerated() {
            #expect(daemon.stderr.contains("out_trade_no=LIMITED"), "daemon \(index) did its share")
            #expect(!daemon.stderr.contains("cannot reserve"), "the shared budget answered every reservation")
        }
    }

    @Test func aKilledDaemonsOrdersAreTakenOverOnceTheirLeaseExpires() async throws {
        let setup = try await Setup.make()
        defer { Task { await setup.tearDown() } }
        try setup.editConfiguration(replacing: "lease_seconds: 30", with: "lease_seconds: 4")
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
        #expect(try await fresh.integers("SELECT count(*) FROM schema_migrations") == [2])
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

    @Test func theDemoRunsOnAnEmptyPostgresDatabaseAndRefusesOneWithOrders() async throws {
        let setup = try await Setup.make()
        defer { Task { await setup.tearDown() } }
        let empty = try await TestPostgresDatabase.make()
        defer { Task { await empty.remove() } }
        let demo = try await setup.operatorSetup.run(["demo", "--database", empty.url])
        #expect(demo.status == 0, "\(demo.stderr)")
        #expect(demo.stdout.contains("DEMO-DUE-0001          1900000109  closed"), "\(demo.stdout)")
        #expect(try await empty.integers("SELECT count(*) FROM orders WHERE state = 'closed'") == [8])
        #expect(!(demo.stdout + demo.stderr).contains("closeorderd-test-password"), "the URL is shown without its password")

        // Run again, or on the setup's table with its orders: the demo would close real ones.
        try await setup.insertDue(1, prefix: "REAL")
        for url in [empty.url, setup.database.url] {
            let refused = try await setup.operatorSetup.run(["demo", "--database", url])
            #expect(refused.status == 74)
            #expect(refused.stderr.contains("the demo runs only on a database without any"), "\(refused.stderr)")
        }
        #expect(try await setup.count("pending") == 1, "nothing of the app's was touched")
        let sqlite = try await setup.operatorSetup.run(["demo", "--database", "/tmp/orders.sqlite"])
        #expect(sqlite.status == 64)
        #expect(sqlite.stderr.contains("--database takes a postgresql:// URL"), "\(sqlite.stderr)")
    }
}
