import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization

/// Keep-alive HTTP/1.1 connections to WeChat Pay's hosts, each serving one exchange at a
/// time. A call takes the most recently freed connection to its host, or opens one; a whole
/// keep-alive answer frees it again. At most `maxIdlePerHost` wait idle per host (more are
/// closed), and one idle for `idleTimeout` is closed when next looked at. Callers bound how
/// many are in use at once (the reaper's call slots).
///
/// TLS goes through NIOSSL with the system's trust store, the server's name checked against
/// its certificate (no name is sent or checked for an IP address, as SNI forbids them).
final class HTTP1ConnectionPool: Sendable {
    private struct Idle {
        let channel: any Channel
        let since: NIODeadline
    }

    private struct State {
        var idle: [BaseURL: [Idle]] = [:]
        var shutDown = false
    }

    let group: any EventLoopGroup
    let maxIdlePerHost: Int
    let idleTimeout: TimeAmount
    private let state = Mutex(State())
    let tlsConfiguration: TLSConfiguration
    /// Made on the first `https` connection: loading the trust store takes a while.
    private let tls: Mutex<NIOSSLContext?> = Mutex(nil)

    init(
        group: any EventLoopGroup, maxIdlePerHost: Int, idleTimeout: TimeAmount = .seconds(60),
        tls: TLSConfiguration = .makeClientConfiguration()
    ) {
        self.group = group
        self.tlsConfiguration = tls
        self.maxIdlePerHost = max(1, maxIdlePerHost)
        self.idleTimeout = idleTimeout
    }

    /// A connection to `base` with no exchange under way: an idle one (`reused`) unless
    /// `reuse` is false, or a new one, connected by `connectBy`.
    func connection(to base: BaseURL, connectBy deadline: NIODeadline, reuse: Bool = true) async throws -> (
        channel: any Channel, reused: Bool
    ) {
        let now = NIODeadline.now()
        while reuse, let idle = state.withLock({ $0.idle[base]?.popLast() }) {
            if idle.channel.isActive && now - idle.since < idleTimeout { return (idle.channel, true) }
            idle.channel.close(promise: nil)
        }
        return (try await connect(to: base, by: deadline), false)
    }

    /// Closes every idle connection; connections in use close when their exchange ends.
    func shutdown() async {
        let idle = state.withLock { state in
            state.shutDown = true
            defer { state.idle.removeAll() }
            return state.idle.values.flatMap { $0 }
        }
        for connection in idle { try? await connection.channel.close() }
    }

    private func connect(to base: BaseURL, by deadline: NIODeadline) async throws -> any Channel {
        let tlsContext = base.tls ? try tlsContext() : nil
        let serverName = base.hostIsAddress ? nil : base.host
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(max(.milliseconds(1), deadline - .now()))
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    if let tlsContext {
                        try pipeline.addHandler(NIOSSLClientHandler(context: tlsContext, serverHostname: serverName))
                    }
                    try pipeline.addHTTPClientHandlers()
                    try pipeline.addHandler(HTTP1ExchangeHandler { [weak self] channel in self?.free(channel, base: base) })
                }
            }
        return try await bootstrap.connect(host: base.host, port: base.port).get()
    }

    /// Puts a connection whose exchange ended with a whole keep-alive answer back for reuse.
    private func free(_ channel: any Channel, base: BaseURL) {
        let kept = state.withLock { state in
            guard !state.shutDown, state.idle[base, default: []].count < maxIdlePerHost else { return false }
            state.idle[base, default: []].append(Idle(channel: channel, since: .now()))
            return true
        }
        if !kept { channel.close(promise: nil) }
    }

    private func tlsContext() throws -> NIOSSLContext {
        try tls.withLock { context in
            if let context { return context }
            let made = try NIOSSLContext(configuration: tlsConfiguration)
            context = made
            return made
        }
    }
}
