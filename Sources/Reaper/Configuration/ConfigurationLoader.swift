import Foundation
import WeChatPay
import Yams

/// A configuration that cannot be used, naming the key at fault.
public struct ConfigurationError: Error, CustomStringConvertible, Equatable {
    /// The dotted path of the key, e.g. `reaper.concurrency` or `merchants[0].key_file`.
    public let key: String
    public let reason: String
    public let file: String

    public init(key: String, reason: String, file: String) {
        self.key = key
        self.reason = reason
        self.file = file
    }

    public var description: String {
        key.isEmpty ? "\(file): \(reason)" : "\(file): \(key): \(reason)"
    }
}

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
        let fail = { (key: String, reason: String) in ConfigurationError(key: key, reason: reason, file: file) }
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            // Yams appends the offending lines of the file: the first line says what and where.
            let summary = "\(error)".split(separator: "\n", omittingEmptySubsequences: true).first.map(String.init) ?? "\(error)"
            throw fail("", "not valid YAML: \(summary)")
        }
        guard let mapping = root?.mapping else { throw fail("", "expected a mapping of keys at the top level") }
        var reader = MappingReader(mapping: mapping, path: "", fail: fail)
        try reader.onlyKeys(["database", "api", "reaper", "merchants"])

        var api = DaemonConfiguration.API()
        if let node = try reader.mapping("api") {
            var section = MappingReader(mapping: node, path: "api", fail: fail)
            try section.onlyKeys(["base_url", "backup_base_url", "timeout_seconds", "probe_interval_seconds"])
            if let url = try section.string("base_url") { api.baseURL = try baseURL(url, key: "api.base_url", fail: fail) }
            // Without backup_base_url, only the default primary has a backup (its own, api2): a
            // custom primary (the simulator, a proxy, a test double) must never fail over to production.
            if section.mapping["backup_base_url"] != nil {
                let url = try section.string("backup_base_url") ?? ""
                api.backupBaseURL =
                    url.isEmpty || url == "none" ? nil : try baseURL(url, key: "api.backup_base_url", fail: fail)
            }
            if let value = try section.number("timeout_seconds", in: 0.001...600) { api.timeoutSeconds = value }
            if let value = try section.number("probe_interval_seconds", in: 0.01...3600) { api.probeIntervalSeconds = value }
        }

        var reaper = DaemonConfiguration.ReaperSettings()
        if let node = try reader.mapping("reaper") {
            var section = MappingReader(mapping: node, path: "reaper", fail: fail)
            try section.onlyKeys([
                "poll_interval_seconds", "concurrency", "batch_size", "min_order_age_seconds",
                "payment_timeout_seconds", "max_attempts", "backoff_base_seconds", "backoff_max_seconds", "lease_seconds",
                "confirm",
            ])
            if let text = try section.string("confirm") {
                guard let mode = DaemonConfiguration.ConfirmMode(rawValue: text) else {
                    throw fail("reaper.confirm", "must be none, before or after, got \"\(text)\"")
                }
                reaper.confirm = mode
            }
            if let value = try section.number("poll_interval_seconds", in: 0.01...3600) { reaper.pollIntervalSeconds = value }
            if let value = try section.integer("concurrency", in: 1...4096) { reaper.concurrency = Int(value) }
            if let value = try section.integer("batch_size", in: 1...100_000) { reaper.batchSize = Int(value) }
            if let value = try section.integer("min_order_age_seconds", in: 0...Int64(Int32.max)) {
                guard value >= DaemonConfiguration.ReaperSettings.minimumOrderAgeFloor else {
                    throw fail(
                        "reaper.min_order_age_seconds",
                        "must be at least 300: WeChat Pay forbids closing an order within 5 minutes of its creation (got \(value))"
                    )
                }
                reaper.minOrderAgeSeconds = value
            }
            if let value = try section.integer("payment_timeout_seconds", in: 0...Int64(Int32.max)) {
                reaper.paymentTimeoutSeconds = value
            }
            if let value = try section.integer("max_attempts", in: 1...1000) { reaper.maxAttempts = Int(value) }
            if let value = try section.number("backoff_base_seconds", in: 0.001...86_400) { reaper.backoffBaseSeconds = value }
            if let value = try section.number("backoff_max_seconds", in: 0.001...604_800) { reaper.backoffMaxSeconds = value }
            if let value = try section.integer("lease_seconds", in: 1...86_400) { reaper.leaseSeconds = value }
        }
        guard reaper.backoffMaxSeconds >= reaper.backoffBaseSeconds else {
            throw fail(
                "reaper.backoff_max_seconds", "must be at least reaper.backoff_base_seconds (\(reaper.backoffBaseSeconds))")
        }
        guard Double(reaper.leaseSeconds) > api.timeoutSeconds + 1 else {
            throw fail(
                "reaper.lease_seconds",
                "must exceed api.timeout_seconds (\(api.timeoutSeconds)) by more than a second, or a call still in flight could be claimed again"
            )
        }

        let database: String
        if let databaseOverride {
            database = databaseOverride
            _ = try reader.string("database")
        } else {
            guard let value = try reader.string("database"), !value.isEmpty else {
                throw fail("database", "required: the path of the SQLite order database")
            }
            database = value
        }

        guard let merchantNodes = try reader.sequence("merchants"), !merchantNodes.isEmpty else {
            throw fail("merchants", "required: a list with at least one merchant (mch_id, sign_type, key_file)")
        }
        let baseDirectory = URL(fileURLWithPath: file).deletingLastPathComponent()
        var merchants: [DaemonConfiguration.Merchant] = []
        for (index, node) in merchantNodes.enumerated() {
            let path = "merchants[\(index)]"
            guard let entry = node.mapping else { throw fail(path, "expected a mapping with mch_id, sign_type, key_file") }
            var section = MappingReader(mapping: entry, path: path, fail: fail)
            let version = try section.string("api") ?? "v2"
            guard version == "v2" || version == "v3" else { throw fail("\(path).api", "must be v2 or v3, got \"\(version)\"") }
            try section.onlyKeys(
                version == "v2"
                    ? ["mch_id", "api", "sign_type", "key_file", "key_credential", "max_requests_per_second"]
                    : [
                        "mch_id", "api", "serial_no", "private_key_file", "private_key_credential", "wechatpay_public_key_file",
                        "wechatpay_public_key_credential", "wechatpay_public_key_id", "max_requests_per_second",
                    ])
            let maxRequestsPerSecond = try section.number("max_requests_per_second", in: 0.01...100_000)
            guard let mchID = try section.string("mch_id"), !mchID.isEmpty else { throw fail("\(path).mch_id", "required") }
            guard mchID.utf8.count <= 32, mchID.utf8.allSatisfy(OrderIdentity.isAllowedOrderNumberCharacter) else {
                throw fail(
                    "\(path).mch_id",
                    "must be the merchant id as WeChat Pay issued it (digits, at most 32, no spaces), got \(Untrusted.quote(mchID))")
            }
            guard !merchants.contains(where: { $0.mchID == mchID }) else {
                throw fail("\(path).mch_id", "\(mchID) is configured twice")
            }
            let locate = { (name: String, what: String) throws(ConfigurationError) -> (key: String, path: String)? in
                try Self.locate(
                    section, path: path, name: name, what: what, base: baseDirectory,
                    readKeys: readKeys, readCredentials: readCredentials,
                    environment: environment, fail: fail)
            }
            if version == "v3" {
                let serialNo = try section.string("serial_no") ?? ""
                let publicKeyID = try section.string("wechatpay_public_key_id") ?? ""
                guard !serialNo.isEmpty else {
                    throw fail(
                        "\(path).serial_no", "required for an API v3 merchant: the merchant API certificate's serial number")
                }
                guard !publicKeyID.isEmpty else {
                    throw fail(
                        "\(path).wechatpay_public_key_id",
                        "required for an API v3 merchant: the id of the WeChat Pay public key (PUB_KEY_ID_…)")
                }
                let privateKey = try locate("private_key", "the merchant API private key (PKCS#8 PEM)")
                let publicKey = try locate("wechatpay_public_key", "the WeChat Pay public key (PEM)")
                guard readKeys, let privateKey, let publicKey else { continue }
                let privatePEM = try readText(at: privateKey.path, key: privateKey.key, ownerOnly: true, fail: fail)
                let publicPEM = try readText(at: publicKey.path, key: publicKey.key, ownerOnly: false, fail: fail)
                let credentials: V3Credentials
                do {
                    credentials = try V3Credentials(
                        mchID: mchID, serialNo: serialNo, privateKeyPEM: privatePEM, wechatpayPublicKeyPEM: publicPEM,
                        wechatpayPublicKeyID: publicKeyID)
                } catch {
                    let key = error.description.contains("WeChat Pay public key") ? publicKey.key : privateKey.key
                    throw fail(key, "\(error)")
                }
                merchants.append(
                    .init(
                        mchID: mchID, credentials: .v3(credentials), keySource: "\(privateKey.path), \(publicKey.path)",
                        maxRequestsPerSecond: maxRequestsPerSecond))
                continue
            }
            var signType = SignType.hmacSHA256
            if let text = try section.string("sign_type") {
                guard let parsed = SignType(rawValue: text) else {
                    throw fail("\(path).sign_type", "must be MD5 or HMAC-SHA256, got \"\(text)\"")
                }
                signType = parsed
            }
            guard let located = try locate("key", "a file holding the 32-character API v2 key"), readKeys else { continue }
            let key = try readKey(at: located.path, key: located.key, fail: fail)
            merchants.append(
                .init(
                    mchID: mchID, signType: signType, keySource: located.path, key: key,
                    maxRequestsPerSecond: maxRequestsPerSecond))
        }
        return DaemonConfiguration(database: database, api: api, reaper: reaper, merchants: merchants)
    }

    /// Where `NAME_file` or `NAME_credential` points: exactly one must be given. Returns the
    /// dotted key and the file's path (nil for a credential when keys are not being read).
    static func locate(
        _ section: MappingReader, path: String, name: String, what: String, base: URL, readKeys: Bool,
        readCredentials: Bool = true,
        environment: [String: String], fail: (String, String) -> ConfigurationError
    ) throws(ConfigurationError) -> (key: String, path: String)? {
        let file = try section.string("\(name)_file")
        let credential = try section.string("\(name)_credential")
        switch (file, credential) {
        case (let file?, nil) where !file.isEmpty:
            return ("\(path).\(name)_file", file.hasPrefix("/") ? file : base.appending(path: file).path)
        case (nil, let credential?) where !credential.isEmpty:
            let key = "\(path).\(name)_credential"
            guard !credential.contains("/") else { throw fail(key, "a credential name has no '/', got \"\(credential)\"") }
            guard readKeys && readCredentials else { return nil }
            guard let directory = environment["CREDENTIALS_DIRECTORY"], !directory.isEmpty else {
                throw fail(
                    key,
                    "$CREDENTIALS_DIRECTORY is not set: load it with LoadCredential=\(credential):/path in the unit, or use \(name)_file"
                )
            }
            return (key, URL(fileURLWithPath: directory).appending(path: credential).path)
        case (.some, .some):
            throw fail(path, "give \(name)_file or \(name)_credential, not both")
        default:
            throw fail("\(path).\(name)_file", "required: \(name)_file (\(what)) or \(name)_credential")
        }
    }

    /// The largest key file read: a PEM RSA-4096 private key is about 3.3 KB.
    static let maximumKeyFileSize = 64 * 1024

    /// Reads a key file's text; with `ownerOnly`, refuses a file others can access. A
    /// symbolic link (a Kubernetes Secret volume, a secret store's mount) is followed and the
    /// file it leads to is judged; a directory or anything but a regular file is refused.
    static func readText(
        at path: String, key: String, ownerOnly: Bool, fail: (String, String) -> ConfigurationError
    ) throws(ConfigurationError) -> String {
        var status = stat()
        guard stat(path, &status) == 0 else {
            throw fail(key, "cannot read key file \(path): \(String(cString: strerror(errno)))")
        }
        var link = stat()
        let isLink = lstat(path, &link) == 0 && link.st_mode & S_IFMT == S_IFLNK
        let resolved = isLink ? URL(fileURLWithPath: path).resolvingSymlinksInPath().path : path
        let file = isLink ? "key file \(path) (a link to \(resolved))" : "key file \(path)"
        switch status.st_mode & S_IFMT {
        case S_IFREG: break
        case S_IFDIR: throw fail(key, "\(file) is a directory, not a file holding the key")
        default: throw fail(key, "\(file) is not a regular file")
        }
        guard status.st_size <= maximumKeyFileSize else {
            throw fail(key, "\(file) has \(status.st_size) bytes: a key file holds one key (at most \(maximumKeyFileSize) bytes)")
        }
        let permissions = Int(status.st_mode & 0o777)
        if ownerOnly && permissions & 0o077 != 0 {
            throw fail(
                key,
                "\(file) is accessible to others than its owner (mode \(String(permissions, radix: 8))): run chmod 600 on "
                    + "\(resolved) (in a Kubernetes Secret volume, set defaultMode: 0400)")
        }
        do {
            return try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw fail(key, "cannot read key file \(path): \(describe(error))")
        }
    }

    /// Reads a key file: its text less surrounding whitespace must be a 32-character key, and
    /// only its owner may have access to it. Errors never quote the file's content.
    public static func readKey(
        at path: String, key: String, fail: (String, String) -> ConfigurationError
    ) throws(ConfigurationError) -> MerchantKey {
        let text = try readText(at: path, key: key, ownerOnly: true, fail: fail)
        do {
            return try MerchantKey(text.trimmingCharacters(in: .whitespacesAndNewlines))
        } catch {
            throw fail(key, "key file \(path) does not hold an API v2 key: \(error)")
        }
    }

    static func baseURL(_ text: String, key: String, fail: (String, String) -> ConfigurationError) throws(ConfigurationError)
        -> String
    {
        guard let url = URL(string: text), let scheme = url.scheme, ["http", "https"].contains(scheme),
            let host = url.host, !host.isEmpty
        else {
            throw fail(key, "must be an http:// or https:// URL with a host, got \"\(text)\"")
        }
        if let port = url.port, !(1...65535).contains(port) {
            throw fail(key, "has port \(port): a port is 1 to 65535, got \"\(text)\"")
        }
        guard url.query == nil, url.fragment == nil, url.user == nil, url.password == nil, !text.contains("@") else {
            throw fail(
                key,
                "must be scheme, host, port and optionally a path, without a query (?), fragment (#) or user info (@), got \"\(text)\""
            )
        }
        return text.hasSuffix("/") ? String(text.dropLast()) : text
    }

    static func describe(_ error: any Error) -> String {
        if let error = error as? CocoaError, let underlying = error.userInfo[NSUnderlyingErrorKey] as? NSError {
            return String(cString: strerror(Int32(underlying.code)))
        }
        return (error as NSError).localizedDescription
    }
}

/// Reads typed values from one YAML mapping, remembering its path for error messages.
struct MappingReader {
    let mapping: Node.Mapping
    let path: String
    let fail: (String, String) -> ConfigurationError

    func keyPath(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    func onlyKeys(_ known: [String]) throws(ConfigurationError) {
        for key in mapping.keys {
            let name = key.string ?? "?"
            guard known.contains(name) else {
                throw fail(keyPath(name), "unknown key (known here: \(known.joined(separator: ", ")))")
            }
        }
    }

    func node(_ key: String) -> Node? {
        mapping[key].flatMap { node in
            if case .scalar(let scalar) = node, scalar.style == .plain, ["", "~", "null", "Null", "NULL"].contains(scalar.string)
            {
                return nil
            }
            return node
        }
    }

    func string(_ key: String) throws(ConfigurationError) -> String? {
        guard let node = node(key) else { return nil }
        guard case .scalar(let scalar) = node else { throw fail(keyPath(key), "expected a single value") }
        return scalar.string
    }

    func integer(_ key: String, in range: ClosedRange<Int64>) throws(ConfigurationError) -> Int64? {
        guard let text = try string(key) else { return nil }
        guard let value = Int64(text), range.contains(value) else {
            throw fail(keyPath(key), "must be a whole number from \(range.lowerBound) to \(range.upperBound), got \"\(text)\"")
        }
        return value
    }

    func number(_ key: String, in range: ClosedRange<Double>) throws(ConfigurationError) -> Double? {
        guard let text = try string(key) else { return nil }
        guard let value = Double(text), value.isFinite, range.contains(value) else {
            throw fail(keyPath(key), "must be a number from \(range.lowerBound) to \(range.upperBound), got \"\(text)\"")
        }
        return value
    }

    func mapping(_ key: String) throws(ConfigurationError) -> Node.Mapping? {
        guard let node = node(key) else { return nil }
        guard let mapping = node.mapping else { throw fail(keyPath(key), "expected a mapping of keys") }
        return mapping
    }

    func sequence(_ key: String) throws(ConfigurationError) -> [Node]? {
        guard let node = node(key) else { return nil }
        guard let sequence = node.sequence else { throw fail(keyPath(key), "expected a list") }
        return Array(sequence)
    }
}
