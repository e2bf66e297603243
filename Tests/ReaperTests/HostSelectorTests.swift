import Clocks
import Reaper
import TestSupport
import Testing
import WeChatPayHTTP

/// Which host serves the next call, on a clock the tests move: failover, probes of the
/// primary at the probe interval, and the way back.
@Suite struct HostSelectorTests {
    static let primary = "https://api.mch.weixin.qq.com"
    static let backup = "https://api2.mch.weixin.qq.com"

    @Test func aFailedPrimaryMovesCallsToTheBackupAndAnAnsweredProbeBringsThemBack() {
        let clock = ManualClock()
        let hosts = HostSelector(primary: Self.primary, backup: Self.backup, probeInterval: .seconds(30), clock: clock)
        #expect(hosts.hostForNextCall() == Self.primary)
        hosts.report(host: Self.primary, failedOver: false)
        #expect(hosts.hostForNextCall() == Self.primary, "an answer keeps calls on the primary")

        hosts.report(host: Self.primary, failedOver: true)
        #expect(hosts.onBackup)
        #expect(hosts.hostForNextCall() == Self.backup)
        hosts.report(host: Self.backup, failedOver: true)
        #expect(hosts.hostForNextCall() == Self.backup, "the backup failing too does not send calls back")

        clock.advance(by: .seconds(30))
        #expect(hosts.hostForNextCall() == Self.primary, "the probe")
        hosts.report(host: Self.primary, failedOver: false)
        #expect(!hosts.onBackup)
        #expect(hosts.hostForNextCall() == Self.primary)
    }

    @Test(arguments: [Duration.milliseconds(300), .seconds(30), .seconds(600)])
    func whileThePrimaryStaysDownItIsProbedOncePerProbeInterval(probeInterval: Duration) {
        let clock = ManualClock()
        let hosts = HostSelector(primary: Self.primary, backup: Self.backup, probeInterval: probeInterval, clock: clock)
        hosts.report(host: Self.primary, failedOver: true)
        var lastProbe = clock.now
        for probe in 1...4 {
            clock.advance(by: lastProbe + probeInterval - .milliseconds(1) - clock.now)
            #expect(hosts.hostForNextCall() == Self.backup, "probe \(probe): not a millisecond early")
            clock.advance(by: .milliseconds(1))
            #expect(hosts.hostForNextCall() == Self.primary, "probe \(probe) is due")
            lastProbe = clock.now
            #expect(hosts.hostForNextCall() == Self.backup, "one probe per interval, however many calls")
            clock.advance(by: .milliseconds(5))
            hosts.report(host: Self.primary, failedOver: true)
            #expect(hosts.onBackup)
        }
    }

    @Test(arguments: [nil, "", "https://api.mch.weixin.qq.com"])
    func withoutABackupEveryCallGoesToThePrimary(backup: String?) {
        let clock = ManualClock()
        let hosts = HostSelector(primary: Self.primary, backup: backup, probeInterval: .seconds(30), clock: clock)
        #expect(hosts.backup == nil)
        hosts.report(host: Self.primary, failedOver: true)
        #expect(!hosts.onBackup)
        clock.advance(by: .seconds(1))
        #expect(hosts.hostForNextCall() == Self.primary)
    }
}
