import ServiceLifecycle
import UnixSignals

/// Calls `reload` on every SIGHUP until graceful shutdown (`ExecReload=kill -HUP $MAINPID`).
public struct ReloadOnHangup: Service {
    let reload: @Sendable () async -> Void

    public init(reload: @escaping @Sendable () async -> Void) { self.reload = reload }

    public func run() async throws {
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        try? await cancelWhenGracefulShutdown {
            for await _ in hangups { await reload() }
        }
    }
}
