import Clocks
import ConfigurationFile
import Foundation
import OrderStore
import Reaper
import Simulator
import TestSupport
import Testing
import WeChatPay
import WeChatPayHTTP

/// A reaper, a simulator on loopback and a real database, wired for one test.
struct ReaperWorld {
    let database: TestDatabase
    let simulator: TestSimulator
    let client: WeChatPayClient
    let reaper: Reaper
    let clock: TestClock

    static func make(
        behaviour: SimulatorBehaviour = SimulatorBehaviour(), timeoutSeconds: Double = 2, maxAttempts: Int = 10,
        signType: SignType = .hmacSHA256, confirm: DaemonConfiguration.ConfirmMode = .none,
        backupBaseURL: String? = nil, probeIntervalSeconds: Double = 30, maxRequestsPerSecond: Double? = nil,
        breaker: OutageBreaker = OutageBreaker(), runningClock: Bool = false, concurrency: Int? = nil,
        hostClock: any DaemonClock = SystemClock()
    ) async throws -> ReaperWorld {
        let database = try await TestDatabase.make()
        let simulator = try await TestSimulator.start(behaviour: behaviour)
        var settings = Fixtures.reaperSettings(maxAttempts: maxAttempts)
        if let concurrency { settings.concurrency = concurrency }
        settings.leaseSeconds = Int64(timeoutSeconds) + 30
        settings.confirm = confirm
        var configuration = Fixtures.configuration(
            database: database.path, baseURL: simulator.baseURL, timeoutSeconds: timeoutSeconds, reaper: settings,
            signType: signType)
        configuration.merchants[0].maxRequestsPerSecond = maxRequestsPerSecond
        let client = WeChatPayClient(
            baseURL: simulator.baseURL, backupBaseURL: backupBaseURL, timeoutSeconds: timeoutSeconds, maxConnections: 16,
            probeIntervalSeconds: probeIntervalSeconds, clock: hostClock)
        let clock = TestClock(running: runningClock)
        let reaper = Reaper(
            configuration: configuration, store: database.store, client: client, logger: Fixtures.quietLogger,
            breaker: breaker, clock: clock)
        return ReaperWorld(database: database, simulator: simulator, client: client, reaper: reaper, clock: clock)
    }

    func tearDown() async {
        await client.shutdown()
        await simulator.stop()
        database.remove()
    }

    var stats: SimulatorStats { simulator.simulator.stats }

    /// Leaves the row a process leaves when it dies mid-call: `closing` under an expired lease.
    func crashMidCall(_ outTradeNo: String) throws {
        try database.insert(outTradeNo)
        try database.app.write { db in
            try db.execute(
                sql: """
                    UPDATE orders SET state = 'closing', attempts = 1, lease_token = 'dead', lease_expires_at = unixepoch() - 1
                     WHERE out_trade_no = ?
                    """, arguments: [outTradeNo])
        }
    }
}

/// The reaper's clock in end-to-end tests. Row time is stopped at the time the test began
/// (so that a slow machine cannot make a backoff run out between two steps of a test) and
/// moved only by `advance`; `running: true` lets it follow the wall clock, for tests of the
/// daemon loop itself. Monotonic time and sleeps stay real: the world's calls go over real
/// loopback HTTP. (Timing logic without I/O is tested on `ManualClock` instead.)
final class TestClock: DaemonClock, @unchecked Sendable {
    private let lock = NSLock()
    private let start = Int64(Date().timeIntervalSince1970)
    private let running: Bool
    private var offset: Int64 = 0

    init(running: Bool = false) { self.running = running }

    var secondsSince1970: Int64 {
        lock.withLock { (running ? Int64(Date().timeIntervalSince1970) : start) + offset }
    }

    var now: ContinuousClock.Instant { .now }

    func sleep(until deadline: ContinuousClock.Instant) async throws {
        try await Task.sleep(until: deadline, clock: .continuous)
    }

    func advance(by seconds: Int64) { lock.withLock { offset += seconds } }
}

@Suite struct ReaperOutcomeTests {
    @Test(arguments: SignType.allCases)
    func aDueOrderIsClosed(signType: SignType) async throws {
        let world = try await ReaperWorld.make(signType: signType)
        defer { Task { await world.tearDown() } }
        try world.database.insert("CLOSEME0001")
        #expect(try await world.reaper.runOnce() == 1)
        let row = try #require(try await world.database.order("CLOSEME0001"))
        #expect(row.state == .closed)
        #expect(row.closedAt != nil)
        #expect(row.attempts == 1)
        #expect(world.stats.closeCalls["CLOSEME0001"] == 1)
        #expect(world.stats.lastCloseRequests["CLOSEME0001"]?["sign_type"] == signType.rawValue)
        let history = try await world.database.history("CLOSEME0001")
        #expect(history.map(\.outcome) == [.closed])
        #expect(history.first?.httpStatus == 200)
    }

    @Test func aPaidOrderIsMarkedPaidAndNeverClosed() async throws {
        let world = try await ReaperWorld.make()
        defer { Task { await world.tearDown() } }
        try world.database.insert("PAIDORDER01")
        world.simulator.simulator.markPaid("PAIDORDER01")
        try await world.reaper.runOnce()
        let row = try #require(try await world.database.order("PAIDORDER01"))
        #expect(row.state == .paid)
        #expect(row.errCode == "ORDERPAID")
        #expect(row.closedAt == nil)
        #expect(world.stats.tradeStates["PAIDORDER01"] == "SUCCESS")
        world.clock.advance(by: 100_000)
        try await world.reaper.runOnce()
        #expect(world.stats.closeCalls["PAIDORDER01"] == 1, "a paid order is never retried")
    }

    @Test func anAlreadyClosedOrderIsMarkedClosed() async throws {
        let world = try await ReaperWorld.make()
        defer { Task { await world.tearDown() } }
        try world.database.insert("CLOSEDALRDY")
        world.simulator.simulator.markClosed("CLOSEDALRDY")
        try await world.reaper.runOnce()
        let row = try #require(try await world.database.order("CLOSEDALRDY"))
        #expect(row.state == .closed)
        #expect(row.errCode == "ORDERCLOSED")
    }

    /// Each fault ends in its documented state, with its err_code.
    @Test(arguments: [
        (SimulatedFault.systemError, OrderState.pending, "SYSTEMERROR" as String?),
        (.frequencyLimited, .pending, "FREQUENCY_LIMITED"),
        (.returnFail, .pending, nil),
        (.http500, .pending, nil), (.http502, .pending, nil), (.http503, .pending, nil),
        (.hang, .pending, nil), (.drop, .pending, nil), (.truncated, .pending, nil),
        (.forgedSign, .pending, nil), (.forgedPaid, .pending, nil), (.unsignedSuccess, .pending, nil),
        (.doctype, .pending, nil), (.billionLaughs, .pending, nil), (.huge, .pending, nil), (.invalidUTF8, .pending, nil),
        (.signError, .failed, "SIGNERROR"), (.xmlFormatError, .failed, "XML_FORMAT_ERROR"),
        (.requirePostMethod, .failed, "REQUIRE_POST_METHOD"), (.unknownErrCode, .failed, "BRAND_NEW_ERROR"),
    ])
    func eachFaultEndsInItsDocumentedState(fault: SimulatedFault, state: OrderState, errCode: String?) async throws {
        // Only a call that is never answered needs the timeout to end it: the others get one
        // no loaded machine runs into.
        let world = try await ReaperWorld.make(timeoutSeconds: fault == .hang ? 1 : 30)
        defer { Task { await world.tearDown() } }
        try world.database.insert("FAULTY00001")
        world.simulator.simulator.setFault(FaultPlan(fault), for: "FAULTY00001")
        try await world.reaper.runOnce()
        let row = try #require(try await world.database.order("FAULTY00001"))
        #expect(row.state == state)
        #expect(row.errCode == errCode)
        #expect(row.lastError?.isEmpty == false)
        if state == .pending {
            #expect(row.nextAttemptAt != nil)
            #expect(row.closedAt == nil)
        }
        #expect(try await world.database.history("FAULTY00001").count == 1)
    }

    @Test func retriesBackOffAndStopAtMaxAttempts() async throws {
        let world = try await ReaperWorld.make(maxAttempts: 3)
        defer { Task { await world.tearDown() } }
        try world.database.insert("ALWAYSBUSY1")
        world.simulator.simulator.setFault(FaultPlan(.systemError), for: "ALWAYSBUSY1")
        let backoff = Backoff(baseSeconds: 1, maxSeconds: 2)
        for attempt in 1...3 {
            let before = world.clock.secondsSince1970
            try await world.reaper.runOnce()
            let after = world.clock.secondsSince1970
            let row = try #require(try await world.database.order("ALWAYSBUSY1"))
            #expect(row.attempts == attempt)
            if attempt < 3 {
                #expect(row.state == .pending)
                let next = try #require(row.nextAttemptAt)
                #expect(next - before >= 1, "at least a second later")
                #expect(next - after <= Int64(backoff.cap(afterAttempt: attempt).rounded(.up)), "within the backoff cap")
                try await world.reaper.runOnce()
                #expect(world.stats.requests == attempt, "not called again before its backoff ends")
                world.clock.advance(by: 10)
            } else {
                #expect(row.state == .failed)
                #expect(row.errCode == "SYSTEMERROR")
                #expect(row.lastError?.contains("gave up") == true)
            }
        }
        world.clock.advance(by: 10_000)
        try await world.reaper.runOnce()
        // The last attempt asks for the order's state first; that query failed too, so no close was sent.
        #expect(world.stats.closeCalls["ALWAYSBUSY1"] == 2)
        #expect(world.stats.queryCalls["ALWAYSBUSY1"] == 1)
        let history = try await world.database.history("ALWAYSBUSY1")
        #expect(history.map(\.outcome) == [.retry, .retry, .retry])
        #expect(history.map(\.call) == [.closeorder, .closeorder, .orderquery])
    }

    @Test func aTransientErrorIsRetriedThenClosed() async throws {
        let world = try await ReaperWorld.make()
        defer { Task { await world.tearDown() } }
        try world.database.insert("TRANSIENT01")
        world.simulator.simulator.setFault(FaultPlan(.http503, times: 1), for: "TRANSIENT01")
        try await world.reaper.runOnce()
        world.clock.advance(by: 10)
        try await world.reaper.runOnce()
        let row = try #require(try await world.database.order("TRANSIENT01"))
        #expect(row.state == .closed)
        #expect(row.attempts == 2)
        #expect(try await world.database.history("TRANSIENT01").map(\.httpStatus) == [503, 200])
    }

    @Test func ordersTooYoungOrBeforeTheirDeadlineAreNeverSent() async throws {
        let world = try await ReaperWorld.make()
        defer { Task { await world.tearDown() } }
        try world.database.insert("YOUNGORDER1", createdAgo: 200, expiresIn: -100)
        try world.database.insert("NOTDUEYET01", createdAgo: 1000, expiresIn: 300)
        try world.database.insert("NULLDEADLN1", createdAgo: 7000, expiresIn: nil)
        #expect(try await world.reaper.runOnce() == 0)
        #expect(world.stats.requests == 0)
        for number in ["YOUNGORDER1", "NOTDUEYET01", "NULLDEADLN1"] {
            #expect(try await world.database.order(number)?.state == .pending)
        }
    }

    @Test(arguments: [
        ("bad<order>", Fixtures.appid, Fixtures.mchID, "out_trade_no"),
        ("a&b]]>cdef", Fixtures.appid, Fixtures.mchID, "out_trade_no"),
        ("12345", Fixtures.appid, Fixtures.mchID, "6 to 32"),
        (String(repeating: "9", count: 33), Fixtures.appid, Fixtures.mchID, "6 to 32"),
        ("EMPTYAPPID1", "", Fixtures.mchID, "appid is empty"),
        ("UNKNOWNMCH1", Fixtures.appid, "1999999999", "no key is configured for mch_id 1999999999"),
        ("EMPTYMCHID1", Fixtures.appid, "", "mch_id is empty"),
    ])
    func badRowsFailWithoutACall(number: String, appid: String, mchID: String, reason: String) async throws {
        let world = try await ReaperWorld.make()
        defer { Task { await world.tearDown() } }
        try world.database.insert(number, mchID: mchID, appid: appid)
        try world.database.insert("GOODNEIGHBR")
        #expect(try await world.reaper.runOnce() == 2)
        let row = try #require(try await world.database.order(number))
        #expect(row.state == .failed)
        #expect(row.lastError?.contains(reason) == true, "\(row.lastError ?? "nil")")
        #expect(world.stats.requests == 1, "only the good row is sent")
        #expect(try await world.database.order("GOODNEIGHBR")?.state == .closed, "a bad row fails alone")
    }

    @Test func serviceProviderFieldsAreSentAndSigned() async throws {
        let world = try await ReaperWorld.make()
        defer { Task { await world.tearDown() } }
        try world.database.insert("SUBMERCHNT1", subMchID: "1900000110", subAppID: "wx9999999999999999")
        try await world.reaper.runOnce()
        #expect(try await world.database.order("SUBMERCHNT1")?.state == .closed)
        let sent = try #require(world.stats.lastCloseRequests["SUBMERCHNT1"])
        #expect(sent["sub_mch_id"] == "1900000110")
        #expect(sent["sub_appid"] == "wx9999999999999999")
        #expect(world.stats.badSignatures == 0, "the simulator verified the signature over every field")
    }

    @Test func manyOrdersAreClosedConcurrently() async throws {
        let world = try await ReaperWorld.make(behaviour: SimulatorBehaviour(latencyMilliseconds: 100))
        defer { Task { await world.tearDown() } }
        for index in 0..<64 { try world.database.insert("BULK\(100_000 + index)") }
        #expect(try await world.reaper.runOnce() == 64)
        let summary = try await world.database.store.summary(
            now: world.clock.secondsSince1970, policy: DuePolicy(minOrderAgeSeconds: 300, paymentTimeoutSeconds: 7200))
        #expect(summary.countsByState["closed"] == 64)
        // Calls overlap, and never more than `concurrency` (16) at once.
        #expect(world.stats.maxConcurrentCalls > 1, "calls ran concurrently")
        #expect(world.stats.maxConcurrentCalls <= 16, "at most concurrency calls in flight")
    }
}
