import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL

/// A raw TCP server on a free loopback port that answers HTTP/1.1 requests with whatever
/// bytes a test scripts, at whatever pace: a body that trickles in, a 204 that carries a
/// body, an answer for another merchant. It records when each request arrived and when its
/// answer ended, so tests can check that no two calls for one order overlapped.
public final class LyingServer: Sendable {
    /// One request as it arrived.
    public struct Request: Sendable {
        public let index: Int
        /// Which connection it came on: 0 for the first the server accepted, and so on.
        public let connection: Int
        public let method: String
        public let path: String
        public let headers: [String: String]
        public let body: [UInt8]
        public let arrived: ContinuousClock.Instant
        public var finished: ContinuousClock.Instant?

        public var bodyText: String { String(decoding: body, as: UTF8.self) }
    }

    /// One thing the server does while answering.
    public enum Step: Sendable {
        case write([UInt8])
        case pause(Duration)
        case close
    }

    public typealias Script = @Sendable (Request) -> [Step]

    let channel: any Channel
    let log: NIOLockedValueBox<[Request]>
    public let port: Int

    public var baseURL: String { "http://127.0.0.1:\(port)" }

    /// Every request so far, in arrival order.
    public var requests: [Request] { log.withLockedValue { $0 } }

    private init(channel: any Channel, log: NIOLockedValueBox<[Request]>) {
        self.channel = channel
        self.log = log
        self.port = channel.localAddress?.port ?? 0
    }

    /// Starts the server; with `tls` (a certificate and its key, PEM), it speaks HTTPS.
    public static func start(
        tls: (certificatePEM: String, privateKeyPEM: String)? = nil, _ script: @escaping Script
    ) async throws -> LyingServer {
        let log = NIOLockedValueBox<[Request]>([])
        let connections = NIOLockedValueBox(0)
        let context = try tls.map { tls in
            try NIOSSLContext(
                configuration: .makeServerConfiguration(
                    certificateChain: [.certificate(try NIOSSLCertificate(bytes: Array(tls.certificatePEM.utf8), format: .pem))],
                    privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(tls.privateKeyPEM.utf8), format: .pem))))
        }
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let connection = connections.withLockedValue { count in
                        defer { count += 1 }
                        return count
                    }
                    if let context { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context)) }
                    try channel.pipeline.syncOperations.addHandler(
                        ScriptedHandler(script: script, log: log, connection: connection))
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        return LyingServer(channel: channel, log: log)
    }

    public func stop() async { try? await channel.close() }

    /// A complete HTTP/1.1 response: status line, headers (Content-Length added unless given), body.
    public static func response(
        status: Int, reason: String = "OK", headers: [(String, String)] = [], body: [UInt8] = [], contentLength: Int? = nil
    ) -> [UInt8] {
        var head = "HTTP/1.1 \(status) \(reason)\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        head += "Content-Length: \(contentLength ?? body.count)\r\n\r\n"
        return Array(head.utf8) + body
    }

    /// The largest number of requests whose answers were in progress at once among those
    /// for which `sameOrder` holds pairwise (e.g. requests naming one out_trade_no).
    public func maximumOverlap(where belongs: (Request) -> Bool) -> Int {
        let chosen = requests.filter(belongs)
        var best = 0
        for request in chosen {
            let overlapping = chosen.filter { other in
                other.arrived <= request.arrived && (other.finished ?? .now) > request.arrived
            }
            best = max(best, overlapping.count)
        }
        return best
    }
}

/// Reads requests off one connection and plays the script for each.
private final class ScriptedHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let script: LyingServer.Script
    let log: NIOLockedValueBox<[LyingServer.Request]>
    let connection: Int
    var buffer: [UInt8] = []
    var open: [Int] = []

    init(script: @escaping LyingServer.Script, log: NIOLockedValueBox<[LyingServer.Request]>, connection: Int) {
        self.script = script
        self.log = log
        self.connection = connection
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        buffer += unwrapInboundIn(data).readableBytesView
        while let request = takeRequest() { play(request, context: context) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        for index in open { finish(index) }
        open = []
        context.fireChannelInactive()
    }

    private func takeRequest() -> LyingServer.Request? {
        let separator: [UInt8] = Array("\r\n\r\n".utf8)
        guard let end = buffer.indices.first(where: { buffer[$0...].starts(with: separator) }) else { return nil }
        let lines = String(decoding: buffer[..<end], as: UTF8.self).components(separatedBy: "\r\n")
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2 { headers[parts[0].lowercased()] = parts[1].trimmingCharacters(in: .whitespaces) }
        }
        let length = Int(headers["content-length"] ?? "0") ?? 0
        let bodyStart = end + separator.count
        guard buffer.count >= bodyStart + length else { return nil }
        let body = Array(buffer[bodyStart..<bodyStart + length])
        buffer.removeFirst(bodyStart + length)
        let requestLine = (lines.first ?? "").split(separator: " ")
        return log.withLockedValue { log in
            let request = LyingServer.Request(
                index: log.count, connection: connection, method: requestLine.first.map(String.init) ?? "",
                path: requestLine.dropFirst().first.map(String.init) ?? "", headers: headers, body: body, arrived: .now)
            log.append(request)
            return request
        }
    }

    private func play(_ request: LyingServer.Request, context: ChannelHandlerContext) {
        open.append(request.index)
        var delay = Duration.zero
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        for step in script(request) {
            switch step {
            case .pause(let pause):
                delay += pause
            case .write(let bytes):
                schedule(after: delay, context) {
                    let (handler, context) = loopBound.value
                    guard context.channel.isActive else { return }
                    context.writeAndFlush(handler.wrapOutboundOut(context.channel.allocator.buffer(bytes: bytes)), promise: nil)
                }
            case .close:
                schedule(after: delay, context) { loopBound.value.1.close(promise: nil) }
            }
        }
        schedule(after: delay, context) {
            let (handler, _) = loopBound.value
            handler.open.removeAll { $0 == request.index }
            handler.finish(request.index)
        }
    }

    private func schedule(after delay: Duration, _ context: ChannelHandlerContext, _ work: @escaping @Sendable () -> Void) {
        if delay == .zero {
            work()
        } else {
            context.eventLoop.scheduleTask(in: TimeAmount(delay), work)
        }
    }

    private func finish(_ index: Int) {
        log.withLockedValue { log in
            if log[index].finished == nil { log[index].finished = .now }
        }
    }
}
