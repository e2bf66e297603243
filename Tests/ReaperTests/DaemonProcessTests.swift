import Foundation
import GRDB
import OrderStore
import Simulator
import TestSupport
import Testing

/// The real `closeorderd` binary, run as a process against a simulator on loopback.
@Suite(.serialized) struct DaemonProcessTests {
    typealias Setup = OperatorSetup

    @Test func sigtermDuringInFlightCallsRecordsThemAndExitsZero() async throws {
        let setup = try await Setup.make()
        defer { Task { await setup.tearDown() } }
        try setup.allowLongCalls()
        let simulator = setup.simulator.simulator
        simulator.holdAnswers()
        defer { simulator.releaseAnswers() }
        // 24 due orders and 16 call slots (the default concurrency): 16 calls in flight, the
        // other 8 claimed and queued behind them. The signal must not wait for a slot to free.
        for index in 0..<24 { try setup.database.insert("INFLIGHT\(1000 + index)") }
        let daemon = try setup.daemon()
        func ours() -> Int { simulator.stats.closeCalls.keys.filter { $0.hasPrefix("INFLIGHT") }.count }
        try await DaemonProcess.waitUntil(timeout: 60, "16 calls arrived") { ours() == 16 }
        try await DaemonProcess.waitUntil(timeout: 60, "the rest claimed") { try setup.count("closing") == 24 }
        daemon.signal(SIGTERM)
        try await DaemonProcess.waitUntil(timeout: 60, "the daemon waits for its calls") {
            daemon.stderr.contains("waiting for calls in flight") || !daemon.process.isRunning
        }
        #expect(daemon.process.isRunning, "it did not exit with calls in flight: \(daemon.stderr)")
        simulator.releaseAnswers()
        let status = try await daemon.waitForExit(timeout: 60)
        #expect(status == 0, "\(daemon.stderr)")
        #expect(ours() == 16, "no queued order was called after the signal")
        #expect(try setup.count("closed") == 16, "every in-flight call was recorded before exit: \(daemon.stderr)")
        #expect(try setup.count("pending") == 8, "claimed but unstarted orders went back")
        #expect(try setup.count("closing") == 0)
        #expect(daemon.stderr.contains("stopped"))
    }

    @Test func twoDaemonsNeverCallForTheSameOrderAtOnce() async throws {
        let setup = try await Setup.make(behaviour: SimulatorBehaviour(latencyMilliseconds: 30))
        defer { Task { await setup.tearDown() } }
        try await setup.database.app.write { db in
            for index in 0..<300 {
                try db.execute(
                    sql:
                        "INSERT INTO orders (mch_id, appid, out_trade_no, created_at, expires_at) VALUES (?, ?, ?, unixepoch() - 900, unixepoch() - 1)",
                    arguments: [Fixtures.mchID, Fixtures.appid, "TWODAEMONS\(10_000 + index)"])
            }
        }
        let first = try setup.daemon()
        let second = try setup.daemon()
        try await DaemonProcess.waitUntil(timeout: 60, "every order is closed") { try setup.count("closed") == 300 }
        first.signal(SIGTERM)
        second.signal(SIGTERM)
        #expect(try await first.waitForExit(timeout: 20) == 0)
        #expect(try await second.waitForExit(timeout: 20) == 0)
        let stats = setup.simulator.simulator.stats
        #expect(stats.maxConcurrentCallsPerOrder == 1)
        #expect(stats.closeCalls.count == 300)
        #expect(stats.closeCalls.values.allSatisfy { $0 == 1 }, "no lease expired, so no order was called twice")
        #expect(
            first.stderr.contains("out_trade_no=TWODAEMONS") && second.stderr.contains("out_trade_no=TWODAEMONS"), "both did work"
        )
    }

    @Test func theAppCanInsertWhileTheDaemonRuns() async throws {
        let setup = try await Setup.make(behaviour: SimulatorBehaviour(latencyMilliseconds: 5))
        defer { Task { await setup.tearDown() } }
        let daemon = try setup.daemon()
        // The app: its own connection, 300 orders in small transactions, as fast as it can,
        // while the daemon claims and writes back the earlier ones.
        var inserted = 0
        var errors: [String] = []
        while inserted < 300 && errors.count < 10 {
            do {
                let first = inserted
                try await setup.database.app.write { db in
                    for index in first..<(first + 5) {
                        try db.execute(
                            sql:
                                "INSERT INTO orders (mch_id, appid, out_trade_no, created_at, expires_at) VALUES (?, ?, ?, unixepoch() - 900, unixepoch())",
                            arguments: [Fixtures.mchID, Fixtures.appid, "APPINSERT\(100_000 + index)"])
                    }
                }
                inserted += 5
            } catch {
                errors.append("\(error)")
            }
        }
        try await DaemonProcess.waitUntil(timeout: 60, "the backlog drains") { try setup.count("closed") == inserted }
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit(timeout: 20) == 0)
        #expect(errors.isEmpty, "the app saw: \(errors.prefix(3))")
        #expect(!daemon.stderr.contains("locked"), "\(daemon.stderr.suffix(2000))")
    }

    @Test func theMerchantKeyNeverAppearsInLogsRowsOrQueryOutput() async throws {
        let setup = try await Setup.make()
        defer { Task { await setup.tearDown() } }
        try setup.database.insert("SECRETTEST1")
        try setup.database.insert("SECRETTEST2")
        try setup.database.insert("bad<order>")
        setup.simulator.simulator.setFault(FaultPlan(.signError), for: "SECRETTEST2")
        let daemon = try setup.daemon(["--once"])
        #expect(try await daemon.waitForExit(timeout: 30) == 0)
        var everything = daemon.stdout + daemon.stderr
        for arguments in [[], ["--json"], ["--state", "failed"], ["SECRETTEST2"], ["SECRETTEST2", "--json"]] {
            let query = try await setup.run(["query", "--config", setup.configFile] + arguments)
            #expect(query.status == 0, "\(query.stderr)")
            everything += query.stdout + query.stderr
        }
        #expect(everything.contains("SIGNERROR"), "the outputs were read")
        #expect(!everything.contains(Fixtures.keyText))
        try await setup.database.app.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)") }
        let file = try Data(contentsOf: URL(fileURLWithPath: setup.database.path))
        #expect(file.range(of: Data(Fixtures.keyText.utf8)) == nil, "the key is not in the database file")
        #expect(file.range(of: Data("SECRETTEST1".utf8)) != nil, "the file was read")
    }

    @Test func queryShowsTheSummaryAListAndOneOrderWithItsHistory() async throws {
        let setup = try await Setup.make()
        defer { Task { await setup.tearDown() } }
        try setup.database.insert("QUERYCLOSE1")
        try setup.database.insert("QUERYPAID01")
        try setup.database.insert("QUERYLATER1", expiresIn: 600)
        setup.simulator.simulator.markPaid("QUERYPAID01")
        #expect(try await setup.daemon(["--once"]).waitForExit(timeout: 30) == 0)

        let summary = try await setup.run(["query", "--config", setup.configFile])
        #expect(summary.stdout.contains("closed   1"))
        #expect(summary.stdout.contains("paid     1"))
        #expect(summary.stdout.contains("pending  1"))
        #expect(summary.stdout.contains("due now: 0"))

        let json = try await setup.run(["query", "--db", setup.database.path, "--json"])
        let decoded = try JSONDecoder().decode(StoreSummary.self, from: Data(json.stdout.utf8))
        #expect(decoded.countsByState["closed"] == 1)

        let list = try await setup.run(["query", "--db", setup.database.path, "--state", "paid"])
        #expect(list.stdout.contains("QUERYPAID01"))
        #expect(list.stdout.contains("ORDERPAID"))
        #expect(!list.stdout.contains("QUERYCLOSE1"))

        let one = try await setup.run(["query", "--db", setup.database.path, "QUERYCLOSE1"])
        #expect(one.stdout.contains("state             closed"))
        #expect(one.stdout.contains("closed by WeChat Pay"))

        let missing = try await setup.run(["query", "--db", setup.database.path, "NOSUCHORDER"])
        #expect(missing.status != 0)
        #expect(missing.stderr.contains("no order with out_trade_no NOSUCHORDER"))
    }

    @Test func aBadConfigurationExitsNonZeroNamingTheKey() async throws {
        let setup = try await Setup.make(extraReaper: "  min_order_age_seconds: 60")
        defer { Task { await setup.tearDown() } }
        let result = try await setup.run(["run", "--config", setup.configFile, "--once"])
        #expect(result.status == 78)
        #expect(result.stderr.contains("reaper.min_order_age_seconds"))
        #expect(result.stderr.split(separator: "\n").count == 1, "one line: \(result.stderr)")
    }

    @Test func aDatabaseFromANewerVersionIsRefusedByRun() async throws {
        let setup = try await Setup.make()
        defer { Task { await setup.tearDown() } }
        try await setup.database.app.write { db in
            try db.execute(sql: "INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, '0999_future', 0)")
        }
        let result = try await setup.run(["run", "--config", setup.configFile, "--once"])
        #expect(result.status != 0)
        #expect(result.stderr.contains("newer closeorderd"))
    }

    @Test func aBinaryCopiedAloneCreatesAFreshDatabase() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let copy = folder.url.appending(path: "closeorderd")
        try FileManager.default.copyItem(at: DaemonProcess.binary, to: copy)
        let process = Process()
        process.executableURL = copy
        process.arguments = ["migrate", "--db", folder.path("fresh.sqlite")]
        process.currentDirectoryURL = folder.url
        try process.run()
        while process.isRunning { try await Task.sleep(for: .milliseconds(20)) }
        #expect(process.terminationStatus == 0)
        let store = try OrderStore.openReadOnly(path: folder.path("fresh.sqlite"))
        #expect(try await store.orders(inState: .pending, limit: 1).isEmpty)
    }

    @Test func theDatabaseAndItsWALAreGroupWritableWhateverTheUmask() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let database = folder.path("shared.sqlite")
        let key = try folder.write("merchant.key", Fixtures.keyText)
        let config = try folder.write(
            "config.yaml", Fixtures.yaml(database: database, baseURL: "http://127.0.0.1:9", keyFile: key))
        // The strictest umask a service could have: SQLite alone would create 0600 files.
        let daemon = Process()
        daemon.executableURL = URL(fileURLWithPath: "/bin/sh")
        daemon.arguments = ["-c", "umask 0077; exec \"$0\" run --config \"$1\"", DaemonProcess.binary.path, config]
        daemon.standardError = FileHandle.nullDevice
        try daemon.run()
        defer { daemon.terminate() }
        // SQLite creates `-shm` under the umask and then gives it the database's mode, so the
        // files are judged once that has had its moment; a mode that never comes fails here.
        let files = [database, database + "-wal", database + "-shm"]
        func modes() -> [String] {
            files.map { file in
                let mode = (try? FileManager.default.attributesOfItem(atPath: file)[.posixPermissions] as? Int) ?? nil
                return "\(URL(fileURLWithPath: file).lastPathComponent): \(mode.map { String($0, radix: 8) } ?? "missing")"
            }
        }
        let wanted = files.map { "\(URL(fileURLWithPath: $0).lastPathComponent): 660" }
        do {
            try await DaemonProcess.waitUntil(timeout: 20, "the database, its WAL and shm are 0660") { modes() == wanted }
        } catch {
            Issue.record("\(error): \(modes())")
        }
    }

    @Test func theSimulateCommandServesSignedAnswers() async throws {
        let setup = try await Setup.make()
        defer { Task { await setup.tearDown() } }
        let keyFile = setup.database.directory.path("merchant.key")
        let simulator = try DaemonProcess(
            ["simulate", "--listen", "127.0.0.1:0", "--key", "\(Fixtures.mchID)=\(keyFile)", "--paid", "SIMPAID0001"],
            in: setup.database.directory)
        defer { simulator.signal(SIGKILL) }
        try await DaemonProcess.waitUntil(timeout: 20, "the simulator prints its address") {
            simulator.stdout.contains("listening on")
        }
        let baseURL = try #require(simulator.stdout.split(separator: " ").last?.trimmingCharacters(in: .whitespacesAndNewlines))
        let config = try String(contentsOfFile: setup.configFile, encoding: .utf8)
            .replacingOccurrences(of: setup.simulator.baseURL, with: baseURL)
        try config.write(toFile: setup.configFile, atomically: true, encoding: .utf8)
        try setup.database.insert("SIMCLOSE001")
        try setup.database.insert("SIMPAID0001")
        #expect(try await setup.daemon(["--once"]).waitForExit(timeout: 30) == 0)
        #expect(try await setup.database.order("SIMCLOSE001")?.state == .closed)
        #expect(try await setup.database.order("SIMPAID0001")?.state == .paid)
        simulator.signal(SIGTERM)
        #expect(try await simulator.waitForExit(timeout: 10) == 0, "merchants' CI stops it with SIGTERM")
    }

    @Test func theDemoRunsOfflineAndShowsEveryKindOfOutcome() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let demo = try await DaemonProcess.run(["demo"], in: folder)
        #expect(demo.status == 0, "\(demo.stderr)")
        for expected in [
            "closed   8", "paid     3", "failed   3", "pending  3", "SIGNERROR", "ORDERPAID", "found '<'", "DEMO-V3-CLOSE",
        ] {
            #expect(demo.stdout.contains(expected), "demo output lacks \(expected)")
        }
    }

    /// The simulator and the daemon each once set SO_DEBUG (`.socketOption(.tcp_nodelay)`:
    /// TCP_NODELAY's number at the socket level), which only a process with CAP_NET_ADMIN
    /// may set: as any other user, every connection failed. Tests run as root, so the demo
    /// runs here as `nobody`.
    @Test(.enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/sbin/runuser")))
    func theDemoRunsForAUserWithoutPrivileges() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        chmod(folder.url.path, 0o777)
        let demo = try await DaemonProcess.run(["demo"], in: folder, launcher: ["/usr/sbin/runuser", "-u", "nobody", "--"])
        #expect(demo.status == 0, "\(demo.stderr)")
        #expect(demo.stdout.contains("closed   8"), "\(demo.stdout)")
        #expect(!demo.stderr.contains("could not connect"), "\(demo.stderr)")
    }

    @Test func retryRequeuesFailedOrdersKeepingTheirHistory() async throws {
        let setup = try await Setup.make()
        defer { Task { await setup.tearDown() } }
        for number in ["WRONGKEY001", "WRONGKEY002", "OTHERFAIL01"] { try setup.database.insert(number) }
        setup.simulator.simulator.setFault(FaultPlan(.signError, times: 1), for: "WRONGKEY001")
        setup.simulator.simulator.setFault(FaultPlan(.signError, times: 1), for: "WRONGKEY002")
        setup.simulator.simulator.setFault(FaultPlan(.xmlFormatError, times: 1), for: "OTHERFAIL01")
        #expect(try await setup.daemon(["--once"]).waitForExit(timeout: 30) == 0)
        #expect(try setup.count("failed") == 3)

        let many = try await setup.run(["retry", "--config", setup.configFile, "--state", "failed", "--err-code", "SIGNERROR"])
        #expect(many.status == 0, "\(many.stderr)")
        #expect(many.stdout.contains("requeued 2 failed orders"))
        let row = try #require(try await setup.database.order("WRONGKEY001"))
        #expect(row.state == .pending)
        #expect(row.attempts == 0)
        #expect(try await setup.database.history("WRONGKEY001").map(\.outcome) == [.failed, .requeued])
        #expect(try await setup.database.order("OTHERFAIL01")?.state == .failed, "other err_codes stay")

        let one = try await setup.run(["retry", "--db", setup.database.path, "OTHERFAIL01"])
        #expect(one.stdout.contains("requeued 1 failed order"))
        let again = try await setup.run(["retry", "--db", setup.database.path, "OTHERFAIL01"])
        #expect(again.stdout.contains("requeued 0 failed orders"), "only failed orders move")

        #expect(try await setup.daemon(["--once"]).waitForExit(timeout: 30) == 0)
        #expect(try setup.count("closed") == 3)

        let refused = try await setup.run(["retry", "--db", setup.database.path, "--state", "closed"])
        #expect(refused.status == 64)
    }

    @Test func oneDaemonClosesV2AndV3OrdersAgainstTheSimulateCommand() async throws {
        let setup = try await Setup.make()
        defer { Task { await setup.tearDown() } }
        let folder = setup.database.directory
        let merchantPublic = try folder.write("v3-merchant-public.pem", V3TestKeys.merchantPublicKey, permissions: 0o644)
        let merchantPrivate = try folder.write("v3-merchant-private.pem", V3TestKeys.merchantPrivateKey)
        let wechatpayPublic = folder.path("wechatpay-public.pem")
        let simulator = try DaemonProcess(
            [
                "simulate", "--listen", "127.0.0.1:0", "--key", "\(Fixtures.mchID)=\(folder.path("merchant.key"))",
                "--v3-merchant", "1900000333=\(merchantPublic)", "--wechatpay-key-out", wechatpayPublic,
            ], in: folder)
        defer { simulator.signal(SIGKILL) }
        try await DaemonProcess.waitUntil(timeout: 20, "the simulator prints its key id") {
            simulator.stdout.contains("wechatpay_public_key_id")
        }
        let lines = simulator.stdout.split(separator: "\n")
        let baseURL = try #require(lines.first?.split(separator: " ").last.map(String.init))
        let keyID = try #require(lines.last?.split(separator: " ").last.map(String.init))
        let config =
            try String(contentsOfFile: setup.configFile, encoding: .utf8)
            .replacingOccurrences(of: setup.simulator.baseURL, with: baseURL)
                + """

                  - mch_id: "1900000333"
                    api: v3
                    serial_no: \(V3TestKeys.merchantSerialNo)
                    private_key_file: \(merchantPrivate)
                    wechatpay_public_key_file: \(wechatpayPublic)
                    wechatpay_public_key_id: \(keyID)

                """
        try config.write(toFile: setup.configFile, atomically: true, encoding: .utf8)
        let check = try await setup.run(["check-config", "--config", setup.configFile])
        #expect(check.status == 0, "\(check.stderr)")
        #expect(check.stdout.contains("1900000109, 1900000333"))
        try setup.database.insert("MIXEDV2ORD1")
        try setup.database.insert("MIXEDV3ORD1", mchID: "1900000333")
        let daemon = try setup.daemon(["--once"])
        #expect(try await daemon.waitForExit(timeout: 30) == 0, "\(daemon.stderr)")
        #expect(try await setup.database.order("MIXEDV2ORD1")?.state == .closed)
        #expect(try await setup.database.order("MIXEDV3ORD1")?.state == .closed)
        #expect(!daemon.stderr.contains("PRIVATE KEY"), "no key material in the logs")
    }
}
