import OrderStore

/// The gauges a scrape reads, set just before it: the due backlog from the database, the
/// breaker, the merchants' rate limits and readiness.
extension Reaper {
    /// How long a healthy loop may go without a poll: two poll intervals, plus an attempt's
    /// three calls each at the request timeout (every call slot busy), plus slack.
    public var staleAfter: Duration {
        let configuration = live.configuration
        let seconds = 2 * configuration.reaper.pollIntervalSeconds + 3 * configuration.api.timeoutSeconds + 10
        return .milliseconds(Int64(seconds * 1000))
    }

    /// Sets the gauges a scrape shows. A database that cannot be read leaves the backlog
    /// gauges as they were, and is counted under `operation="backlog"`.
    public func refreshGauges() async {
        let configuration = live.configuration
        do {
            let backlog = try await store.dueBacklog(
                now: clock.secondsSince1970, policy: configuration.reaper.duePolicy)
            metrics.dueOrders.record(backlog.count)
            metrics.oldestDueAge.record(backlog.oldestDueSeconds ?? 0)
        } catch {
            metrics.databaseFailed(.backlog)
        }
        metrics.breakerOpen.record(breaker.isOpen ? 1 : 0)
        metrics.setRateLimits(
            Dictionary(configuration.merchants.map { ($0.mchID, limiter.currentRate($0.mchID)) }) { $1 })
        metrics.ready.record(health.status(staleAfter: staleAfter) == .ready ? 1 : 0)
    }
}
