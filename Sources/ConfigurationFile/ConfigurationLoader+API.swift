import Foundation

extension ConfigurationLoader {
    /// The `api:` section.
    static func readAPI(_ section: MappingReader) throws(ConfigurationError) -> DaemonConfiguration.API {
        var api = DaemonConfiguration.API()
        try section.onlyKeys(["base_url", "backup_base_url", "timeout_seconds", "probe_interval_seconds"])
        if let url = try section.string("base_url") { api.baseURL = try baseURL(url, key: "api.base_url", fail: section.fail) }
        // Without backup_base_url, only the default primary has a backup (its own, api2): a
        // custom primary (the simulator, a proxy, a test double) must never fail over to production.
        if section.mapping["backup_base_url"] != nil {
            let url = try section.string("backup_base_url") ?? ""
            api.backupBaseURL =
                url.isEmpty || url == "none" ? nil : try baseURL(url, key: "api.backup_base_url", fail: section.fail)
        }
        if let value = try section.number("timeout_seconds", in: 0.001...600) { api.timeoutSeconds = value }
        if let value = try section.number("probe_interval_seconds", in: 0.01...3600) { api.probeIntervalSeconds = value }
        return api
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
}
