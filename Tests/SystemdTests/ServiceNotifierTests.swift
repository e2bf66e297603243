import Foundation
import Systemd
import TestSupport
import Testing

@Suite struct ServiceNotifierTests {
    @Test(arguments: [false, true])
    func aMessageArrivesAsOneDatagram(abstract: Bool) async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let socket = try NotifySocket(abstract: abstract, directory: folder.url.path)
        defer { socket.stop() }
        let notifier = ServiceNotifier(socketAddress: socket.address, watchdogInterval: nil)
        #expect(notifier.notify("READY=1\nSTATUS=polling"))
        try await DaemonProcess.waitUntil(timeout: 5, "the datagram arrives") { !socket.messages.isEmpty }
        #expect(socket.messages.map(\.text) == ["READY=1\nSTATUS=polling"])
    }

    @Test func withoutNotifySocketNothingIsSent() {
        let notifier = ServiceNotifier.fromEnvironment([:])
        #expect(notifier.socketAddress == nil)
        #expect(!notifier.notify("READY=1"))
    }

    @Test func theWatchdogIntervalIsHalfOfWatchdogUsecForThisProcessOnly() {
        #expect(ServiceNotifier.fromEnvironment(["WATCHDOG_USEC": "2000000"]).watchdogInterval == .seconds(1))
        #expect(
            ServiceNotifier.fromEnvironment(["WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "\(getpid())"]).watchdogInterval
                == .seconds(1))
        #expect(ServiceNotifier.fromEnvironment(["WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"]).watchdogInterval == nil)
        #expect(ServiceNotifier.fromEnvironment(["WATCHDOG_USEC": "junk"]).watchdogInterval == nil)
    }

    @Test func journalStreamMatchesOnlyStderrsDeviceAndInode() {
        var status = stat()
        fstat(STDERR_FILENO, &status)
        #expect(JournalStream.stderrIsJournal(journalStream: "\(status.st_dev):\(status.st_ino)"))
        #expect(!JournalStream.stderrIsJournal(journalStream: "\(status.st_dev):\(status.st_ino + 1)"))
        #expect(!JournalStream.stderrIsJournal(journalStream: nil))
        #expect(!JournalStream.stderrIsJournal(journalStream: "garbage"))
    }
}
