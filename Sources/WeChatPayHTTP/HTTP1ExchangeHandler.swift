import NIOCore
import NIOHTTP1
import WeChatPay

/// One request for a connection: written at once (head, body and end in one flush), its
/// answer collected whole into `answer`, which fails at `deadline`.
struct OutgoingRequest {
    let head: HTTPRequestHead
    let body: ByteBuffer?
    /// Keep the `Wechatpay-*` headers (API v3 answers are signed in them).
    let collectHeaders: Bool
    let deadline: NIODeadline
    let answer: EventLoopPromise<V3HTTPAnswer>
}

/// Why a connection gave no answer.
enum TransportFailure: Error {
    /// The request never left: the connection failed (closed, TLS refused) before it was
    /// written, so WeChat Pay cannot have received it.
    case notSent(any Error)
    /// The deadline passed; `headArrived` says whether the answer had begun.
    case timedOut(headArrived: Bool)
    /// The connection closed (or was closed) before the whole answer arrived.
    case closedEarly
    /// The body went over `FlatXML.maximumBodySize`.
    case tooLarge
}

/// The bytes where an answer's head should start could not be parsed.
struct UnreadableHead: Error {
    let parserError: HTTPParserError
}

/// The last handler of a pooled HTTP/1.1 connection: one exchange at a time, from the
/// request's write to the answer's end, all on the connection's event loop. The answer
/// completes exactly once: whole, or failed by the deadline, the 64 KB cap, a parse error or
/// the connection's end. A connection that ends an exchange in any way but a whole keep-alive
/// answer is closed; bytes that arrive with no exchange under way close it too.
final class HTTP1ExchangeHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = OutgoingRequest
    typealias OutboundOut = HTTPClientRequestPart

    private struct Exchange {
        let answer: EventLoopPromise<V3HTTPAnswer>
        let collectHeaders: Bool
        var timer: Scheduled<Void>?
        var status: Int?
        var headers: [String: String] = [:]
        var body = ByteBuffer()
        var keepAlive = true
        /// The request is written (to the socket, or through TLS): WeChat Pay may have it.
        var sent = false
    }

    private var exchange: Exchange?
    /// A whole answer read, delivered (and the connection freed) once the rest of the read
    /// is handled: bytes right behind it that nobody asked for must close the connection
    /// before another call can take it.
    private var whole: (answer: EventLoopPromise<V3HTTPAnswer>, value: V3HTTPAnswer, keepAlive: Bool)?
    /// Called on the event loop when a whole keep-alive answer leaves the connection free.
    private let onFree: (any Channel) -> Void

    init(onFree: @escaping (any Channel) -> Void) { self.onFree = onFree }

    /// Sends a request on `channel` (whose last handler is an `HTTP1ExchangeHandler`) and
    /// waits for the whole answer, or its failure, by `deadline`. A channel that closed
    /// before the request reached the handler fails the write, and the answer with it; a
    /// cancelled caller closes the channel, which ends the exchange at once.
    static func exchange(
        head: HTTPRequestHead, body: ByteBuffer?, collectHeaders: Bool, on channel: any Channel, by deadline: NIODeadline
    ) async throws -> V3HTTPAnswer {
        let answer = channel.eventLoop.makePromise(of: V3HTTPAnswer.self)
        let written = channel.eventLoop.makePromise(of: Void.self)
        written.futureResult.whenFailure { answer.fail(TransportFailure.notSent($0)) }
        channel.writeAndFlush(
            OutgoingRequest(head: head, body: body, collectHeaders: collectHeaders, deadline: deadline, answer: answer),
            promise: written)
        return try await withTaskCancellationHandler {
            try await answer.futureResult.get()
        } onCancel: {
            channel.close(promise: nil)
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        promise?.succeed()
        guard exchange == nil, context.channel.isActive else {
            // Closed (a TLS handshake refused, say) between leaving the pool and this write.
            request.answer.fail(TransportFailure.notSent(TransportFailure.closedEarly))
            return
        }
        var started = Exchange(answer: request.answer, collectHeaders: request.collectHeaders)
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        started.timer = context.eventLoop.scheduleTask(deadline: request.deadline) {
            let (handler, context) = bound.value
            let headArrived = handler.exchange?.status != nil
            handler.end(.failure(TransportFailure.timedOut(headArrived: headArrived)), context: context)
        }
        exchange = started
        context.write(wrapOutboundOut(.head(request.head)), promise: nil)
        if let body = request.body { context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil) }
        let sent = context.eventLoop.makePromise(of: Void.self)
        sent.futureResult.whenComplete { result in
            let (handler, context) = bound.value
            switch result {
            // The exchange under way is this one: another starts only after a whole answer.
            case .success: handler.exchange?.sent = true
            case .failure(let error): handler.end(.failure(error), context: context)
            }
        }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: sent)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard var current = exchange else {
            // An answer nobody asked for: whatever this connection reads next is suspect.
            whole?.keepAlive = false
            context.close(promise: nil)
            return
        }
        switch unwrapInboundIn(data) {
        case .head(let head):
            current.status = Int(head.status.code)
            current.keepAlive = head.isKeepAlive
            if current.collectHeaders {
                for (name, value) in head.headers where name.lowercased().hasPrefix("wechatpay-") {
                    current.headers[name.lowercased()] = value
                }
            }
            exchange = current
        case .body(var part):
            guard current.body.readableBytes + part.readableBytes <= FlatXML.maximumBodySize else {
                end(.failure(TransportFailure.tooLarge), context: context)
                return
            }
            exchange = nil  // keeps `body` uniquely referenced while it grows
            current.body.writeBuffer(&part)
            exchange = current
        case .end:
            let answer = V3HTTPAnswer(
                status: current.status ?? 0, headers: current.headers, body: Array(buffer: current.body))
            end(.success(answer), context: context)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        deliverWhole(context: context)
        context.fireChannelReadComplete()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // After a whole answer, the error is about bytes nobody asked for: the answer stands.
        whole?.keepAlive = false
        deliverWhole(context: context)
        if let parserError = error as? HTTPParserError, exchange?.status == nil {
            end(.failure(UnreadableHead(parserError: parserError)), context: context)
        } else {
            end(.failure(error), context: context)
        }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        deliverWhole(context: context)
        end(.failure(TransportFailure.closedEarly), context: context)
        context.fireChannelInactive()
    }

    /// Ends the exchange under way, if any: a whole answer waits for the end of the read
    /// (`deliverWhole`); a failure closes the connection and fails the call at once.
    private func end(_ result: Result<V3HTTPAnswer, any Error>, context: ChannelHandlerContext) {
        guard let finished = exchange else { return }
        exchange = nil
        finished.timer?.cancel()
        switch result {
        case .success(let answer):
            whole = (finished.answer, answer, finished.keepAlive)
        case .failure(let error):
            context.close(promise: nil)
            finished.answer.fail(finished.sent || error is UnreadableHead ? error : TransportFailure.notSent(error))
        }
    }

    /// Delivers the whole answer read, if any; the connection goes back to its pool only if
    /// the answer allows keep-alive and nothing else arrived behind it.
    private func deliverWhole(context: ChannelHandlerContext) {
        guard let delivered = whole else { return }
        whole = nil
        if delivered.keepAlive && context.channel.isActive {
            onFree(context.channel)
        } else {
            context.close(promise: nil)
        }
        delivered.answer.succeed(delivered.value)
    }
}
