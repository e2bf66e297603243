import Clocks
import ConfigurationFile
import Foundation
import OrderStore
import Reaper
import Synchronization
import TestSupport
import Testing
import WeChatPayHTTP

/// The whole loop on a clock the test moves: it polls again exactly one poll interval
/// later on its own clock, and never on the machine's.
@Suite struct ReaperClockTests {
    /// Counts the polls the loop reports.
    final class PollCounter: ReaperObserver {
        let polls = Mutex(0)
        var count: Int { polls.withLock { $0 } }
        func pollSucceeded(_ report: PollReport) { polls.withLock { $0 += 1 } }
        func pollFailed(_ reason: String) {}
        func draining(inFlight: Int) {}
    }

    @Test func anIdleLoopPollsOncePerIntervalOfItsOwnClock() async throws {
        let database = try await TestDatabase.make()
        defer { database.remove() }
        var settings = Fixtures.reaperSettings()
        settings.pollIntervalSeconds = 5
        let configuration = Fixtures.configuration(database: database.path, baseURL: "http://127.0.0.1:9", reaper: settings)
        let clock = ManualClock()
        let client = WeChatPayClient(baseURL: "http://127.0.0.1:9", timeoutSeconds: 2, maxConnections: 1, clock: clock)
        let counter = PollCounter()
        let reaper = Reaper(
            live: LiveConfiguration(configuration: configuration, client: client), store: database.store,
            logger: Fixtures.quietLogger, observer: counter, clock: clock)
        let loop = Task { try await reaper.run() }
        defer {
            loop.cancel()
            Task { await client.shutdown() }
        }

        try await clock.waitForSleepers(1)
        #expect(counter.count == 1, "one poll, then a pause")
        clock.advance(by: .milliseconds(4_900))
        try await Task.sleep(for: .milliseconds(200))
        #expect(counter.count == 1, "not before the interval is over on the loop's clock")
        clock.advance(by: .milliseconds(100))
        try await clock.waitForSleepers(1)
        #expect(counter.count == 2)

        // A due order is claimed at the next poll, on the rows' time of this clock.
        try database.insert("CLOCKDUE001")
        clock.advance(by: .seconds(5))
        try await DaemonProcess.waitUntil(timeout: 60, "the order was tried") {
            try await database.order("CLOCKDUE001")?.attempts == 1
        }
    }
}
