import ArgumentParser
import ConfigurationFile
import Foundation
import Logging
import OrderStore
import PostgresStore
import Reaper
import Simulator
import WeChatPay
import WeChatPayHTTP
import _CryptoExtras

struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "The whole job offline: a simulator, a throwaway database, a dozen orders, the reaper, the result.",
        discussion: """
            Nothing leaves this machine; the database is left in a temporary folder to inspect with `query`. \
            With --database, the demo runs on a PostgreSQL database you point it at instead, which must hold no \
            orders (it closes whatever is due there, against its own simulator).
            """
    )

    @Option(
        help: ArgumentHelp(
            "An empty PostgreSQL database to run on instead of a throwaway SQLite file.",
            discussion: "postgresql://USER@HOST/DBNAME?sslmode=…; the password from the URL or $PGPASSWORD.",
            valueName: "url"))
    var database: String?

    /// One order of the demo and what should become of it.
    struct DemoOrder {
        let number: String
        let mchID: String
        let story: String
        let columns: String
        /// The values, with times as `unixepoch()` plus or minus seconds.
        let values: String

        /// The app's INSERT, in SQLite's or PostgreSQL's idiom (`timestamptz`: `now()`
        /// and intervals).
        func insert(onPostgreSQL: Bool) -> String {
            var values = values
            if onPostgreSQL {
                values = values.replacing(/unixepoch\(\) ([-+]) (\d+)/) { "now() \($0.1) interval '\($0.2) seconds'" }
                    .replacingOccurrences(of: "unixepoch()", with: "now()")
            }
            return "INSERT INTO orders (\(columns)) VALUES (\(values))"
        }
    }

    /// The demo's merchants: one on API v2 with a generated key, one on API v3 with a key
    /// pair made for the demo.
    static let merchantID = "1900000109"
    static let v3MerchantID = "1900000333"

    func run() async throws {
        let logger = bootstrapLogging()
        let key = try MerchantKey(Nonce.make())
        let v3PrivateKey = try _RSA.Signing.PrivateKey(keySize: .bits2048)
        let simulator = try Self.scriptedSimulator(key: key, v3PublicKey: v3PrivateKey.publicKey)
        let orders = Self.orders(merchantID: Self.merchantID)
        let (store, database) = try await openDatabase(inserting: orders)
        let server = try await SimulatorServer.start(simulator, host: "127.0.0.1", port: 0)
        let configuration = try Self.configuration(
            database: database, baseURL: server.baseURL, key: key, v3PrivateKey: v3PrivateKey, simulator: simulator)
        output("demo database: \(OrderTables.redacted(database))")
        output("simulator: \(server.baseURL)\n")
        var table = TextTable("OUT_TRADE_NO", "WHAT THE DEMO SHOWS")
        for order in orders { table.add([order.number, order.story]) }
        output(table.rendered + "\n")

        let client = WeChatPayClient(
            baseURL: server.baseURL, timeoutSeconds: configuration.api.timeoutSeconds,
            maxConnections: configuration.reaper.concurrency)
        let daemon = Reaper(configuration: configuration, store: store, client: client, logger: logger)
        try await Self.runUntilSettled(daemon, store: store, policy: configuration.reaper.duePolicy)
        await client.shutdown()
        try await server.stop()
        try await report(store, policy: configuration.reaper.duePolicy, database: database)
    }

    /// The demo's database with its orders in it: a throwaway SQLite file, or the empty
    /// PostgreSQL database `--database` names. Returns it and its `database:` value.
    func openDatabase(inserting orders: [DemoOrder]) async throws -> (any OrderTable, String) {
        guard let database else {
            let folder = FileManager.default.temporaryDirectory.appending(path: "closeorderd-demo-\(UUID().uuidString.prefix(8))")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            let path = folder.appending(path: "orders.sqlite").path
            let store = try OrderStore(path: path)
            try await store.migrate()
            try await store.withWriteTransaction { db in
                for order in orders { try db.execute(sql: order.insert(onPostgreSQL: false)) }
            }
            return (store, path)
        }
        do {
            guard case .postgresql(let address) = try DatabaseLocation(parsing: database) else {
                throw ValidationError("--database takes a postgresql:// URL (without it, the demo makes its own SQLite file)")
            }
            let table = try PostgresOrderTable(
                address: address, password: ProcessInfo.processInfo.environment["PGPASSWORD"], logger: quietLogger)
            try await table.verifyReachable()
            // Counted before migrating: a database with orders is left exactly as it was
            // (the error is a database without the tables yet, which the migration makes).
            let summary = try? await table.summary(
                now: Int64(Date().timeIntervalSince1970), policy: DaemonConfiguration.ReaperSettings().duePolicy)
            let present = summary?.countsByState.values.reduce(0, +) ?? 0
            guard present == 0 else {
                exitWithMessage(
                    "\(address.redacted) holds \(present) orders: the demo runs only on a database without any, since it "
                        + "closes whatever is due there against its own simulator; make one for it (createdb closeorderd_demo)",
                    code: ExitCodes.database)
            }
            _ = try await table.migrate()
            for order in orders { try await table.execute(order.insert(onPostgreSQL: true)) }
            return (table, database)
        } catch let error as StoreError {
            exitWithMessage("\(error)", code: ExitCodes.database)
        } catch let error as DatabaseLocationError {
            throw ValidationError("--database: \(error)")
        }
    }

    /// The simulator, told which demo orders are paid, closed, paying or failing.
    static func scriptedSimulator(key: MerchantKey, v3PublicKey: _RSA.Signing.PublicKey) throws -> SimulatedWeChatPay {
        let simulator = try SimulatedWeChatPay(
            keys: [merchantID: key], behaviour: SimulatorBehaviour(latencyMilliseconds: 20),
            v3Merchants: [v3MerchantID: v3PublicKey])
        simulator.markPaid("DEMO-V3-PAID")
        simulator.markPaying("DEMO-V3-USER-PAYING")
        simulator.markPaid("DEMO-PAID-AT-WECHAT")
        simulator.markClosed("DEMO-ALREADY-CLOSED")
        simulator.setFault(FaultPlan(.systemError, times: 1), for: "DEMO-TRANSIENT-ERROR")
        simulator.setFault(FaultPlan(.signError), for: "DEMO-SIGNERROR")
        return simulator
    }

    /// A configuration for the simulator: short polls and backoff, so the demo ends in seconds.
    static func configuration(
        database: String, baseURL: String, key: MerchantKey, v3PrivateKey: _RSA.Signing.PrivateKey,
        simulator: SimulatedWeChatPay
    ) throws -> DaemonConfiguration {
        var api = DaemonConfiguration.API()
        api.baseURL = baseURL
        api.timeoutSeconds = 2
        api.backupBaseURL = nil
        var reaper = DaemonConfiguration.ReaperSettings()
        reaper.pollIntervalSeconds = 0.2
        reaper.backoffBaseSeconds = 1
        reaper.backoffMaxSeconds = 2
        reaper.leaseSeconds = 10
        let v3 = try V3Credentials(
            mchID: v3MerchantID, serialNo: "DEMO0000000000000000000000000000000000V3",
            privateKeyPEM: v3PrivateKey.pemRepresentation,
            wechatpayPublicKeyPEM: simulator.wechatpayPublicKeyPEM, wechatpayPublicKeyID: SimulatedWeChatPay.wechatpayPublicKeyID)
        return DaemonConfiguration(
            database: database, api: api, reaper: reaper,
            merchants: [
                .init(mchID: merchantID, signType: .hmacSHA256, keySource: "(generated for the demo)", key: key),
                .init(mchID: v3MerchantID, credentials: .v3(v3), keySource: "(generated for the demo)"),
            ])
    }

    /// Passes until no order waits for a retry and nothing is due (at most 30 s).
    static func runUntilSettled(_ daemon: Reaper, store: any OrderTable, policy: DuePolicy) async throws {
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            try await daemon.runOnce()
            let waiting = try await store.orders(inState: .pending, limit: 100).filter { $0.attempts > 0 }
            let summary = try await store.summary(now: Int64(Date().timeIntervalSince1970), policy: policy)
            if waiting.isEmpty && summary.due == 0 { break }
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    /// What `closeorderd query` shows afterwards.
    func report(_ store: any OrderTable, policy: DuePolicy, database: String) async throws {
        let report = QueryReport(json: false)
        let summary = try await store.summary(now: Int64(Date().timeIntervalSince1970), policy: policy)
        output("\n== closeorderd query ==\n" + report.summary(summary))
        var all: [OrderRecord] = []
        for state in OrderState.allCases { all += try await store.orders(inState: state, limit: 100) }
        output("\n== the orders ==\n" + report.list(all.sorted { $0.id < $1.id }))
        output("\nInspect it yourself: closeorderd query --db \(OrderTables.redacted(database)) [OUT_TRADE_NO]")
    }

    static func orders(merchantID: String) -> [DemoOrder] {
        let app = "'wx8888888888888888'"
        func due(_ number: String, _ story: String, mch: String = merchantID) -> DemoOrder {
            DemoOrder(
                number: number, mchID: mch, story: story, columns: "mch_id, appid, out_trade_no, created_at, expires_at",
                values: "'\(mch)', \(app), '\(number)', unixepoch() - 1200, unixepoch() - 300")
        }
        return [
            due("DEMO-DUE-0001", "deadline passed 5 min ago: closed"),
            due("DEMO-DUE-0002", "deadline passed 5 min ago: closed"),
            due("DEMO-DUE-0003", "deadline passed 5 min ago: closed"),
            DemoOrder(
                number: "DEMO-NO-DEADLINE", mchID: merchantID,
                story: "expires_at NULL, created 3 h ago (payment_timeout 2 h): closed",
                columns: "mch_id, appid, out_trade_no, created_at",
                values: "'\(merchantID)', \(app), 'DEMO-NO-DEADLINE', unixepoch() - 10800"),
            DemoOrder(
                number: "DEMO-SERVICE-PROVIDER", mchID: merchantID, story: "sub_mch_id and sub_appid sent and signed: closed",
                columns: "mch_id, appid, out_trade_no, sub_mch_id, sub_appid, created_at, expires_at",
                values:
                    "'\(merchantID)', \(app), 'DEMO-SERVICE-PROVIDER', '1900000110', 'wx9999999999999999', unixepoch() - 1200, unixepoch() - 60"
            ),
            due("DEMO-PAID-AT-WECHAT", "paid at WeChat Pay: ORDERPAID, marked paid, never closed"),
            due("DEMO-ALREADY-CLOSED", "closed at WeChat Pay already: ORDERCLOSED, marked closed"),
            due("DEMO-TRANSIENT-ERROR", "SYSTEMERROR once: retried after backoff, then closed"),
            due("DEMO-SIGNERROR", "SIGNERROR: a configuration error, failed at once"),
            DemoOrder(
                number: "DEMO-TOO-YOUNG", mchID: merchantID,
                story: "created 2 min ago, payment failed (expires_at = now): waits for 5 min",
                columns: "mch_id, appid, out_trade_no, created_at, expires_at",
                values: "'\(merchantID)', \(app), 'DEMO-TOO-YOUNG', unixepoch() - 120, unixepoch()"),
            DemoOrder(
                number: "DEMO-NOT-YET-DUE", mchID: merchantID, story: "deadline in 10 min: left pending",
                columns: "mch_id, appid, out_trade_no, created_at, expires_at",
                values: "'\(merchantID)', \(app), 'DEMO-NOT-YET-DUE', unixepoch() - 600, unixepoch() + 600"),
            DemoOrder(
                number: "DEMO-APP-SAW-PAYMENT", mchID: merchantID, story: "the app set state = 'paid': never touched",
                columns: "mch_id, appid, out_trade_no, created_at, expires_at, state",
                values: "'\(merchantID)', \(app), 'DEMO-APP-SAW-PAYMENT', unixepoch() - 1200, unixepoch() - 300, 'paid'"),
            due("bad<order>", "out_trade_no with XML metacharacters: failed, never sent"),
            due("DEMO-UNKNOWN-MERCHANT", "mch_id with no configured key: failed, never sent", mch: "1999999999"),
            due("DEMO-V3-CLOSE", "API v3 merchant: RSA-signed close, 204, verified: closed", mch: "1900000333"),
            due("DEMO-V3-PAID", "API v3, paid: ORDERPAID, the payment recorded from the query", mch: "1900000333"),
            due(
                "DEMO-V3-USER-PAYING", "API v3, the user is paying (USER_PAYING): never closed, asked again later",
                mch: "1900000333"),
        ]
    }
}
