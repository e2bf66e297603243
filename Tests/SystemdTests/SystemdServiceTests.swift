import Foundation
import GRDB
import OrderStore
import Simulator
import TestSupport
import Testing
import WeChatPay

/// The real binary under the conditions systemd creates: a notify socket, a watchdog,
/// credentials, the journal, SIGHUP.
@Suite(.serialized) struct SystemdServiceTests {
    typealias Setup = OperatorSetup

    @Test(arguments: [false, true])
    func readyWatchdogAndStoppingArriveInOrder(abstract: Bool) async throws {
        let setup = try await Setup.make()
        defer { Task { await setup.tearDown() } }
        let socket = try NotifySocket(abstract: abstract, directory: setup.database.directory.url.path)
        defer { socket.stop() }
        // A fresh database: READY must wait for the migrations.
        let freshDatabase = setup.database.directory.path("fresh.sqlite")
        let daemon = try DaemonProcess(
            ["run", "--config", setup.configFile, "--db", freshDatabase], in: setup.database.directory,
            environment: ["NOTIFY_SOCKET": socket.address, "WATCHDOG_USEC": "400000"])
        try await DaemonProcess.waitUntil(timeout: 20, "READY=1 arrives") { socket.lines.contains("READY=1") }
        let migrated = try await DatabaseQueue(path: freshDatabase).read { db in
            try Int.fetchOne(db, sql: "SELECT count(*) FROM schema_migrations") ?? 0
        }
        #expect(migrated == OrderStore.schemaVersion, "the schema was in place when READY=1 arrived")
        try await DaemonProcess.waitUntil(timeout: 10, "watchdog pings arrive") {
            socket.lines.filter { $0 == "WATCHDOG=1" }.count >= 3
        }
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit(timeout: 20) == 0)
        try await DaemonProcess.waitUntil(timeout: 5, "STOPPING=1 arrives") { socket.lines.contains("STOPPING=1") }
        let lines = socket.lines
        let ready = try #require(lines.firstIndex(of: "READY=1"))
        let firstPing = try #require(lines.firstIndex(of: "WATCHDOG=1"))
        let stopping = try #require(lines.firstIndex(of: "STOPPING=1"))
        #expect(ready <= firstPing && firstPing < stopping)
        #expect(lines.contains { $0.hasPrefix("STATUS=last poll claimed") })
        #expect(!lines[stopping...].contains("WATCHDOG=1") || lines.lastIndex(of: "WATCHDOG=1")! < stopping)
    }

    @Test func aStalledPollLoopStopsPinging() async throws {
        let setup = try await Setup.make()
        defer { Task { await setup.tearDown() } }
        let socket = try NotifySocket(abstract: false, directory: setup.database.directory.url.path)
        defer { socket.stop() }
        let daemon = try DaemonProcess(
            ["run", "--config", setup.configFile], in: setup.database.directory,
            environment: ["NOTIFY_SOCKET": socket.address, "WATCHDOG_USEC": "200000"])
        try await DaemonProcess.waitUntil(timeout: 20, "READY=1") { socket.lines.contains("READY=1") }
        try await DaemonProcess.waitUntil(timeout: 20, "three pings while healthy") {
            socket.messages.filter { $0.text.contains("WATCHDOG=1") }.count >= 3
        }
        // An order that becomes due in a second or two, then the app holds the write lock for
        // 4 s: the claim waits on the lock, the loop is stuck. On a starved machine the daemon
        // may claim the order before the app has the lock; then the app lets go at once and
        // the scenario starts again with a new order.
        var lockHeld = ContinuousClock.now
        var stalledOrder: String?
        for round in 1...3 where stalledOrder == nil {
            let number = "STALLED000\(round)"
            try await setup.database.app.write { db in
                try db.execute(
                    sql: """
                        INSERT INTO orders (mch_id, appid, out_trade_no, created_at, expires_at, next_attempt_at)
                        VALUES (?, ?, ?, unixepoch() - 900, unixepoch() - 60, unixepoch() + 2)
                        """, arguments: [Fixtures.mchID, Fixtures.appid, number])
            }
            lockHeld = ContinuousClock.now
            let stalled = try await setup.database.app.write { db in
                let state = try String.fetchOne(db, sql: "SELECT state FROM orders WHERE out_trade_no = ?", arguments: [number])
                guard state == "pending" else { return false }
                try db.execute(sql: "UPDATE orders SET updated_at = updated_at WHERE 0")
                Thread.sleep(forTimeInterval: 4)
                return true
            }
            if stalled { stalledOrder = number }
        }
        let number = try #require(stalledOrder, "the app got the write lock before the order was claimed")
        try await DaemonProcess.waitUntil(timeout: 20, "the order is closed") {
            try await setup.database.order(number)?.state == .closed
        }
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit(timeout: 20) == 0)
        let pings = socket.messages.filter { $0.text.contains("WATCHDOG=1") }.map(\.arrived)
        let gaps = zip(pings, pings.dropFirst()).map { $1 - $0 }
        let longest = gaps.max() ?? .zero
        #expect(longest > .seconds(2), "no ping while the loop was stuck (longest gap \(longest))")
        #expect(pings.contains { $0 > lockHeld + .seconds(4) }, "pings resumed")
        let before = pings.filter { $0 < lockHeld }
        // The median, not the maximum: one late ping on a loaded machine is not a stuck loop.
        let normalGaps = zip(before, before.dropFirst()).map { $1 - $0 }.sorted()
        #expect(normalGaps.count >= 2, "pings while healthy: \(normalGaps)")
        #expect(
            normalGaps.isEmpty || normalGaps[normalGaps.count / 2] < .seconds(1), "pings every half interval while healthy")
    }

    @Test func sighupLoadsANewMerchantKeyAndRejectsABrokenConfig() async throws {
        let setup = try await Setup.make()
        defer { Task { await setup.tearDown() } }
        let daemon = try DaemonProcess(["run", "--config", setup.configFile], in: setup.database.directory)
        try setup.database.insert("BEFORERELD1")
        try await DaemonProcess.waitUntil(timeout: 20, "the first order closes") {
            try await setup.database.order("BEFORERELD1")?.state == .closed
        }
        // A second merchant, known to the simulator, added to the config while running.
        let secondKey = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
        let secondSimulator = try SimulatedWeChatPay(keys: [
            Fixtures.mchID: Fixtures.key, "1900000222": try MerchantKey(secondKey),
        ])
        let server = try await SimulatorServer.start(secondSimulator, host: "127.0.0.1", port: 0)
        defer { Task { try? await server.stop() } }
        let secondKeyFile = try setup.database.directory.write("second.key", secondKey)
        let config =
            try String(contentsOfFile: setup.configFile, encoding: .utf8)
            .replacingOccurrences(of: setup.simulator.baseURL, with: server.baseURL)
            + "\n  - mch_id: \"1900000222\"\n    sign_type: MD5\n    key_file: \(secondKeyFile)\n"
        try config.write(toFile: setup.configFile, atomically: true, encoding: .utf8)
        daemon.signal(SIGHUP)
        try await DaemonProcess.waitUntil(timeout: 10, "the reload is logged") {
            daemon.stderr.contains("reloaded the configuration")
        }
        try setup.database.insert("SECONDMERCH", mchID: "1900000222")
        try await DaemonProcess.waitUntil(timeout: 20, "the new merchant's order closes") {
            try await setup.database.order("SECONDMERCH")?.state == .closed
        }
        #expect(secondSimulator.stats.closeCalls["SECONDMERCH"] == 1)

        // A broken config is rejected; the one in force keeps working.
        try "reaper:\n  concurrency: many\n".write(toFile: setup.configFile, atomically: true, encoding: .utf8)
        daemon.signal(SIGHUP)
        try await DaemonProcess.waitUntil(timeout: 10, "the rejection is logged") { daemon.stderr.contains("reload rejected") }
        #expect(daemon.stderr.contains("reaper.concurrency"))
        try setup.database.insert("AFTERBROKEN", mchID: "1900000222")
        try await DaemonProcess.waitUntil(timeout: 20, "orders still close") {
            try await setup.database.order("AFTERBROKEN")?.state == .closed
        }
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit(timeout: 20) == 0)
        #expect(!daemon.stderr.contains(secondKey) && !daemon.stderr.contains(Fixtures.keyText))
    }

    @Test func aKeyNamedByCredentialIsReadFromTheCredentialsDirectory() async throws {
        let setup = try await Setup.make()
        defer { Task { await setup.tearDown() } }
        let credentials = setup.database.directory.url.appending(path: "credentials")
        try FileManager.default.createDirectory(at: credentials, withIntermediateDirectories: true)
        try Data(Fixtures.keyText.utf8).write(to: credentials.appending(path: "mch-\(Fixtures.mchID)"))
        try FileManager.default.setAttributes(
            [.posixPermissions: 0o400], ofItemAtPath: credentials.appending(path: "mch-\(Fixtures.mchID)").path)
        let config = try String(contentsOfFile: setup.configFile, encoding: .utf8)
            .replacingOccurrences(of: "key_file: \(setup.keyFile)", with: "key_credential: mch-\(Fixtures.mchID)")
        try config.write(toFile: setup.configFile, atomically: true, encoding: .utf8)

        let without = try await DaemonProcess.run(["check-config", "--config", setup.configFile], in: setup.database.directory)
        #expect(without.status == 78)
        #expect(without.stderr.contains("merchants[0].key_credential") && without.stderr.contains("CREDENTIALS_DIRECTORY"))

        try setup.database.insert("CREDENTIAL1")
        let daemon = try DaemonProcess(
            ["run", "--config", setup.configFile, "--once"], in: setup.database.directory,
            environment: ["CREDENTIALS_DIRECTORY": credentials.path])
        #expect(try await daemon.waitForExit(timeout: 30) == 0, "\(daemon.stderr)")
        #expect(try await setup.database.order("CREDENTIAL1")?.state == .closed)
    }

    @Test func aKeyFileReadableByOthersIsRefused() async throws {
        let setup = try await Setup.make()
        defer { Task { await setup.tearDown() } }
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: setup.keyFile)
        let result = try await DaemonProcess.run(["check-config", "--config", setup.configFile], in: setup.database.directory)
        #expect(result.status == 78)
        #expect(result.stderr.contains("merchants[0].key_file"))
        #expect(result.stderr.contains("chmod 600"))
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: setup.keyFile)
        let fixed = try await DaemonProcess.run(["check-config", "--config", setup.configFile], in: setup.database.directory)
        #expect(fixed.status == 0)
        #expect(fixed.stdout.contains("OK"))
    }

    @Test func linesCarrySyslogPrioritiesWhenStderrIsTheJournal() async throws {
        let setup = try await Setup.make()
        defer { Task { await setup.tearDown() } }
        try setup.database.insert("JOURNALOK01")
        try setup.database.insert("JOURNALRTRY")
        try setup.database.insert("bad<journal>")
        setup.simulator.simulator.setFault(FaultPlan(.systemError), for: "JOURNALRTRY")
        let journal = try DaemonProcess(
            ["run", "--config", setup.configFile, "--once"], in: setup.database.directory, stderrIsJournal: true)
        #expect(try await journal.waitForExit(timeout: 30) == 0)
        let lines = journal.stderr.split(separator: "\n")
        #expect(lines.allSatisfy { $0.hasPrefix("<") }, "\(lines)")
        #expect(lines.contains { $0.hasPrefix("<6>INFO closed by WeChat Pay") && $0.contains("out_trade_no=JOURNALOK01") })
        #expect(
            lines.contains {
                $0.hasPrefix("<4>WARNING") && $0.contains("out_trade_no=JOURNALRTRY") && $0.contains("err_code=SYSTEMERROR")
            })
        #expect(lines.contains { $0.hasPrefix("<3>ERROR") && $0.contains("bad<journal>") })

        try setup.database.insert("PLAINLINES1")
        let plain = try DaemonProcess(["run", "--config", setup.configFile, "--once"], in: setup.database.directory)
        #expect(try await plain.waitForExit(timeout: 30) == 0)
        #expect(plain.stderr.split(separator: "\n").allSatisfy { !$0.hasPrefix("<") })
    }
}

@Suite struct UnitFileTests {
    var repository: URL {
        var folder = URL(fileURLWithPath: #filePath)
        while !FileManager.default.fileExists(atPath: folder.appending(path: "Package.swift").path) {
            folder = folder.deletingLastPathComponent()
        }
        return folder
    }

    /// Runs a program to completion and returns its status and output. It waits by polling,
    /// never blocking a thread of the cooperative pool (two here), which the timing tests share.
    func run(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) async throws -> (Int32, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let outputFile = try folder.write("output", "")
        let output = try FileHandle(forWritingTo: URL(fileURLWithPath: outputFile))
        process.standardOutput = output
        process.standardError = output
        try process.run()
        while process.isRunning { try await Task.sleep(for: .milliseconds(20)) }
        try output.close()
        return (process.terminationStatus, (try? String(contentsOfFile: outputFile, encoding: .utf8)) ?? "")
    }

    @Test func theUnitPassesSystemdAnalyzeVerify() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        // verify checks that ExecStart= exists: point the unit at the binary just built.
        let unit = try String(contentsOf: repository.appending(path: "systemd/closeorderd.service"), encoding: .utf8)
            .replacingOccurrences(of: "/usr/local/bin/closeorderd", with: DaemonProcess.binary.path)
        let path = try folder.write("closeorderd.service", unit, permissions: 0o644)
        let (status, output) = try await run("/usr/bin/systemd-analyze", ["verify", path])
        #expect(status == 0, "\(output)")
        #expect(output.isEmpty, "\(output)")
    }

    @Test func theUnitsExposureScoreIsAtMostTwo() async throws {
        let (status, output) = try await run(
            "/usr/bin/systemd-analyze",
            ["security", "--offline=true", "--no-pager", repository.appending(path: "systemd/closeorderd.service").path])
        #expect(status == 0, "\(output)")
        let line = try #require(output.split(separator: "\n").first { $0.contains("Overall exposure level") })
        let score = try #require(line.split(separator: ":").last?.split(separator: " ").first.flatMap { Double($0) })
        #expect(score <= 2.0, "\(line)")
    }

    @Test func theInstallScriptStagesEverythingUnderDestdir() async throws {
        let stage = try TemporaryDirectory()
        defer { stage.remove() }
        let (status, output) = try await run(
            "/bin/bash", [repository.appending(path: "scripts/install.sh").path],
            environment: ["DESTDIR": stage.url.path, "PREFIX": "/opt/closeorderd", "BINARY": DaemonProcess.binary.path])
        #expect(status == 0, "\(output)")
        let expected: [(String, Int)] = [
            ("opt/closeorderd/bin/closeorderd", 0o755), ("etc/systemd/system/closeorderd.service", 0o644),
            ("etc/closeorderd/config.yaml", 0o640), ("etc/closeorderd/keys", 0o750),
            ("usr/lib/sysusers.d/closeorderd.conf", 0o644), ("usr/lib/tmpfiles.d/closeorderd.conf", 0o644),
            ("opt/closeorderd/share/doc/closeorderd/README.md", 0o644),
        ]
        for (file, mode) in expected {
            let attributes = try FileManager.default.attributesOfItem(atPath: stage.path(file))
            #expect((attributes[.posixPermissions] as? Int) == mode, "\(file)")
        }
        let unit = try String(contentsOfFile: stage.path("etc/systemd/system/closeorderd.service"), encoding: .utf8)
        #expect(unit.contains("ExecStart=/opt/closeorderd/bin/closeorderd run"))
        #expect(!unit.contains("/usr/local/bin"))
        // The example configuration is a valid configuration once a credential exists.
        let credentials = stage.url.appending(path: "credentials")
        try FileManager.default.createDirectory(at: credentials, withIntermediateDirectories: true)
        let keyPath = credentials.appending(path: "mch-1900000109").path
        try Data(Fixtures.keyText.utf8).write(to: URL(fileURLWithPath: keyPath))
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: keyPath)
        let (checked, checkOutput) = try await run(
            DaemonProcess.binary.path, ["check-config", "--config", stage.path("etc/closeorderd/config.yaml")],
            environment: ["CREDENTIALS_DIRECTORY": credentials.path])
        #expect(checked == 0, "\(checkOutput)")
        // What `systemctl reload` runs, where the credential cannot be read: checked for shape only.
        let config = stage.path("etc/closeorderd/config.yaml")
        let (unreadable, _) = try await run(DaemonProcess.binary.path, ["check-config", "--config", config])
        #expect(unreadable == 78, "without $CREDENTIALS_DIRECTORY the credential key cannot be read")
        let (skipped, skippedOutput) = try await run(
            DaemonProcess.binary.path, ["check-config", "--skip-credentials", "--config", config])
        #expect(skipped == 0, "\(skippedOutput)")
        #expect(skippedOutput.contains("checked for shape only"))
        try String(contentsOfFile: config, encoding: .utf8).replacingOccurrences(of: "batch_size: 256", with: "batch_size: 0")
            .write(toFile: config, atomically: true, encoding: .utf8)
        let (bad, badOutput) = try await run(
            DaemonProcess.binary.path, ["check-config", "--skip-credentials", "--config", config])
        #expect(bad == 78 && badOutput.contains("reaper.batch_size"), "\(badOutput)")
    }
}
