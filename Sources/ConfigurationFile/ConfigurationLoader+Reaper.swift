extension ConfigurationLoader {
    /// The `reaper:` section.
    static func readReaper(_ section: MappingReader) throws(ConfigurationError) -> DaemonConfiguration.ReaperSettings {
        var reaper = DaemonConfiguration.ReaperSettings()
        try section.onlyKeys([
            "poll_interval_seconds", "concurrency", "batch_size", "min_order_age_seconds",
            "payment_timeout_seconds", "max_attempts", "backoff_base_seconds", "backoff_max_seconds", "lease_seconds",
            "confirm",
        ])
        if let text = try section.string("confirm") {
            guard let mode = DaemonConfiguration.ConfirmMode(rawValue: text) else {
                throw section.fail("reaper.confirm", "must be none, before or after, got \"\(text)\"")
            }
            reaper.confirm = mode
        }
        if let value = try section.number("poll_interval_seconds", in: 0.01...3600) { reaper.pollIntervalSeconds = value }
        if let value = try section.integer("concurrency", in: 1...4096) { reaper.concurrency = Int(value) }
        if let value = try section.integer("batch_size", in: 1...100_000) { reaper.batchSize = Int(value) }
        if let value = try section.integer("min_order_age_seconds", in: 0...Int64(Int32.max)) {
            guard value >= DaemonConfiguration.ReaperSettings.minimumOrderAgeFloor else {
                throw section.fail(
                    "reaper.min_order_age_seconds",
                    "must be at least 300: WeChat Pay forbids closing an order within 5 minutes of its creation (got \(value))")
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
        return reaper
    }

    /// Rules across sections: the backoff's cap is above its base, and a lease outlasts a call.
    static func checkTogether(
        _ reaper: DaemonConfiguration.ReaperSettings, _ api: DaemonConfiguration.API, context: ConfigurationContext
    ) throws(ConfigurationError) {
        guard reaper.backoffMaxSeconds >= reaper.backoffBaseSeconds else {
            throw context.fail(
                "reaper.backoff_max_seconds", "must be at least reaper.backoff_base_seconds (\(reaper.backoffBaseSeconds))")
        }
        guard Double(reaper.leaseSeconds) > api.timeoutSeconds + 1 else {
            throw context.fail(
                "reaper.lease_seconds",
                "must exceed api.timeout_seconds (\(api.timeoutSeconds)) by more than a second, or a call still in flight could be claimed again"
            )
        }
    }
}
