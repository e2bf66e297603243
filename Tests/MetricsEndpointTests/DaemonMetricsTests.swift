import Foundation
import GRDB
import MetricsEndpoint
import OrderStore
import Prometheus
import Simulator
import TestSupport
import Testing

/// The real binary with `metrics.listen` set, scraped over loopback while it works.
@Suite(.serialized) struct DaemonMetricsTests {
    /// An operator's setup with the endpoint on a port the daemon picks (and logs).
    static func setUp(behaviour: SimulatorBehaviour = SimulatorBehaviour(), listen: String = "127.0.0.1:0") async throws
        -> OperatorSetup
    {
        let setup = try await OperatorSetup.make(behaviour: behaviour)
        let config = try String(contentsOfFile: setup.configFile, encoding: .utf8) + "\nmetrics:\n  listen: \(listen)\n"
        try config.write(toFile: setup.configFile, atomically: true, encoding: .utf8)
        return setup
    }

    /// The endpoint's base URL, once the daemon logged where it listens.
    static func endpoint(of daemon: DaemonProcess, after previous: String? = nil) async throws -> String {
        var found: String?
        try await DaemonProcess.waitUntil(timeout: 60, "the daemon serves metrics") {
            let lines = daemon.stderr.split(separator: "\n").filter { $0.contains("serving metrics") }
            found = lines.last.flatMap { line in
                line.split(separator: " ").first { $0.hasPrefix("listen=") }.map { "http://\($0.dropFirst("listen=".count))" }
            }
            return found != nil && found != previous
        }
        return found ?? ""
    }

    @Test func theScrapeMatchesTheRowsAndTheHistory() async throws {
        let setup = try await Self.setUp()
        defer { Task { await setup.tearDown() } }
        let daemon = try setup.daemon()
        let url = try await Self.endpoint(of: daemon)

        // Before anything happened: every series is there, at zero.
        let first = Scrape(try await httpGet("\(url)/metrics").body)
        #expect(first.seriesCount("closeorderd_calls_total") == 2 * 2 * 6)
        #expect(first.seriesCount("closeorderd_call_errors_total") == 2 * 2 * 14)
        #expect(first.seriesCount("closeorderd_call_duration_seconds_count") == 2 * 2 * 2)
        #expect(first.seriesCount("closeorderd_orders_finished_total") == 3)
        #expect(first.seriesCount("closeorderd_database_errors_total") == 5)
        for name in [
            "closeorderd_close_lateness_seconds_count", "closeorderd_due_orders", "closeorderd_oldest_due_age_seconds",
            "closeorderd_in_flight_calls", "closeorderd_outage_breaker_open", "closeorderd_merchant_rate_limit",
            "closeorderd_ready", "closeorderd_build_info",
        ] {
            #expect(first.seriesCount(name) == 1, "\(name) is there from the first scrape")
        }
        #expect(first.sum("closeorderd_calls_total") == 0)

        // Work of every kind: closed, paid (answered ORDERPAID, then queried), a wrong
        // signature, retried SYSTEMERRORs, and a row that cannot be sent.
        // The simulator learns each order's fate before the row exists: the daemon is
        // running, and may claim a row the moment it is inserted.
        let simulator = setup.simulator.simulator
        simulator.markPaid("SCRAPE1000")
        simulator.markPaid("SCRAPE1001")
        simulator.setFault(FaultPlan(.signError), for: "SCRAPE1002")
        simulator.setFault(FaultPlan(.systemError, times: 2), for: "SCRAPE1003")
        simulator.setFault(FaultPlan(.unknownErrCode), for: "SCRAPE1004")
        for index in 0..<40 { try setup.database.insert("SCRAPE\(1000 + index)", expiresIn: -Int64(index * 7)) }
        try setup.database.insert("bad<order>")
        try await DaemonProcess.waitUntil(timeout: 60, "every order is finished") {
            try setup.count("pending") + setup.count("closing") == 0
        }
        let scrape = Scrape(try await httpGet("\(url)/metrics").body)
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit(timeout: 20) == 0)

        let history = try await setup.database.app.read { db in
            try Row.fetchAll(
                db, sql: "SELECT call, outcome, count(*) AS n FROM close_attempts WHERE call IS NOT NULL GROUP BY 1, 2")
        }
        #expect(!history.isEmpty)
        for row in history {
            let (call, outcome, count): (String, String, Int) = (row["call"], row["outcome"], row["n"])
            #expect(
                scrape.sum("closeorderd_calls_total", ["call": call, "outcome": outcome]) == Double(count),
                "\(call) \(outcome)")
        }
        let calls = try await setup.database.app.read { db in
            try Int.fetchOne(db, sql: "SELECT count(*) FROM close_attempts WHERE call IS NOT NULL") ?? 0
        }
        #expect(scrape.sum("closeorderd_calls_total") == Double(calls), "no call is counted that the history lacks")
        #expect(scrape.sum("closeorderd_call_duration_seconds_count") == Double(calls))
        for state in ["closed", "paid", "failed"] {
            #expect(
                scrape.sum("closeorderd_orders_finished_total", ["state": state]) == Double(try setup.count(state)), "\(state)")
        }
        #expect(try setup.count("paid") == 2)
        #expect(try setup.count("failed") == 3)
        #expect(scrape.sum("closeorderd_call_errors_total", ["err_code": "SIGNERROR"]) == 1)
        #expect(scrape.sum("closeorderd_call_errors_total", ["err_code": "SYSTEMERROR"]) == 2)
        #expect(scrape.sum("closeorderd_call_errors_total", ["err_code": "ORDERPAID"]) == 2)
        #expect(scrape.sum("closeorderd_call_errors_total", ["err_code": "other"]) == 1, "an unknown code is other")

        // Lateness: one observation per closed order, each closed_at minus when it became due.
        let lateness = try await setup.database.app.read { db in
            try Row.fetchOne(
                db,
                sql: """
                    SELECT count(*) AS n, sum(late) AS total, max(late) AS latest FROM (
                        SELECT closed_at - max(coalesce(expires_at, created_at + 7200), created_at + 300) AS late
                          FROM orders WHERE state = 'closed')
                    """)
        }
        let (closed, total): (Int, Int) = (lateness?["n"] ?? -1, lateness?["total"] ?? -1)
        #expect(closed == 36, "40 orders, 2 paid, 2 refused")
        #expect(scrape.sum("closeorderd_close_lateness_seconds_count") == Double(closed))
        #expect(scrape.sum("closeorderd_close_lateness_seconds_sum") == Double(total))
        #expect(scrape.sum("closeorderd_close_lateness_seconds_bucket", ["le": "+Inf"]) == Double(closed))
        #expect(scrape.sum("closeorderd_build_info", ["version": "0.4.0"]) == 1)
        #expect(!scrape.text.contains("SCRAPE1"), "no order number in any label")

        // `query --since` tells the same story from the history.
        let query = try await setup.run(["query", "--config", setup.configFile, "--since", "1h", "--json"])
        #expect(query.status == 0, "\(query.stderr)")
        let activity = try JSONDecoder().decode(RecentActivity.self, from: Data(query.stdout.utf8))
        for (call, outcomes) in activity.outcomes where call != "none" {
            for (outcome, count) in outcomes {
                #expect(scrape.sum("closeorderd_calls_total", ["call": call, "outcome": outcome]) == Double(count))
            }
        }
        #expect(activity.outcomes["none"] == ["invalid": 1], "the row that could not be sent")
        #expect(activity.errCodes["SIGNERROR"] == 1)
        #expect(activity.closeLateness.orders == closed)
        // The history's time of the last closing line, or the row's closed_at: a second apart at most.
        let latest: Int64 = lateness?["latest"] ?? -1
        #expect(abs((activity.closeLateness.max ?? -100) - latest) <= 1)
        let text = try await setup.run(["query", "--config", setup.configFile, "--since", "15m"])
        #expect(text.stdout.contains("closed \(closed) orders, this late after they became due: p50 "), "\(text.stdout)")
        #expect(!scrape.text.contains(Fixtures.keyText))
    }

    @Test func promtoolAcceptsTheScrape() async throws {
        let setup = try await Self.setUp()
        defer { Task { await setup.tearDown() } }
        try setup.database.insert("PROMTOOL1")
        let daemon = try setup.daemon()
        let url = try await Self.endpoint(of: daemon)
        try await DaemonProcess.waitUntil(timeout: 60, "the order is closed") { try setup.count("closed") == 1 }
        let scrape = try await httpGet("\(url)/metrics").body
        daemon.signal(SIGTERM)
        _ = try await daemon.waitForExit(timeout: 20)
        let check = try await runTool(Self.promtool, ["check", "metrics"], input: scrape)
        #expect(check.status == 0, "\(check.output)")
        #expect(check.output.isEmpty, "no lint problem: \(check.output)")
    }

    @Test func readyTurns503WhileTheDatabaseIsLockedAndBackOnceFreed() async throws {
        let setup = try await Self.setUp()
        defer { Task { await setup.tearDown() } }
        let daemon = try setup.daemon()
        let url = try await Self.endpoint(of: daemon)
        try await DaemonProcess.waitUntil(timeout: 60, "ready") { try await httpGet("\(url)/-/ready").status == 200 }
        // Orders that fall due while the app holds the write lock: the claim cannot write.
        try setup.database.insert("LOCKED1", expiresIn: 2)
        let lock = try await HeldWriteLock(path: setup.database.path)
        var answer = (status: 0, body: "")
        try await DaemonProcess.waitUntil(timeout: 60, "not ready") {
            answer = try await httpGet("\(url)/-/ready")
            return answer.status == 503
        }
        #expect(answer.body.contains("could not reach the database"), "\(answer.body)")
        #expect(try await httpGet("\(url)/-/healthy").status == 200, "the process is up all the same")
        let whileLocked = Scrape(try await httpGet("\(url)/metrics").body)
        #expect(whileLocked.sum("closeorderd_ready") == 0)
        #expect(whileLocked.sum("closeorderd_database_errors_total", ["operation": "claim"]) >= 1)
        try await lock.release()
        try await DaemonProcess.waitUntil(timeout: 60, "ready again") { try await httpGet("\(url)/-/ready").status == 200 }
        try await DaemonProcess.waitUntil(timeout: 60, "the order is closed") { try setup.count("closed") == 1 }
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit(timeout: 20) == 0)
    }

    @Test func aReloadMovesTheEndpointAndABadAddressKeepsIt() async throws {
        let setup = try await Self.setUp()
        defer { Task { await setup.tearDown() } }
        let daemon = try setup.daemon()
        let first = try await Self.endpoint(of: daemon)
        // The endpoint listens before the daemon handles SIGHUP (it ignores it while starting).
        try await DaemonProcess.waitUntil(timeout: 60, "ready") { try await httpGet("\(first)/-/ready").status == 200 }
        func reload(listen: String?) async throws {
            var config = try String(contentsOfFile: setup.configFile, encoding: .utf8)
            config = String(config[..<config.range(of: "\nmetrics:")!.lowerBound])
            if let listen { config += "\nmetrics:\n  listen: \(listen)\n" }
            try config.write(toFile: setup.configFile, atomically: true, encoding: .utf8)
            let reloads = daemon.stderr.components(separatedBy: "reloaded the configuration").count
            daemon.signal(SIGHUP)
            try await DaemonProcess.waitUntil(timeout: 60, "reloaded") {
                daemon.stderr.components(separatedBy: "reloaded the configuration").count > reloads
            }
        }

        // A new port: the old one closes, the new one serves.
        let free = try await Self.listener()
        let port = free.port
        await free.stop()
        try await reload(listen: "127.0.0.1:\(port)")
        let second = try await Self.endpoint(of: daemon, after: first)
        #expect(second == "http://127.0.0.1:\(port)")
        #expect(try await httpGet("\(second)/-/healthy").status == 200)
        await #expect(throws: (any Error).self, "the old port is closed") { try await httpGet("\(first)/-/healthy") }

        // The same port on another address: the old socket is closed first, so it can be bound;
        // the connection a scraper kept open on the old one is closed too.
        let kept = try #require(RawExchange.connect(port: port))
        defer { close(kept) }
        try await reload(listen: "127.0.0.2:\(port)")
        try await DaemonProcess.waitUntil(timeout: 60, "served on 127.0.0.2") {
            daemon.stderr.contains("serving metrics listen=127.0.0.2:\(port)")
        }
        #expect(try await httpGet("http://127.0.0.2:\(port)/-/healthy").status == 200)
        // Closed by the move, well before the 10 s idle timeout would have closed it.
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(kept, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var byte: UInt8 = 0
        #expect(recv(kept, &byte, 1, 0) == 0, "the old address's open connection was closed")

        // A port another process holds: the endpoint stays where it was, and says why.
        let holder = try await Self.listener()
        try await reload(listen: "127.0.0.1:\(holder.port)")
        try await DaemonProcess.waitUntil(timeout: 60, "the failed move is logged") {
            daemon.stderr.contains("cannot serve metrics on the new metrics.listen; still listening on 127.0.0.2:\(port)")
        }
        #expect(try await httpGet("http://127.0.0.2:\(port)/-/healthy").status == 200)
        await holder.stop()

        // No metrics section: the endpoint closes; the daemon goes on.
        try await reload(listen: nil)
        try await DaemonProcess.waitUntil(timeout: 60, "closed") { daemon.stderr.contains("metrics endpoint closed") }
        await #expect(throws: (any Error).self) { try await httpGet("http://127.0.0.2:\(port)/-/healthy") }
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit(timeout: 20) == 0)
    }

    @Test func readySaysStoppingWhileCallsInFlightDrainAndTheEndpointClosesLast() async throws {
        let setup = try await Self.setUp()
        defer { Task { await setup.tearDown() } }
        try setup.allowLongCalls()
        let simulator = setup.simulator.simulator
        simulator.holdAnswers()
        defer { simulator.releaseAnswers() }
        try setup.database.insert("DRAINING01")
        let daemon = try setup.daemon()
        let url = try await Self.endpoint(of: daemon)
        try await DaemonProcess.waitUntil(timeout: 60, "the call arrived") { simulator.stats.closeCalls["DRAINING01"] == 1 }
        daemon.signal(SIGTERM)
        var answer = (status: 0, body: "")
        try await DaemonProcess.waitUntil(timeout: 60, "stopping") {
            answer = try await httpGet("\(url)/-/ready")
            return answer.status == 503
        }
        #expect(answer.body == "not ready: stopping\n")
        #expect(daemon.process.isRunning)
        simulator.releaseAnswers()
        #expect(try await daemon.waitForExit(timeout: 60) == 0)
        #expect(try setup.count("closed") == 1)
    }

    @Test func whileTheAppHoldsANewDatabaseTheEndpointSaysStartingThenReady() async throws {
        let setup = try await Self.setUp()
        defer { Task { await setup.tearDown() } }
        // The app created the file first, in WAL mode (as the README asks), and holds its write
        // lock: opening and migrating it wait for the lock.
        let fresh = setup.database.directory.url.appending(path: "fresh.sqlite").path
        try await DatabaseQueue(path: fresh).writeWithoutTransaction { try $0.execute(sql: "PRAGMA journal_mode = WAL") }
        let lock = try await HeldWriteLock(path: fresh)
        let config = try String(contentsOfFile: setup.configFile, encoding: .utf8)
            .replacingOccurrences(of: "database: \(setup.database.path)", with: "database: \(fresh)")
        try config.write(toFile: setup.configFile, atomically: true, encoding: .utf8)
        let daemon = try setup.daemon()
        let url = try await Self.endpoint(of: daemon)
        let starting = try await httpGet("\(url)/-/ready")
        #expect(starting.status == 503)
        #expect(starting.body == "not ready: starting: opening and migrating the database\n")
        #expect(try await httpGet("\(url)/-/healthy").status == 200)
        let early = Scrape(try await httpGet("\(url)/metrics").body)
        #expect(early.seriesCount("closeorderd_calls_total") == 2 * 2 * 6, "every series, even while starting")
        #expect(early.seriesCount("closeorderd_merchant_rate_limit") == 1, "a CI run's first scrape once lacked it")
        #expect(!daemon.stderr.contains("migrated the database"), "still waiting for the lock")
        try await lock.release()
        try await DaemonProcess.waitUntil(timeout: 60, "ready") { try await httpGet("\(url)/-/ready").status == 200 }
        // Info lines reach stderr within 50 ms of being logged (they are written in batches).
        try await DaemonProcess.waitUntil(timeout: 10, "the migration is logged") {
            daemon.stderr.contains("migrated the database")
        }
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit(timeout: 20) == 0)
    }

    @Test func aPortInUseStopsTheStartNamingTheKey() async throws {
        let setup = try await Self.setUp()
        defer { Task { await setup.tearDown() } }
        let holder = try await Self.listener()
        let config = try String(contentsOfFile: setup.configFile, encoding: .utf8)
            .replacingOccurrences(of: "listen: 127.0.0.1:0", with: "listen: 127.0.0.1:\(holder.port)")
        try config.write(toFile: setup.configFile, atomically: true, encoding: .utf8)
        let result = try await setup.run(["run", "--config", setup.configFile])
        #expect(result.status == 78)
        #expect(result.stderr.contains("metrics.listen: cannot listen on 127.0.0.1:\(holder.port)"), "\(result.stderr)")
        await holder.stop()
    }

    static let promtool = "/usr/bin/promtool"

    /// A server of the test's own on a free port, to stand in the daemon's way.
    static func listener() async throws -> MetricsServer {
        let responder = MetricsResponder(registry: PrometheusCollectorRegistry(), refresh: {}, readiness: { .ready })
        return try await MetricsServer.start(responder, host: "127.0.0.1", port: 0)
    }
}
