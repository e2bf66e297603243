import Foundation

/// A `closeorderd` child process, its output captured to files.
public final class DaemonProcess: @unchecked Sendable {
    public let process = Process()
    let stdoutFile: URL
    let stderrFile: URL

    /// The built `closeorderd` binary, next to the test bundle in the build folder.
    public static var binary: URL {
        var folder = Bundle.main.bundleURL
        for _ in 0..<4 {
            let candidate = folder.appending(path: "closeorderd")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            folder = folder.deletingLastPathComponent()
        }
        let fromArguments = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        return fromArguments.appending(path: "closeorderd")
    }

    /// Starts `closeorderd ARGUMENTS…`; output goes to files in `directory`. With
    /// `stderrIsJournal`, `$JOURNAL_STREAM` names the stderr file as systemd names the journal.
    /// A `launcher` (e.g. `["/usr/sbin/runuser", "-u", "nobody", "--"]`) runs the binary.
    public init(
        _ arguments: [String], in directory: TemporaryDirectory, environment: [String: String] = [:],
        stderrIsJournal: Bool = false, launcher: [String] = []
    ) throws {
        let tag = UUID().uuidString.prefix(8)
        stdoutFile = directory.url.appending(path: "stdout-\(tag).log")
        stderrFile = directory.url.appending(path: "stderr-\(tag).log")
        FileManager.default.createFile(atPath: stdoutFile.path, contents: nil)
        FileManager.default.createFile(atPath: stderrFile.path, contents: nil)
        if let program = launcher.first {
            process.executableURL = URL(fileURLWithPath: program)
            process.arguments = Array(launcher.dropFirst()) + [Self.binary.path] + arguments
        } else {
            process.executableURL = Self.binary
            process.arguments = arguments
        }
        process.standardOutput = try FileHandle(forWritingTo: stdoutFile)
        process.standardError = try FileHandle(forWritingTo: stderrFile)
        process.standardInput = FileHandle.nullDevice
        var environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        for name in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM", "CREDENTIALS_DIRECTORY"]
        where environment[name] == ProcessInfo.processInfo.environment[name] {
            environment[name] = nil
        }
        if stderrIsJournal {
            var status = stat()
            stat(stderrFile.path, &status)
            environment["JOURNAL_STREAM"] = "\(status.st_dev):\(status.st_ino)"
        }
        process.environment = environment
        try process.run()
    }

    /// Runs `closeorderd ARGUMENTS…` to completion (at most `timeout` seconds).
    public static func run(
        _ arguments: [String], in directory: TemporaryDirectory, timeout: Double = 60, launcher: [String] = []
    ) async throws -> (status: Int32, stdout: String, stderr: String) {
        let daemon = try DaemonProcess(arguments, in: directory, launcher: launcher)
        let status = try await daemon.waitForExit(timeout: timeout)
        return (status, daemon.stdout, daemon.stderr)
    }

    public var stdout: String { (try? String(contentsOf: stdoutFile, encoding: .utf8)) ?? "" }
    public var stderr: String { (try? String(contentsOf: stderrFile, encoding: .utf8)) ?? "" }

    public func signal(_ signal: Int32) { kill(process.processIdentifier, signal) }

    /// Whether the running process has the file at `path` open (read from `/proc/PID/fd`).
    public func hasOpen(_ path: String) -> Bool {
        let folder = "/proc/\(process.processIdentifier)/fd"
        let target = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        guard let descriptors = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return false }
        return descriptors.contains { descriptor in
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "\(folder)/\(descriptor)")) == target
        }
    }

    /// Waits for the process to exit and returns its status; kills it and throws after `timeout`.
    public func waitForExit(timeout: Double) async throws -> Int32 {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning {
            if Date() > deadline {
                signal(SIGKILL)
                throw DaemonProcessError.timedOut(arguments: process.arguments ?? [], stderr: stderr)
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        return process.terminationStatus
    }

    /// Waits until `condition` holds, polling; throws after `timeout` seconds.
    public static func waitUntil(
        timeout: Double, _ what: String, _ condition: () async throws -> Bool
    ) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while try await !condition() {
            if Date() > deadline { throw DaemonProcessError.conditionNotMet(what) }
            try await Task.sleep(for: .milliseconds(25))
        }
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }
}

public enum DaemonProcessError: Error, CustomStringConvertible {
    case timedOut(arguments: [String], stderr: String)
    case conditionNotMet(String)

    public var description: String {
        switch self {
        case .timedOut(let arguments, let stderr):
            "closeorderd \(arguments.joined(separator: " ")) did not exit in time; stderr:\n\(stderr)"
        case .conditionNotMet(let what): "timed out waiting until \(what)"
        }
    }
}
