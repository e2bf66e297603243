import Prometheus
import Reaper

/// What the endpoint answers, without the network: `/metrics` in the Prometheus text
/// format, `/-/healthy` while the process is up, `/-/ready` while polls reach the database.
///
/// ```swift
/// let answer = await responder.respond(method: "GET", path: "/-/ready")
/// answer.status   // 200, or 503 with the reason in the body
/// ```
public struct MetricsResponder: Sendable {
    /// One answer.
    public struct Response: Sendable, Equatable {
        /// The HTTP status.
        public var status: Int
        /// `Content-Type`.
        public var contentType: String
        public var body: [UInt8]
        /// Headers besides `Content-Type` and `Content-Length` (`Allow` on a 405).
        public var headers: [String: String] = [:]
    }

    let registry: PrometheusCollectorRegistry
    /// Sets the gauges read at scrape time (the due backlog, the breaker, rate limits).
    let refresh: @Sendable () async -> Void
    let readiness: @Sendable () async -> PollHealth.Status

    /// Serves `registry`, running `refresh` before each scrape; `readiness` answers `/-/ready`.
    public init(
        registry: PrometheusCollectorRegistry, refresh: @escaping @Sendable () async -> Void,
        readiness: @escaping @Sendable () async -> PollHealth.Status
    ) {
        self.registry = registry
        self.refresh = refresh
        self.readiness = readiness
    }

    /// The reaper's metrics, served from `registry`. Until `reaper()` has one (the daemon is
    /// still opening and migrating its database, which can wait on a lock the app holds),
    /// `/-/ready` says it is starting.
    public init(registry: PrometheusCollectorRegistry, reaper: @escaping @Sendable () -> Reaper?) {
        self.init(
            registry: registry, refresh: { await reaper()?.refreshGauges() },
            readiness: { await reaper()?.readiness() ?? .notReady("starting: opening and migrating the database") })
    }

    /// The Prometheus text exposition format, version 0.0.4.
    public static let prometheusContentType = "text/plain; version=0.0.4; charset=utf-8"

    /// The answer to `method` on `path` (the target without its query).
    public func respond(method: String, path: String) async -> Response {
        guard method == "GET" || method == "HEAD" else {
            return Response(
                status: 405, contentType: "text/plain; charset=utf-8", body: Array("only GET and HEAD\n".utf8),
                headers: ["Allow": "GET, HEAD"])
        }
        switch path {
        case "/metrics":
            await refresh()
            return Response(status: 200, contentType: Self.prometheusContentType, body: registry.emitToBuffer())
        case "/-/healthy":
            return text(200, "closeorderd is up\n")
        case "/-/ready":
            switch await readiness() {
            case .ready: return text(200, "ready: polls reach the database\n")
            case .notReady(let reason): return text(503, "not ready: \(reason)\n")
            }
        default:
            return text(404, "not found: try /metrics, /-/healthy or /-/ready\n")
        }
    }

    private func text(_ status: Int, _ body: String) -> Response {
        Response(status: status, contentType: "text/plain; charset=utf-8", body: Array(body.utf8))
    }
}
