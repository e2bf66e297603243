import CoreMetrics
import OrderStore
import Synchronization
import WeChatPay

/// What the daemon counts for Prometheus, under the names operators alert on (the README's
/// "Metrics" section is the contract). Recorded through swift-metrics on the factory given:
/// the Prometheus endpoint's, or a no-op one in tests that do not look.
///
/// Every series with a bounded set of labels is created here, at start, so that the first
/// scrape shows it at zero and alerts never see a series missing. Labels carry no order
/// numbers and nothing secret; `err_code` is one of WeChat Pay's known codes or `other`.
///
/// ```swift
/// let metrics = ReaperMetrics(factory: DescribedMetricsFactory(registry: registry, help: ReaperMetrics.help))
/// metrics.callMade(api: .v2, call: .closeorder, outcome: .closed, errCode: nil, onBackup: false, milliseconds: 42)
/// ```
public final class ReaperMetrics: Sendable {
    /// A call's labels.
    struct CallSeries: Hashable {
        let api: APIVersion
        let call: CallKind

        var labels: [(String, String)] { [("api", api.rawValue), ("call", call.rawValue)] }
    }

    let factory: any MetricsFactory
    private let calls: [CallSeries: [HistoryOutcome: Counter]]
    private let callErrors: [CallSeries: [String: Counter]]
    private let callDurations: [CallSeries: (primary: Timer, backup: Timer)]
    private let finished: [OrderState: Counter]
    private let lateness: Timer
    private let databaseErrors: [DatabaseOperation: Counter]
    let inFlight: Meter
    let dueOrders: Gauge
    let oldestDueAge: Gauge
    let breakerOpen: Gauge
    let ready: Gauge
    private let rateLimits = Mutex<[String: Gauge]>([:])

    /// Creates every series on `factory`; `version` labels `closeorderd_build_info`.
    public init(factory: any MetricsFactory, version: String = "unknown") {
        self.factory = factory
        let series = APIVersion.allCases.flatMap { api in CallKind.allCases.map { CallSeries(api: api, call: $0) } }
        calls = Self.table(series, Self.callOutcomes) { series, outcome in
            Counter(label: Name.calls, dimensions: series.labels + [("outcome", outcome.rawValue)], factory: factory)
        }
        callErrors = Self.table(series, Self.errCodeLabels) { series, code in
            Counter(label: Name.callErrors, dimensions: series.labels + [("err_code", code)], factory: factory)
        }
        callDurations = Dictionary(
            uniqueKeysWithValues: series.map { series in
                let timer = { (host: String) in
                    Timer(label: Name.callDuration, dimensions: series.labels + [("host", host)], factory: factory)
                }
                return (series, (timer("primary"), timer("backup")))
            })
        finished = Dictionary(
            uniqueKeysWithValues: [OrderState.closed, .paid, .failed].map {
                ($0, Counter(label: Name.ordersFinished, dimensions: [("state", $0.rawValue)], factory: factory))
            })
        lateness = Timer(label: Name.closeLateness, factory: factory)
        databaseErrors = Dictionary(
            uniqueKeysWithValues: DatabaseOperation.allCases.map {
                ($0, Counter(label: Name.databaseErrors, dimensions: [("operation", $0.rawValue)], factory: factory))
            })
        inFlight = Meter(label: Name.inFlightCalls, factory: factory)
        inFlight.set(0)
        dueOrders = Gauge(label: Name.dueOrders, factory: factory)
        oldestDueAge = Gauge(label: Name.oldestDueAge, factory: factory)
        breakerOpen = Gauge(label: Name.breakerOpen, factory: factory)
        ready = Gauge(label: Name.ready, factory: factory)
        for gauge in [dueOrders, oldestDueAge, breakerOpen, ready] { gauge.record(0) }
        Gauge(label: Name.buildInfo, dimensions: [("version", version)], factory: factory).record(1)
    }

    /// One counter per call series and per value of its last label.
    private static func table<Value: Hashable>(
        _ series: [CallSeries], _ values: [Value], _ make: (CallSeries, Value) -> Counter
    ) -> [CallSeries: [Value: Counter]] {
        Dictionary(
            uniqueKeysWithValues: series.map { series in
                (series, Dictionary(uniqueKeysWithValues: values.map { ($0, make(series, $0)) }))
            })
    }

    /// One HTTP call to WeChat Pay and what it came to. An unsigned `return_code=FAIL`
    /// rate-limit answer carries no err_code but means `FREQUENCY_LIMITED`, and counts so.
    func callMade(
        api: APIVersion, call: CallKind, outcome: HistoryOutcome, errCode: String?, symptom: FailureSymptom?,
        onBackup: Bool, milliseconds: Int
    ) {
        let series = CallSeries(api: api, call: call)
        calls[series]?[outcome]?.increment()
        if let errCode = errCode ?? (symptom == .frequencyLimited ? "FREQUENCY_LIMITED" : nil) {
            callErrors[series]?[Self.errCodeLabel(errCode)]?.increment()
        }
        if let durations = callDurations[series] {
            (onBackup ? durations.backup : durations.primary).recordMilliseconds(milliseconds)
        }
    }

    /// An order reached a final state; a closed one records how late it was closed.
    func orderFinished(_ state: OrderState, latenessSeconds: Int64?) {
        finished[state]?.increment()
        if state == .closed, let latenessSeconds {
            lateness.recordSeconds(max(0, latenessSeconds))
        }
    }

    func databaseFailed(_ operation: DatabaseOperation) {
        databaseErrors[operation]?.increment()
    }

    /// Sets each configured merchant's current rate limit (0 for none in force); series of
    /// merchants no longer configured are removed.
    public func setRateLimits(_ limits: [String: Double?]) {
        rateLimits.withLock { gauges in
            for (mchID, gauge) in gauges where limits[mchID] == nil {
                gauge.destroy()
                gauges[mchID] = nil
            }
            for (mchID, limit) in limits {
                let gauge =
                    gauges[mchID]
                    ?? Gauge(label: Name.merchantRateLimit, dimensions: [("mch_id", mchID)], factory: factory)
                gauges[mchID] = gauge
                gauge.record(limit ?? 0)
            }
        }
    }

    /// The `err_code` label: a known code under its v2 name, or `other`, so that a server
    /// inventing codes cannot grow the number of series.
    static func errCodeLabel(_ code: String) -> String {
        let name = AnswerTable.normalised(code)
        return AnswerTable.knownCodes.contains(name) ? name : "other"
    }

    static let errCodeLabels = AnswerTable.knownCodes.sorted() + ["other"]

    /// What a call can come to (the other history outcomes are not calls).
    static let callOutcomes: [HistoryOutcome] = [.closed, .paid, .retry, .failed, .notPaid, .paying]
}

/// A database operation whose failures are counted.
public enum DatabaseOperation: String, CaseIterable, Sendable {
    /// The poll: find and claim due orders.
    case claim
    /// Hand claimed orders back unstarted.
    case release
    /// Re-read an order that waited for a call slot.
    case recheck
    /// Write an outcome back.
    case record
    /// Count the due backlog for a scrape.
    case backlog
}

extension ReaperMetrics {
    /// The metric names, part of the contract with operators' alerts and dashboards; what
    /// each counts is in `help` and the README's "Metrics and alerts".
    public enum Name {
        /// Counter: HTTP calls by `api`, `call` and `outcome`.
        public static let calls = "closeorderd_calls_total"
        /// Counter: calls answered with an err_code, by `api`, `call` and `err_code`.
        public static let callErrors = "closeorderd_call_errors_total"
        /// Histogram: seconds per call, by `api`, `call` and `host`.
        public static let callDuration = "closeorderd_call_duration_seconds"
        /// Counter: orders that reached a final `state`.
        public static let ordersFinished = "closeorderd_orders_finished_total"
        /// Histogram: seconds from due to recorded closed, per closed order.
        public static let closeLateness = "closeorderd_close_lateness_seconds"
        /// Gauge: orders due now.
        public static let dueOrders = "closeorderd_due_orders"
        /// Gauge: seconds the oldest due order has been due.
        public static let oldestDueAge = "closeorderd_oldest_due_age_seconds"
        /// Gauge: orders whose calls are under way.
        public static let inFlightCalls = "closeorderd_in_flight_calls"
        /// Gauge: 1 while the outage breaker holds claiming.
        public static let breakerOpen = "closeorderd_outage_breaker_open"
        /// Gauge: a merchant's calls per second now, by `mch_id`.
        public static let merchantRateLimit = "closeorderd_merchant_rate_limit"
        /// Counter: failed database operations, by `operation`.
        public static let databaseErrors = "closeorderd_database_errors_total"
        /// Gauge: 1 while ready.
        public static let ready = "closeorderd_ready"
        /// Gauge: 1, with the `version`.
        public static let buildInfo = "closeorderd_build_info"
    }

    /// Each metric's `# HELP` line.
    public static let help: [String: String] = [
        Name.calls: "HTTP calls to WeChat Pay, by API, call and what the call came to.",
        Name.callErrors: "Calls WeChat Pay answered with an err_code (v2 names; unknown codes as other).",
        Name.callDuration: "Time per HTTP call to WeChat Pay; host=backup when the backup domain served.",
        Name.ordersFinished: "Orders that reached a final state.",
        Name.closeLateness:
            "For each order closed, seconds from when it became due (deadline, 5-minute floor) to recorded closed.",
        Name.dueOrders: "Orders due now and not yet claimed, expired leases included.",
        Name.oldestDueAge: "Seconds since the oldest due order became due; 0 when none is due.",
        Name.inFlightCalls: "Orders whose calls are under way.",
        Name.breakerOpen: "1 while WeChat Pay looks down and claiming has stopped.",
        Name.merchantRateLimit: "Calls per second a merchant may make now, after slow-downs; 0 when no limit is in force.",
        Name.databaseErrors: "Database operations that failed, by operation.",
        Name.ready: "1 while polls reach the database (what /-/ready answers), else 0.",
        Name.buildInfo: "Always 1; the version label says which closeorderd runs.",
    ]

    /// Buckets for lateness, in seconds: a poll interval or two is normal; minutes mean
    /// closes are falling behind; hours, an outage.
    public static let latenessBuckets: [Duration] = [1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 10800].map {
        .seconds($0)
    }

    /// Buckets for call duration: tens of milliseconds normally, up to the request timeout.
    public static let callDurationBuckets: [Duration] =
        [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000].map { .milliseconds($0) }
}
