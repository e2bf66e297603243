extension ConfigurationLoader {
    /// The `metrics:` section: `listen: HOST:PORT`, or nothing for no endpoint.
    static func readMetricsListen(_ section: MappingReader) throws(ConfigurationError)
        -> DaemonConfiguration.ListenAddress?
    {
        try section.onlyKeys(["listen"])
        guard let text = try section.string("listen"), !text.isEmpty else { return nil }
        guard let address = listenAddress(text) else {
            throw section.fail(
                "metrics.listen",
                "must be HOST:PORT with an IPv4 address, localhost or a bracketed IPv6 address and a port 0 to 65535 "
                    + "(e.g. 127.0.0.1:9464; 0 picks a free port, which the log names), got \"\(text)\"")
        }
        return address
    }

    /// Parses `127.0.0.1:9464`, `localhost:9464` or `[::1]:9464`; nil for anything else.
    static func listenAddress(_ text: String) -> DaemonConfiguration.ListenAddress? {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
            (0...65535).contains(port)
        else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") {
            host = String(host.dropFirst().dropLast())
            guard host.contains(":"), host.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }) else { return nil }
        } else {
            let octets = host.split(separator: ".", omittingEmptySubsequences: false)
            let isIPv4 = octets.count == 4 && octets.allSatisfy { UInt8($0) != nil && ($0.count == 1 || !$0.hasPrefix("0")) }
            guard isIPv4 || host == "localhost" else { return nil }
        }
        return DaemonConfiguration.ListenAddress(host: host, port: port)
    }
}
