import Clocks
import ConfigurationFile
import CoreMetrics
import Foundation
import Logging
import OrderStore
import ServiceLifecycle
import Synchronization
import WeChatPay
import WeChatPayHTTP

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
    /// What the loop counts for Prometheus.
    public let metrics: ReaperMetrics
    /// Whether polls reach the database (`/-/ready`).
    public let health: PollHealth

    public init(
        live: LiveConfiguration, store: any OrderTable, logger: Logger, observer: (any ReaperObserver)? = nil,
        maximumPause: Duration? = nil, breaker: OutageBreaker? = nil, limiter: MerchantRateLimiter? = nil,
        metrics: ReaperMetrics? = nil, clock: any DaemonClock = SystemClock()
    ) {
        self.live = live
        self.store = store
        self.logger = logger
        self.observer = observer
        self.maximumPause = maximumPause
        // One clock for all: the breaker and the limiter default to the loop's own; the
        // limiter shares its budget with the other daemons on the table, where there can be any.
        self.breaker = breaker ?? OutageBreaker(clock: clock)
        self.limiter = limiter ?? MerchantRateLimiter(clock: clock, shared: store.callSpacing, logger: logger)
        self.clock = clock
        self.writeBacks = WriteBackBatcher(store: store)
        self.metrics = metrics ?? ReaperMetrics(factory: NOOPMetricsHandler.instance)
        self.health = PollHealth(clock: clock)
    }

    public init(
        configuration: DaemonConfiguration, store: any OrderTable, client: WeChatPayClient, logger: Logger,
        breaker: OutageBreaker? = nil, clock: any DaemonClock = SystemClock()
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

    /// Writes one record back, retrying while the database refuses (disk full, lock held
    /// past the busy timeout, the server restarting or out of reach): at least five times
    /// (twice once the daemon is stopping) and for as long as the order's lease lasts,
    /// backing off from 1 s to 5 s between tries,
    /// so that a call made just before the database went away is recorded once it is back.
    /// If it never succeeds, the row's lease expires and the order is claimed again (asked
    /// about first): nothing is lost.
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
        var pause = Duration.seconds(1)
        for attempt in 1... {
            switch await writeBacks.write(record) {
            case .success(.superseded(let current)):
                metadata["row_state"] = "\(current?.rawValue ?? "deleted")"
                logger.warning(
                    "row changed while its close was in flight (by the app, or by another daemon after the lease expired); left as it is",
                    metadata: metadata)
                return
            case .success(.applied):
                finished(record.newState, latenessSeconds: order.dueAt.map { record.finishedAt - $0 })
                let level: Logger.Level =
                    record.newState == .failed ? .error : (record.newState == .pending ? .warning : .info)
                logger.log(level: level, "\(record.message)", metadata: metadata)
                if attempt > 1 { logger.info("outcome recorded after \(attempt) tries", metadata: metadata) }
                return
            case .failure(let error):
                metrics.databaseFailed(.record)
                let leaseLeft = order.leaseExpiresAt - clock.secondsSince1970
                // Stopping, two tries (each may wait 10 s for a database that is away, and
                // systemd allows 30 s): the lease keeps the order safe.
                let stopping = Task.isShuttingDownGracefully || Task.isCancelled
                guard stopping ? attempt < 2 : attempt < 5 || leaseLeft > 0 else {
                    logger.error(
                        "outcome not recorded after \(attempt) tries; the order is claimed again once its lease expires (asked about first)",
                        metadata: metadata.merging(["error": "\(error)"]) { $1 })
                    return
                }
                logger.error(
                    "cannot record the outcome (try \(attempt)); retrying while the lease lasts (\(max(0, leaseLeft)) s left)",
                    metadata: metadata.merging(["error": "\(error)"]) { $1 })
                try? await clock.sleep(for: pause)
                pause = min(pause * 2, .seconds(5))
            }
        }
    }

    /// Counts a recorded outcome: for systemd's status line and for Prometheus.
    func finished(_ state: OrderState, latenessSeconds: Int64? = nil) {
        totals.count(state)
        metrics.orderFinished(state, latenessSeconds: latenessSeconds)
    }

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
