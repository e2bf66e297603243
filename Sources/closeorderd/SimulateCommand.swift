import ArgumentParser
import ConfigurationFile
import Foundation
import Reaper
import Simulator
import WeChatPay
import _CryptoExtras

struct SimulateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "simulate",
        abstract: "Serve a local WeChat Pay v2 stand-in for /pay/closeorder and /pay/orderquery.",
        discussion: """
            Checks request signatures with each merchant's key and signs its answers. Orders are \
            NOTPAY until closed. GET /_sim/stats returns what it has seen, as JSON (bounded: the \
            latest 100,000 orders and 10,000 call times); POST /_sim/reset clears it. POST /_sim/hold \
            makes every answer wait until POST /_sim/release. SIGTERM or SIGINT stops it with exit status 0.
            Faults for --fault: \(SimulatedFault.allCases.map(\.rawValue).joined(separator: ", ")).
            """
    )

    @Option(help: "HOST:PORT to listen on (port 0 picks a free one).")
    var listen = "127.0.0.1:0"

    @Option(name: .customLong("key"), help: "MCH_ID=KEYFILE: a merchant and the file holding its API v2 key (repeatable).")
    var keys: [String] = []

    @Option(help: "Delay before every answer, in milliseconds.")
    var latencyMs = 0

    @Option(help: "Fraction of calls answered with SYSTEMERROR (0 to 1).")
    var errorRate = 0.0

    @Option(help: "Fraction of calls answered with HTTP 500 (0 to 1).")
    var http500Rate = 0.0

    @Option(help: "Fraction of calls never answered (0 to 1).")
    var timeoutRate = 0.0

    @Option(help: "An order number that is already paid (repeatable).")
    var paid: [String] = []

    @Option(help: "An order number that is already closed (repeatable).")
    var closed: [String] = []

    @Option(help: "An order number whose user is paying right now: queries say USERPAYING, closes are refused (repeatable).")
    var paying: [String] = []

    @Option(help: "An order number WeChat Pay never saw: queries say ORDERNOTEXIST (repeatable).")
    var nonexistent: [String] = []

    @Option(help: "OUT_TRADE_NO=FAULT[:N]: misbehave for this order, on its first N calls or all (repeatable).")
    var fault: [String] = []

    @Option(help: "Append one line per signed call to this file: unix_ms endpoint out_trade_no mch_id.")
    var callLog: String?

    @Option(help: "MCH_ID=PUBLIC_KEY_PEM: an API v3 merchant and the public half of its API key (repeatable).")
    var v3Merchant: [String] = []

    @Option(help: "Write the public key the simulator signs v3 answers with (PEM) to this file, for wechatpay_public_key_file.")
    var wechatpayKeyOut: String?

    @Option(help: "Close a connection that sends nothing for this many seconds.")
    var idleTimeoutSeconds = 60.0

    func run() async throws {
        let (merchantKeys, v3Keys) = try merchants()
        for rate in [errorRate, http500Rate, timeoutRate] where !(0...1).contains(rate) {
            throw ValidationError("rates are fractions from 0 to 1, got \(rate)")
        }
        let (host, port) = try hostAndPort()
        guard idleTimeoutSeconds > 0, idleTimeoutSeconds <= 86_400 else {
            throw ValidationError("--idle-timeout-seconds must be more than 0 and at most 86400")
        }
        let simulator = try SimulatedWeChatPay(
            keys: merchantKeys,
            behaviour: SimulatorBehaviour(
                latencyMilliseconds: latencyMs, systemErrorRate: errorRate, http500Rate: http500Rate, timeoutRate: timeoutRate),
            callLog: try openCallLog(), v3Merchants: v3Keys)
        if let wechatpayKeyOut {
            try simulator.wechatpayPublicKeyPEM.write(toFile: wechatpayKeyOut, atomically: true, encoding: .utf8)
        }
        try script(simulator)
        let server = try await SimulatorServer.start(
            simulator, host: host, port: port, idleTimeout: .milliseconds(Int64(idleTimeoutSeconds * 1000)))
        // SIGTERM and SIGINT close the listening socket: the command then ends with status 0.
        let stopSignals = [SIGTERM, SIGINT].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number)
            source.setEventHandler { Task { try? await server.stop() } }
            source.resume()
            return source
        }
        defer { stopSignals.forEach { $0.cancel() } }
        FileHandle.standardOutput.write(Data("simulator listening on \(server.baseURL)\n".utf8))
        if !v3Keys.isEmpty {
            FileHandle.standardOutput.write(
                Data("v3 answers signed by wechatpay_public_key_id \(SimulatedWeChatPay.wechatpayPublicKeyID)\n".utf8))
        }
        try await server.waitUntilClosed()
    }

    /// The v2 keys (`--key`) and v3 public keys (`--v3-merchant`) of the merchants served.
    func merchants() throws -> ([String: MerchantKey], [String: _RSA.Signing.PublicKey]) {
        var merchantKeys: [String: MerchantKey] = [:]
        for entry in keys {
            let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { throw ValidationError("--key takes MCH_ID=KEYFILE, got \(entry)") }
            do {
                merchantKeys[parts[0]] = try ConfigurationLoader.readKey(at: parts[1], key: "--key \(parts[0])") {
                    ConfigurationError(key: $0, reason: $1, file: "command line")
                }
            } catch {
                throw ValidationError("\(error)")
            }
        }
        var v3Keys: [String: _RSA.Signing.PublicKey] = [:]
        for entry in v3Merchant {
            let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, let pem = try? String(contentsOfFile: parts[1], encoding: .utf8),
                let key = try? _RSA.Signing.PublicKey(pemRepresentation: pem)
            else { throw ValidationError("--v3-merchant takes MCH_ID=PUBLIC_KEY_PEM (a readable RSA public key), got \(entry)") }
            v3Keys[parts[0]] = key
        }
        guard !merchantKeys.isEmpty || !v3Keys.isEmpty else {
            throw ValidationError("give at least one --key MCH_ID=KEYFILE or --v3-merchant MCH_ID=PUBLIC_KEY_PEM")
        }
        return (merchantKeys, v3Keys)
    }

    func hostAndPort() throws -> (String, Int) {
        let hostPort = listen.split(separator: ":", omittingEmptySubsequences: false)
        guard hostPort.count == 2, let port = Int(hostPort[1]), (0...65535).contains(port) else {
            throw ValidationError("--listen takes HOST:PORT with a port from 0 (any free one) to 65535, got \(listen)")
        }
        return (String(hostPort[0]), port)
    }

    /// `--call-log`, opened for appending.
    func openCallLog() throws -> FileHandle? {
        guard let callLog else { return nil }
        if !FileManager.default.fileExists(atPath: callLog) {
            _ = FileManager.default.createFile(atPath: callLog, contents: nil)
        }
        guard let handle = FileHandle(forWritingAtPath: callLog) else {
            throw ValidationError("cannot write --call-log \(callLog)")
        }
        handle.seekToEndOfFile()
        return handle
    }

    /// The trade states and faults given on the command line.
    func script(_ simulator: SimulatedWeChatPay) throws {
        paid.forEach(simulator.markPaid)
        closed.forEach(simulator.markClosed)
        paying.forEach(simulator.markPaying)
        nonexistent.forEach(simulator.markNonexistent)
        for entry in fault {
            let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, let plan = FaultPlan(parsing: parts[1]) else {
                throw ValidationError("--fault takes OUT_TRADE_NO=FAULT[:N], got \(entry)")
            }
            simulator.setFault(plan, for: parts[0])
        }
    }
}
