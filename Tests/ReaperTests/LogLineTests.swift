import Foundation
import Logging
import Testing

@testable import DaemonLogging

/// Log lines: one line per event whatever the message holds, and the buffer that carries
/// them to stderr, which batches lines below `warning` and never reorders them.
@Suite struct LogLineTests {
    /// A pipe whose read end is polled without blocking.
    final class Pipe {
        let read: Int32
        let write: Int32

        init() throws {
            var ends: [Int32] = [0, 0]
            guard pipe(&ends) == 0 else { throw POSIXError(.EMFILE) }
            (read, write) = (ends[0], ends[1])
        }

        deinit {
            close(read)
            close(write)
        }

        /// What can be read now, without waiting.
        func available() -> String {
            var bytes: [UInt8] = []
            var descriptor = pollfd(fd: read, events: Int16(POLLIN), revents: 0)
            var chunk = [UInt8](repeating: 0, count: 4096)
            while poll(&descriptor, 1, 0) > 0 {
                let count = Glibc.read(read, &chunk, chunk.count)
                guard count > 0 else { break }
                bytes += chunk[..<count]
            }
            return String(decoding: bytes, as: UTF8.self)
        }

        /// Everything that arrives within `limit`, once `expected` bytes are in.
        func waitFor(_ expected: Int, within limit: Duration = .seconds(30)) async throws -> String {
            let deadline = ContinuousClock.now + limit
            var text = available()
            while text.utf8.count < expected && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))
                text += available()
            }
            return text
        }
    }

    @Test func linesBelowWarningWaitForTheDelayAndLeaveTogether() async throws {
        let pipe = try Pipe()
        let sink = LineSink(fileDescriptor: pipe.write, delay: .milliseconds(300))
        sink.append("INFO one\n", urgent: false)
        sink.append("INFO two\n", urgent: false)
        #expect(pipe.available() == "", "nothing is written before the delay")
        #expect(try await pipe.waitFor(18) == "INFO one\nINFO two\n")
    }

    @Test func aWarningLeavesAtOnceAfterEverythingBeforeIt() throws {
        let pipe = try Pipe()
        let sink = LineSink(fileDescriptor: pipe.write, delay: .seconds(60))
        sink.append("INFO first\n", urgent: false)
        sink.append("WARNING second\n", urgent: true)
        #expect(pipe.available() == "INFO first\nWARNING second\n")
    }

    @Test func aFullBufferIsWrittenWithoutWaitingAndFlushEmptiesIt() throws {
        let pipe = try Pipe()
        let sink = LineSink(fileDescriptor: pipe.write, delay: .seconds(60), capacity: 20)
        sink.append("INFO 0123456789\n", urgent: false)
        #expect(pipe.available() == "")
        sink.append("INFO abcdef\n", urgent: false)
        #expect(pipe.available() == "INFO 0123456789\nINFO abcdef\n")
        sink.append("INFO last\n", urgent: false)
        sink.flush()
        #expect(pipe.available() == "INFO last\n")
    }

    @Test func linesFromManyThreadsArriveWholeAndEachOnce() async throws {
        let pipe = try Pipe()
        let sink = LineSink(fileDescriptor: pipe.write, delay: .milliseconds(5), capacity: 512)
        await withTaskGroup(of: Void.self) { group in
            for writer in 0..<8 {
                group.addTask {
                    for line in 0..<100 { sink.append("INFO writer=\(writer) line=\(line)\n", urgent: line % 25 == 0) }
                }
            }
        }
        sink.flush()
        let lines = pipe.available().split(separator: "\n").map(String.init)
        #expect(lines.count == 800)
        #expect(Set(lines).count == 800)
        for writer in 0..<8 {
            let own = lines.filter { $0.hasPrefix("INFO writer=\(writer) ") }
            #expect(own == (0..<100).map { "INFO writer=\(writer) line=\($0)" }, "writer \(writer)'s lines keep their order")
        }
    }

    @Test func aLineIsOneLineWhateverTheMessageAndValuesHold() {
        let handler = LineLogHandler(syslogPrefixes: true)
        let line = handler.line(
            for: LogEvent(
                level: .warning, message: "row\nforged INFO line", metadata: ["z": "a b", "a": "x\u{1B}[2J"], source: "test",
                file: #fileID, function: #function, line: #line))
        #expect(line == "<4>WARNING row\\nforged INFO line a=\"x\\u{1B}[2J\" z=\"a b\"\n")
    }
}
