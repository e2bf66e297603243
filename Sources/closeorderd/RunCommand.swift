import ArgumentParser
import ConfigurationFile
import DaemonLogging
import Foundation
import Logging
import MetricsEndpoint
import OrderStore
import Prometheus
import Reaper
import ServiceLifecycle
import Synchronization
import Systemd
import WeChatPayHTTP

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the daemon: migrate the database, then close due orders until SIGTERM or SIGINT.",
        discussion: "SIGHUP re-reads the configuration and keys; a bad new configuration is logged and the old one stays."
    )

    @OptionGroup var options: DatabaseOptions

    @Flag(help: "Process what is due now, wait for those calls, and exit (for cron and tests).")
    var once = false

    func run() async throws {
        let startup = StartupSignals()
        let configuration = loadConfiguration(options)
        let logger = bootstrapLogging()
        // Metrics are always counted (a few atomic adds per close), so that a reload can
        // turn the endpoint on; `metrics.listen` decides only whether they are served.
        let registry = PrometheusCollectorRegistry()
        let metrics = Self.metrics(on: registry)
        // The limits as configured until the reaper's first scrape sets the ones in force: a
        // scrape while the daemon starts has every series too.
        metrics.setRateLimits(configuration.rateLimits)
        let started = StartedReaper()
        // The endpoint listens before the database is opened and migrated, which can wait on
        // a lock the app holds: meanwhile /-/healthy answers and /-/ready says it is starting.
        // `--once` serves nothing: a cron pass beside the daemon must not want its port.
        let endpoint = MetricsEndpoint(
            responder: MetricsResponder(registry: registry, reaper: { started.reaper }), logger: logger)
        do {
            try await endpoint.listen(on: once ? nil : configuration.metricsListen)
        } catch {
            exitWithMessage(
                "metrics.listen: cannot listen on \(configuration.metricsListen.map(String.init(describing:)) ?? "-"): \(error)",
                code: ExitCodes.configuration)
        }
        let store: any OrderTable
        do {
            store = try await OrderTables.open(
                configuration.database, password: configuration.databasePassword, access: .daemon, logger: logger)
            let applied = try await store.migrate()
            if !applied.isEmpty { logger.info("migrated the database", metadata: ["versions": "\(applied)"]) }
        } catch {
            exitWithMessage("\(error)", code: ExitCodes.database)
        }
        logger.info("starting", metadata: ["config": "\(configuration.summaryWithoutSecrets)", "once": "\(once)"])
        for warning in configuration.warnings { logger.warning("\(warning)") }
        let live = LiveConfiguration(configuration: configuration, client: Self.client(for: configuration))
        let notifier = ServiceNotifier.fromEnvironment()
        let reaper = Reaper(
            live: live, store: store, logger: logger,
            observer: SystemdReporter(notifier: notifier, requestTimeoutSeconds: configuration.api.timeoutSeconds),
            maximumPause: notifier.watchdogInterval, metrics: metrics)
        started.reaper = reaper
        do {
            try await serve(reaper, endpoint: endpoint, live: live, startup: startup, logger: logger)
        } catch {
            await live.client.shutdown()
            exitWithMessage("\(error)", code: ExitCodes.database)
        }
        await live.client.shutdown()
    }

    /// Runs the reaper until it is done (`--once`) or stopped. The endpoint comes first in the
    /// group, so that it stops last: `/-/ready` says `stopping` while calls in flight drain.
    private func serve(
        _ reaper: Reaper, endpoint: MetricsEndpoint, live: LiveConfiguration, startup: StartupSignals, logger: Logger
    ) async throws {
        if once {
            // Under a service group too, so that SIGTERM or SIGINT stops claiming, hands
            // queued orders back and waits for the calls in flight, as the daemon does.
            let pass = OncePass(reaper: reaper, started: startup.handOver)
            let group = ServiceGroup(
                configuration: .init(
                    services: [.init(service: pass, successTerminationBehavior: .gracefullyShutdownGroup)],
                    gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
            try await group.run()
            logger.info("finished one pass", metadata: ["claimed": "\(pass.claimed)"])
        } else {
            let reloader = ReloadOnHangup(
                reload: {
                    if let reloaded = reload(live, logger: logger) {
                        endpoint.move(to: reloaded.metricsListen)
                    }
                }, listening: startup.handOver)
            let group = ServiceGroup(
                services: [endpoint, reaper, reloader], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
            try await group.run()
            logger.info("stopped: in-flight calls recorded")
        }
    }

    static func client(for configuration: DaemonConfiguration) -> WeChatPayClient {
        WeChatPayClient(
            baseURL: configuration.api.baseURL, backupBaseURL: configuration.api.backupBaseURL,
            timeoutSeconds: configuration.api.timeoutSeconds, maxConnections: configuration.reaper.concurrency,
            probeIntervalSeconds: configuration.api.probeIntervalSeconds)
    }

    /// The reaper's metrics on `registry`, each with its help text and buckets.
    static func metrics(on registry: PrometheusCollectorRegistry) -> ReaperMetrics {
        ReaperMetrics(
            factory: DescribedMetricsFactory(
                registry: registry, help: ReaperMetrics.help,
                durationBuckets: [
                    ReaperMetrics.Name.closeLateness: ReaperMetrics.latenessBuckets,
                    ReaperMetrics.Name.callDuration: ReaperMetrics.callDurationBuckets,
                ]),
            version: Closeorderd.version)
    }

    /// Re-reads the configuration and keys; on any problem the configuration in force stays.
    /// Returns the new configuration when it was taken.
    @discardableResult
    func reload(_ live: LiveConfiguration, logger: Logger) -> DaemonConfiguration? {
        do {
            let new = try ConfigurationLoader.load(path: options.config, databaseOverride: options.db)
            if let retired = try live.replace(with: new, makeClient: Self.client(for:)) {
                let grace = Duration.milliseconds(Int64(live.configuration.api.timeoutSeconds * 1000) + 5000)
                Task {
                    try? await Task.sleep(for: grace)
                    await retired.shutdown()
                }
            }
            logger.info("reloaded the configuration", metadata: ["config": "\(new.summaryWithoutSecrets)"])
            for warning in new.warnings { logger.warning("\(warning)") }
            return new
        } catch {
            logger.error("reload rejected; the configuration in force stays", metadata: ["error": "\(error)"])
            return nil
        }
    }
}

/// The reaper, once the database is open and migrated: what the metrics endpoint, listening
/// from the start, serves from.
final class StartedReaper: Sendable {
    private let value = Mutex<Reaper?>(nil)

    var reaper: Reaper? {
        get { value.withLock { $0 } }
        set { value.withLock { $0 = newValue } }
    }
}

/// `run --once` as a service: one pass over what is due, then the group ends.
final class OncePass: Service, Sendable {
    let reaper: Reaper
    let started: @Sendable () -> Void
    private let claimedCount = Mutex(0)

    init(reaper: Reaper, started: @escaping @Sendable () -> Void) {
        self.reaper = reaper
        self.started = started
    }

    /// How many orders the pass claimed.
    var claimed: Int { claimedCount.withLock { $0 } }

    func run() async throws {
        started()
        let claimed = try await reaper.runOnce()
        claimedCount.withLock { $0 = claimed }
    }
}

/// Signals that arrive while `run` starts up (reading the configuration and keys, migrating,
/// which can wait the whole busy timeout on a lock the app holds): SIGTERM and SIGINT end the
/// process at once with status 0, since nothing is in flight and SQLite rolls back an open
/// transaction; SIGHUP is ignored, since the configuration is being read anyway. Once the
/// service group handles signals itself, `handOver()` stands these handlers down. (With
/// `--once`, SIGHUP stays ignored: the pass reads no configuration again.)
final class StartupSignals: @unchecked Sendable {
    private let handedOver = Atomic<Bool>(false)
    private var sources: [any DispatchSourceSignal] = []

    init() {
        signal(SIGHUP, SIG_IGN)
        for number in [SIGTERM, SIGINT] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number)
            source.setEventHandler { [unowned self] in
                guard !handedOver.load(ordering: .acquiring) else { return }
                LineSink.standardError.flush()
                FileHandle.standardError.write(Data("closeorderd: stopped while starting; nothing was in flight\n".utf8))
                exit(0)
            }
            source.resume()
            sources.append(source)
        }
    }

    func handOver() { handedOver.store(true, ordering: .releasing) }
}

struct MigrateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Create or upgrade the order table, then exit."
    )

    @OptionGroup var options: DatabaseOptions

    func run() async throws {
        let (database, password) = databaseAndPassword(options)
        let shown = OrderTables.redacted(database)
        do {
            let store = try await OrderTables.open(database, password: password, access: .create, logger: quietLogger)
            let applied = try await store.migrate()
            output(
                applied.isEmpty
                    ? "\(shown): schema is current (version \(OrderTables.schemaVersion(of: database)))"
                    : "\(shown): applied migrations \(applied.map(String.init).joined(separator: ", "))")
        } catch {
            exitWithMessage("\(error)", code: ExitCodes.database)
        }
    }
}

struct CheckConfigCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Validate the configuration and read every key it names; exit non-zero with the reason if anything is wrong.",
        discussion: "`systemctl reload` runs it first (ExecReload=, with --skip-credentials); run it yourself before a reload."
    )

    @OptionGroup var options: DatabaseOptions

    @Flag(
        help: """
            Check merchants whose keys are systemd credentials for shape only: systemd copies credentials when \
            the service starts, so a reload cannot change them (and its control process cannot read them).
            """)
    var skipCredentials = false

    func run() async throws {
        let configuration = loadConfiguration(options, readCredentials: !skipCredentials)
        for warning in configuration.warnings {
            LineSink.standardError.flush()
            FileHandle.standardError.write(Data("closeorderd: warning: \(warning)\n".utf8))
        }
        output(
            "\(options.config): OK: database \(configuration.databaseLocation.redacted), "
                + "\(configuration.merchants.count) merchant(s) with keys read: "
                + configuration.merchants.map(\.mchID).joined(separator: ", ")
                + (skipCredentials ? " (merchants with credentials checked for shape only)" : ""))
    }
}
