#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Speaks systemd's notify protocol (`sd_notify(3)`) without libsystemd: each message is one
/// datagram to the `AF_UNIX` socket named by `$NOTIFY_SOCKET`, a path or, when it starts
/// with `@`, an abstract name. Without `$NOTIFY_SOCKET` nothing is sent.
///
/// ```swift
/// let notifier = ServiceNotifier.fromEnvironment()
/// notifier.notify("READY=1\nSTATUS=polling")
/// ```
public struct ServiceNotifier: Sendable {
    /// The socket address as given, or nil when not running under `Type=notify`.
    public let socketAddress: String?
    /// How often to send `WATCHDOG=1`: half of `$WATCHDOG_USEC`, when the watchdog is on for this process.
    public let watchdogInterval: Duration?

    public init(socketAddress: String?, watchdogInterval: Duration?) {
        self.socketAddress = socketAddress
        self.watchdogInterval = watchdogInterval
    }

    /// Reads `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and `$WATCHDOG_PID` (the watchdog applies only
    /// when `$WATCHDOG_PID` is unset or this process's pid).
    public static func fromEnvironment(_ environment: [String: String] = currentEnvironment()) -> ServiceNotifier {
        let socket = environment["NOTIFY_SOCKET"].flatMap { $0.isEmpty ? nil : $0 }
        var watchdog: Duration?
        if let text = environment["WATCHDOG_USEC"], let microseconds = Int64(text), microseconds > 0 {
            let forThisProcess = environment["WATCHDOG_PID"].map { Int32($0) == getpid() } ?? true
            if forThisProcess { watchdog = .microseconds(microseconds / 2) }
        }
        return ServiceNotifier(socketAddress: socket, watchdogInterval: watchdog)
    }

    public static func currentEnvironment() -> [String: String] {
        var result: [String: String] = [:]
        for name in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            if let value = getenv(name) { result[name] = String(cString: value) }
        }
        return result
    }

    /// Sends one message (`KEY=VALUE` lines). Returns false if it could not be delivered;
    /// a daemon carries on either way, as with `sd_notify`.
    @discardableResult
    public func notify(_ message: String) -> Bool {
        guard let socketAddress else { return false }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var path = Array(socketAddress.utf8)
        if path.first == UInt8(ascii: "@") { path[0] = 0 }
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard !path.isEmpty, path.count < capacity else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            buffer.copyBytes(from: path)
            if path[0] != 0 { buffer[path.count] = 0 }
        }
        // Abstract names are not NUL-terminated: the length says where they end.
        let length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + path.count + (path[0] == 0 ? 0 : 1))
        let descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        let bytes = Array(message.utf8)
        let sent = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                bytes.withUnsafeBytes { buffer in
                    sendto(descriptor, buffer.baseAddress, buffer.count, Int32(MSG_NOSIGNAL), socketAddress, length)
                }
            }
        }
        return sent == bytes.count
    }
}
