import ConfigurationFile
import Logging
import ServiceLifecycle
import Synchronization

/// The endpoint as a service of the daemon: listens where the configuration says, moves
/// when a reload changes `metrics.listen`, and closes on shutdown.
///
/// A reload whose new address cannot be bound keeps the endpoint where it was and logs
/// why; the reaper goes on either way.
public final class MetricsEndpoint: Service, Sendable {
    public typealias Address = DaemonConfiguration.ListenAddress

    let responder: MetricsResponder
    let logger: Logger
    private let server = Mutex<MetricsServer?>(nil)
    /// The address last asked for and bound (its port may be 0, where the server's is the one picked).
    private let requested = Mutex<Address?>(nil)
    private let moves = Mutex<Task<Void, Never>?>(nil)

    /// An endpoint listening nowhere yet.
    public init(responder: MetricsResponder, logger: Logger) {
        self.responder = responder
        self.logger = logger
    }

    /// The address bound now, if any.
    public var listening: Address? { server.withLock { $0.map { Address(host: $0.host, port: $0.port) } } }

    /// Starts listening on `address`, or stops for nil. Throws if the address cannot be bound;
    /// the endpoint then stays where it was. A move to another host on the same port (say
    /// `127.0.0.1:9464` to `0.0.0.0:9464`) closes the old socket first, since both cannot be
    /// bound at once; if the new one then fails, the old address is bound again.
    public func listen(on address: Address?) async throws {
        if requested.withLock({ $0 }) == address { return }
        let old = server.withLock { $0 }
        let samePort = address != nil && address?.port != 0 && address?.port == old?.port
        if samePort { await old?.stop() }
        var new: MetricsServer?
        do {
            if let address {
                new = try await MetricsServer.start(responder, host: Self.bindable(address.host), port: address.port)
            }
        } catch {
            if samePort, let old {
                let back = try? await MetricsServer.start(responder, host: old.host, port: old.port)
                server.withLock { $0 = back }
                if back == nil { requested.withLock { $0 = nil } }
            }
            throw error
        }
        server.withLock { $0 = new }
        requested.withLock { $0 = address }
        if !samePort { await old?.stop() }
        if let new {
            logger.info("serving metrics", metadata: ["listen": "\(Address(host: new.host, port: new.port))"])
        } else if old != nil {
            logger.info("metrics endpoint closed: metrics.listen is no longer set")
        }
    }

    /// `localhost` is bound as 127.0.0.1: resolving it could give `::1` first.
    static func bindable(_ host: String) -> String { host == "localhost" ? "127.0.0.1" : host }

    /// As `listen(on:)`, for a reload: returns at once; moves happen one after another, in
    /// the order asked for, and a failure is logged, not thrown.
    public func move(to address: Address?) {
        moves.withLock { last in
            let previous = last
            last = Task {
                await previous?.value
                await self.moveNow(to: address)
            }
        }
    }

    /// Waits for the moves asked for so far.
    public func settled() async {
        await moves.withLock { $0 }?.value
    }

    private func moveNow(to address: Address?) async {
        do {
            try await listen(on: address)
        } catch {
            let kept = listening.map(String.init(describing:)) ?? "nowhere"
            logger.error(
                "cannot serve metrics on the new metrics.listen; still listening on \(kept)",
                metadata: ["listen": "\(address.map(String.init(describing:)) ?? "-")", "error": "\(error)"])
        }
    }

    /// Runs until graceful shutdown (the daemon's last service to stop), then closes the
    /// listening socket and its connections, once any move under way has finished.
    public func run() async throws {
        try? await gracefulShutdown()
        await settled()
        let last = server.withLock { server in
            defer { server = nil }
            return server
        }
        await last?.stop()
    }
}
