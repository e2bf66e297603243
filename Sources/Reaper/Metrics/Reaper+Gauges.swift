import OrderStore

/// The gauges a scrape reads, set just before it: the due backlog from the database, the
/// breaker, the merchants' rate limits and readiness.
extension Reaper {
    /// How long a healthy loop may go without a poll: two poll intervals, plus the lease
    /// (with every call slot busy, the loop waits for one; no attempt, rate-limit waits
    /// included, outlives its lease), plus slack.
    public var staleAfter: Duration {
        let configuration = live.configuration
        let seconds = 2 * configuration.reaper.pollIntervalSeconds + Double(configuration.reaper.leaseSeconds) + 10
        return .milliseconds(Int64(seconds * 1000))
    }

    /// Sets the gauges a scrape shows. A database that cannot be read leaves the backlog
    /// gauges as they were, and is counted under `operation="backlog"`.
    public func refreshGauges() async {
        let configuration = live.configuration
        let backlog = await readBacklog()
        if case .success(let backlog) = backlog {
            metrics.dueOrders.record(backlog.count)
            metrics.oldestDueAge.record(backlog.oldestDueSeconds ?? 0)
        }
        metrics.breakerOpen.record(breaker.isOpen ? 1 : 0)
        metrics.setRateLimits(
            Dictionary(configuration.merchants.map { ($0.mchID, limiter.currentRate($0.mchID)) }) { $1 })
        metrics.ready.record(readiness(given: backlog) == .ready ? 1 : 0)
    }

    /// What `/-/ready` answers. While WeChat Pay is down the loop claims nothing (the outage
    /// breaker holds it), so its polls go quiet on purpose: the database is then read here.
    public func readiness() async -> PollHealth.Status {
        readiness(given: breaker.isOpen ? await readBacklog() : nil)
    }

    private func readiness(given backlog: Result<DueBacklog, StoreError>?) -> PollHealth.Status {
        let paused = breaker.isOpen
        switch (paused, backlog) {
        case (true, .failure(let error)?): return .notReady("the database cannot be read: \(error)")
        case (true, .success?): health.databaseAnswered()
        default: break
        }
        return health.status(staleAfter: staleAfter, claimingPaused: paused)
    }

    private func readBacklog() async -> Result<DueBacklog, StoreError> {
        do {
            return .success(
                try await store.dueBacklog(now: clock.secondsSince1970, policy: live.configuration.reaper.duePolicy))
        } catch {
            metrics.databaseFailed(.backlog)
            return .failure(error)
        }
    }
}
