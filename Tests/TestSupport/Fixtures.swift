import ConfigurationFile
import Foundation
import GRDB
import Logging
import OrderStore
import Reaper
import Simulator
import WeChatPay

/// The key of the protocol file's test vectors, and the merchant the tests use.
public enum Fixtures {
    public static let keyText = "192006250b4c09247ec02edce69f6a2d"
    // swift-format-ignore
    public static var key: MerchantKey { try! MerchantKey(keyText) }
    public static let mchID = "1900000109"
    public static let appid = "wx8888888888888888"

    /// A logger that drops everything, for in-process reapers.
    public static let quietLogger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }

    /// Reaper settings for tests: short poll, short backoff, a lease well past the timeout.
    public static func reaperSettings(maxAttempts: Int = 10) -> DaemonConfiguration.ReaperSettings {
        var settings = DaemonConfiguration.ReaperSettings()
        settings.pollIntervalSeconds = 0.1
        settings.backoffBaseSeconds = 1
        settings.backoffMaxSeconds = 2
        settings.leaseSeconds = 30
        settings.maxAttempts = maxAttempts
        return settings
    }

    public static func configuration(
        database: String, baseURL: String, timeoutSeconds: Double = 2,
        reaper: DaemonConfiguration.ReaperSettings = reaperSettings(), signType: SignType = .hmacSHA256
    ) -> DaemonConfiguration {
        var api = DaemonConfiguration.API()
        api.baseURL = baseURL
        api.backupBaseURL = nil
        api.timeoutSeconds = timeoutSeconds
        return DaemonConfiguration(
            database: database, api: api, reaper: reaper,
            merchants: [.init(mchID: mchID, signType: signType, keySource: "test", key: key)])
    }

    /// The YAML a merchant would write for the same setup, with the key in `keyFile`.
    public static func yaml(database: String, baseURL: String, keyFile: String, extraReaper: String = "") -> String {
        """
        database: \(database)
        api:
          base_url: \(baseURL)
          backup_base_url: ""
          timeout_seconds: 2
        reaper:
          poll_interval_seconds: 0.1
          backoff_base_seconds: 1
          backoff_max_seconds: 2
          lease_seconds: 30
        \(extraReaper)
        merchants:
          - mch_id: "\(mchID)"
            sign_type: HMAC-SHA256
            key_file: \(keyFile)
        """
    }
}

/// A real SQLite order database in a temporary folder, with helpers that write rows the
/// way a merchant's app does: plain SQL on its own connection.
public struct TestDatabase: Sendable {
    public let directory: TemporaryDirectory
    public let path: String
    public let store: OrderStore
    /// A separate connection playing the merchant's app.
    public let app: DatabaseQueue

    public static func make() async throws -> TestDatabase {
        let directory = try TemporaryDirectory()
        let path = directory.path("orders.sqlite")
        let store = try OrderStore(path: path)
        try await store.migrate()
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        let app = try DatabaseQueue(path: path, configuration: configuration)
        return TestDatabase(directory: directory, path: path, store: store, app: app)
    }

    /// Inserts an order as the app would. Times are relative to now, in seconds.
    @discardableResult
    public func insert(
        _ outTradeNo: String, mchID: String = Fixtures.mchID, appid: String = Fixtures.appid,
        createdAgo: Int64 = 1200, expiresIn: Int64? = -60, subMchID: String? = nil, subAppID: String? = nil,
        state: String? = nil
    ) throws -> Int64 {
        try app.write { db in
            try db.execute(
                sql: """
                    INSERT INTO orders (mch_id, appid, out_trade_no, sub_mch_id, sub_appid, created_at, expires_at, state)
                    VALUES (?, ?, ?, ?, ?, unixepoch() - ?, unixepoch() + ?, coalesce(?, 'pending'))
                    """,
                arguments: [mchID, appid, outTradeNo, subMchID, subAppID, createdAgo, expiresIn, state])
            return db.lastInsertedRowID
        }
    }

    /// The row as `closeorderd query` would show it.
    public func order(_ outTradeNo: String) async throws -> OrderRecord? {
        try await store.orders(outTradeNo: outTradeNo).first
    }

    public func history(_ outTradeNo: String) async throws -> [AttemptHistoryRecord] {
        guard let order = try await order(outTradeNo) else { return [] }
        return try await store.attempts(orderID: order.id)
    }

    public func remove() { directory.remove() }
}

/// A simulator serving on a free loopback port, for one test.
public struct TestSimulator: Sendable {
    public let simulator: SimulatedWeChatPay
    public let server: SimulatorServer

    public static func start(behaviour: SimulatorBehaviour = SimulatorBehaviour()) async throws -> TestSimulator {
        let simulator = try SimulatedWeChatPay(keys: [Fixtures.mchID: Fixtures.key], behaviour: behaviour)
        let server = try await SimulatorServer.start(simulator, host: "127.0.0.1", port: 0)
        return TestSimulator(simulator: simulator, server: server)
    }

    public var baseURL: String { server.baseURL }
    public func stop() async { try? await server.stop() }
}
