import Foundation
import OrderStore
import Reaper
import Simulator
import TestSupport
import Testing
import WeChatPay

/// The backup domain, the outage breaker and per-merchant rate limits, against simulators on loopback.
@Suite struct AvailabilityTests {
    @Test func aPrimaryThatRefusesConnectionsFailsOverToTheBackupAndBack() async throws {
        let backup = try await TestSimulator.start()
        defer { Task { await backup.stop() } }
        let world = try await ReaperWorld.make(backupBaseURL: backup.baseURL, probeIntervalSeconds: 0.3)
        defer { Task { await world.tearDown() } }
        let primaryPort = world.simulator.server.port
        try await world.simulator.server.stop()
        let downPort = try ReservedPort(primaryPort)

        try world.database.insert("PRIMARYDOWN")
        try await world.reaper.runOnce()
        #expect(try await world.database.order("PRIMARYDOWN")?.state == .closed, "closed in the same attempt, by the backup")
        #expect(try await world.database.history("PRIMARYDOWN").map(\.host) == [backup.baseURL])
        #expect(backup.simulator.stats.closeCalls["PRIMARYDOWN"] == 1)

        try world.database.insert("STILLDOWN01")
        try await world.reaper.runOnce()
        #expect(try await world.database.history("STILLDOWN01").map(\.host) == [backup.baseURL])

        // The primary comes back; after the probe interval a call goes there and, answered, stays there.
        downPort.release()
        let primary = try await SimulatorServer.start(world.simulator.simulator, host: "127.0.0.1", port: primaryPort)
        defer { Task { try? await primary.stop() } }
        try await Task.sleep(for: .milliseconds(400))
        for number in ["PRIMARYBAK1", "PRIMARYBAK2"] {
            try world.database.insert(number)
            try await world.reaper.runOnce()
            #expect(try await world.database.history(number).map(\.host) == [primary.baseURL])
        }
        #expect(world.client.hosts.onBackup == false)
    }

    @Test func aServerErrorFromThePrimaryIsRetriedOnTheBackup() async throws {
        let backup = try await TestSimulator.start()
        defer { Task { await backup.stop() } }
        let world = try await ReaperWorld.make(backupBaseURL: backup.baseURL)
        defer { Task { await world.tearDown() } }
        try world.database.insert("PRIMARY5XX1")
        world.simulator.simulator.setFault(FaultPlan(.http502, times: 1), for: "PRIMARY5XX1")
        try await world.reaper.runOnce()
        let row = try #require(try await world.database.order("PRIMARY5XX1"))
        #expect(row.state == .closed)
        #expect(row.attempts == 1)
        #expect(world.stats.closeCalls["PRIMARY5XX1"] == 1)
        #expect(backup.simulator.stats.closeCalls["PRIMARY5XX1"] == 1)
    }

    @Test func aBusinessErrorIsNotSentToTheBackup() async throws {
        let backup = try await TestSimulator.start()
        defer { Task { await backup.stop() } }
        let world = try await ReaperWorld.make(backupBaseURL: backup.baseURL)
        defer { Task { await world.tearDown() } }
        try world.database.insert("SYSERRONLY1")
        world.simulator.simulator.setFault(FaultPlan(.systemError, times: 1), for: "SYSERRONLY1")
        try await world.reaper.runOnce()
        #expect(try await world.database.order("SYSERRONLY1")?.state == .pending)
        #expect(backup.simulator.stats.requests == 0)
    }

    /// WeChat Pay down for longer than `max_attempts × backoff_max_seconds`, then back: no order fails.
    @Test func anOutageLongerThanTheRetryBudgetFailsNoOrder() async throws {
        let breaker = OutageBreaker(firstProbeDelay: .milliseconds(300), maximumProbeDelay: .seconds(1))
        let world = try await ReaperWorld.make(timeoutSeconds: 1, maxAttempts: 3, breaker: breaker, runningClock: true)
        defer { Task { await world.tearDown() } }
        let port = world.simulator.server.port
        try await world.simulator.server.stop()
        let downPort = try ReservedPort(port)
        for index in 0..<30 { try world.database.insert("OUTAGE\(10_000 + index)") }

        let daemon = Task { try await world.reaper.run() }
        defer { daemon.cancel() }
        // Down for 8 s: with max_attempts 3 and backoff_max 2 s, every order's budget would be spent thrice over.
        // The breaker's own count, not a sample taken by this test's task, which a loaded machine
        // can starve for seconds.
        try await Task.sleep(for: .seconds(8))
        let sawOpen = breaker.timesOpened > 0
        downPort.release()
        let restarted = try await SimulatorServer.start(world.simulator.simulator, host: "127.0.0.1", port: port)
        defer { Task { try? await restarted.stop() } }
        try await DaemonProcess.waitUntil(timeout: 60, "every order is closed or failed") {
            let closed = try await world.database.store.orders(inState: .closed, limit: 100).count
            let failed = try await world.database.store.orders(inState: .failed, limit: 100).count
            return closed + failed == 30
        }
        daemon.cancel()
        #expect(sawOpen, "the breaker opened during the outage")
        #expect(try await world.database.store.orders(inState: .failed, limit: 100).isEmpty)
        let calls = try await world.database.store.summary(
            now: world.clock.secondsSince1970, policy: DuePolicy(minOrderAgeSeconds: 300, paymentTimeoutSeconds: 7200))
        #expect(calls.countsByState["closed"] == 30)
        #expect(!breaker.isOpen)
    }

    @Test func theBreakerOpensOnMostlyOutageFailuresAndClosesOnAnyAnswer() {
        let breaker = OutageBreaker(window: 10, minimumCalls: 5, openRatio: 0.8, firstProbeDelay: .seconds(1))
        let start = ContinuousClock.now
        for _ in 0..<4 { breaker.record(outageFailure: true, now: start) }
        #expect(!breaker.isOpen, "too few calls to judge")
        breaker.record(outageFailure: true, now: start)
        #expect(breaker.isOpen)
        #expect(breaker.permission(now: start) == .waitUntil(start + .seconds(1)))
        #expect(breaker.permission(now: start + .seconds(1)) == .probe)
        breaker.record(outageFailure: true, now: start + .seconds(1))
        #expect(breaker.permission(now: start + .seconds(2)) == .waitUntil(start + .seconds(3)), "the probe interval doubles")
        #expect(breaker.permission(now: start + .seconds(3)) == .probe)
        breaker.record(outageFailure: false, now: start + .seconds(3))
        #expect(!breaker.isOpen)
        #expect(breaker.permission(now: start + .seconds(3)) == .claim)
    }

    @Test func mostlySuccessfulCallsKeepTheBreakerClosed() {
        let breaker = OutageBreaker(window: 10, minimumCalls: 5, openRatio: 0.8)
        for index in 0..<100 { breaker.record(outageFailure: index % 3 != 0) }
        #expect(!breaker.isOpen)
    }

    @Test func aMerchantsRateLimitHoldsAcrossAllWorkers() async throws {
        let world = try await ReaperWorld.make(maxRequestsPerSecond: 10)
        defer { Task { await world.tearDown() } }
        for index in 0..<25 { try world.database.insert("RATED\(10_000 + index)") }
        try await world.reaper.runOnce()
        #expect(try await world.database.store.orders(inState: .closed, limit: 100).count == 25)
        let times = world.stats.callTimes.sorted()
        #expect(times.count == 25)
        // The limiter lets calls out at least 100 ms apart: after the first call (which also
        // opens the connection), 24 calls span 2.3 s at the simulator, less scheduling jitter
        // between the limiter and the server (up to 300 ms allowed here on a loaded machine;
        // without the limit they would all arrive within a few milliseconds).
        let span = try #require(times.last) - times[1]
        #expect(span >= 2.0, "24 calls arrived within \(span) s")
        // Within any one second, 10 calls plus some for scheduling jitter between the limiter
        // and the server's clock: on this 2-core machine under the full suite, calls released
        // 100 ms apart were seen to arrive bunched, 14 in one second. Without the limit all 25
        // arrive within milliseconds.
        let busiest = times.indices.map { start in times[start...].prefix { $0 < times[start] + 1 }.count }.max() ?? 0
        #expect(busiest <= 16, "busiest second had \(busiest) calls")
    }

    @Test func frequencyLimitedHalvesTheRateAndItRecoversGradually() async throws {
        let limiter = MerchantRateLimiter(recoveryInterval: .milliseconds(100), unlimitedAbove: 50)
        limiter.configure(["LIMITED": 40, "UNLIMITED": nil])
        limiter.throttled("LIMITED")
        #expect(limiter.currentRate("LIMITED") == 20)
        try await Task.sleep(for: .milliseconds(120))
        await limiter.acquire("LIMITED")
        #expect(limiter.currentRate("LIMITED") == 30)
        try await Task.sleep(for: .milliseconds(120))
        await limiter.acquire("LIMITED")
        #expect(limiter.currentRate("LIMITED") == 40, "back at the configured limit, never above it")

        for _ in 0..<8 { await limiter.acquire("UNLIMITED") }
        #expect(limiter.currentRate("UNLIMITED") == nil)
        limiter.throttled("UNLIMITED")
        #expect(limiter.currentRate("UNLIMITED") == 4, "half of the 8 calls made in the last second")
        for _ in 0..<10 {
            try await Task.sleep(for: .milliseconds(110))
            await limiter.acquire("UNLIMITED")
        }
        #expect(limiter.currentRate("UNLIMITED") == nil, "lifted again once past the ceiling")
    }

    @Test func aFrequencyLimitedAnswerSlowsTheMerchantDown() async throws {
        let world = try await ReaperWorld.make()
        defer { Task { await world.tearDown() } }
        try world.database.insert("SLOWDOWN001")
        world.simulator.simulator.setFault(FaultPlan(.returnFail, times: 1), for: "SLOWDOWN001")
        try await world.reaper.runOnce()
        try await DaemonProcess.waitUntil(timeout: 5, "the limiter hears of it") {
            world.reaper.limiter.currentRate(Fixtures.mchID) != nil
        }
    }
}
