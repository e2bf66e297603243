import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import WeChatPay

/// The answer to one close call, read into a verdict, with what the history records of it.
public struct CloseCallResult: Sendable {
    public var verdict: CloseVerdict
    public var httpStatus: Int?
    public var latencyMilliseconds: Int
}

/// Calls WeChat Pay v2 `/pay/closeorder` over HTTP.
///
/// Connections are kept alive and reused, up to `maxConnections` at once; redirects are
/// refused (a payment API does not redirect); each call is bounded by `timeoutSeconds`
/// for the response head and for reading the body, which is capped at 64 KB.
public final class WeChatPayClient: Sendable {
    public let baseURL: String
    let timeout: TimeAmount
    let http: HTTPClient

    public init(baseURL: String, timeoutSeconds: Double, maxConnections: Int) {
        self.baseURL = baseURL
        self.timeout = .milliseconds(Int64(timeoutSeconds * 1000))
        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        configuration.timeout = HTTPClient.Configuration.Timeout(connect: min(timeout, .seconds(5)), read: timeout)
        configuration.connectionPool = .init(
            idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: maxConnections)
        configuration.decompression = .disabled
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    /// Closes one order. Never throws: a failure to get a usable answer is a `.retry` verdict.
    public func close(_ order: OrderIdentity, key: MerchantKey, signType: SignType) async -> CloseCallResult {
        let started = ContinuousClock.now
        var request = HTTPClientRequest(url: baseURL + "/pay/closeorder")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "text/xml; charset=utf-8")
        request.headers.add(name: "User-Agent", value: "closeorderd")
        request.body = .bytes(ByteBuffer(string: CloseOrderRequest.body(for: order, key: key, signType: signType)))
        var status: Int?
        let verdict: CloseVerdict
        do {
            let response = try await http.execute(request, timeout: timeout)
            status = Int(response.status.code)
            let body = try await response.body.collect(upTo: FlatXML.maximumBodySize)
            verdict = CloseOrderResponse.interpret(
                status: Int(response.status.code), body: Array(buffer: body), order: order, key: key)
        } catch is NIOTooManyBytesError {
            verdict = .transportFailure("the answer exceeded \(FlatXML.maximumBodySize) bytes")
        } catch {
            verdict = .transportFailure(Self.describe(error))
        }
        let elapsed = ContinuousClock.now - started
        let milliseconds = Int(elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000)
        return CloseCallResult(verdict: verdict, httpStatus: status, latencyMilliseconds: milliseconds)
    }

    /// Closes the connections; call once, after the last `close`.
    public func shutdown() async {
        try? await http.shutdown()
    }

    static func describe(_ error: any Error) -> String {
        switch error {
        case let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout:
            return "timed out"
        case let error as HTTPClientError where error == .remoteConnectionClosed:
            return "the connection was closed before a full answer arrived"
        case let error as HTTPClientError where error == .connectTimeout:
            return "connecting timed out"
        case let error as HTTPClientError:
            return "\(error)"
        case let error as IOError:
            return "\(error.description)"
        default:
            let text = String(describing: error)
            if text.contains("connectionRefused") || text.contains("Connection refused") { return "connection refused" }
            return text
        }
    }
}
