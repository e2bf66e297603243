import Clocks
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import WeChatPay

/// One HTTP exchange with WeChat Pay, as the history records it.
public struct Exchange: Sendable {
    /// The base URL that served (or failed) the call.
    public var host: String
    public var httpStatus: Int?
    public var latencyMilliseconds: Int
    /// False when no request left: it could not be signed, or the lease had too little time.
    public var sent = true
}

/// Calls WeChat Pay over HTTP: API v2 `/pay/closeorder` and `/pay/orderquery` (signed XML),
/// and API v3 close and query (RSA-signed JSON, answers verified).
///
/// Connections are kept alive and reused, up to `maxConnections` per host; redirects are
/// refused (a payment API does not redirect); each call, connecting, the response head and
/// the whole body together, ends within `timeoutSeconds` (and before `notAfter`, the end of
/// the caller's lease); the body is capped at 64 KB.
///
/// With a backup base URL, a connection-level failure or an HTTP 5xx from the primary is
/// retried at once on the backup, and later calls go to the backup until the primary
/// answers a probe again (one call at most every `probeIntervalSeconds`).
public final class WeChatPayClient: Sendable {
    public let hosts: HostSelector
    /// The caller's clock: `notAfter` instants are read on it, and v3 signs and checks
    /// timestamps with its wall time.
    let clock: any DaemonClock
    let timeout: Duration
    /// The base URLs taken apart, by their text as configured.
    let bases: [String: BaseURL]
    let connections: HTTP1ConnectionPool

    public convenience init(
        baseURL: String, backupBaseURL: String? = nil, timeoutSeconds: Double, maxConnections: Int,
        probeIntervalSeconds: Double = 30, clock: any DaemonClock = SystemClock()
    ) {
        self.init(
            baseURL: baseURL, backupBaseURL: backupBaseURL, timeoutSeconds: timeoutSeconds, maxConnections: maxConnections,
            probeIntervalSeconds: probeIntervalSeconds, clock: clock, tls: .makeClientConfiguration())
    }

    /// As the public initializer, with the TLS configuration given (tests trust their own certificates).
    init(
        baseURL: String, backupBaseURL: String? = nil, timeoutSeconds: Double, maxConnections: Int,
        probeIntervalSeconds: Double = 30, clock: any DaemonClock = SystemClock(), tls: TLSConfiguration
    ) {
        self.hosts = HostSelector(
            primary: baseURL, backup: backupBaseURL, probeInterval: .milliseconds(Int64(probeIntervalSeconds * 1000)),
            clock: clock)
        self.clock = clock
        self.timeout = .milliseconds(Int64(timeoutSeconds * 1000))
        var bases: [String: BaseURL] = [:]
        for text in [baseURL, backupBaseURL].compactMap({ $0 }) { bases[text] = BaseURL(text) }
        self.bases = bases
        connections = HTTP1ConnectionPool(
            group: MultiThreadedEventLoopGroup.singleton, maxIdlePerHost: maxConnections, tls: tls)
    }

    /// Closes one order. Never throws: a failure to get a usable answer is a `.retry` verdict.
    /// No call is in flight after `notAfter` (the end of the caller's lease): one that
    /// could not finish by then is not started.
    public func close(
        _ order: OrderIdentity, credentials: MerchantCredentials,
        notAfter: ContinuousClock.Instant? = nil
    ) async -> (CloseVerdict, Exchange) {
        let (answer, exchange) = await perform(
            .closeOrder, V3Request.close(order), order: order, credentials: credentials, notAfter: notAfter)
        switch (answer, credentials) {
        case (.failure(let unusable), _):
            return (CloseVerdict(unusable), exchange)
        case (.success(let answer), .v2(let key, _)):
            return (CloseOrderResponse.interpret(status: answer.status, body: answer.body, order: order, key: key), exchange)
        case (.success(let answer), .v3(let v3)):
            return (V3Answer.closeVerdict(answer, credentials: v3, now: clock.secondsSince1970), exchange)
        }
    }

    /// Asks for the order's trade state. Never throws: no usable answer is `.unclear`.
    public func query(
        _ order: OrderIdentity, credentials: MerchantCredentials,
        notAfter: ContinuousClock.Instant? = nil
    ) async -> (QueryConclusion, Exchange) {
        let (answer, exchange) = await perform(
            .orderQuery, V3Request.query(order), order: order, credentials: credentials, notAfter: notAfter)
        switch (answer, credentials) {
        case (.failure(let unusable), _):
            return (.unclear(unusable, errCode: nil), exchange)
        case (.success(let answer), .v2(let key, _)):
            return (OrderQueryResponse.interpret(status: answer.status, body: answer.body, order: order, key: key), exchange)
        case (.success(let answer), .v3(let v3)):
            return (V3Answer.queryConclusion(answer, order: order, credentials: v3, now: clock.secondsSince1970), exchange)
        }
    }

    /// Sends the v2 call (signed XML) or the v3 request (RSA-signed), as the merchant's keys say.
    private func perform(
        _ v2: V2Endpoint, _ v3: @autoclosure () -> V3Request, order: OrderIdentity,
        credentials: MerchantCredentials, notAfter: ContinuousClock.Instant?
    ) async -> (Result<V3HTTPAnswer, UnusableAnswer>, Exchange) {
        switch credentials {
        case .v2(let key, let signType):
            return await call(
                v2.rawValue, api: .v2, method: .POST, headers: Self.xmlHeaders,
                body: V2Request.body(for: order, key: key, signType: signType), notAfter: notAfter)
        case .v3(let v3Credentials):
            return await callV3(v3(), credentials: v3Credentials, notAfter: notAfter)
        }
    }

    static let xmlHeaders = [("Content-Type", "text/xml; charset=utf-8")]

    private func callV3(_ request: V3Request, credentials: V3Credentials, notAfter: ContinuousClock.Instant?) async -> (
        Result<V3HTTPAnswer, UnusableAnswer>, Exchange
    ) {
        let authorization: String
        do {
            authorization = try request.authorization(
                credentials: credentials, timestamp: clock.secondsSince1970, nonce: Nonce.make())
        } catch {
            return (
                .failure(UnusableAnswer(message: "cannot sign the API v3 request: \(error)")),
                Exchange(host: hosts.primary, httpStatus: nil, latencyMilliseconds: 0, sent: false)
            )
        }
        var headers = [
            ("Authorization", authorization), ("Accept", "application/json"),
            ("Wechatpay-Serial", credentials.wechatpayPublicKeyID),
        ]
        if request.method == "POST" { headers.append(("Content-Type", "application/json")) }
        return await call(
            request.pathAndQuery, api: .v3, method: request.method == "GET" ? .GET : .POST, headers: headers,
            body: request.body, notAfter: notAfter)
    }

    /// Closes the connections; call once, after the last call.
    public func shutdown() async {
        await connections.shutdown()
    }

    private func call(
        _ path: String, api: APIVersion, method: HTTPMethod, headers: [(String, String)], body: String,
        notAfter: ContinuousClock.Instant?
    ) async -> (Result<V3HTTPAnswer, UnusableAnswer>, Exchange) {
        let host = hosts.hostForNextCall()
        guard let first = await send(host, path, api: api, method: method, headers: headers, body: body, notAfter: notAfter)
        else {
            return (.failure(Self.leaseTooShort), Exchange(host: host, httpStatus: nil, latencyMilliseconds: 0, sent: false))
        }
        hosts.report(host: host, failedOver: first.failedOver)
        guard first.failedOver, let backup = hosts.backup, host != backup,
            let second = await send(
                backup, path, api: api, method: method, headers: headers, body: body, notAfter: notAfter)
        else {
            return (first.answer, Exchange(host: host, httpStatus: first.status, latencyMilliseconds: first.milliseconds))
        }
        hosts.report(host: backup, failedOver: second.failedOver)
        let exchange = Exchange(
            host: backup, httpStatus: second.status, latencyMilliseconds: first.milliseconds + second.milliseconds)
        return (second.answer, exchange)
    }

    static let leaseTooShort = UnusableAnswer(
        message:
            "not sent: the claim's lease ends before a call could finish (a slow rate limit or earlier calls used it up); will retry"
    )

    /// One request under one deadline for all of it: connecting, sending, the head and the
    /// whole body; the earlier of now + the timeout and `notAfter`. Nil when less than a
    /// second (or the timeout, if shorter) is left before `notAfter`: the call is not made.
    /// `failedOver` says it never reached a working WeChat Pay (a connection-level failure
    /// or HTTP 5xx), so the backup may serve it.
    private func send(
        _ host: String, _ path: String, api: APIVersion, method: HTTPMethod, headers: [(String, String)], body: String,
        notAfter: ContinuousClock.Instant?
    ) async -> (answer: Result<V3HTTPAnswer, UnusableAnswer>, status: Int?, milliseconds: Int, failedOver: Bool)? {
        // `notAfter` is an instant of the caller's clock; the deadline of the I/O is real time.
        let started = ContinuousClock.now
        var left = timeout
        if let notAfter {
            let leaseLeft = notAfter - clock.now
            guard leaseLeft >= min(timeout, .seconds(1)) else { return nil }
            left = min(left, leaseLeft)
        }
        let deadline = NIODeadline.now() + TimeAmount(left)
        let answer: Result<V3HTTPAnswer, UnusableAnswer>
        if let base = bases[host] {
            var head = HTTPRequestHead(version: .http1_1, method: method, uri: base.pathPrefix + path)
            head.headers.reserveCapacity(headers.count + 3)
            head.headers.add(name: "Host", value: base.hostHeader)
            head.headers.add(name: "User-Agent", value: "closeorderd")
            for (name, value) in headers { head.headers.add(name: name, value: value) }
            var payload: ByteBuffer?
            if method == .POST {
                payload = ByteBuffer(string: body)
                head.headers.add(name: "Content-Length", value: String(body.utf8.count))
            }
            // Only API v3 answers are signed in headers; v2 calls skip collecting them.
            let request = (head: head, body: payload, collectHeaders: api == .v3)
            do {
                do {
                    answer = .success(try await exchange(request, with: base, by: deadline))
                } catch is UnreadableHead where deadline - .now() > .milliseconds(100) {
                    // Bytes the server sent after an earlier answer (a body on a 204, say) were read
                    // as this answer's start: that connection is closed now; ask once more on another.
                    answer = .success(try await exchange(request, with: base, by: deadline))
                }
            } catch TransportFailure.tooLarge {
                answer = .failure(
                    UnusableAnswer(
                        message: "no usable answer from WeChat Pay: the answer exceeded \(FlatXML.maximumBodySize) bytes"))
            } catch {
                let (reason, symptom) = Self.describe(error)
                answer = .failure(
                    UnusableAnswer(message: "no usable answer from WeChat Pay: \(reason); will retry", symptom: symptom))
            }
        } else {
            answer = .failure(
                UnusableAnswer(message: "not sent: \(host) is not an http or https URL", symptom: .connectionFailed))
        }
        let elapsed = ContinuousClock.now - started
        let milliseconds = Int(elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000)
        let failedOver: Bool
        var status: Int?
        switch answer {
        case .failure(let unusable): failedOver = unusable.symptom == .connectionFailed
        case .success(let answer): (failedOver, status) = (answer.status >= 500, answer.status)
        }
        return (answer, status, milliseconds, failedOver)
    }

    /// Sends one request on a pooled connection and reads the whole answer by `deadline`.
    private func exchange(
        _ request: (head: HTTPRequestHead, body: ByteBuffer?, collectHeaders: Bool), with base: BaseURL,
        by deadline: NIODeadline
    ) async throws -> V3HTTPAnswer {
        let connectBy = min(deadline, .now() + Self.connectTimeout)
        let (channel, reused) = try await connections.connection(to: base, connectBy: connectBy)
        do {
            return try await HTTP1ExchangeHandler.exchange(
                head: request.head, body: request.body, collectHeaders: request.collectHeaders, on: channel, by: deadline)
        } catch TransportFailure.notSent where reused {
            // A kept-alive connection that closed as it was taken (the server's idle timeout,
            // say): the request never left, so it goes once more, on a new connection.
            let (fresh, _) = try await connections.connection(to: base, connectBy: connectBy, reuse: false)
            return try await HTTP1ExchangeHandler.exchange(
                head: request.head, body: request.body, collectHeaders: request.collectHeaders, on: fresh, by: deadline)
        }
    }

    /// Connecting waits this long at most (less if the call's deadline is nearer).
    static let connectTimeout = TimeAmount.seconds(5)

    /// A sentence for a transport failure, and whether the request can have reached WeChat Pay.
    static func describe(_ error: any Error) -> (String, FailureSymptom) {
        switch error {
        case TransportFailure.notSent(TransportFailure.closedEarly):
            return ("could not connect (the connection was closed before the request was sent)", .connectionFailed)
        case TransportFailure.notSent(let cause):
            return ("could not connect (\(describe(cause).0))", .connectionFailed)
        case let head as UnreadableHead:
            return ("the answer's head could not be read (\(head.parserError))", .noAnswer)
        case TransportFailure.timedOut(headArrived: true):
            return ("timed out (the whole answer, body included, did not arrive in time)", .noAnswer)
        case TransportFailure.timedOut(headArrived: false):
            return ("timed out", .noAnswer)
        case TransportFailure.closedEarly:
            return ("the connection was closed before a full answer arrived", .noAnswer)
        case ChannelError.connectTimeout:
            return ("connecting timed out", .connectionFailed)
        case let error as HTTPParserError:
            return ("the answer could not be read (\(error))", .noAnswer)
        case is NIOConnectionError, is NIOSSLError, is NIOSSLExtraError, is ChannelError:
            return ("could not connect (\(error))", .connectionFailed)
        case let error as IOError:
            let connection = [ECONNREFUSED, ECONNRESET, EHOSTUNREACH, ENETUNREACH].contains(error.errnoCode)
            return (error.description, connection ? .connectionFailed : .noAnswer)
        default:
            return ("\(type(of: error)): \(error)", .noAnswer)
        }
    }
}
