import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// Serves a `MetricsResponder` over HTTP/1.1 on one address.
///
/// ```swift
/// let server = try await MetricsServer.start(responder, host: "127.0.0.1", port: 9464)
/// try await server.stop()
/// ```
public final class MetricsServer: Sendable {
    public let host: String
    /// The port bound (the one asked for, or the one picked for port 0).
    public let port: Int
    let channel: any Channel

    private init(host: String, port: Int, channel: any Channel) {
        self.host = host
        self.port = port
        self.channel = channel
    }

    /// Starts listening. A connection idle for `idleTimeout` is closed, so that scrapers
    /// that vanished do not hold sockets for ever, and a connection beyond
    /// `maximumConnections` open at once is closed at once: the daemon's file descriptors
    /// are for its database and WeChat Pay, not for whoever opens sockets here.
    public static func start(
        _ responder: MetricsResponder, host: String, port: Int, idleTimeout: Duration = .seconds(60),
        maximumConnections: Int = 16
    ) async throws -> MetricsServer {
        let open = Atomic<Int>(0)
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                guard open.add(1, ordering: .relaxed).newValue <= maximumConnections else {
                    open.subtract(1, ordering: .relaxed)
                    return channel.close()
                }
                channel.closeFuture.whenComplete { _ in open.subtract(1, ordering: .relaxed) }
                return channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    try pipeline.configureHTTPServerPipeline(withErrorHandling: true)
                    try pipeline.addHandlers([
                        IdleStateHandler(readTimeout: TimeAmount(idleTimeout)), MetricsHTTPHandler(responder: responder),
                    ])
                }
            }
            .bind(host: host, port: port)
            .get()
        return MetricsServer(host: host, port: channel.localAddress?.port ?? port, channel: channel)
    }

    /// Stops accepting connections and closes the listening socket.
    public func stop() async {
        try? await channel.close()
    }
}

/// Reads one request at a time (a request body is read and ignored) and answers it.
final class MetricsHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let responder: MetricsResponder
    var head: HTTPRequestHead?

    init(responder: MetricsResponder) { self.responder = responder }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
        case .body:
            break
        case .end:
            guard let head else { return }
            self.head = nil
            let path = String(head.uri.split(separator: "?", maxSplits: 1).first ?? "")
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            let eventLoop = context.eventLoop
            let responder = responder
            Task {
                let response = await responder.respond(method: head.method.rawValue, path: path)
                eventLoop.execute {
                    let (handler, context) = loopBound.value
                    handler.send(response, to: head, context: context)
                }
            }
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    private func send(_ response: MetricsResponder.Response, to request: HTTPRequestHead, context: ChannelHandlerContext) {
        guard context.channel.isActive else { return }
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: response.contentType)
        headers.add(name: "Content-Length", value: "\(response.body.count)")
        headers.add(name: "Cache-Control", value: "no-store")
        for (name, value) in response.headers.sorted(by: { $0.key < $1.key }) { headers.add(name: name, value: value) }
        let keepAlive = request.isKeepAlive
        headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        let head = HTTPResponseHead(
            version: request.version, status: HTTPResponseStatus(statusCode: response.status), headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if request.method != .HEAD {
            context.write(
                wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: response.body)))), promise: nil)
        }
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            done.whenComplete { _ in context.close(promise: nil) }
        }
    }
}
