import AsyncHTTPClient
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
    let http: HTTPClient

    public init(
        baseURL: String, backupBaseURL: String? = nil, timeoutSeconds: Double, maxConnections: Int,
        probeIntervalSeconds: Double = 30, clock: any DaemonClock = SystemClock()
    ) {
        self.hosts = HostSelector(
            primary: baseURL, backup: backupBaseURL, probeInterval: .milliseconds(Int64(probeIntervalSeconds * 1000)),
            clock: clock)
        self.clock = clock
        self.timeout = .milliseconds(Int64(timeoutSeconds * 1000))
        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        configuration.timeout = HTTPClient.Configuration.Timeout(
            connect: min(TimeAmount(timeout), .seconds(5)), read: TimeAmount(timeout))
        configuration.connectionPool = .init(
            idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: maxConnections)
        // A refused connection fails the call at once instead of being retried until the
        // connect timeout: the call then goes to the backup domain (or is retried with the
        // reaper's own backoff) without spending the whole deadline on a host that is down.
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.decompression = .disabled
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
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
        try? await http.shutdown()
    }

    private func call(
        _ path: String, api: APIVersion, method: HTTPMethod, headers: [(String, String)], body: String,
        notAfter: ContinuousClock.Instant?
    ) async -> (Result<V3HTTPAnswer, UnusableAnswer>, Exchange) {
        let host = hosts.hostForNextCall()
        guard let first = await send(host + path, api: api, method: method, headers: headers, body: body, notAfter: notAfter)
        else {
            return (.failure(Self.leaseTooShort), Exchange(host: host, httpStatus: nil, latencyMilliseconds: 0, sent: false))
        }
        hosts.report(host: host, failedOver: first.failedOver)
        guard first.failedOver, let backup = hosts.backup, host != backup,
            let second = await send(
                backup + path, api: api, method: method, headers: headers, body: body, notAfter: notAfter)
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
        _ url: String, api: APIVersion, method: HTTPMethod, headers: [(String, String)], body: String,
        notAfter: ContinuousClock.Instant?
    ) async -> (answer: Result<V3HTTPAnswer, UnusableAnswer>, status: Int?, milliseconds: Int, failedOver: Bool)? {
        // `notAfter` is an instant of the caller's clock; the deadline of the I/O is real time.
        let started = ContinuousClock.now
        var deadline = started + timeout
        if let notAfter {
            let left = notAfter - clock.now
            guard left >= min(timeout, .seconds(1)) else { return nil }
            deadline = min(deadline, started + left)
        }
        var request = HTTPClientRequest(url: url)
        request.method = method
        request.headers.add(name: "User-Agent", value: "closeorderd")
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if method == .POST { request.body = .bytes(ByteBuffer(string: body)) }
        // Only API v3 answers are signed in headers; v2 calls skip collecting them.
        let collectHeaders = api == .v3
        var status: Int?
        let answer: Result<V3HTTPAnswer, UnusableAnswer>
        do {
            let received: V3HTTPAnswer
            do {
                received = try await exchange(request, deadline: deadline, collectHeaders: collectHeaders)
            } catch is UnreadableHead where deadline - .now > .milliseconds(100) {
                // Bytes the server sent after an earlier answer (a body on a 204, say) were read
                // as this answer's start: that connection is closed now; ask once more on another.
                received = try await exchange(request, deadline: deadline, collectHeaders: collectHeaders)
            }
            status = received.status
            answer = .success(received)
        } catch is NIOTooManyBytesError {
            answer = .failure(
                UnusableAnswer(message: "no usable answer from WeChat Pay: the answer exceeded \(FlatXML.maximumBodySize) bytes"))
        } catch {
            let (reason, symptom) = Self.describe(error)
            answer = .failure(
                UnusableAnswer(message: "no usable answer from WeChat Pay: \(reason); will retry", symptom: symptom))
        }
        let elapsed = ContinuousClock.now - started
        let milliseconds = Int(elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000)
        let failedOver: Bool
        switch answer {
        case .failure(let unusable): failedOver = unusable.symptom == .connectionFailed
        case .success(let answer): failedOver = answer.status >= 500
        }
        return (answer, status, milliseconds, failedOver)
    }

    /// Sends `request` and reads the whole answer by `deadline`.
    private func exchange(_ request: HTTPClientRequest, deadline: ContinuousClock.Instant, collectHeaders: Bool) async throws
        -> V3HTTPAnswer
    {
        let http = self.http
        // async-http-client's own deadline ends the connecting and the head with its own
        // errors (which say whether the backup may serve); ours, just after, ends the body.
        return try await Self.within(deadline + .milliseconds(50)) {
            let response: HTTPClientResponse
            do {
                response = try await http.execute(request, deadline: .now() + TimeAmount(deadline - .now))
            } catch let error as HTTPParserError {
                throw UnreadableHead(parserError: error)
            }
            let buffer = try await response.body.collect(upTo: FlatXML.maximumBodySize)
            var signed: [String: String] = [:]
            if collectHeaders {
                for header in response.headers where header.name.lowercased().hasPrefix("wechatpay-") {
                    signed[header.name.lowercased()] = header.value
                }
            }
            return V3HTTPAnswer(status: Int(response.status.code), headers: signed, body: Array(buffer: buffer))
        }
    }

    /// The bytes where this answer's head should start could not be parsed.
    struct UnreadableHead: Error {
        let parserError: HTTPParserError
    }

    /// The whole call, head and body, did not finish by its deadline.
    struct CallDeadlineExceeded: Error {}

    /// Runs `work` and cancels it at `deadline` (async-http-client's own deadline covers the
    /// request only up to the response head; a body that trickles in would outlive it).
    static func within<T: Sendable>(
        _ deadline: ContinuousClock.Instant, _ work: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        try await withThrowingTaskGroup(of: T.self) { group in
            group.addTask { try await work() }
            group.addTask {
                try await Task.sleep(until: deadline, clock: .continuous)
                throw CallDeadlineExceeded()
            }
            defer { group.cancelAll() }
            guard let first = try await group.next() else { throw CancellationError() }
            return first
        }
    }

    /// A sentence for a transport failure, and whether the request can have reached WeChat Pay.
    static func describe(_ error: any Error) -> (String, FailureSymptom) {
        switch error {
        case let head as UnreadableHead:
            return ("the answer's head could not be read (\(head.parserError))", .noAnswer)
        case is CallDeadlineExceeded:
            return ("timed out (the whole answer, body included, did not arrive in time)", .noAnswer)
        case let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout:
            return ("timed out", .noAnswer)
        case let error as HTTPClientError where error == .remoteConnectionClosed:
            return ("the connection was closed before a full answer arrived", .noAnswer)
        case let error as HTTPClientError where error == .connectTimeout:
            return ("connecting timed out", .connectionFailed)
        case is NIOConnectionError, is NIOSSLError, is ChannelError:
            return ("could not connect (\(error))", .connectionFailed)
        case let error as IOError:
            let connection = [ECONNREFUSED, ECONNRESET, EHOSTUNREACH, ENETUNREACH].contains(error.errnoCode)
            return (error.description, connection ? .connectionFailed : .noAnswer)
        default:
            return ("\(type(of: error)): \(error)", .noAnswer)
        }
    }
}
