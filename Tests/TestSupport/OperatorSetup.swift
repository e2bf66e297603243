import Foundation
import GRDB
import Simulator

/// What an operator sets up before starting the real binary: a database, a simulator on
/// loopback, a key file (mode 600) and a config file naming them.
public struct OperatorSetup: Sendable {
    public let database: TestDatabase
    public let simulator: TestSimulator
    public let configFile: String
    public let keyFile: String

    public static func make(behaviour: SimulatorBehaviour = SimulatorBehaviour(), extraReaper: String = "") async throws
        -> OperatorSetup
    {
        let database = try await TestDatabase.make()
        let simulator = try await TestSimulator.start(behaviour: behaviour)
        let keyFile = try database.directory.write("merchant.key", Fixtures.keyText + "\n")
        let configFile = try database.directory.write(
            "config.yaml",
            Fixtures.yaml(database: database.path, baseURL: simulator.baseURL, keyFile: keyFile, extraReaper: extraReaper))
        return OperatorSetup(database: database, simulator: simulator, configFile: configFile, keyFile: keyFile)
    }

    /// Gives calls a timeout (and leases a length) no loaded machine runs into, for tests
    /// whose calls end when the test releases the simulator's held answers.
    public func allowLongCalls() throws {
        let config = try String(contentsOfFile: configFile, encoding: .utf8)
            .replacingOccurrences(of: "timeout_seconds: 2", with: "timeout_seconds: 120")
            .replacingOccurrences(of: "lease_seconds: 30", with: "lease_seconds: 300")
        try config.write(toFile: configFile, atomically: true, encoding: .utf8)
    }

    /// Starts `closeorderd run --config …` with `arguments` added.
    public func daemon(_ arguments: [String] = []) throws -> DaemonProcess {
        try DaemonProcess(["run", "--config", configFile] + arguments, in: database.directory)
    }

    /// Runs `closeorderd ARGUMENTS…` to completion.
    public func run(_ arguments: [String]) async throws -> (status: Int32, stdout: String, stderr: String) {
        try await DaemonProcess.run(arguments, in: database.directory)
    }

    /// How many orders are in `state`.
    public func count(_ state: String) throws -> Int {
        try database.app.read { db in
            try Int.fetchOne(db, sql: "SELECT count(*) FROM orders WHERE state = ?", arguments: [state]) ?? 0
        }
    }

    public func tearDown() async {
        await simulator.stop()
        database.remove()
    }
}
