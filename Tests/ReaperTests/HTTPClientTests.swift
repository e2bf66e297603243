import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization
import TestSupport
import Testing
import WeChatPay

@testable import WeChatPayHTTP

/// The HTTP/1.1 client against a server that says what a test scripts: connections are kept
/// alive and reused, dropped when the answer says so or when bytes arrive that nobody asked
/// for; answers over 64 KB and redirects are not used; TLS checks the certificate's chain
/// and name; every call ends by its deadline. Timeouts are generous where time is not the
/// point: a loaded full run can stall this process's event loops for seconds.
@Suite struct HTTPClientTests {
    static let order = OrderIdentity(appid: Fixtures.appid, mchID: Fixtures.mchID, outTradeNo: "HTTPCLIENT0001")
    static let credentials = MerchantCredentials.v2(key: Fixtures.key, signType: .hmacSHA256)

    func close(_ client: WeChatPayClient) async -> (CloseVerdict, Exchange) {
        await client.close(Self.order, credentials: Self.credentials)
    }

    @Test func oneConnectionServesCallAfterCall() async throws {
        let server = try await LyingServer.start { [.write(HostileServerTests.closedAnswer(to: $0))] }
        defer { Task { await server.stop() } }
        let client = WeChatPayClient(baseURL: server.baseURL, timeoutSeconds: 20, maxConnections: 4)
        defer { Task { await client.shutdown() } }
        for _ in 1...3 {
            #expect(await close(client).0.outcome == .closed)
        }
        #expect(server.requests.map(\.connection) == [0, 0, 0])
        let request = try #require(server.requests.first)
        #expect(request.method == "POST" && request.path == "/pay/closeorder")
        #expect(request.headers["host"] == "127.0.0.1:\(server.port)")
        #expect(request.headers["content-length"] == "\(request.body.count)")
    }

    @Test func anInformationalAnswerBeforeTheRealOneIsSkipped() async throws {
        let server = try await LyingServer.start { request in
            [.write(Array("HTTP/1.1 100 Continue\r\n\r\n".utf8) + HostileServerTests.closedAnswer(to: request))]
        }
        defer { Task { await server.stop() } }
        let client = WeChatPayClient(baseURL: server.baseURL, timeoutSeconds: 20, maxConnections: 4)
        defer { Task { await client.shutdown() } }
        let (verdict, exchange) = await close(client)
        #expect(verdict.outcome == .closed, "\(verdict.message)")
        #expect(exchange.httpStatus == 200)
    }

    @Test func aBaseURLsPathPrefixesEveryEndpoint() async throws {
        let server = try await LyingServer.start { [.write(HostileServerTests.closedAnswer(to: $0))] }
        defer { Task { await server.stop() } }
        let client = WeChatPayClient(baseURL: server.baseURL + "/wechat/", timeoutSeconds: 20, maxConnections: 4)
        defer { Task { await client.shutdown() } }
        #expect(await close(client).0.outcome == .closed)
        #expect(server.requests.map(\.path) == ["/wechat/pay/closeorder"])
    }

    @Test(arguments: [
        ("https://api.mch.weixin.qq.com", true, "api.mch.weixin.qq.com", 443, "api.mch.weixin.qq.com", ""),
        ("http://127.0.0.1:8089", false, "127.0.0.1", 8089, "127.0.0.1:8089", ""),
        ("HTTPS://Proxy.example:8443/wechat/", true, "Proxy.example", 8443, "Proxy.example:8443", "/wechat"),
        ("http://[::1]:9000/a/b", false, "::1", 9000, "[::1]:9000", "/a/b"),
        ("http://[::1]", false, "::1", 80, "[::1]", ""),
    ])
    func aBaseURLIsTakenApartOnce(text: String, tls: Bool, host: String, port: Int, hostHeader: String, path: String) throws {
        let base = try #require(BaseURL(text))
        #expect(base.tls == tls)
        #expect(base.host == host)
        #expect(base.port == port)
        #expect(base.hostHeader == hostHeader)
        #expect(base.pathPrefix == path)
        #expect(base.hostIsAddress == (host.first?.isNumber == true || host.contains(":")))
    }

    @Test(arguments: ["ftp://example.com", "example.com", "http://", "https:///pay"])
    func aBaseURLThatIsNotHTTPIsRefused(text: String) {
        #expect(BaseURL(text) == nil)
    }

    @Test func anAnswerThatSaysCloseEndsItsConnection() async throws {
        let server = try await LyingServer.start { request in
            let answer = HostileServerTests.closedAnswer(to: request)
            let head = Array("HTTP/1.1 200 OK\r\nConnection: close\r\n".utf8)
            return [.write(head + answer.dropFirst("HTTP/1.1 200 OK\r\n".utf8.count)), .close]
        }
        defer { Task { await server.stop() } }
        let client = WeChatPayClient(baseURL: server.baseURL, timeoutSeconds: 20, maxConnections: 4)
        defer { Task { await client.shutdown() } }
        #expect(await close(client).0.outcome == .closed)
        #expect(await close(client).0.outcome == .closed)
        #expect(server.requests.map(\.connection) == [0, 1])
    }

    @Test func bytesNobodyAskedForEndTheConnectionTheyArriveOn() async throws {
        let server = try await LyingServer.start { request in
            // A second answer right behind the first, in the same write: nobody asked for it.
            let stray = request.index == 0 ? LyingServer.response(status: 200) : []
            return [.write(HostileServerTests.closedAnswer(to: request) + stray)]
        }
        defer { Task { await server.stop() } }
        let client = WeChatPayClient(baseURL: server.baseURL, timeoutSeconds: 20, maxConnections: 4)
        defer { Task { await client.shutdown() } }
        let first = await close(client).0
        #expect(first.outcome == .closed, "\(first.message)")
        let second = await close(client).0
        #expect(second.outcome == .closed, "the stray answer is not taken for this call's: \(second.message)")
        #expect(server.requests.map(\.connection) == [0, 1])
    }

    @Test func anAnswerOver64KBIsNotUsedAndItsConnectionIsDropped() async throws {
        let server = try await LyingServer.start { request in
            guard request.index == 0 else { return [.write(HostileServerTests.closedAnswer(to: request))] }
            return [.write(LyingServer.response(status: 200, body: Array(repeating: UInt8(ascii: " "), count: 70_000)))]
        }
        defer { Task { await server.stop() } }
        let client = WeChatPayClient(baseURL: server.baseURL, timeoutSeconds: 20, maxConnections: 4)
        defer { Task { await client.shutdown() } }
        let (verdict, _) = await close(client)
        #expect(verdict.outcome == .retry)
        #expect(verdict.message.contains("exceeded \(FlatXML.maximumBodySize) bytes"), "\(verdict.message)")
        #expect(await close(client).0.outcome == .closed)
        #expect(server.requests.map(\.connection) == [0, 1])
    }

    @Test(arguments: [301, 302, 307, 308])
    func aRedirectIsNotFollowed(status: Int) async throws {
        let server = try await LyingServer.start { _ in
            [.write(LyingServer.response(status: status, reason: "Moved", headers: [("Location", "/pay/elsewhere")]))]
        }
        defer { Task { await server.stop() } }
        let client = WeChatPayClient(baseURL: server.baseURL, timeoutSeconds: 20, maxConnections: 4)
        defer { Task { await client.shutdown() } }
        let (verdict, exchange) = await close(client)
        #expect(verdict.outcome == .retry)
        #expect(exchange.httpStatus == status)
        #expect(server.requests.map(\.path) == ["/pay/closeorder"])
    }

    @Test func anAnswerThatNeverComesEndsAtTheTimeout() async throws {
        let server = try await LyingServer.start { _ in [.pause(.seconds(60)), .close] }
        defer { Task { await server.stop() } }
        let client = WeChatPayClient(baseURL: server.baseURL, timeoutSeconds: 1, maxConnections: 4)
        defer { Task { await client.shutdown() } }
        let started = ContinuousClock.now
        let (verdict, _) = await close(client)
        // Ended by the 1 s timeout, long before the server would answer (a loaded full run
        // can stall this process for seconds, hence the margin).
        #expect(ContinuousClock.now - started < .seconds(30))
        #expect(verdict.outcome == .retry)
        #expect(verdict.symptom == .noAnswer)
        #expect(verdict.message.contains("timed out"), "\(verdict.message)")
    }

    @Test func aRefusedConnectionIsAConnectionFailure() async throws {
        let client = WeChatPayClient(baseURL: "http://127.0.0.1:9", timeoutSeconds: 20, maxConnections: 4)
        defer { Task { await client.shutdown() } }
        let (verdict, _) = await close(client)
        #expect(verdict.outcome == .retry)
        #expect(verdict.symptom == .connectionFailed, "\(verdict.message)")
    }

    @Test func aConnectionThatClosedBeforeItsRequestFailsTheCallAtOnce() async throws {
        let server = try await LyingServer.start { [.write(HostileServerTests.closedAnswer(to: $0))] }
        defer { Task { await server.stop() } }
        let pool = HTTP1ConnectionPool(group: MultiThreadedEventLoopGroup.singleton, maxIdlePerHost: 1)
        let (channel, _) = try await pool.connection(to: try #require(BaseURL(server.baseURL)), connectBy: .now() + .seconds(20))
        // Closed between leaving the pool and the write: the request never reaches the handler.
        try await channel.close()
        let outcome = Mutex<Result<V3HTTPAnswer, any Error>?>(nil)
        Task {
            do {
                let answer = try await HTTP1ExchangeHandler.exchange(
                    head: HTTPRequestHead(version: .http1_1, method: .POST, uri: "/pay/closeorder"), body: nil,
                    collectHeaders: false, on: channel, by: .now() + .seconds(60))
                outcome.withLock { $0 = .success(answer) }
            } catch {
                outcome.withLock { $0 = .failure(error) }
            }
        }
        // Polled, not awaited: a call that hangs must fail this test, not hang it.
        try await DaemonProcess.waitUntil(timeout: 5, "the call ends") { outcome.withLock { $0 != nil } }
        #expect(throws: (any Error).self) { try outcome.withLock { $0 }?.get() }
        #expect(server.requests.isEmpty)
    }

    // MARK: TLS

    static func trusting(_ certificatePEM: String) throws -> TLSConfiguration {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .certificates([try NIOSSLCertificate(bytes: Array(certificatePEM.utf8), format: .pem)])
        return tls
    }

    @Test func httpsToATrustedCertificateForTheHostWorks() async throws {
        let server = try await LyingServer.start(tls: TLSTestCertificates.localhost) {
            [.write(HostileServerTests.closedAnswer(to: $0))]
        }
        defer { Task { await server.stop() } }
        let client = WeChatPayClient(
            baseURL: "https://localhost:\(server.port)", timeoutSeconds: 20, maxConnections: 4,
            tls: try Self.trusting(TLSTestCertificates.localhost.certificatePEM))
        defer { Task { await client.shutdown() } }
        let (verdict, _) = await close(client)
        #expect(verdict.outcome == .closed, "\(verdict.message)")
        #expect(await close(client).0.outcome == .closed)
        #expect(server.requests.map(\.connection) == [0, 0])
    }

    @Test func httpsToACertificateTheSystemDoesNotTrustSendsNothing() async throws {
        let server = try await LyingServer.start(tls: TLSTestCertificates.localhost) {
            [.write(HostileServerTests.closedAnswer(to: $0))]
        }
        defer { Task { await server.stop() } }
        // The public initializer: the system's trust store, which knows no test certificate.
        let client = WeChatPayClient(baseURL: "https://localhost:\(server.port)", timeoutSeconds: 20, maxConnections: 4)
        defer { Task { await client.shutdown() } }
        let (verdict, _) = await close(client)
        #expect(verdict.outcome == .retry)
        #expect(verdict.symptom == .connectionFailed, "\(verdict.message)")
        #expect(verdict.message.contains("could not connect"), "\(verdict.message)")
        #expect(server.requests.isEmpty)
    }

    @Test func httpsToACertificateForAnotherNameSendsNothing() async throws {
        let server = try await LyingServer.start(tls: TLSTestCertificates.elsewhere) {
            [.write(HostileServerTests.closedAnswer(to: $0))]
        }
        defer { Task { await server.stop() } }
        let client = WeChatPayClient(
            baseURL: "https://localhost:\(server.port)", timeoutSeconds: 20, maxConnections: 4,
            tls: try Self.trusting(TLSTestCertificates.elsewhere.certificatePEM))
        defer { Task { await client.shutdown() } }
        let (verdict, _) = await close(client)
        #expect(verdict.symptom == .connectionFailed, "\(verdict.message)")
        #expect(server.requests.isEmpty)
    }
}
