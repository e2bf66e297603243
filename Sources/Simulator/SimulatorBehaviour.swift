/// How the simulator behaves beyond the per-order faults: latency and random error rates.
public struct SimulatorBehaviour: Sendable {
    /// Added before every answer.
    public var latencyMilliseconds: Int = 0
    /// Fraction of calls answered with SYSTEMERROR.
    public var systemErrorRate: Double = 0
    /// Fraction of calls answered with HTTP 500.
    public var http500Rate: Double = 0
    /// Fraction of calls never answered (the client's timeout fires).
    public var timeoutRate: Double = 0

    public init(latencyMilliseconds: Int = 0, systemErrorRate: Double = 0, http500Rate: Double = 0, timeoutRate: Double = 0) {
        self.latencyMilliseconds = latencyMilliseconds
        self.systemErrorRate = systemErrorRate
        self.http500Rate = http500Rate
        self.timeoutRate = timeoutRate
    }
}
