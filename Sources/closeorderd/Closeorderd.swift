import ArgumentParser
import ConfigurationFile
import DaemonLogging
import Foundation
import Logging
import Reaper
import Systemd
import WeChatPay

@main
struct Closeorderd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "closeorderd",
        abstract: "Closes unpaid WeChat Pay orders recorded in a SQLite table, with retry and backoff.",
        version: version,
        subcommands: [
            RunCommand.self, MigrateCommand.self, CheckConfigCommand.self, QueryCommand.self, RetryCommand.self,
            SimulateCommand.self, DemoCommand.self,
        ]
    )

    /// This build's version: `closeorderd --version`, the package's, and `closeorderd_build_info`.
    static let version = "0.4.0"
}

/// `--config` and `--db`, shared by the commands that open the database.
struct DatabaseOptions: ParsableArguments {
    @Option(name: .long, help: "The YAML configuration file.")
    var config: String = ConfigurationLoader.defaultPath

    @Option(
        name: .long,
        help: "The SQLite database file or a postgresql:// URL; overrides the configuration's `database`.")
    var db: String?
}

/// The database `--db` or the configuration names, and the configuration's PostgreSQL
/// password. With `--db` the configuration is not read: a password comes from the URL or
/// `$PGPASSWORD`.
func databaseAndPassword(_ options: DatabaseOptions) -> (database: String, password: String?) {
    if let db = options.db { return (db, nil) }
    let configuration = loadConfiguration(options, readKeys: false)
    return (configuration.database, configuration.databasePassword)
}

/// For the commands' own PostgreSQL connections: postgres-nio's background lines are not
/// for a command's user (its errors arrive through the statements).
let quietLogger = Logger(label: "closeorderd.database", factory: { _ in SwiftLogNoOpLogHandler() })

/// Exit codes, from sysexits.h where one fits.
enum ExitCodes {
    static let configuration: Int32 = 78  // EX_CONFIG
    static let database: Int32 = 74  // EX_IOERR
}

/// Prints one line to stderr and exits with `code`.
func exitWithMessage(_ message: String, code: Int32) -> Never {
    // The message may quote what a user typed or a file held: control characters are escaped.
    LineSink.standardError.flush()
    FileHandle.standardError.write(Data("closeorderd: \(Untrusted.escapingControls(message))\n".utf8))
    exit(code)
}

/// Loads the configuration, or exits with one line naming the key at fault.
func loadConfiguration(_ options: DatabaseOptions, readKeys: Bool = true, readCredentials: Bool = true)
    -> DaemonConfiguration
{
    do {
        return try ConfigurationLoader.load(
            path: options.config, databaseOverride: options.db, readKeys: readKeys, readCredentials: readCredentials)
    } catch {
        exitWithMessage("\(error)", code: ExitCodes.configuration)
    }
}

/// Writes to stdout at once (not buffered), so it interleaves correctly with log lines on stderr.
func output(_ text: String) {
    LineSink.standardError.flush()
    FileHandle.standardOutput.write(Data((text + "\n").utf8))
}

/// Logs to stderr, one line per event, with syslog priority prefixes when stderr is the
/// journal; call once per process.
func bootstrapLogging() -> Logger {
    let journal = JournalStream.stderrIsJournal()
    LoggingSystem.bootstrap { _ in LineLogHandler(syslogPrefixes: journal) }
    return Logger(label: "closeorderd")
}
