import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// Serves a `MetricsResponder` over HTTP/1.1 on one address.
///
/// ```swift
/// let server = try await MetricsServer.start(responder, host: "127.0.0.1", port: 9464)
/// await server.stop()
/// ```
public final class MetricsServer: Sendable {
    /// The address bound.
    public let host: String
    /// The port bound (the one asked for, or the one picked for port 0).
    public let port: Int
    let channel: any Channel
    /// The connections open now, closed with the server.
    let connections: Connections

    private init(host: String, port: Int, channel: any Channel, connections: Connections) {
        self.host = host
        self.port = port
        self.channel = channel
        self.connections = connections
    }

    /// The accepted connections: counted against the cap, and closed when the server stops
    /// (a keep-alive scraper must not go on being served on an address no longer configured).
    final class Connections: Sendable {
        private let open = Mutex<[ObjectIdentifier: any Channel]>([:])
        let maximum: Int

        init(maximum: Int) { self.maximum = maximum }

        /// Admits `channel` unless the cap is reached.
        func admit(_ channel: any Channel) -> Bool {
            let admitted = open.withLock { open in
                guard open.count < maximum else { return false }
                open[ObjectIdentifier(channel)] = channel
                return true
            }
            if admitted {
                channel.closeFuture.whenComplete { [self] _ in
                    _ = open.withLock { $0.removeValue(forKey: ObjectIdentifier(channel)) }
                }
            }
            return admitted
        }

        func closeAll() {
            for channel in open.withLock({ Array($0.values) }) { channel.close(promise: nil) }
        }
    }

    /// Starts listening. A connection that sends nothing for `idleTimeout` is closed (a
    /// scraper reconnects at its next scrape), so that idle or vanished clients free their
    /// place soon, and a connection beyond
    /// `maximumConnections` open at once is closed at once: the daemon's file descriptors
    /// are for its database and WeChat Pay, not for whoever opens sockets here.
    public static func start(
        _ responder: MetricsResponder, host: String, port: Int, idleTimeout: Duration = .seconds(10),
        maximumConnections: Int = 64
    ) async throws -> MetricsServer {
        let connections = Connections(maximum: maximumConnections)
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { channel in
                guard connections.admit(channel) else { return channel.close() }
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
        return MetricsServer(
            host: host, port: channel.localAddress?.port ?? port, channel: channel, connections: connections)
    }

    /// Closes the listening socket and every connection still open.
    public func stop() async {
        try? await channel.close()
        connections.closeAll()
    }
}

/// Answers one request at a time (swift-nio's pipelining handler keeps answers in order).
///
/// A request with a body, or with another method than GET or HEAD, is answered at once from
/// its head and the connection closed: nothing here reads a body, so none is waited for or
/// streamed in. A malformed request gets swift-nio's 400, then the connection is closed.
final class MetricsHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let responder: MetricsResponder
    /// The request waiting for its end before it is answered (keep-alive).
    var pending: HTTPRequestHead?
    /// Set once an answer closes the connection: what still arrives is dropped.
    var closing = false
    /// Answers being prepared; the client may have shut its side meanwhile.
    var answering = 0
    /// The client shut its side after its requests: close once they are answered.
    var inputClosed = false

    init(responder: MetricsResponder) { self.responder = responder }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        switch unwrapInboundIn(data) {
        case .head(let head):
            let hasBody =
                head.headers.contains(name: "transfer-encoding")
                || head.headers.first(name: "content-length").map { $0.trimmingCharacters(in: .whitespaces) != "0" } == true
            if hasBody || (head.method != .GET && head.method != .HEAD) {
                closing = true
                answer(head, keepAlive: false, context: context)
            } else {
                pending = head
            }
        case .body:
            break
        case .end:
            guard let head = pending else { return }
            pending = nil
            answer(head, keepAlive: head.isKeepAlive, context: context)
        }
    }

    private func answer(_ head: HTTPRequestHead, keepAlive: Bool, context: ChannelHandlerContext) {
        answering += 1
        let path = Self.path(of: head.uri)
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        let responder = responder
        Task {
            let response = await responder.respond(method: head.method.rawValue, path: path)
            eventLoop.execute {
                let (handler, context) = loopBound.value
                handler.send(response, to: head, keepAlive: keepAlive, context: context)
            }
        }
    }

    /// The path of an origin-form (`/metrics?x`) or absolute-form (`http://host/metrics`) target.
    static func path(of uri: String) -> String {
        var target = Substring(uri)
        if let scheme = target.range(of: "://"), target[..<scheme.lowerBound].allSatisfy(\.isLetter) {
            let afterAuthority = target[scheme.upperBound...]
            target = afterAuthority.firstIndex(of: "/").map { afterAuthority[$0...] } ?? "/"
        }
        return String(target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        } else if let event = event as? ChannelEvent, event == .inputClosed {
            // The client sent its request and shut its side (`printf … | nc -N`): answer first.
            inputClosed = true
            if answering == 0 && pending == nil { context.close(promise: nil) }
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    private func send(
        _ response: MetricsResponder.Response, to request: HTTPRequestHead, keepAlive: Bool, context: ChannelHandlerContext
    ) {
        answering -= 1
        guard context.channel.isActive else { return }
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: response.contentType)
        headers.add(name: "Content-Length", value: "\(response.body.count)")
        headers.add(name: "Cache-Control", value: "no-store")
        for (name, value) in response.headers.sorted(by: { $0.key < $1.key }) { headers.add(name: name, value: value) }
        headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        let head = HTTPResponseHead(
            version: request.version, status: HTTPResponseStatus(statusCode: response.status), headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if request.method != .HEAD {
            context.write(
                wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: response.body)))), promise: nil)
        }
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive || (inputClosed && answering == 0) {
            done.whenComplete { _ in context.close(promise: nil) }
        }
    }
}
