import ArgumentParser
import Logging
import OrderStore
import Reaper
import ServiceLifecycle

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the daemon: migrate the database, then close due orders until SIGTERM or SIGINT."
    )

    @OptionGroup var options: DatabaseOptions

    @Flag(help: "Process what is due now, wait for those calls, and exit (for cron and tests).")
    var once = false

    func run() async throws {
        let configuration = loadConfiguration(options)
        let logger = bootstrapLogging()
        let store: OrderStore
        do {
            store = try OrderStore(path: configuration.database)
            let applied = try await store.migrate()
            if !applied.isEmpty { logger.info("migrated the database", metadata: ["versions": "\(applied)"]) }
        } catch {
            exitWithMessage("\(error)", code: ExitCodes.database)
        }
        logger.info("starting", metadata: ["config": "\(configuration.summaryWithoutSecrets)", "once": "\(once)"])
        let client = WeChatPayClient(
            baseURL: configuration.api.baseURL, timeoutSeconds: configuration.api.timeoutSeconds,
            maxConnections: configuration.reaper.concurrency)
        let reaper = Reaper(configuration: configuration, store: store, client: client, logger: logger)
        do {
            if once {
                let claimed = try await reaper.runOnce()
                logger.info("finished one pass", metadata: ["claimed": "\(claimed)"])
            } else {
                let group = ServiceGroup(
                    services: [reaper], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
                try await group.run()
                logger.info("stopped: in-flight calls recorded")
            }
        } catch {
            await client.shutdown()
            exitWithMessage("\(error)", code: ExitCodes.database)
        }
        await client.shutdown()
    }
}

struct MigrateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Create or upgrade the order table, then exit."
    )

    @OptionGroup var options: DatabaseOptions

    func run() async throws {
        let database = options.db ?? loadConfiguration(options, readKeys: false).database
        do {
            let store = try OrderStore(path: database)
            let applied = try await store.migrate()
            output(
                applied.isEmpty
                    ? "\(database): schema is current (version \(OrderStore.schemaVersion))"
                    : "\(database): applied migrations \(applied.map(String.init).joined(separator: ", "))")
        } catch {
            exitWithMessage("\(error)", code: ExitCodes.database)
        }
    }
}
