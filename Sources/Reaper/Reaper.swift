import Foundation
import Logging
import OrderStore
import ServiceLifecycle
import Synchronization
import WeChatPay

/// The daemon's loop: poll for due orders, claim them under a lease, call WeChat Pay,
/// write each outcome back. It knows outcomes, not XML, and not SQL.
///
/// Shutdown flows in through swift-service-lifecycle: on graceful shutdown (SIGTERM,
/// SIGINT) the loop stops claiming and waits for the calls in flight, each bounded by the
/// request timeout, to be recorded.
public struct Reaper: Service {
    let live: LiveConfiguration
    let store: any OrderTable
    let logger: Logger
    let observer: (any ReaperObserver)?
    /// The longest the loop sleeps between polls, whatever `poll_interval_seconds` says
    /// (half the systemd watchdog interval, so that the loop's own pings keep it alive).
    let maximumPause: Duration?
    /// The one clock: row times, spacing and pauses.
    let clock: any DaemonClock
    let totals = OutcomeCounter()
    /// Stops claiming while WeChat Pay is down.
    public let breaker: OutageBreaker
    /// Spaces each merchant's calls.
    public let limiter: MerchantRateLimiter
    let writeBacks: WriteBackBatcher

    public init(
        live: LiveConfiguration, store: any OrderTable, logger: Logger, observer: (any ReaperObserver)? = nil,
        maximumPause: Duration? = nil, breaker: OutageBreaker = OutageBreaker(),
        limiter: MerchantRateLimiter = MerchantRateLimiter(),
        clock: any DaemonClock = SystemClock()
    ) {
        self.live = live
        self.store = store
        self.logger = logger
        self.observer = observer
        self.maximumPause = maximumPause
        self.breaker = breaker
        self.limiter = limiter
        self.clock = clock
        self.writeBacks = WriteBackBatcher(store: store)
    }

    public init(
        configuration: DaemonConfiguration, store: any OrderTable, client: WeChatPayClient, logger: Logger,
        breaker: OutageBreaker = OutageBreaker(), clock: any DaemonClock = SystemClock()
    ) {
        self.init(
            live: LiveConfiguration(configuration: configuration, client: client), store: store, logger: logger,
            breaker: breaker, clock: clock)
    }

    /// Runs until graceful shutdown.
    public func run() async throws {
        _ = try await reap(untilIdle: false)
    }

    /// Processes what is due now, waits for those calls, and returns (`run --once`).
    /// Returns the number of orders claimed; throws if the database refused the claim.
    @discardableResult
    public func runOnce() async throws -> Int {
        try await reap(untilIdle: true)
    }

    /// The loop. Claims keep a small queue of orders ahead of the free call slots (at most one
    /// more round of `concurrency`), so that a slot freed by a finished call is refilled at
    /// once and claims go in batches; an order whose lease would run out before its call can
    /// finish is handed back instead of called.
    private func reap(untilIdle: Bool) async throws -> Int {
        let slots = InFlightSlots(capacity: live.configuration.reaper.concurrency)
        var claimedTotal = 0
        var claimError: StoreError?
        var fileError: StoreError?
        var queued: [QueuedOrder] = []
        var handBack: [ClaimedOrder] = []
        var exhausted = false
        var configuredLimits: [String: Double?]?
        await withDiscardingTaskGroup { group in
            polling: while !Task.isShuttingDownGracefully && !Task.isCancelled {
                do throws(StoreError) {
                    try store.verifyStillOurs()
                } catch {
                    logger.critical("\(error.message)")
                    fileError = error
                    break polling
                }
                let (configuration, client) = live.current
                let settings = configuration.reaper
                let limits = Dictionary(configuration.merchants.map { ($0.mchID, $0.maxRequestsPerSecond) }) { $1 }
                if configuredLimits != limits {
                    limiter.configure(limits)
                    configuredLimits = limits
                }
                slots.setCapacity(settings.concurrency)

                // Start queued orders while slots are free.
                while !queued.isEmpty, slots.tryTake() {
                    let (order, claimedAt) = (queued[0].order, queued[0].claimedAt)
                    queued.removeFirst()
                    guard order.leaseExpiresAt - clock.secondsSince1970 > Int64(configuration.api.timeoutSeconds.rounded(.up)) + 1 else {
                        handBack.append(order)
                        slots.release()
                        continue
                    }
                    group.addTask {
                        if await self.stillOurs(order, queuedSince: claimedAt) {
                            await self.close(order, configuration: configuration, client: client)
                        }
                        slots.release()
                    }
                }
                if !handBack.isEmpty {
                    await release(handBack)
                    handBack.removeAll()
                }

                // Claim when the queue runs low.
                var wanted = min(settings.batchSize, 2 * settings.concurrency - slots.inUse - queued.count)
                if !exhausted && queued.count < settings.concurrency && wanted > 0 {
                    switch breaker.permission() {
                    case .claim:
                        break
                    case .probe:
                        wanted = 1
                    case .waitUntil(let instant):
                        await release(queued.map(\.order))
                        queued.removeAll()
                        if untilIdle { break polling }
                        try? await pause(until: instant, atMost: settings.pollIntervalSeconds)
                        continue
                    }
                    let batch: ClaimedBatch
                    do throws(StoreError) {
                        batch = try await store.claimDue(
                            now: clock.secondsSince1970, policy: settings.duePolicy, limit: wanted,
                            leaseSeconds: settings.leaseSeconds, maxAttempts: settings.maxAttempts)
                    } catch {
                        if untilIdle {
                            claimError = error
                            break polling
                        }
                        logger.error("cannot claim due orders; will retry", metadata: ["error": "\(error)"])
                        observer?.pollFailed("\(error)")
                        try? await pause(settings.pollIntervalSeconds)
                        continue
                    }
                    logFailedWithoutCall(batch.failedWithoutCall)
                    let claimed = batch.orders
                    if wanted == 1 && claimed.isEmpty { breaker.probeNotSent() }
                    let now = clock.now
                    queued += claimed.map { QueuedOrder(order: $0, claimedAt: now) }
                    claimedTotal += claimed.count
                    // Rows failed at the claim count as taken: more may be due behind them.
                    exhausted = batch.rowsTaken < wanted
                    observer?.pollSucceeded(
                        PollReport(claimed: claimed.count, inFlight: slots.inUse, totals: totals.current))
                    if batch.rowsTaken > 0 { continue }
                }

                if !queued.isEmpty {
                    await slots.waitForFreeSlot()
                } else if exhausted || wanted <= 0 {
                    if untilIdle && exhausted { break polling }
                    if exhausted {
                        try? await pause(settings.pollIntervalSeconds)
                        exhausted = false
                    } else {
                        await slots.waitForFreeSlot()
                    }
                }
            }
            // Orders claimed but never started go back to pending at once.
            await release(queued.map(\.order))
            let inFlight = slots.inUse
            if Task.isShuttingDownGracefully {
                observer?.draining(inFlight: inFlight)
                if inFlight > 0 {
                    logger.info("shutting down: waiting for calls in flight", metadata: ["in_flight": "\(inFlight)"])
                }
            }
        }
        if let error = fileError ?? claimError { throw error }
        return claimedTotal
    }

    /// An order that waited in the queue for a second or more is read again before its call:
    /// the app may have set it `paid` (or deleted it) meanwhile.
    private func stillOurs(_ order: ClaimedOrder, queuedSince claimedAt: ContinuousClock.Instant) async -> Bool {
        guard clock.now - claimedAt >= .seconds(1) else { return true }
        do {
            if try await store.isStillClaimed(order) { return true }
            logger.info(
                "row changed while the order waited for a call slot; not called, left as it is",
                metadata: ["out_trade_no": "\(order.outTradeNo)", "mch_id": "\(order.mchID)"])
            return false
        } catch {
            // The write-back is fenced by the lease token whatever happens: go on with the call.
            logger.warning("cannot re-read a queued order; calling anyway", metadata: ["error": "\(error)"])
            return true
        }
    }

    /// Rows the claim failed at once (unreadable, or a lost call with its attempts spent).
    private func logFailedWithoutCall(_ rows: [FailedRow]) {
        for row in rows {
            totals.count(.failed)
            var metadata: Logger.Metadata = ["row_id": "\(row.id)", "state": "failed"]
            if let number = row.outTradeNo { metadata["out_trade_no"] = "\(number)" }
            logger.error("\(row.message)", metadata: metadata)
        }
    }

    /// Hands claimed orders back unstarted: `pending` again, the attempt not counted.
    private func release(_ orders: [ClaimedOrder]) async {
        guard !orders.isEmpty else { return }
        do {
            try await store.release(orders, now: clock.secondsSince1970)
        } catch {
            logger.error(
                "cannot hand back claimed orders; they are claimed again when their lease expires",
                metadata: ["error": "\(error)", "orders": "\(orders.count)"])
        }
    }

    private func pause(until instant: ContinuousClock.Instant, atMost seconds: Double) async throws {
        let cap = Duration.milliseconds(Int64(seconds * 1000))
        let wait = min(max(instant - clock.now, .milliseconds(10)), cap, maximumPause ?? cap)
        try await cancelWhenGracefulShutdown { try await clock.sleep(for: wait) }
    }

    private func pause(_ seconds: Double) async throws {
        let requested = Duration.milliseconds(Int64(seconds * 1000))
        let interval = maximumPause.map { min(requested, $0) } ?? requested
        try await cancelWhenGracefulShutdown { try await clock.sleep(for: interval) }
    }

    /// Writes one record back, retrying while the database refuses (disk full, lock held
    /// past the busy timeout). If it never succeeds, the row's lease expires and the order
    /// is claimed again: nothing is lost.
    func write(_ record: AttemptRecord, order: ClaimedOrder) async {
        var metadata: Logger.Metadata = [
            "out_trade_no": "\(order.outTradeNo)", "mch_id": "\(order.mchID)",
            "outcome": "\((record.calls.last?.outcome ?? record.outcomeWithoutCall).rawValue)",
            "state": "\(record.newState.rawValue)", "attempt": "\(order.attempt)",
        ]
        if let errCode = record.errCode { metadata["err_code"] = "\(errCode)" }
        if !record.calls.isEmpty {
            metadata["calls"] = "\(record.calls.map(\.call.rawValue).joined(separator: ","))"
            metadata["latency_ms"] = "\(record.calls.compactMap(\.latencyMilliseconds).reduce(0, +))"
        }
        if let host = record.calls.last?.host, host != live.client.hosts.primary { metadata["host"] = "\(host)" }
        for attempt in 1...5 {
            switch await writeBacks.write(record) {
            case .success(.superseded(let current)):
                metadata["row_state"] = "\(current?.rawValue ?? "deleted")"
                logger.warning("row changed while its close was in flight; left as the app set it", metadata: metadata)
                return
            case .success(.applied):
                totals.count(record.newState)
                let level: Logger.Level =
                    record.newState == .failed ? .error : (record.newState == .pending ? .warning : .info)
                logger.log(level: level, "\(record.message)", metadata: metadata)
                return
            case .failure(let error):
                logger.error(
                    "cannot record the outcome (try \(attempt) of 5)", metadata: metadata.merging(["error": "\(error)"]) { $1 })
                try? await Task.sleep(for: .seconds(1))
            }
        }
        logger.error("outcome not recorded; the order will be claimed again when its lease expires", metadata: metadata)
    }

}

/// A claimed order waiting for a free call slot.
struct QueuedOrder: Sendable {
    let order: ClaimedOrder
    let claimedAt: ContinuousClock.Instant
}

/// What the reaper recorded since it started, shared by its call tasks.
final class OutcomeCounter: Sendable {
    private let totals = Mutex(OutcomeTotals())

    var current: OutcomeTotals { totals.withLock { $0 } }

    func count(_ state: OrderState) {
        totals.withLock { totals in
            switch state {
            case .closed: totals.closed += 1
            case .paid: totals.paid += 1
            case .failed: totals.failed += 1
            case .pending: totals.retried += 1
            case .closing: break
            }
        }
    }
}
