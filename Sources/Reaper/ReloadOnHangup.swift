import ServiceLifecycle
import UnixSignals

/// Calls `reload` on every SIGHUP until graceful shutdown (`ExecReload=kill -HUP $MAINPID`).
public struct ReloadOnHangup: Service {
    let reload: @Sendable () async -> Void
    let listening: @Sendable () -> Void

    /// `listening` is called once SIGHUP is being handled.
    public init(reload: @escaping @Sendable () async -> Void, listening: @escaping @Sendable () -> Void = {}) {
        self.reload = reload
        self.listening = listening
    }

    public func run() async throws {
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        listening()
        try? await cancelWhenGracefulShutdown {
            for await _ in hangups { await reload() }
        }
    }
}
