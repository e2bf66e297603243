import Foundation
import OrderStore
import WeChatPay

/// Everything `closeorderd run` needs, loaded from YAML by `ConfigurationLoader` and
/// validated: a value of this type is always usable.
public struct DaemonConfiguration: Sendable {
    /// A SQLite path or a PostgreSQL URL, as written (see `databaseLocation`).
    public var database: String
    /// The PostgreSQL user's password, from `database_password_file` or
    /// `database_password_credential`; nil otherwise.
    public var databasePassword: String?
    public var api: API
    public var reaper: ReaperSettings
    public var merchants: [Merchant]
    /// Where the Prometheus endpoint listens; nil (the default) for nowhere.
    public var metricsListen: ListenAddress?

    /// A `HOST:PORT` to listen on: an IPv4 address, `localhost`, or an IPv6 address in brackets.
    public struct ListenAddress: Sendable, Equatable, CustomStringConvertible {
        /// An IPv4 address, `localhost`, or an IPv6 address (without its brackets).
        public var host: String
        /// 0 to 65535; 0 picks a free port.
        public var port: Int

        /// An address to listen on.
        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }

        /// As written in the configuration, e.g. `127.0.0.1:9464` or `[::1]:9464`.
        public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
    }

    public struct API: Sendable, Equatable {
        /// WeChat Pay's API, and its backup domain for cross-city disaster recovery.
        public static let weChatPayBaseURL = "https://api.mch.weixin.qq.com"
        public static let weChatPayBackupBaseURL = "https://api2.mch.weixin.qq.com"

        /// Scheme and host of WeChat Pay's API, e.g. `https://api.mch.weixin.qq.com`.
        public var baseURL: String = weChatPayBaseURL
        /// The longest one call may take: connecting, the answer's head and its whole body.
        public var timeoutSeconds: Double = 10
        /// Where calls go when the primary fails at the connection level or with HTTP 5xx; nil for
        /// none. Unless set, WeChat Pay's backup domain for WeChat Pay's primary, and none for any
        /// other primary: traffic meant for a simulator or proxy never fails over to production.
        public var backupBaseURL: String? {
            get { backupChoice ?? (baseURL == Self.weChatPayBaseURL ? Self.weChatPayBackupBaseURL : nil) }
            set { backupChoice = .some(newValue) }
        }
        private var backupChoice: String??
        /// While on the backup, one call at most this often probes the primary.
        public var probeIntervalSeconds: Double = 30
        public init() {}
    }

    /// When to confirm a close with an order query, beyond the cases where its outcome is unknown.
    public enum ConfirmMode: String, Sendable, Equatable, CaseIterable {
        /// Query only when the outcome is unclear (an expired lease, repeated rate limiting,
        /// the last attempt) and after ORDERPAID to record the payment.
        case none
        /// Query before every close; close only a `NOTPAY` order.
        case before
        /// Query after every successful close; a paid answer wins over the close.
        case after
    }

    public struct ReaperSettings: Sendable, Equatable {
        public var pollIntervalSeconds: Double = 5
        public var concurrency: Int = 16
        public var batchSize: Int = 256
        public var minOrderAgeSeconds: Int64 = 300
        public var paymentTimeoutSeconds: Int64 = 7200
        public var maxAttempts: Int = 10
        public var backoffBaseSeconds: Double = 30
        public var backoffMaxSeconds: Double = 3600
        public var leaseSeconds: Int64 = 120
        public var confirm: ConfirmMode = .none
        public init() {}

        /// WeChat Pay forbids closing an order within 5 minutes of its creation.
        public static let minimumOrderAgeFloor: Int64 = 300

        public var duePolicy: DuePolicy {
            DuePolicy(minOrderAgeSeconds: minOrderAgeSeconds, paymentTimeoutSeconds: paymentTimeoutSeconds)
        }

        public var backoff: Backoff { Backoff(baseSeconds: backoffBaseSeconds, maxSeconds: backoffMaxSeconds) }
    }

    /// A merchant whose orders closeorderd may close, with its keys.
    public struct Merchant: Sendable {
        /// How a merchant signs: an API v2 key, or API v3 RSA keys.
        public typealias Credentials = MerchantCredentials

        public var mchID: String
        public var credentials: Credentials
        /// Where the keys were read from (shown in logs; keys themselves never are).
        public var keySource: String
        /// Calls per second this merchant may make at most, across all workers; nil for no limit.
        public var maxRequestsPerSecond: Double?

        /// An API v2 merchant.
        public init(
            mchID: String, signType: SignType, keySource: String, key: MerchantKey, maxRequestsPerSecond: Double? = nil
        ) {
            self.init(
                mchID: mchID, credentials: .v2(key: key, signType: signType), keySource: keySource,
                maxRequestsPerSecond: maxRequestsPerSecond)
        }

        public init(mchID: String, credentials: Credentials, keySource: String, maxRequestsPerSecond: Double? = nil) {
            self.mchID = mchID
            self.credentials = credentials
            self.keySource = keySource
            self.maxRequestsPerSecond = maxRequestsPerSecond
        }

        /// `v2` or `v3`, as the configuration names it.
        public var apiName: String {
            if case .v3 = credentials { return "v3" }
            return "v2"
        }
    }

    public init(
        database: String, api: API = API(), reaper: ReaperSettings = ReaperSettings(), merchants: [Merchant],
        metricsListen: ListenAddress? = nil
    ) {
        self.database = database
        self.api = api
        self.reaper = reaper
        self.merchants = merchants
        self.metricsListen = metricsListen
    }

    /// Each merchant's `max_requests_per_second` (nil: none), by `mch_id`.
    public var rateLimits: [String: Double?] {
        Dictionary(merchants.map { ($0.mchID, $0.maxRequestsPerSecond) }) { $1 }
    }

    /// Where the order table is: `database` parsed (it was validated when loaded).
    public var databaseLocation: DatabaseLocation {
        (try? DatabaseLocation(parsing: database)) ?? .sqlite(path: database)
    }

    /// The merchant configured for `mchID`, if any.
    public func merchant(_ mchID: String) -> Merchant? {
        merchants.first { $0.mchID == mchID }
    }

    /// Settings that work but deserve a warning line at start: plain `http://` to a host that
    /// is not this machine sends signed requests and answers across the network in clear text.
    /// A metrics endpoint on an address other machines can reach is warned about too: it has
    /// no authentication.
    public var warnings: [String] {
        var warnings = [("api.base_url", api.baseURL as String?), ("api.backup_base_url", api.backupBaseURL)].compactMap {
            key, value -> String? in
            guard let value, let url = URL(string: value), url.scheme == "http", let host = url.host,
                !Self.isLoopback(host)
            else { return nil }
            return "\(key) is plain http:// to \(host), which is not this machine: requests and answers cross the network "
                + "unencrypted; use https:// unless a TLS proxy on that host's path is intended"
        }
        if case .postgresql(let address) = databaseLocation {
            if address.password != nil {
                warnings.append(
                    "database: the URL carries a password, which ps, shell history and this file's readers can see; "
                        + "put it in database_password_file (mode 0600) or database_password_credential instead")
            }
            if address.host != nil && !Self.isLoopback(address.host ?? "") && address.tlsMode != .verifyFull {
                warnings.append(
                    "database: sslmode=\(address.tlsMode.rawValue) to \(address.host ?? "") does not verify the server's "
                        + "certificate; use sslmode=verify-full")
            }
        }
        if let listen = metricsListen, !Self.isLoopback(listen.host) {
            warnings.append(
                "metrics.listen is \(listen), which other machines may reach: the endpoint has no authentication "
                    + "(it shows counts, merchant ids and the due backlog); keep it behind a firewall")
        }
        return warnings
    }

    static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host.hasPrefix("127.") || host == "::1" || host == "[::1]"
    }

    /// The effective configuration as one log-friendly line, without any key.
    public var summaryWithoutSecrets: String {
        let merchantList = merchants.map { merchant in
            let limit = merchant.maxRequestsPerSecond.map { ", at most \($0)/s" } ?? ""
            let kind: String
            switch merchant.credentials {
            case .v2(_, let signType): kind = "v2 \(signType.rawValue)"
            case .v3(let v3): kind = "v3 serial \(v3.serialNo), WeChat Pay key \(v3.wechatpayPublicKeyID)"
            }
            return "\(merchant.mchID)(\(kind), keys from \(merchant.keySource)\(limit))"
        }
        return
            "database=\(databaseLocation.redacted) api.base_url=\(api.baseURL) api.backup_base_url=\(api.backupBaseURL ?? "none") "
            + "api.timeout_seconds=\(api.timeoutSeconds) api.probe_interval_seconds=\(api.probeIntervalSeconds) "
            + "reaper.poll_interval_seconds=\(reaper.pollIntervalSeconds) reaper.concurrency=\(reaper.concurrency) "
            + "reaper.batch_size=\(reaper.batchSize) reaper.min_order_age_seconds=\(reaper.minOrderAgeSeconds) "
            + "reaper.payment_timeout_seconds=\(reaper.paymentTimeoutSeconds) reaper.max_attempts=\(reaper.maxAttempts) "
            + "reaper.backoff_base_seconds=\(reaper.backoffBaseSeconds) reaper.backoff_max_seconds=\(reaper.backoffMaxSeconds) "
            + "reaper.lease_seconds=\(reaper.leaseSeconds) reaper.confirm=\(reaper.confirm.rawValue) "
            + "metrics.listen=\(metricsListen.map(String.init(describing:)) ?? "off") merchants=[\(merchantList.joined(separator: ", "))]"
    }
}
