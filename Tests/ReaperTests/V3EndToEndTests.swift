import Foundation
import OrderStore
import Reaper
import Simulator
import TestSupport
import Testing
import WeChatPay
import WeChatPayHTTP
import _CryptoExtras

/// API v3 merchants end to end: the reaper against the simulator's v3 endpoints over loopback.
@Suite struct V3EndToEndTests {
    static let v3MchID = "1900000333"

    struct World {
        let database: TestDatabase
        let simulator: SimulatedWeChatPay
        let server: SimulatorServer
        let client: WeChatPayClient
        let reaper: Reaper
        let clock: TestClock

        static func make() async throws -> World {
            let database = try await TestDatabase.make()
            let simulator = try SimulatedWeChatPay(
                keys: [Fixtures.mchID: Fixtures.key],
                v3Merchants: [v3MchID: try _RSA.Signing.PublicKey(pemRepresentation: V3TestKeys.merchantPublicKey)])
            let server = try await SimulatorServer.start(simulator, host: "127.0.0.1", port: 0)
            let v3 = try V3Credentials(
                mchID: v3MchID, serialNo: V3TestKeys.merchantSerialNo, privateKeyPEM: V3TestKeys.merchantPrivateKey,
                wechatpayPublicKeyPEM: simulator.wechatpayPublicKeyPEM,
                wechatpayPublicKeyID: SimulatedWeChatPay.wechatpayPublicKeyID)
            var configuration = Fixtures.configuration(database: database.path, baseURL: server.baseURL)
            configuration.merchants.append(.init(mchID: v3MchID, credentials: .v3(v3), keySource: "test"))
            let client = WeChatPayClient(baseURL: server.baseURL, timeoutSeconds: 2, maxConnections: 16)
            let clock = TestClock()
            let reaper = Reaper(
                configuration: configuration, store: database.store, client: client, logger: Fixtures.quietLogger,
                clock: clock)
            return World(database: database, simulator: simulator, server: server, client: client, reaper: reaper, clock: clock)
        }

        func insert(_ number: String, subMchID: String? = nil) throws {
            try database.insert(number, mchID: V3EndToEndTests.v3MchID, subMchID: subMchID)
        }

        func tearDown() async {
            await client.shutdown()
            try? await server.stop()
            database.remove()
        }
    }

    @Test func aV3OrderIsClosedWithASignedRequestAndAVerifiedAnswer() async throws {
        let world = try await World.make()
        defer { Task { await world.tearDown() } }
        try world.insert("V3CLOSE0001")
        try await world.reaper.runOnce()
        let row = try #require(try await world.database.order("V3CLOSE0001"))
        #expect(row.state == .closed)
        #expect(world.simulator.stats.closeCalls["V3CLOSE0001"] == 1)
        #expect(world.simulator.stats.badSignatures == 0)
        #expect(world.simulator.stats.lastCloseRequests["V3CLOSE0001"]?["mchid"] == V3EndToEndTests.v3MchID)
    }

    @Test(arguments: [
        ("SUCCESS", "paid", "ORDERPAID" as String?), ("CLOSED", "closed", "ORDER_CLOSED"),
        ("(nonexistent)", "closed", "ORDERNOTEXIST"),
    ])
    func eachV3AnswerEndsInItsState(tradeState: String, state: String, errCode: String?) async throws {
        let world = try await World.make()
        defer { Task { await world.tearDown() } }
        try world.insert("V3STATE0001")
        world.simulator.setTradeState(tradeState, for: "V3STATE0001")
        try await world.reaper.runOnce()
        let row = try #require(try await world.database.order("V3STATE0001"))
        #expect(row.state?.rawValue == state)
        #expect(row.errCode == errCode)
        if state == "paid" {
            #expect(row.transactionID?.hasPrefix("4200") == true)
            #expect(row.totalFee == 101)
        }
    }

    @Test func aPayingUserIsNeverClosedUnder() async throws {
        let world = try await World.make()
        defer { Task { await world.tearDown() } }
        try world.insert("V3PAYING001")
        world.simulator.markPaying("V3PAYING001")
        try await world.reaper.runOnce()
        let waiting = try #require(try await world.database.order("V3PAYING001"))
        #expect(waiting.state == .pending)
        #expect(waiting.tradeState == "USERPAYING")
        world.simulator.setTradeState("NOTPAY", for: "V3PAYING001")
        world.clock.advance(by: 120)
        try await world.reaper.runOnce()
        #expect(try await world.database.order("V3PAYING001")?.state == .closed)
        let calls = try await world.database.history("V3PAYING001").map {
            "\($0.call?.rawValue ?? "-"):\($0.outcome?.rawValue ?? "?")"
        }
        #expect(calls == ["closeorder:paying", "orderquery:paying", "orderquery:not_paid", "closeorder:closed"])
    }

    @Test(arguments: [SimulatedFault.forgedSign, .forgedPaid, .unsignedSuccess, .http500, .frequencyLimited])
    func untrustedOrFailedV3AnswersAreRetried(fault: SimulatedFault) async throws {
        let world = try await World.make()
        defer { Task { await world.tearDown() } }
        try world.insert("V3FAULT0001")
        world.simulator.setFault(FaultPlan(fault, times: 1), for: "V3FAULT0001")
        try await world.reaper.runOnce()
        let row = try #require(try await world.database.order("V3FAULT0001"))
        #expect(row.state == .pending, "\(row.lastError ?? "")")
        world.clock.advance(by: 10)
        try await world.reaper.runOnce()
        #expect(try await world.database.order("V3FAULT0001")?.state == .closed)
    }

    @Test func serviceProviderOrdersUseThePartnerPath() async throws {
        let world = try await World.make()
        defer { Task { await world.tearDown() } }
        try world.insert("V3PARTNER01", subMchID: "1900000444")
        try await world.reaper.runOnce()
        #expect(try await world.database.order("V3PARTNER01")?.state == .closed)
        let sent = try #require(world.simulator.stats.lastCloseRequests["V3PARTNER01"])
        #expect(sent["path"] == "/v3/pay/partner/transactions/out-trade-no/V3PARTNER01/close")
        #expect(sent["sp_mchid"] == V3EndToEndTests.v3MchID)
        #expect(sent["sub_mchid"] == "1900000444")
    }

    @Test func aV3OrderNumberWithV2OnlyCharactersFailsWithoutACall() async throws {
        let world = try await World.make()
        defer { Task { await world.tearDown() } }
        try world.insert("V3|PIPE001")
        try await world.reaper.runOnce()
        let row = try #require(try await world.database.order("V3|PIPE001"))
        #expect(row.state == .failed)
        #expect(row.lastError?.contains("API v3") == true)
        #expect(world.simulator.stats.requests == 0)
    }

    @Test func aV2AndAV3MerchantShareOneDaemonAndOneDatabase() async throws {
        let world = try await World.make()
        defer { Task { await world.tearDown() } }
        try world.database.insert("V2ORDER0001")
        try world.insert("V3ORDER0001")
        #expect(try await world.reaper.runOnce() == 2)
        #expect(try await world.database.order("V2ORDER0001")?.state == .closed)
        #expect(try await world.database.order("V3ORDER0001")?.state == .closed)
        #expect(world.simulator.stats.lastCloseRequests["V2ORDER0001"]?["sign_type"] == "HMAC-SHA256")
        #expect(world.simulator.stats.lastCloseRequests["V3ORDER0001"]?["path"] != nil)
    }
}
