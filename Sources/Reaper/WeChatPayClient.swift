import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization
import WeChatPay

/// One HTTP exchange with WeChat Pay, as the history records it.
public struct Exchange: Sendable {
    /// The base URL that served (or failed) the call.
    public var host: String
    public var httpStatus: Int?
    public var latencyMilliseconds: Int
}

/// Calls WeChat Pay v2 over HTTP: `/pay/closeorder` and `/pay/orderquery`.
///
/// Connections are kept alive and reused, up to `maxConnections` per host; redirects are
/// refused (a payment API does not redirect); each call is bounded by `timeoutSeconds`
/// for the response head and for reading the body, which is capped at 64 KB.
///
/// With a backup base URL, a connection-level failure or an HTTP 5xx from the primary is
/// retried at once on the backup, and later calls go to the backup until the primary
/// answers a probe again (one call at most every `probeIntervalSeconds`).
public final class WeChatPayClient: Sendable {
    public let hosts: HostSelector
    let timeout: TimeAmount
    let http: HTTPClient

    public init(
        baseURL: String, backupBaseURL: String? = nil, timeoutSeconds: Double, maxConnections: Int,
        probeIntervalSeconds: Double = 30
    ) {
        self.hosts = HostSelector(
            primary: baseURL, backup: backupBaseURL, probeInterval: .milliseconds(Int64(probeIntervalSeconds * 1000)))
        self.timeout = .milliseconds(Int64(timeoutSeconds * 1000))
        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        configuration.timeout = HTTPClient.Configuration.Timeout(connect: min(timeout, .seconds(5)), read: timeout)
        configuration.connectionPool = .init(
            idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: maxConnections)
        configuration.decompression = .disabled
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    public var baseURL: String { hosts.primary }

    /// Closes one order. Never throws: a failure to get a usable answer is a `.retry` verdict.
    public func close(_ order: OrderIdentity, key: MerchantKey, signType: SignType) async -> (CloseVerdict, Exchange) {
        let (answer, exchange) = await call(.closeOrder, body: V2Request.body(for: order, key: key, signType: signType))
        switch answer {
        case .success(let (status, body)):
            return (CloseOrderResponse.interpret(status: status, body: body, order: order, key: key), exchange)
        case .failure(let unusable):
            return (CloseVerdict(unusable), exchange)
        }
    }

    /// Asks for the order's trade state. Never throws: no usable answer is `.unclear`.
    public func query(_ order: OrderIdentity, key: MerchantKey, signType: SignType) async -> (QueryConclusion, Exchange) {
        let (answer, exchange) = await call(.orderQuery, body: V2Request.body(for: order, key: key, signType: signType))
        switch answer {
        case .success(let (status, body)):
            return (OrderQueryResponse.interpret(status: status, body: body, order: order, key: key), exchange)
        case .failure(let unusable):
            return (.unclear(unusable, errCode: nil), exchange)
        }
    }

    /// Closes the connections; call once, after the last call.
    public func shutdown() async {
        try? await http.shutdown()
    }

    private func call(_ endpoint: V2Endpoint, body: String) async -> (Result<(Int, [UInt8]), UnusableAnswer>, Exchange) {
        let host = hosts.hostForNextCall()
        let first = await post(host + endpoint.rawValue, body: body)
        hosts.report(host: host, failedOver: first.failedOver)
        guard first.failedOver, let backup = hosts.backup, host != backup else {
            return (first.answer, Exchange(host: host, httpStatus: first.status, latencyMilliseconds: first.milliseconds))
        }
        let second = await post(backup + endpoint.rawValue, body: body)
        hosts.report(host: backup, failedOver: second.failedOver)
        let exchange = Exchange(
            host: backup, httpStatus: second.status, latencyMilliseconds: first.milliseconds + second.milliseconds)
        return (second.answer, exchange)
    }

    /// One POST. `failedOver` says the request never reached a working WeChat Pay (a
    /// connection-level failure or HTTP 5xx), so the backup may serve it.
    private func post(_ url: String, body: String) async -> (
        answer: Result<(Int, [UInt8]), UnusableAnswer>, status: Int?, milliseconds: Int, failedOver: Bool
    ) {
        let started = ContinuousClock.now
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "text/xml; charset=utf-8")
        request.headers.add(name: "User-Agent", value: "closeorderd")
        request.body = .bytes(ByteBuffer(string: body))
        var status: Int?
        let answer: Result<(Int, [UInt8]), UnusableAnswer>
        do {
            let response = try await http.execute(request, timeout: timeout)
            status = Int(response.status.code)
            let buffer = try await response.body.collect(upTo: FlatXML.maximumBodySize)
            answer = .success((Int(response.status.code), Array(buffer: buffer)))
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
        case .success(let (code, _)): failedOver = code >= 500
        }
        return (answer, status, milliseconds, failedOver)
    }

    /// A sentence for a transport failure, and whether the request can have reached WeChat Pay.
    static func describe(_ error: any Error) -> (String, FailureSymptom) {
        switch error {
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
            let text = String(describing: error)
            if text.contains("connectionRefused") || text.contains("Connection refused") {
                return ("connection refused", .connectionFailed)
            }
            return (text, .noAnswer)
        }
    }
}

/// Which base URL serves the next call: the primary, or the backup after the primary failed
/// at the connection level or with HTTP 5xx, with a probe of the primary at most every
/// `probeInterval` until it answers again.
public final class HostSelector: Sendable {
    public let primary: String
    public let backup: String?
    let probeInterval: Duration
    private let state = Mutex<(onBackup: Bool, lastProbe: ContinuousClock.Instant)>((false, .now))

    init(primary: String, backup: String?, probeInterval: Duration) {
        self.primary = primary
        self.backup = backup.flatMap { $0.isEmpty || $0 == primary ? nil : $0 }
        self.probeInterval = probeInterval
    }

    /// Whether calls currently go to the backup.
    public var onBackup: Bool { state.withLock { $0.onBackup } }

    func hostForNextCall() -> String {
        guard let backup else { return primary }
        return state.withLock { state in
            guard state.onBackup else { return primary }
            let now = ContinuousClock.now
            if now - state.lastProbe >= probeInterval {
                state.lastProbe = now
                return primary
            }
            return backup
        }
    }

    func report(host: String, failedOver: Bool) {
        guard backup != nil, host == primary else { return }
        state.withLock { state in
            if failedOver && !state.onBackup {
                state.onBackup = true
                state.lastProbe = .now
            } else if !failedOver {
                state.onBackup = false
            }
        }
    }
}
