import Foundation
import Synchronization

/// A datagram socket standing in for systemd's notify socket: it records every message
/// with the time it arrived.
final class NotifySocket: Sendable {
    struct Message: Sendable {
        let text: String
        let arrived: ContinuousClock.Instant
    }

    /// What `$NOTIFY_SOCKET` should be set to: the path, or `@name` for an abstract socket.
    let address: String
    private let descriptor: Int32
    private let received = Mutex<[Message]>([])
    private let open = Atomic<Bool>(true)

    init(abstract: Bool, directory: String) throws {
        let name = abstract ? "closeorderd-test-\(UUID().uuidString.prefix(8))" : directory + "/notify.sock"
        address = abstract ? "@" + name : name
        descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var socketAddress = sockaddr_un()
        socketAddress.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(name.utf8)
        if abstract { bytes.insert(0, at: 0) }
        withUnsafeMutableBytes(of: &socketAddress.sun_path) { $0.copyBytes(from: bytes) }
        let length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + bytes.count + (abstract ? 0 : 1))
        let bound = withUnsafePointer(to: &socketAddress) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) }
        }
        guard bound == 0 else { throw POSIXError(.init(rawValue: errno) ?? .EINVAL) }
        var timeout = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let thread = Thread { [self] in
            var buffer = [UInt8](repeating: 0, count: 4096)
            while open.load(ordering: .relaxed) {
                let count = recv(descriptor, &buffer, buffer.count, 0)
                if count > 0 {
                    let message = Message(text: String(decoding: buffer[0..<count], as: UTF8.self), arrived: .now)
                    received.withLock { $0.append(message) }
                }
            }
            close(descriptor)
        }
        thread.start()
    }

    var messages: [Message] { received.withLock { $0 } }

    /// Every `KEY=VALUE` line received, in order.
    var lines: [String] { messages.flatMap { $0.text.split(separator: "\n").map(String.init) } }

    func stop() { open.store(false, ordering: .relaxed) }
}
