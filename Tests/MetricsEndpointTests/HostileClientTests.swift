import Dispatch
import Foundation
import MetricsEndpoint
import Prometheus
import TestSupport
import Testing

/// Clients that are not Prometheus: the endpoint answers them at once or shuts the door,
/// and never reads a body, waits on one, or holds a connection it has refused.
@Suite struct HostileClientTests {
    /// A server whose idle timeout (2 minutes) is longer than any exchange here waits, so that
    /// a connection seen closed was closed by the server's answer, not by idleness.
    static func server() async throws -> MetricsServer {
        let responder = MetricsResponder(registry: PrometheusCollectorRegistry(), refresh: {}, readiness: { .ready })
        return try await MetricsServer.start(responder, host: "127.0.0.1", port: 0, idleTimeout: .seconds(120))
    }

    @Test func aStreamedBodyIsNeverReadTheAnswerComesAtOnceAndTheConnectionCloses() async throws {
        let server = try await Self.server()
        let endless =
            "POST /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + "ffff\r\n"
            + String(repeating: "x", count: 4096)
        let post = await RawExchange.run(port: server.port, send: endless)
        #expect(post.text.hasPrefix("HTTP/1.1 405"), "\(post.text)")
        #expect(post.closedByServer)
        let huge = "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\n\r\nxxxx"
        let get = await RawExchange.run(port: server.port, send: huge)
        #expect(get.text.hasPrefix("HTTP/1.1 200"), "\(get.text.prefix(200))")
        #expect(get.text.contains("Connection: close"))
        #expect(get.closedByServer)
        await server.stop()
    }

    @Test func aRequestFollowedByAHalfCloseIsStillAnswered() async throws {
        let server = try await Self.server()
        let answer = await RawExchange.run(port: server.port, send: "GET /-/ready HTTP/1.0\r\n\r\n", halfClose: true)
        #expect(answer.text.hasPrefix("HTTP/1.0 200"), "\(answer.text)")
        #expect(answer.closedByServer)
        await server.stop()
    }

    @Test func aMalformedRequestGets400AndTheConnectionCloses() async throws {
        let server = try await Self.server()
        let tlsHello = "\u{16}\u{03}\u{01}\u{02}\u{00}\u{01}\u{00}\u{01}\u{fc}\u{03}\u{03}"
        let answer = await RawExchange.run(port: server.port, send: tlsHello)
        #expect(answer.text.hasPrefix("HTTP/1.1 400"), "\(answer.text)")
        #expect(answer.closedByServer, "closed after the 400, not left to the idle timeout")
        await server.stop()
    }

    @Test func anAbsoluteFormTargetIsServed() async throws {
        let server = try await Self.server()
        let request = "GET http://127.0.0.1:\(server.port)/-/healthy?x=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        let answer = await RawExchange.run(port: server.port, send: request)
        #expect(answer.text.hasPrefix("HTTP/1.1 200"), "\(answer.text)")
        await server.stop()
    }
}

/// Bytes sent on a raw TCP connection and what came back until the server closed it (or 30
/// s passed: the whole suite runs in parallel on two cores). Runs on a Dispatch thread, not
/// the test pool's.
struct RawExchange {
    let text: String
    let closedByServer: Bool

    static func run(port: Int, send: String, halfClose: Bool = false) async -> RawExchange {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(returning: exchange(port: port, send: Array(send.utf8), halfClose: halfClose))
            }
        }
    }

    /// A TCP connection to 127.0.0.1:`port`, its descriptor; nil if it failed.
    static func connect(port: Int) -> Int32? {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        let connected = withLoopbackAddress(port: port) { Glibc.connect(descriptor, $0, $1) }
        guard connected == 0 else {
            close(descriptor)
            return nil
        }
        return descriptor
    }

    private static func exchange(port: Int, send bytes: [UInt8], halfClose: Bool) -> RawExchange {
        guard let descriptor = connect(port: port) else { return RawExchange(text: "connect failed", closedByServer: false) }
        defer { close(descriptor) }
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        _ = bytes.withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        if halfClose { shutdown(descriptor, Int32(SHUT_WR)) }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = recv(descriptor, &buffer, buffer.count, 0)
            if count == 0 { return RawExchange(text: String(decoding: received, as: UTF8.self), closedByServer: true) }
            if count < 0 { return RawExchange(text: String(decoding: received, as: UTF8.self), closedByServer: false) }
            received += buffer[0..<count]
        }
    }
}
