import Clocks
import Foundation
import MetricsEndpoint
import Prometheus
import TestSupport
import Testing
import WeChatPayHTTP

@testable import Reaper

@Suite struct MetricsResponderTests {
    let registry = PrometheusCollectorRegistry()

    func responder(_ readiness: PollHealth.Status = .ready, refreshed: (@Sendable () -> Void)? = nil) -> MetricsResponder {
        MetricsResponder(registry: registry, refresh: { refreshed?() }, readiness: { readiness })
    }

    @Test func metricsAreServedInThePrometheusTextFormatAfterARefresh() async {
        let counter = registry.makeCounter(descriptor: .init(metricName: "x_total", unitName: "", helpText: "x"))
        counter.increment()
        let answer = await responder(refreshed: { counter.increment() }).respond(method: "GET", path: "/metrics")
        #expect(answer.status == 200)
        #expect(answer.contentType == "text/plain; version=0.0.4; charset=utf-8")
        #expect(String(decoding: answer.body, as: UTF8.self).contains("x_total 2"), "refreshed before it was emitted")
    }

    @Test func readySaysWhyItIsNot() async {
        #expect(await responder().respond(method: "GET", path: "/-/ready").status == 200)
        let answer = await responder(.notReady("the last poll could not reach the database: locked"))
            .respond(method: "GET", path: "/-/ready")
        #expect(answer.status == 503)
        #expect(String(decoding: answer.body, as: UTF8.self) == "not ready: the last poll could not reach the database: locked\n")
        #expect(await responder(.notReady("x")).respond(method: "GET", path: "/-/healthy").status == 200)
    }

    @Test func otherPathsAndMethodsAreRefused() async {
        #expect(await responder().respond(method: "GET", path: "/").status == 404)
        #expect(await responder().respond(method: "GET", path: "/metrics/").status == 404)
        let post = await responder().respond(method: "POST", path: "/metrics")
        #expect(post.status == 405)
        #expect(post.headers["Allow"] == "GET, HEAD")
        #expect(await responder().respond(method: "HEAD", path: "/metrics").status == 200)
    }
}

@Suite struct PollHealthTests {
    @Test func notReadyBeforeTheFirstPollThenReadyUntilAPollFailsOrGoesStale() async {
        let clock = ManualClock()
        let health = PollHealth(clock: clock)
        let limit = Duration.seconds(30)
        #expect(health.status(staleAfter: limit) == .notReady("starting: no poll has reached the database yet"))
        health.pollSucceeded()
        #expect(health.status(staleAfter: limit) == .ready)
        clock.advance(by: .seconds(30))
        #expect(health.status(staleAfter: limit) == .ready)
        clock.advance(by: .seconds(1))
        #expect(health.status(staleAfter: limit) == .notReady("no poll has reached the database for 31 s"))
        health.pollSucceeded()
        health.pollFailed("database is locked")
        #expect(
            health.status(staleAfter: limit) == .notReady("the last poll could not reach the database: database is locked"))
        health.pollSucceeded()
        #expect(health.status(staleAfter: limit) == .ready)
    }
}

@Suite struct MetricsServerTests {
    @Test func connectionsBeyondTheCapAreClosedAtOnce() async throws {
        let responder = MetricsResponder(registry: PrometheusCollectorRegistry(), refresh: {}, readiness: { .ready })
        let server = try await MetricsServer.start(responder, host: "127.0.0.1", port: 0, maximumConnections: 1)
        // An idle connection holds the only place; once the server has taken it, a second
        // connection is refused service.
        let idle = try #require(RawExchange.connect(port: server.port))
        try await DaemonProcess.waitUntil(timeout: 10, "the second connection is refused") {
            (try? await httpGet("http://127.0.0.1:\(server.port)/-/healthy")) == nil
        }
        close(idle)
        try await DaemonProcess.waitUntil(timeout: 10, "the place is free again") {
            (try? await httpGet("http://127.0.0.1:\(server.port)/-/healthy"))?.status == 200
        }
        await server.stop()
    }
}

@Suite struct ReaperReadinessTests {
    @Test func aQuietLoopIsNotReadyUnlessAnOutagePausedClaimingAndTheDatabaseAnswers() async throws {
        let database = try await TestDatabase.make()
        defer { database.remove() }
        let clock = ManualClock()
        let configuration = Fixtures.configuration(database: database.path, baseURL: "http://127.0.0.1:9")
        let client = WeChatPayClient(baseURL: "http://127.0.0.1:9", timeoutSeconds: 2, maxConnections: 1, clock: clock)
        defer { Task { await client.shutdown() } }
        let reaper = Reaper(
            live: LiveConfiguration(configuration: configuration, client: client), store: database.store,
            logger: Fixtures.quietLogger, clock: clock)
        #expect(await reaper.readiness() == .notReady("starting: no poll has reached the database yet"))
        reaper.health.pollSucceeded()
        #expect(await reaper.readiness() == .ready)
        clock.advance(by: reaper.staleAfter + .seconds(1))
        guard case .notReady(let reason) = await reaper.readiness() else {
            Issue.record("a loop quiet for longer than it may be is not ready")
            return
        }
        #expect(reason.hasPrefix("no poll has reached the database for"))
        reaper.health.pollSucceeded()
        reaper.health.pollFailed("disk I/O error")
        #expect(await reaper.readiness() == .notReady("the last poll could not reach the database: disk I/O error"))
        // WeChat Pay looks down: the breaker stops claiming, the loop goes quiet on purpose,
        // and the database is asked instead; it answers, so the earlier failure no longer stands.
        while !reaper.breaker.isOpen { _ = reaper.breaker.record(outageFailure: true) }
        clock.advance(by: reaper.staleAfter + .seconds(1))
        #expect(await reaper.readiness() == .ready)
    }
}
