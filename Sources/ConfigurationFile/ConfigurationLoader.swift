import Foundation
import Yams

/// Reads and validates the YAML configuration.
///
/// Unknown keys are errors (a misspelt key silently ignored would leave a default in
/// force); every value is checked; each merchant's key file is read and must hold a
/// 32-character API v2 key. The first problem found is reported, naming its key.
public enum ConfigurationLoader {
    /// Where `closeorderd run` looks when `--config` is not given.
    public static let defaultPath = "/etc/closeorderd/config.yaml"

    /// Loads `path`; `databaseOverride` (from `--db`) replaces the `database` key.
    /// With `readCredentials: false` (for `check-config --skip-credentials`, run by `systemctl
    /// reload`: systemd copies credentials at start only, and a reload's control process
    /// cannot read them on systemd 252) merchants whose keys are credentials are checked for
    /// shape only and left out of `merchants`.
    /// With `readKeys: false` (for `closeorderd query`, which needs no key) merchants are
    /// checked for shape but their key files are not read, and `merchants` comes back empty.
    ///
    /// `environment` supplies `$CREDENTIALS_DIRECTORY` for `key_credential` entries.
    public static func load(
        path: String, databaseOverride: String? = nil, readKeys: Bool = true, readCredentials: Bool = true,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(ConfigurationError) -> DaemonConfiguration {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigurationError(key: "", reason: "cannot read the configuration file: \(describe(error))", file: path)
        }
        return try parse(
            text, file: path, databaseOverride: databaseOverride, readKeys: readKeys, readCredentials: readCredentials,
            environment: environment)
    }

    /// Parses YAML text; `file` names it in errors and anchors relative `key_file` paths.
    public static func parse(
        _ text: String, file: String, databaseOverride: String? = nil, readKeys: Bool = true, readCredentials: Bool = true,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(ConfigurationError) -> DaemonConfiguration {
        let context = ConfigurationContext(
            file: file, readKeys: readKeys, readCredentials: readCredentials, environment: environment)
        let root = try topLevel(text, context: context)
        try root.onlyKeys([
            "database", "database_password_file", "database_password_credential", "api", "reaper", "merchants", "metrics",
        ])
        let api =
            try root.mapping("api").map { node throws(ConfigurationError) in
                try readAPI(MappingReader(mapping: node, path: "api", fail: context.fail))
            } ?? DaemonConfiguration.API()
        let reaper =
            try root.mapping("reaper").map { node throws(ConfigurationError) in
                try readReaper(MappingReader(mapping: node, path: "reaper", fail: context.fail))
            } ?? DaemonConfiguration.ReaperSettings()
        try checkTogether(reaper, api, context: context)
        let database = try readDatabase(root, override: databaseOverride)
        let databasePassword = try readDatabasePassword(root, context: context)
        guard let merchantNodes = try root.sequence("merchants"), !merchantNodes.isEmpty else {
            throw context.fail("merchants", "required: a list with at least one merchant (mch_id, sign_type, key_file)")
        }
        let merchants = try readMerchants(merchantNodes, context: context)
        let metricsListen = try root.mapping("metrics").flatMap { node throws(ConfigurationError) in
            try readMetricsListen(MappingReader(mapping: node, path: "metrics", fail: context.fail))
        }
        var configuration = DaemonConfiguration(
            database: database, api: api, reaper: reaper, merchants: merchants, metricsListen: metricsListen)
        configuration.databasePassword = databasePassword
        return configuration
    }

    /// The document's top-level mapping.
    static func topLevel(_ text: String, context: ConfigurationContext) throws(ConfigurationError) -> MappingReader {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            // Yams appends the offending lines of the file: the first line says what and where.
            let summary = "\(error)".split(separator: "\n", omittingEmptySubsequences: true).first.map(String.init) ?? "\(error)"
            throw context.fail("", "not valid YAML: \(summary)")
        }
        guard let mapping = root?.mapping else { throw context.fail("", "expected a mapping of keys at the top level") }
        return MappingReader(mapping: mapping, path: "", fail: context.fail)
    }
}
