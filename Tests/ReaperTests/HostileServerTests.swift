import Foundation
import GRDB
import OrderStore
import Reaper
import TestSupport
import Testing
import WeChatPay
import WeChatPayHTTP
import _CryptoExtras

/// The real binary against servers that lie or dawdle, and an operator who mistypes: the
/// daemon stays up, no call outlives its timeout or its lease, nothing is called twice at
/// once, no command crashes on what the app wrote.
@Suite(.serialized) struct HostileServerTests {
    /// A config for the lying server at `baseURL`, with a 2 s timeout and a 5 s lease.
    func setup(baseURL: String, extraReaper: String = "") async throws -> OperatorSetup {
        let setup = try await OperatorSetup.make(extraReaper: extraReaper)
        let config = try String(contentsOfFile: setup.configFile, encoding: .utf8)
            .replacingOccurrences(of: setup.simulator.baseURL, with: baseURL)
            .replacingOccurrences(of: "lease_seconds: 30", with: "lease_seconds: 5")
        try config.write(toFile: setup.configFile, atomically: true, encoding: .utf8)
        return setup
    }

    /// A signed v2 close answer that closes the order named in `request`.
    static func closedAnswer(to request: LyingServer.Request) -> [UInt8] {
        let fields = (try? FlatXML.decode(request.body)) ?? [:]
        var answer = [
            "return_code": "SUCCESS", "result_code": "SUCCESS", "appid": fields["appid"] ?? "",
            "mch_id": fields["mch_id"] ?? "", "nonce_str": "LYINGSERVERNONCE",
        ]
        answer["sign"] = Signature.sign(answer, key: Fixtures.key, type: .hmacSHA256)
        return LyingServer.response(status: 200, body: Array(FlatXML.encode(answer).utf8))
    }

    static func orderNumber(_ request: LyingServer.Request) -> String? {
        (try? FlatXML.decode(request.body))?["out_trade_no"]
    }

    @Test func aBodyThatTricklesInIsCutAtTheTimeoutAndTheOrderIsNeverCalledTwiceAtOnce() async throws {
        // The head at once, then one byte a second of a 60-byte body: the call must end at 2 s.
        let server = try await LyingServer.start { _ in
            var steps: [LyingServer.Step] = [.write(Array("HTTP/1.1 200 OK\r\nContent-Length: 60\r\n\r\n".utf8))]
            for _ in 0..<60 { steps += [.pause(.seconds(1)), .write(Array("x".utf8))] }
            return steps
        }
        defer { Task { await server.stop() } }
        let setup = try await setup(baseURL: server.baseURL)
        defer { Task { await setup.tearDown() } }
        try setup.database.insert("TRICKLE0001")
        let daemon = try setup.daemon()
        do {
            try await DaemonProcess.waitUntil(timeout: 30, "three calls came and went") {
                server.requests.filter { $0.finished != nil }.count >= 3
            }
        } catch {
            Issue.record("\(server.requests.map { ($0.index, $0.finished.map { $0 - $0 }) }) \(daemon.stderr)")
            throw error
        }
        let stopping = ContinuousClock.now
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit(timeout: 20) == 0, "\(daemon.stderr)")
        // Bounds with room for a loaded machine above the 2 s timeout, far below the 60 s body.
        #expect(ContinuousClock.now - stopping < .seconds(8), "SIGTERM waits at most one timeout")
        for request in server.requests {
            let lasted = (request.finished ?? .now) - request.arrived
            #expect(lasted < .seconds(5), "call \(request.index) lasted \(lasted)")
        }
        #expect(server.maximumOverlap { Self.orderNumber($0) == "TRICKLE0001" } == 1)
        let row = try #require(try await setup.database.order("TRICKLE0001"))
        #expect(row.state == .pending, "retried, not failed: \(row.lastError ?? "")")
        #expect(row.lastError?.contains("did not arrive in time") == true, "\(row.lastError ?? "")")
    }

    @Test func noCallIsInFlightWhenItsLeaseEnds() async throws {
        // The merchant may make one call every 2.5 s and the lease is 5 s: the third of three
        // orders claimed together gets its turn when its lease is over, and must not be called.
        let server = try await LyingServer.start { request in
            [.pause(.milliseconds(500)), .write(Self.closedAnswer(to: request))]
        }
        defer { Task { await server.stop() } }
        let setup = try await setup(baseURL: server.baseURL)
        defer { Task { await setup.tearDown() } }
        let config = try String(contentsOfFile: setup.configFile, encoding: .utf8)
            .replacingOccurrences(of: "key_file:", with: "max_requests_per_second: 0.4\n    key_file:")
        try config.write(toFile: setup.configFile, atomically: true, encoding: .utf8)
        for index in 1...3 { try setup.database.insert("LEASEEND\(index)00") }
        let daemon = try setup.daemon()
        try await DaemonProcess.waitUntil(timeout: 40, "all three are closed") { try setup.count("closed") == 3 }
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit(timeout: 20) == 0)
        for index in 1...3 {
            #expect(server.maximumOverlap { Self.orderNumber($0) == "LEASEEND\(index)00" } == 1, "LEASEEND\(index)00")
        }
        var messages: [String] = []
        for index in 1...3 { messages += try await setup.database.history("LEASEEND\(index)00").map(\.message) }
        #expect(messages.contains { $0.contains("lease ends before a call could finish") }, "\(messages)")
    }

    @Test func aSigned204CarryingABodyDoesNotCostTheNextOrderAnAttempt() async throws {
        let wechatpayKey = try _RSA.Signing.PrivateKey(pemRepresentation: V3TestKeys.wechatpayPrivateKey)
        let keyID = "PUB_KEY_ID_0119000001092025010100000000000001"
        let server = try await LyingServer.start { request in
            let timestamp = "\(Int64(Date().timeIntervalSince1970))"
            let nonce = "LYING\(request.index)"
            let message = V3Answer.message(timestamp: timestamp, nonce: nonce, body: [])
            let signature =
                (try? wechatpayKey.signature(for: Data(message.utf8), padding: .insecurePKCS1v1_5).rawRepresentation
                    .base64EncodedString()) ?? ""
            let junk = Array(#"{"code":"ORDER_CLOSED","message":"left on the connection"}"#.utf8)
            let head = [
                ("Wechatpay-Timestamp", timestamp), ("Wechatpay-Nonce", nonce), ("Wechatpay-Signature", signature),
                ("Wechatpay-Serial", keyID),
            ]
            // The first answer is a 204 that announces and sends a body; the rest are clean.
            // The first answer is a 204 that announces and sends a body; the rest are clean.
            let answer = LyingServer.response(
                status: 204, reason: "No Content", headers: head, body: request.index == 0 ? junk : [],
                contentLength: request.index == 0 ? junk.count : 0)
            return [.pause(.milliseconds(100)), .write(answer)]
        }
        defer { Task { await server.stop() } }
        let database = try await TestDatabase.make()
        defer { database.remove() }
        // One call at a time, so that the second would go on the first's kept-alive connection.
        var settings = Fixtures.reaperSettings()
        settings.concurrency = 1
        let credentials = try V3Credentials(
            mchID: Fixtures.mchID, serialNo: V3TestKeys.merchantSerialNo, privateKeyPEM: V3TestKeys.merchantPrivateKey,
            wechatpayPublicKeyPEM: V3TestKeys.wechatpayPublicKey, wechatpayPublicKeyID: keyID)
        var configuration = Fixtures.configuration(database: database.path, baseURL: server.baseURL, reaper: settings)
        configuration.merchants = [.init(mchID: Fixtures.mchID, credentials: .v3(credentials), keySource: "test")]
        let client = WeChatPayClient(baseURL: server.baseURL, timeoutSeconds: 2, maxConnections: 1)
        defer { Task { await client.shutdown() } }
        let reaper = Reaper(configuration: configuration, store: database.store, client: client, logger: Fixtures.quietLogger)
        try database.insert("BODY204FIRST")
        try database.insert("BODY204NEXT1")
        try await reaper.runOnce()
        for number in ["BODY204FIRST", "BODY204NEXT1"] {
            let row = try #require(try await database.order(number))
            let history = try await database.history(number).map(\.message)
            #expect(row.state == .closed, "\(number): \(row.lastError ?? "")")
            #expect(row.attempts == 1, "\(number) lost no attempt: \(history)")
        }
    }

    @Test func runOnceStopsClaimingOnSIGTERMAndRecordsItsCallsInFlight() async throws {
        let setup = try await OperatorSetup.make(behaviour: .init(latencyMilliseconds: 3000))
        defer { Task { await setup.tearDown() } }
        for index in 0..<40 { try setup.database.insert("ONCETERM\(1000 + index)") }
        let config = try String(contentsOfFile: setup.configFile, encoding: .utf8)
            .replacingOccurrences(of: "timeout_seconds: 2", with: "timeout_seconds: 10")
        try config.write(toFile: setup.configFile, atomically: true, encoding: .utf8)
        let daemon = try setup.daemon(["--once"])
        try await DaemonProcess.waitUntil(timeout: 20, "calls are in flight") {
            setup.simulator.simulator.stats.closeCalls.count >= 8
        }
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit(timeout: 20) == 0, "\(daemon.stderr)")
        #expect(try setup.count("closing") == 0, "queued orders went back, calls in flight were recorded")
        #expect(try setup.count("pending") > 0, "it stopped claiming: not all 40 were called")
        #expect(try setup.count("closed") == setup.simulator.simulator.stats.closeCalls.count)
    }

    @Test func queryShowsWhatTheAppWroteWithoutCrashingOrWritingControlCharacters() async throws {
        let setup = try await OperatorSetup.make()
        defer { Task { await setup.tearDown() } }
        try setup.database.insert("PAIDBYAPP01")
        try setup.database.insert("ESCAPES0001")
        try await setup.database.app.write { db in
            try db.execute(
                sql: "UPDATE orders SET state = 'paid', updated_at = CURRENT_TIMESTAMP WHERE out_trade_no = 'PAIDBYAPP01'")
            try db.execute(
                sql: """
                    UPDATE orders SET state = 'failed', last_error = 'bad' || char(27) || '[2J' || char(13) || 'x',
                           err_code = char(8232) || 'E', updated_at = 'yesterday'
                     WHERE out_trade_no = 'ESCAPES0001'
                    """)
            try db.execute(sql: "DROP TRIGGER orders_refuse_bad_identity_on_insert")
            try db.execute(
                sql: "INSERT INTO orders (mch_id, appid, out_trade_no, state) VALUES (X'FF00', 'wx', 'BLOBROW0001', 'failed')")
        }
        for arguments in [
            [], ["--json"], ["--state", "paid"], ["--state", "failed"], ["--state", "failed", "--json"], ["PAIDBYAPP01"],
            ["ESCAPES0001"], ["BLOBROW0001", "--json"],
        ] {
            let result = try await setup.run(["query", "--db", setup.database.path] + arguments)
            #expect(result.status == 0, "\(arguments): \(result.stderr)")
            #expect(!result.stdout.unicodeScalars.contains { $0 == "\u{1B}" || $0 == "\r" || $0 == "\u{2028}" }, "\(arguments)")
        }
        let paid = try await setup.run(["query", "--db", setup.database.path, "PAIDBYAPP01"])
        let today = Date().formatted(.iso8601.year().month().day())
        #expect(paid.stdout.contains("updated_at        \(today)"), "CURRENT_TIMESTAMP is read as a time: \(paid.stdout)")
        let odd = try await setup.run(["query", "--db", setup.database.path, "ESCAPES0001"])
        #expect(odd.stdout.contains(#"bad\u{1B}[2J\rx"#), "\(odd.stdout)")
        #expect(odd.stdout.contains("yesterday"), "an unreadable time is shown as it is: \(odd.stdout)")
        let blob = try await setup.run(["query", "--db", setup.database.path, "BLOBROW0001"])
        #expect(blob.stdout.contains("<BLOB x'FF00'>"), "\(blob.stdout)")
    }

    @Test func retryAndQueryNeverCreateADatabaseAtAMistypedPath() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let missing = folder.path("typo/ordres.sqlite")
        let alsoMissing = folder.path("ordres.sqlite")
        for arguments in [
            ["retry", "--db", alsoMissing, "--state", "failed"], ["query", "--db", alsoMissing],
            ["retry", "--db", missing, "SOMEORDER01"],
        ] {
            let result = try await DaemonProcess.run(arguments, in: folder)
            #expect(result.status == 74, "\(arguments)")
            #expect(result.stderr.contains("no database file at"), "\(result.stderr)")
        }
        #expect(!FileManager.default.fileExists(atPath: alsoMissing))
        #expect(!FileManager.default.fileExists(atPath: missing))
    }

    @Test func retryRefusesASQLiteFileThatIsNotAnOrderDatabase() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let other = folder.path("customers.db")
        let queue = try DatabaseQueue(path: other)
        try await queue.write { db in try db.execute(sql: "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)") }
        try queue.close()
        let empty = try folder.write("empty.db", "")
        for path in [other, empty] {
            let result = try await DaemonProcess.run(["retry", "--db", path, "--state", "failed"], in: folder)
            #expect(result.status == 74, "\(path): \(result.stdout)")
            #expect(result.stderr.contains("no closeorderd schema"), "\(result.stderr)")
        }
        let tables = try await DatabaseQueue(path: other).read { db in
            try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        }
        #expect(tables == ["customers"], "left as it was")
        #expect(try String(contentsOfFile: empty, encoding: .utf8).isEmpty)
        let directory = try await DaemonProcess.run(["query", "--db", folder.url.path], in: folder)
        #expect(directory.stderr.contains("is a directory"), "\(directory.stderr)")
    }

    @Test func signalsWhileStartingStopItCleanlyOrAreIgnored() async throws {
        let setup = try await OperatorSetup.make()
        defer { Task { await setup.tearDown() } }
        // The app holds the write lock, so the daemon waits in its migration check at start
        // (having opened the database, after its startup signal handlers are in place).
        let lock = try await HeldWriteLock(path: setup.database.path)
        let stopped = try setup.daemon()
        try await DaemonProcess.waitUntil(timeout: 30, "the daemon opened the database") {
            stopped.hasOpen(setup.database.path) || !stopped.process.isRunning
        }
        stopped.signal(SIGTERM)
        #expect(try await stopped.waitForExit(timeout: 30) == 0, "\(stopped.stderr)")
        #expect(stopped.stderr.contains("stopped while starting"), "at once, while the lock is still held: \(stopped.stderr)")

        let reloaded = try setup.daemon()
        try await DaemonProcess.waitUntil(timeout: 30, "the second daemon opened the database") {
            reloaded.hasOpen(setup.database.path) || !reloaded.process.isRunning
        }
        reloaded.signal(SIGHUP)
        try await lock.release()
        try await DaemonProcess.waitUntil(timeout: 30, "it started after all") {
            reloaded.stderr.contains("INFO starting") || !reloaded.process.isRunning
        }
        #expect(reloaded.process.isRunning, "SIGHUP while starting did not kill it: \(reloaded.stderr)")
        reloaded.signal(SIGTERM)
        #expect(try await reloaded.waitForExit(timeout: 30) == 0)
    }
}
