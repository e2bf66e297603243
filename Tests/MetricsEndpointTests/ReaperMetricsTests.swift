import MetricsEndpoint
import Prometheus
import TestSupport
import Testing
import WeChatPayHTTP

@testable import Reaper

/// What one call adds, read back from the registry's text as a scrape would.
@Suite struct ReaperMetricsTests {
    let registry = PrometheusCollectorRegistry()
    var metrics: ReaperMetrics { ReaperMetrics(factory: DescribedMetricsFactory(registry: registry, help: ReaperMetrics.help)) }

    func errors(_ code: String) -> Double {
        Scrape(registry.emitToString()).sum("closeorderd_call_errors_total", ["err_code": code])
    }

    @Test func errCodesAreCountedUnderTheirV2NameOrOther() {
        let metrics = metrics
        for code in ["SIGN_ERROR", "SIGNERROR", "ORDER_NOT_EXIST", "MADE_UP_CODE"] {
            metrics.callMade(
                api: .v3, call: .closeorder, outcome: .failed, errCode: code, symptom: nil, onBackup: false, milliseconds: 5)
        }
        #expect(errors("SIGNERROR") == 2)
        #expect(errors("ORDERNOTEXIST") == 1)
        #expect(errors("other") == 1)
        #expect(errors("SIGN_ERROR") == 0, "no series outside the known codes")
        #expect(errors("MADE_UP_CODE") == 0)
    }

    @Test func anUnsignedRateLimitAnswerCountsAsFrequencyLimited() {
        let metrics = metrics
        metrics.callMade(
            api: .v2, call: .closeorder, outcome: .retry, errCode: nil, symptom: .frequencyLimited, onBackup: false,
            milliseconds: 5)
        metrics.callMade(
            api: .v2, call: .closeorder, outcome: .retry, errCode: nil, symptom: nil, onBackup: true, milliseconds: 5)
        #expect(errors("FREQUENCY_LIMITED") == 1)
        let scrape = Scrape(registry.emitToString())
        #expect(scrape.sum("closeorderd_call_errors_total") == 1, "a timeout has no err_code")
        #expect(scrape.sum("closeorderd_call_duration_seconds_count", ["host": "backup"]) == 1)
    }

    @Test func anAttemptNeverSentHasAHistoryLineButIsNotACall() async throws {
        let database = try await TestDatabase.make()
        let simulator = try await TestSimulator.start()
        defer {
            database.remove()
            Task { await simulator.stop() }
        }
        // One call every 6.7 s for the merchant, and a 6 s lease: the second order waits for
        // the rate limit past its lease, so its attempt is recorded but never sent.
        var settings = Fixtures.reaperSettings()
        settings.leaseSeconds = 6
        var configuration = Fixtures.configuration(database: database.path, baseURL: simulator.baseURL, reaper: settings)
        configuration.merchants[0].maxRequestsPerSecond = 0.15
        let client = WeChatPayClient(baseURL: simulator.baseURL, timeoutSeconds: 2, maxConnections: 1)
        defer { Task { await client.shutdown() } }
        let metrics = metrics
        let counted = Reaper(
            live: LiveConfiguration(configuration: configuration, client: client), store: database.store,
            logger: Fixtures.quietLogger, metrics: metrics)
        try database.insert("NOTSENT001")
        try database.insert("NOTSENT002")
        // A claim that took most of the lease (full parallel runs saw one take 10 s) hands both
        // orders back unstarted, with no line and no call; then the pass is made again.
        for _ in 1...3 {
            #expect(try await counted.runOnce() == 2)
            if try await !(database.history("NOTSENT001") + database.history("NOTSENT002")).isEmpty { break }
        }
        let lines = try await database.history("NOTSENT001") + database.history("NOTSENT002")
        #expect(lines.count == 2)
        #expect(lines.filter { $0.message.hasPrefix("not sent: the claim's lease ends") }.count == 1, "\(lines)")
        #expect(simulator.simulator.stats.closeCalls.count == 1, "one call reached the server")
        let scrape = Scrape(registry.emitToString())
        #expect(scrape.sum("closeorderd_calls_total") == 1)
        #expect(scrape.sum("closeorderd_call_duration_seconds_count") == 1)
    }
}
