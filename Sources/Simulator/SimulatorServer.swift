import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// Serves a `SimulatedWeChatPay` over HTTP/1.1 with keep-alive.
///
/// ```swift
/// let server = try await SimulatorServer.start(simulator, host: "127.0.0.1", port: 0)
/// print(server.baseURL)   // http://127.0.0.1:40123
/// try await server.stop()
/// ```
public final class SimulatorServer: Sendable {
    public let simulator: SimulatedWeChatPay
    public let host: String
    public let port: Int
    let channel: any Channel

    /// Requests larger than this are refused with HTTP 413.
    static let maximumRequestSize = 1024 * 1024

    private init(simulator: SimulatedWeChatPay, host: String, port: Int, channel: any Channel) {
        self.simulator = simulator
        self.host = host
        self.port = port
        self.channel = channel
    }

    /// `http://HOST:PORT`, to use as `api.base_url`.
    public var baseURL: String { "http://\(host):\(port)" }

    /// Starts listening; `port` 0 picks a free port. A connection that sends nothing for
    /// `idleTimeout` is closed, so that clients that vanished (half-open connections) do not
    /// pile up in a simulator left running for days.
    public static func start(
        _ simulator: SimulatedWeChatPay, host: String, port: Int, idleTimeout: Duration = .seconds(60)
    ) async throws -> SimulatorServer {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    try pipeline.configureHTTPServerPipeline(withErrorHandling: true)
                    try pipeline.addHandlers([
                        IdleStateHandler(readTimeout: TimeAmount(idleTimeout)), SimulatorHTTPHandler(simulator: simulator),
                    ])
                }
            }
            .bind(host: host, port: port)
            .get()
        let boundPort = channel.localAddress?.port ?? port
        return SimulatorServer(simulator: simulator, host: host, port: boundPort, channel: channel)
    }

    /// Stops accepting connections and closes the listening socket.
    public func stop() async throws {
        try await channel.close()
    }

    /// Runs until the listening socket closes.
    public func waitUntilClosed() async throws {
        try await channel.closeFuture.get()
    }
}

final class SimulatorHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let simulator: SimulatedWeChatPay
    var head: HTTPRequestHead?
    var body: [UInt8] = []
    var tooLarge = false
    /// The order number of a close call counted in flight whose answer has not been sent yet.
    var unanswered: String?

    init(simulator: SimulatedWeChatPay) { self.simulator = simulator }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            body = []
            tooLarge = false
        case .body(let buffer):
            if body.count + buffer.readableBytes > SimulatorServer.maximumRequestSize {
                tooLarge = true
            } else {
                body += buffer.readableBytesView
            }
        case .end:
            guard let head else { return }
            if tooLarge {
                send(status: 413, body: Array("request too large".utf8), keepAlive: false, context: context)
                return
            }
            answer(head, context: context)
        }
    }

    /// Asks the simulator for the reply to a complete request and carries it out, after its
    /// delay (and, unless it is a `/_sim/` control, after held answers are released).
    private func answer(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = String(head.uri.split(separator: "?", maxSplits: 1).first ?? "")
        var headers: [String: String] = [:]
        for header in head.headers { headers[header.name.lowercased()] = header.value }
        var inFlight: String?
        let reply = simulator.reply(
            method: head.method.rawValue, path: path, body: body, uri: head.uri, headers: headers, inFlight: &inFlight)
        unanswered = inFlight
        let keepAlive = head.isKeepAlive
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        // The simulator's own endpoints answer even while answers are held.
        let after = path.hasPrefix("/_sim/") ? Self.after : Self.afterRelease(of: simulator)
        switch reply {
        case .respond(let status, let body, let delay):
            after(delay, context.eventLoop) {
                let (handler, context) = loopBound.value
                handler.send(status: status, body: body, keepAlive: keepAlive, context: context)
            }
        case .respondWithHeaders(let status, let headers, let body, let delay):
            after(delay, context.eventLoop) {
                let (handler, context) = loopBound.value
                handler.send(status: status, body: body, keepAlive: keepAlive, context: context, extraHeaders: headers)
            }
        case .hang:
            break
        case .drop(let delay):
            after(delay, context.eventLoop) {
                let (handler, context) = loopBound.value
                handler.markAnswered()
                context.close(promise: nil)
            }
        case .truncated(let body, let delay):
            after(delay, context.eventLoop) {
                let (handler, context) = loopBound.value
                handler.sendHalf(of: body, context: context)
            }
        }
    }

    /// Sends the head and half of `body`, then closes the connection.
    private func sendHalf(of body: [UInt8], context: ChannelHandlerContext) {
        markAnswered()
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "text/xml; charset=utf-8")
        headers.add(name: "Content-Length", value: "\(body.count)")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
        let half = context.channel.allocator.buffer(bytes: body.prefix(body.count / 2))
        context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(half)))).whenComplete { _ in
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        markAnswered()
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    /// Runs `work` on `eventLoop` after `milliseconds` (at once for 0, when already there).
    private static func after(_ milliseconds: Int, _ eventLoop: any EventLoop, _ work: @escaping @Sendable () -> Void) {
        if milliseconds > 0 {
            eventLoop.scheduleTask(in: .milliseconds(Int64(milliseconds)), work)
        } else if eventLoop.inEventLoop {
            work()
        } else {
            eventLoop.execute(work)
        }
    }

    /// `after`, counted from when `simulator` releases its answers if it holds them.
    private static func afterRelease(of simulator: SimulatedWeChatPay)
        -> (Int, any EventLoop, @escaping @Sendable () -> Void) -> Void
    {
        { milliseconds, eventLoop, work in
            simulator.whenReleased { after(milliseconds, eventLoop, work) }
        }
    }

    private func markAnswered() {
        if let unanswered {
            simulator.finished(unanswered)
            self.unanswered = nil
        }
    }

    private func send(
        status: Int, body: [UInt8], keepAlive: Bool, context: ChannelHandlerContext, extraHeaders: [String: String]? = nil
    ) {
        guard context.channel.isActive else { return markAnswered() }
        var headers = HTTPHeaders()
        if let extraHeaders {
            for (name, value) in extraHeaders.sorted(by: { $0.key < $1.key }) { headers.add(name: name, value: value) }
        } else {
            headers.add(name: "Content-Type", value: status == 200 ? "text/xml; charset=utf-8" : "text/plain")
        }
        headers.add(name: "Content-Length", value: "\(body.count)")
        headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        let head = HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: status), headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        markAnswered()
        if !keepAlive {
            done.whenComplete { _ in context.close(promise: nil) }
        }
    }
}
