import ConfigurationFile
import Logging
import OrderStore
import ServiceLifecycle
import WeChatPayHTTP

/// The loop, carrying out `LoopScheduler`'s turns: start queued orders in free call slots,
/// claim, pause, wait for a slot; on graceful shutdown, hand back what never started and
/// wait for the calls in flight.
extension Reaper {
    /// What one run of the loop has done so far.
    struct LoopProgress {
        var queued: [QueuedOrder] = []
        var exhausted = false
        var claimedTotal = 0
        var configuredLimits: [String: Double?]?
        /// Why the loop stopped, if the store refused.
        var error: StoreError?
    }

    func reap(untilIdle: Bool) async throws -> Int {
        let slots = InFlightSlots(capacity: live.configuration.reaper.concurrency)
        var progress = LoopProgress()
        await withDiscardingTaskGroup { group in
            while !Task.isShuttingDownGracefully && !Task.isCancelled {
                guard await turn(&progress, untilIdle: untilIdle, slots: slots, group: &group) else { break }
            }
            // Orders claimed but never started go back to pending at once.
            await release(progress.queued.map(\.order))
            progress.queued.removeAll()
            let inFlight = slots.inUse
            if Task.isShuttingDownGracefully {
                health.stopping()
                observer?.draining(inFlight: inFlight)
                if inFlight > 0 {
                    logger.info("shutting down: waiting for calls in flight", metadata: ["in_flight": "\(inFlight)"])
                }
            }
        }
        if let error = progress.error { throw error }
        return progress.claimedTotal
    }

    /// One turn of the loop; false when the loop should stop.
    private func turn(
        _ progress: inout LoopProgress, untilIdle: Bool, slots: InFlightSlots, group: inout DiscardingTaskGroup
    ) async -> Bool {
        do throws(StoreError) {
            try store.verifyStillOurs()
        } catch {
            logger.critical("\(error.message)")
            progress.error = error
            return false
        }
        let (configuration, client) = live.current
        let settings = configuration.reaper
        let limits = configuration.rateLimits
        if progress.configuredLimits != limits {
            limiter.configure(limits)
            progress.configuredLimits = limits
        }
        slots.setCapacity(settings.concurrency)
        await startQueued(&progress, slots: slots, group: &group, configuration: configuration, client: client)

        let scheduler = LoopScheduler(concurrency: settings.concurrency, batchSize: settings.batchSize, untilIdle: untilIdle)
        let situation = LoopScheduler.Situation(
            queued: progress.queued.count, inFlight: slots.inUse, exhausted: progress.exhausted)
        switch scheduler.next(situation, permission: { breaker.permission() }) {
        case .claim(let wanted):
            return await claim(wanted, &progress, untilIdle: untilIdle, settings: settings, inFlight: slots.inUse)
        case .pauseUntil(let instant):
            await release(progress.queued.map(\.order))
            progress.queued.removeAll()
            try? await pause(until: instant, atMost: settings.pollIntervalSeconds)
        case .pollLater:
            try? await pause(settings.pollIntervalSeconds)
            progress.exhausted = false
        case .waitForFreeSlot:
            await cancelWhenGracefulShutdown { await slots.waitForFreeSlot() }
        case .stop:
            return false
        }
        return true
    }

    /// Starts queued orders while call slots are free; an order whose lease would end before
    /// its call could finish is handed back instead.
    private func startQueued(
        _ progress: inout LoopProgress, slots: InFlightSlots, group: inout DiscardingTaskGroup,
        configuration: DaemonConfiguration, client: WeChatPayClient
    ) async {
        var handBack: [ClaimedOrder] = []
        while !progress.queued.isEmpty, slots.tryTake() {
            let (order, claimedAt) = (progress.queued[0].order, progress.queued[0].claimedAt)
            progress.queued.removeFirst()
            guard
                LoopScheduler.canStart(
                    order.leaseExpiresAt, now: clock.secondsSince1970, timeoutSeconds: configuration.api.timeoutSeconds)
            else {
                handBack.append(order)
                slots.release()
                continue
            }
            metrics.inFlight.increment()
            group.addTask {
                if await self.stillOurs(order, queuedSince: claimedAt) {
                    await self.close(order, configuration: configuration, client: client)
                }
                self.metrics.inFlight.decrement()
                slots.release()
            }
        }
        await release(handBack)
    }

    /// Claims `wanted` due orders into the queue; false when `run --once` must stop on an error.
    private func claim(
        _ wanted: Int, _ progress: inout LoopProgress, untilIdle: Bool, settings: DaemonConfiguration.ReaperSettings,
        inFlight: Int
    ) async -> Bool {
        let batch: ClaimedBatch
        do throws(StoreError) {
            batch = try await store.claimDue(
                now: clock.secondsSince1970, policy: settings.duePolicy, limit: wanted,
                leaseSeconds: settings.leaseSeconds, maxAttempts: settings.maxAttempts)
        } catch {
            metrics.databaseFailed(.claim)
            health.pollFailed("\(error)")
            if untilIdle {
                progress.error = error
                return false
            }
            logger.error("cannot claim due orders; will retry", metadata: ["error": "\(error)"])
            observer?.pollFailed("\(error)")
            try? await pause(settings.pollIntervalSeconds)
            return true
        }
        logFailedWithoutCall(batch.failedWithoutCall)
        if wanted == 1 && batch.orders.isEmpty { breaker.probeNotSent() }
        let now = clock.now
        progress.queued += batch.orders.map { QueuedOrder(order: $0, claimedAt: now) }
        progress.claimedTotal += batch.orders.count
        // Rows failed at the claim count as taken: more may be due behind them.
        progress.exhausted = batch.rowsTaken < wanted
        health.pollSucceeded()
        observer?.pollSucceeded(PollReport(claimed: batch.orders.count, inFlight: inFlight, totals: totals.current))
        return true
    }

    /// An order that waited in the queue for a second or more is read again before its call:
    /// the app may have set it `paid` (or deleted it) meanwhile.
    func stillOurs(_ order: ClaimedOrder, queuedSince claimedAt: ContinuousClock.Instant) async -> Bool {
        guard clock.now - claimedAt >= .seconds(1) else { return true }
        do {
            if try await store.isStillClaimed(order) { return true }
            logger.info(
                "row changed while the order waited for a call slot; not called, left as it is",
                metadata: ["out_trade_no": "\(order.outTradeNo)", "mch_id": "\(order.mchID)"])
            return false
        } catch {
            metrics.databaseFailed(.recheck)
            // The write-back is fenced by the lease token whatever happens: go on with the call.
            logger.warning("cannot re-read a queued order; calling anyway", metadata: ["error": "\(error)"])
            return true
        }
    }

    /// Rows the claim failed at once (unreadable, or a lost call with its attempts spent).
    func logFailedWithoutCall(_ rows: [FailedRow]) {
        for row in rows {
            finished(.failed)
            var metadata: Logger.Metadata = ["row_id": "\(row.id)", "state": "failed"]
            if let number = row.outTradeNo { metadata["out_trade_no"] = "\(number)" }
            logger.error("\(row.message)", metadata: metadata)
        }
    }

    /// Hands claimed orders back unstarted: `pending` again, the attempt not counted.
    func release(_ orders: [ClaimedOrder]) async {
        guard !orders.isEmpty else { return }
        do {
            try await store.release(orders, now: clock.secondsSince1970)
        } catch {
            metrics.databaseFailed(.release)
            logger.error(
                "cannot hand back claimed orders; they are claimed again when their lease expires",
                metadata: ["error": "\(error)", "orders": "\(orders.count)"])
        }
    }

    func pause(until instant: ContinuousClock.Instant, atMost seconds: Double) async throws {
        let cap = Duration.milliseconds(Int64(seconds * 1000))
        let wait = min(max(instant - clock.now, .milliseconds(10)), cap, maximumPause ?? cap)
        try await cancelWhenGracefulShutdown { try await clock.sleep(for: wait) }
    }

    func pause(_ seconds: Double) async throws {
        let requested = Duration.milliseconds(Int64(seconds * 1000))
        let interval = maximumPause.map { min(requested, $0) } ?? requested
        try await cancelWhenGracefulShutdown { try await clock.sleep(for: interval) }
    }
}
