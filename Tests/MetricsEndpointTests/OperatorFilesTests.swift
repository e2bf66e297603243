import Testing

/// The operator's side of the metrics: `contrib/prometheus/alerts.yml` loads in promtool and
/// passes its unit tests (each alert fires where it should and stays quiet where it should
/// not), and the rules and the Grafana dashboard name only metrics the daemon exports.
@Suite struct OperatorFilesTests {
    @Test func theAlertRulesAndTheDashboardPassContribCheck() async throws {
        let check = try await runTool("/bin/bash", ["contrib/check"])
        #expect(check.status == 0, "\(check.output)")
        #expect(check.output.contains("ok:   promtool test rules contrib/prometheus/alerts_test.yml"), "\(check.output)")
    }
}
