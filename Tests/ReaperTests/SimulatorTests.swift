import ConfigurationFile
import Foundation
import NIOCore
import NIOPosix
import Reaper
import Simulator
import TestSupport
import Testing
import WeChatPay
import WeChatPayHTTP
import _CryptoExtras

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// The simulator as merchants run it in their CI, for days: bounded memory, a reset, and
/// API v3 requests refused the way WeChat Pay refuses them.
@Suite struct SimulatorTests {
    func signedClose(_ number: String) -> [UInt8] {
        let order = OrderIdentity(appid: Fixtures.appid, mchID: Fixtures.mchID, outTradeNo: number)
        return Array(V2Request.body(for: order, key: Fixtures.key, signType: .hmacSHA256).utf8)
    }

    @Test func itsStatisticsStayBoundedAndCanBeReset() throws {
        let simulator = try SimulatedWeChatPay(
            keys: [Fixtures.mchID: Fixtures.key], limits: SimulatorMemoryLimits(orders: 100, callTimes: 50))
        for index in 0..<1000 {
            _ = simulator.reply(method: "POST", path: "/pay/closeorder", body: signedClose("BOUNDED\(10_000 + index)"))
        }
        let stats = simulator.stats
        #expect(stats.closeCalls.count == 100, "the latest 100 orders")
        #expect(stats.closeCalls["BOUNDED10999"] == 1 && stats.closeCalls["BOUNDED10000"] == nil)
        #expect(stats.tradeStates.count == 100)
        #expect(stats.callTimes.count < 100)
        #expect(stats.requests == 1000, "counters still count everything")

        #expect(
            simulator.reply(method: "POST", path: "/_sim/reset", body: [])
                == .respond(status: 200, body: Array("statistics reset\n".utf8), afterMilliseconds: 0))
        #expect(simulator.stats.closeCalls.isEmpty && simulator.stats.callTimes.isEmpty)
        #expect(simulator.stats.tradeStates["BOUNDED10999"] == "CLOSED", "the orders' states are kept")
    }

    @Test func aV3RequestWithAStaleTimestampOrAReusedNonceIsRefused() throws {
        let merchantKey = try _RSA.Signing.PublicKey(pemRepresentation: V3TestKeys.merchantPublicKey)
        let simulator = try SimulatedWeChatPay(keys: [:], v3Merchants: [Fixtures.mchID: merchantKey])
        let credentials = V3TestKeys.credentials
        let request = V3Request.close(OrderIdentity(appid: Fixtures.appid, mchID: Fixtures.mchID, outTradeNo: "V3REPLAY001"))
        func send(timestamp: Int64, nonce: String) throws -> Int {
            let authorization = try request.authorization(credentials: credentials, timestamp: timestamp, nonce: nonce)
            let reply = simulator.reply(
                method: "POST", path: request.pathAndQuery, body: Array(request.body.utf8), uri: request.pathAndQuery,
                headers: ["authorization": authorization])
            guard case .respondWithHeaders(let status, _, _, _) = reply else { return 0 }
            return status
        }
        let now = Int64(Date().timeIntervalSince1970)
        #expect(try send(timestamp: now - 301, nonce: "STALE0000000000000000000000000001") == 401)
        #expect(try send(timestamp: now + 400, nonce: "FUTURE000000000000000000000000001") == 401)
        #expect(try send(timestamp: now, nonce: "FRESH0000000000000000000000000001") == 204)
        #expect(try send(timestamp: now, nonce: "FRESH0000000000000000000000000001") == 401, "a replay is refused")
        #expect(simulator.stats.closeCalls["V3REPLAY001"] == 1)
    }

    @Test func aConnectionThatSendsNothingIsClosed() async throws {
        let simulator = try SimulatedWeChatPay(keys: [Fixtures.mchID: Fixtures.key])
        let server = try await SimulatorServer.start(simulator, host: "127.0.0.1", port: 0, idleTimeout: .milliseconds(300))
        defer { Task { try? await server.stop() } }
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: server.port).get()
        let closed = Task { try await channel.closeFuture.get() }
        try await DaemonProcess.waitUntil(timeout: 5, "the server closed the idle connection") { !channel.isActive }
        try await closed.value
    }

    /// How a merchant calls: its keys, and keys the simulator does not know it by.
    enum API: String, CaseIterable, Sendable {
        case v2, v3

        func credentials(signedCorrectly: Bool) throws -> DaemonConfiguration.Merchant.Credentials {
            switch self {
            case .v2:
                return .v2(
                    key: signedCorrectly ? Fixtures.key : try MerchantKey(String(repeating: "0", count: 32)),
                    signType: .hmacSHA256)
            case .v3:
                return .v3(
                    try V3Credentials(
                        mchID: Fixtures.mchID, serialNo: V3TestKeys.merchantSerialNo,
                        privateKeyPEM: signedCorrectly ? V3TestKeys.merchantPrivateKey : V3TestKeys.wechatpayPrivateKey,
                        wechatpayPublicKeyPEM: V3TestKeys.wechatpayPublicKey, wechatpayPublicKeyID: "PUB_KEY_ID_TEST"))
            }
        }
    }

    /// A simulator that knows the test merchant on v2 and v3, on a free port, and a client for it.
    static func bothAPIs() async throws -> (SimulatedWeChatPay, SimulatorServer, WeChatPayClient) {
        let merchantKey = try _RSA.Signing.PublicKey(pemRepresentation: V3TestKeys.merchantPublicKey)
        let simulator = try SimulatedWeChatPay(keys: [Fixtures.mchID: Fixtures.key], v3Merchants: [Fixtures.mchID: merchantKey])
        let server = try await SimulatorServer.start(simulator, host: "127.0.0.1", port: 0)
        let client = WeChatPayClient(baseURL: server.baseURL, timeoutSeconds: 60, maxConnections: 4)
        return (simulator, server, client)
    }

    /// `max_concurrent_calls_per_order` counts calls still waiting for their answer: a call
    /// that the simulator refused (a bad signature) was never counted, so its answer must not
    /// end the count of another call for the same order.
    @Test(arguments: API.allCases)
    func aRefusedCallDoesNotEndTheInFlightCountOfAnother(_ api: API) async throws {
        let (simulator, server, client) = try await Self.bothAPIs()
        defer {
            Task { try? await server.stop() }
            Task { await client.shutdown() }
        }
        let order = OrderIdentity(appid: Fixtures.appid, mchID: Fixtures.mchID, outTradeNo: "INFLIGHT\(api.rawValue)01")
        simulator.setFault(FaultPlan(.hang, times: 1), for: order.outTradeNo)

        let hanging = Task { await client.close(order, credentials: try api.credentials(signedCorrectly: true)) }
        defer { hanging.cancel() }
        try await DaemonProcess.waitUntil(timeout: 30, "the first call arrived") {
            simulator.stats.closeCalls[order.outTradeNo] == 1
        }
        _ = await client.close(order, credentials: try api.credentials(signedCorrectly: false))
        #expect(simulator.stats.badSignatures == 1)
        _ = await client.close(order, credentials: try api.credentials(signedCorrectly: true))
        #expect(simulator.stats.closeCalls[order.outTradeNo] == 2)
        #expect(simulator.stats.maxConcurrentCallsPerOrder == 2, "the first call still hangs")
    }

    /// Sequential calls, each answered before the next: never more than one in flight.
    @Test(arguments: API.allCases)
    func anAnsweredCallIsNoLongerInFlight(_ api: API) async throws {
        let (simulator, server, client) = try await Self.bothAPIs()
        defer {
            Task { try? await server.stop() }
            Task { await client.shutdown() }
        }
        for index in 0..<3 {
            let order = OrderIdentity(appid: Fixtures.appid, mchID: Fixtures.mchID, outTradeNo: "ONEBYONE\(api.rawValue)\(index)")
            _ = await client.close(order, credentials: try api.credentials(signedCorrectly: true))
            _ = await client.close(order, credentials: try api.credentials(signedCorrectly: false))
        }
        #expect(simulator.stats.closeCalls.count == 3)
        #expect(simulator.stats.maxConcurrentCalls == 1)
    }

    /// `POST /_sim/hold` and `POST /_sim/release`, as a merchant's CI would send them.
    func control(_ path: String, on server: SimulatorServer) async throws -> String {
        var request = URLRequest(url: try #require(URL(string: server.baseURL + path)))
        request.httpMethod = path == "/_sim/stats" ? "GET" : "POST"
        let (data, _) = try await URLSession.shared.data(for: request)
        return String(decoding: data, as: UTF8.self)
    }

    @Test func heldAnswersKeepCallsInFlightUntilReleased() async throws {
        let world = try await ReaperWorld.make(timeoutSeconds: 120)
        defer { Task { await world.tearDown() } }
        let server = world.simulator.server
        #expect(try await control("/_sim/hold", on: server) == "holding answers\n")
        for index in 0..<3 { try world.database.insert("HELDANSWER\(index)") }
        let pass = Task { try await world.reaper.runOnce() }
        try await DaemonProcess.waitUntil(timeout: 60, "the three calls arrived") { world.simulator.simulator.heldAnswers == 3 }
        #expect(try await control("/_sim/stats", on: server).contains("HELDANSWER2"), "its own endpoints still answer")
        #expect(try await world.database.store.orders(inState: .closing, limit: 10).count == 3, "the calls are in flight")
        #expect(try await control("/_sim/release", on: server) == "released 3 answers\n")
        #expect(try await pass.value == 3)
        #expect(try await world.database.store.orders(inState: .closed, limit: 10).count == 3)
        try world.database.insert("NOTHELD0001")
        try await world.reaper.runOnce()
        #expect(try await world.database.order("NOTHELD0001")?.state == .closed, "answers flow again")
    }
}
