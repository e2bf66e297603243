import Foundation
import Simulator
import TestSupport
import Testing

/// The real binary on PostgreSQL when the server goes away under it: its connections cut
/// and new ones refused (as during a restart or a failover), then back.
@Suite(.serialized) struct PostgresOutageTests {
    @Test func callsInFlightWhenTheServerGoesAwayAreRecordedOnceItIsBack() async throws {
        let setup = try await PostgresOperatorSetup.make()
        defer { Task { await setup.tearDown() } }
        let configFile = setup.operatorSetup.configFile
        let config = try String(contentsOfFile: configFile, encoding: .utf8) + "\nmetrics:\n  listen: 127.0.0.1:0\n"
        try config.write(toFile: configFile, atomically: true, encoding: .utf8)
        // Calls long enough to outlast what follows, however slow the machine.
        try setup.operatorSetup.allowLongCalls()
        let daemon = try setup.daemon()
        let url = try await DaemonMetricsTests.endpoint(of: daemon)
        try await DaemonProcess.waitUntil(timeout: 30, "ready") { try await httpGet("\(url)/-/ready").status == 200 }
        // The daemon's calls are answered only once the server is gone.
        setup.simulator.holdAnswers()
        try await setup.insertDue(3, prefix: "OUTAGE")
        try await DaemonProcess.waitUntil(timeout: 30, "the daemon is calling") {
            setup.simulator.stats.closeCalls.count == 3
        }

        try await setup.database.refuseConnections()
        setup.simulator.releaseAnswers()
        // Not ready, saying why: first the cut connections, then the refusal.
        try await DaemonProcess.waitUntil(timeout: 60, "not ready, as the server refuses connections") {
            let answer = try await httpGet("\(url)/-/ready")
            return answer.status == 503 && answer.body.contains("is not currently accepting connections")
        }
        try await DaemonProcess.waitUntil(timeout: 30, "the write-backs fail, and are retried") {
            daemon.stderr.contains("cannot record the outcome (try 1); retrying while the lease lasts")
        }
        #expect(try await setup.count("closing") == 3, "nothing written while the server is away")
        #expect(Scrape(try await httpGet("\(url)/metrics").body).sum("closeorderd_ready") == 0)

        try await setup.database.acceptConnections()
        try await DaemonProcess.waitUntil(timeout: 30, "the calls made before are recorded") {
            try await setup.count("closed") == 3
        }
        try await DaemonProcess.waitUntil(timeout: 30, "ready again") { try await httpGet("\(url)/-/ready").status == 200 }
        #expect(setup.simulator.stats.closeCalls.values.allSatisfy { $0 == 1 }, "recorded, not called again")
        // Info lines reach stderr within 50 ms of being logged (they are written in batches).
        try await DaemonProcess.waitUntil(timeout: 10, "the late write-backs are logged") {
            daemon.stderr.contains("outcome recorded after")
        }
        let history = try await setup.database.integers("SELECT count(*) FROM close_attempts WHERE outcome = 'closed'")
        #expect(history == [3], "one history line per call")
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit(timeout: 20) == 0)
        #expect(!daemon.stderr.contains("closeorderd-test-password"))
    }
}
