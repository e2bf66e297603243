import Foundation

/// Holds a loopback port that a test's server gave up, so that no other test's server (the
/// suites run in parallel) is handed the same port while it is down: a socket bound to it,
/// never listening, answers every connection with a refusal, as a stopped server would.
public final class ReservedPort: @unchecked Sendable {
    private var descriptor: Int32

    public init(_ port: Int) throws {
        descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        var yes: Int32 = 1
        setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        let bound = withLoopbackAddress(port: port) { bind(descriptor, $0, $1) }
        guard bound == 0 else {
            let error = errno
            close(descriptor)
            throw POSIXError(.init(rawValue: error) ?? .EADDRINUSE)
        }
    }

    /// Frees the port, just before the test's server binds it again.
    public func release() {
        if descriptor >= 0 { close(descriptor) }
        descriptor = -1
    }

    deinit { release() }
}
