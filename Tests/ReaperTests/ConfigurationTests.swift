import ConfigurationFile
import Foundation
import Reaper
import TestSupport
import Testing

@Suite struct ConfigurationTests {
    func load(_ yaml: String, keyText: String = Fixtures.keyText) throws(ConfigurationError) -> DaemonConfiguration {
        let folder = try! TemporaryDirectory()
        defer { folder.remove() }
        try! folder.write("key", keyText + "\n")
        let file = try! folder.write("config.yaml", yaml)
        return try ConfigurationLoader.load(path: file)
    }

    let minimal = """
        database: /tmp/orders.sqlite
        merchants:
          - mch_id: "1900000109"
            key_file: key
        """

    @Test func theMinimalConfigurationGetsTheDocumentedDefaults() throws {
        let configuration = try load(minimal)
        #expect(configuration.api.baseURL == "https://api.mch.weixin.qq.com")
        #expect(configuration.api.timeoutSeconds == 10)
        let reaper = configuration.reaper
        #expect(reaper.pollIntervalSeconds == 5)
        #expect(reaper.concurrency == 16)
        #expect(reaper.batchSize == 256)
        #expect(reaper.minOrderAgeSeconds == 300)
        #expect(reaper.paymentTimeoutSeconds == 7200)
        #expect(reaper.maxAttempts == 10)
        #expect(reaper.backoffBaseSeconds == 30)
        #expect(reaper.backoffMaxSeconds == 3600)
        #expect(reaper.leaseSeconds == 120)
        #expect(configuration.merchants.first?.mchID == "1900000109")
        guard case .v2(_, let signType)? = configuration.merchants.first?.credentials else {
            Issue.record("expected an API v2 merchant")
            return
        }
        #expect(signType == .hmacSHA256)
    }

    @Test(arguments: [
        ("reaper:\n  concurrancy: 4\n", "reaper.concurrancy", "unknown key"),
        ("reaper:\n  min_order_age_seconds: 299\n", "reaper.min_order_age_seconds", "at least 300"),
        ("reaper:\n  concurrency: lots\n", "reaper.concurrency", "whole number"),
        ("reaper:\n  concurrency: 0\n", "reaper.concurrency", "whole number"),
        ("reaper:\n  backoff_base_seconds: 100\n  backoff_max_seconds: 10\n", "reaper.backoff_max_seconds", "at least"),
        ("reaper:\n  lease_seconds: 5\n", "reaper.lease_seconds", "exceed api.timeout_seconds"),
        ("api:\n  base_url: ftp://example\n", "api.base_url", "http"),
        ("api:\n  timeout_seconds: -1\n", "api.timeout_seconds", "number"),
        ("colour: blue\n", "colour", "unknown key"),
        ("api:\n  base_url: https://api.mch.weixin.qq.com/?debug=1\n", "api.base_url", "without a query"),
        ("api:\n  base_url: https://api.mch.weixin.qq.com/#x\n", "api.base_url", "fragment"),
        ("api:\n  base_url: https://user:pass@proxy.example\n", "api.base_url", "user info"),
        ("api:\n  backup_base_url: https://api2.mch.weixin.qq.com?x=1\n", "api.backup_base_url", "without a query"),
        ("api:\n  base_url: http://127.0.0.1:99999\n", "api.base_url", "a port is 1 to 65535"),
        ("api:\n  backup_base_url: http://127.0.0.1:70000\n", "api.backup_base_url", "a port is 1 to 65535"),
        ("metrics:\n  listen: 9464\n", "metrics.listen", "HOST:PORT"),
        ("metrics:\n  listen: 127.0.0.1:70000\n", "metrics.listen", "port 0 to 65535"),
        ("metrics:\n  listen: prometheus.example:9464\n", "metrics.listen", "IPv4 address"),
        ("metrics:\n  listen: 127.0.0.256:9464\n", "metrics.listen", "HOST:PORT"),
        ("metrics:\n  listen: ::1:9464\n", "metrics.listen", "bracketed IPv6"),
        ("metrics:\n  port: 9464\n", "metrics.port", "unknown key"),
    ])
    func aBadValueIsRefusedNamingItsKey(extra: String, key: String, reason: String) {
        let error = #expect(throws: ConfigurationError.self) { try load(minimal + "\n" + extra) }
        #expect(error?.key == key)
        #expect(error?.description.contains(reason) == true, "\(error?.description ?? "")")
    }

    @Test func databaseAndMerchantsAreRequired() {
        #expect(
            (#expect(throws: ConfigurationError.self) { try load("merchants:\n  - mch_id: \"1\"\n    key_file: key\n") })?.key
                == "database")
        #expect((#expect(throws: ConfigurationError.self) { try load("database: /tmp/x.sqlite\n") })?.key == "merchants")
    }

    @Test func aKeyOfTheWrongLengthIsRefusedWithoutQuotingIt() {
        let error = #expect(throws: ConfigurationError.self) { try load(minimal, keyText: "short-secret-key-value") }
        #expect(error?.key == "merchants[0].key_file")
        #expect(error?.description.contains("32 ASCII characters") == true)
        #expect(error?.description.contains("short-secret-key-value") == false)
    }

    @Test func anUnreadableKeyFileIsNamed() {
        let yaml = minimal.replacingOccurrences(of: "key_file: key", with: "key_file: /nonexistent/key")
        let error = #expect(throws: ConfigurationError.self) { try load(yaml) }
        #expect(error?.key == "merchants[0].key_file")
        #expect(error?.description.contains("/nonexistent/key") == true)
    }

    @Test func anUnknownSignTypeIsRefused() {
        let yaml = minimal + "\n    sign_type: SHA1\n"
        #expect((#expect(throws: ConfigurationError.self) { try load(yaml) })?.key == "merchants[0].sign_type")
    }

    @Test func theSummaryNeverContainsTheKey() throws {
        let configuration = try load(minimal)
        #expect(!configuration.summaryWithoutSecrets.contains(Fixtures.keyText))
        #expect(!"\(configuration.merchants)".contains(Fixtures.keyText))
    }
}

@Suite struct V3ConfigurationTests {
    func load(privateKey: String, publicKeyID: String = "PUB_KEY_ID_1", privateMode: Int = 0o600) throws(ConfigurationError)
        -> DaemonConfiguration
    {
        let folder = try! TemporaryDirectory()
        defer { folder.remove() }
        try! folder.write("private.pem", privateKey, permissions: privateMode)
        try! folder.write("public.pem", V3TestKeys.wechatpayPublicKey, permissions: 0o644)
        let file = try! folder.write(
            "config.yaml",
            """
            database: /tmp/orders.sqlite
            merchants:
              - mch_id: "1900000333"
                api: v3
                serial_no: \(V3TestKeys.merchantSerialNo)
                private_key_file: private.pem
                wechatpay_public_key_file: public.pem
                wechatpay_public_key_id: "\(publicKeyID)"
            """)
        return try ConfigurationLoader.load(path: file)
    }

    @Test func aV3MerchantLoads() throws {
        let configuration = try load(privateKey: V3TestKeys.merchantPrivateKey)
        #expect(configuration.merchants.first?.apiName == "v3")
        #expect(!configuration.summaryWithoutSecrets.contains("PRIVATE KEY"))
    }

    @Test func aShortOrUnreadableOrOpenKeyIsOneClearLine() {
        let short = #expect(throws: ConfigurationError.self) { try load(privateKey: V3TestKeys.shortPrivateKey) }
        #expect(short?.key == "merchants[0].private_key_file")
        #expect(short?.description.contains("1024 bits") == true)
        let garbage = #expect(throws: ConfigurationError.self) { try load(privateKey: "not a key") }
        #expect(garbage?.description.contains("not an RSA private key") == true)
        let open = #expect(throws: ConfigurationError.self) {
            try load(privateKey: V3TestKeys.merchantPrivateKey, privateMode: 0o644)
        }
        #expect(open?.description.contains("chmod 600") == true)
        let noID = #expect(throws: ConfigurationError.self) {
            try load(privateKey: V3TestKeys.merchantPrivateKey, publicKeyID: "")
        }
        #expect(noID?.key == "merchants[0].wechatpay_public_key_id")
    }
}

@Suite struct BackoffTests {
    @Test func theCapDoublesUpToTheMaximum() {
        let backoff = Backoff(baseSeconds: 30, maxSeconds: 3600)
        #expect([1, 2, 3, 4, 8, 60].map(backoff.cap(afterAttempt:)) == [30, 60, 120, 240, 3600, 3600])
    }

    @Test func waitsAreJitteredWithinTheCap() {
        let backoff = Backoff(baseSeconds: 30, maxSeconds: 3600)
        var random = SystemRandomNumberGenerator()
        let waits = (0..<200).map { _ in
            backoff.nextAttempt(afterAttempt: 3, now: 1000, jitter: .random(in: 0...1, using: &random)) - 1000
        }
        #expect(waits.allSatisfy { (1...120).contains($0) })
        #expect(Set(waits).count > 20, "full jitter spreads retries out")
    }
}

/// Base URLs, the backup default and key files that are links.
extension ConfigurationTests {
    @Test func aCustomPrimaryHasNoBackupUnlessOneIsNamed() throws {
        #expect(try load(minimal).api.backupBaseURL == "https://api2.mch.weixin.qq.com", "WeChat Pay's own backup")
        let custom = try load(minimal + "\napi:\n  base_url: http://127.0.0.1:8099\n")
        #expect(custom.api.backupBaseURL == nil, "a simulator or proxy never fails over to production")
        let named = try load(minimal + "\napi:\n  base_url: http://127.0.0.1:8099\n  backup_base_url: http://127.0.0.1:8098\n")
        #expect(named.api.backupBaseURL == "http://127.0.0.1:8098")
        let none = try load(minimal + "\napi:\n  backup_base_url: none\n")
        #expect(none.api.backupBaseURL == nil)
    }

    @Test func theMetricsEndpointIsOffUnlessListenIsSet() throws {
        #expect(try load(minimal).metricsListen == nil)
        #expect(try load(minimal + "\nmetrics: {}\n").metricsListen == nil)
        let local = try load(minimal + "\nmetrics:\n  listen: 127.0.0.1:9464\n")
        #expect(local.metricsListen == DaemonConfiguration.ListenAddress(host: "127.0.0.1", port: 9464))
        #expect(local.warnings.isEmpty)
        #expect(local.summaryWithoutSecrets.contains("metrics.listen=127.0.0.1:9464"))
        let ipv6 = try load(minimal + "\nmetrics:\n  listen: \"[::1]:9464\"\n")
        #expect(ipv6.metricsListen == DaemonConfiguration.ListenAddress(host: "::1", port: 9464))
        #expect(ipv6.metricsListen?.description == "[::1]:9464")
        let open = try load(minimal + "\nmetrics:\n  listen: 0.0.0.0:9464\n")
        #expect(open.warnings.first?.contains("metrics.listen is 0.0.0.0:9464, which other machines may reach") == true)
    }

    @Test func aPostgresDatabaseReadsItsPasswordFileAndIsWarnedAboutOnlyWhenUnsafe() throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        try folder.write("key", Fixtures.keyText + "\n")
        try folder.write("pg.password", "s3cret\n")
        let merchants = "merchants:\n  - mch_id: \"1900000109\"\n    key_file: key\n"
        func load(_ database: String) throws(ConfigurationError) -> DaemonConfiguration {
            let file = try! folder.write("config.yaml", database + merchants)
            return try ConfigurationLoader.load(path: file)
        }
        let verified = try load(
            "database: postgresql://closeorderd@db.example.com/shop?sslmode=verify-full\ndatabase_password_file: pg.password\n")
        #expect(verified.databasePassword == "s3cret", "surrounding whitespace is not part of it")
        #expect(verified.warnings.isEmpty)
        #expect(!verified.summaryWithoutSecrets.contains("s3cret"))
        let unverified = try load("database: postgresql://closeorderd@db.example.com/shop?sslmode=require\n")
        #expect(
            unverified.warnings == [
                "database: sslmode=require to db.example.com does not verify the server's certificate; use sslmode=verify-full"
            ])
        #expect(try load("database: postgresql://closeorderd@localhost/shop\n").warnings.isEmpty, "this machine")
        let inURL = try load("database: postgresql://closeorderd:s3cret@localhost/shop\n")
        #expect(inURL.warnings.count == 1 && inURL.warnings[0].contains("database_password_file"))
        #expect(!inURL.summaryWithoutSecrets.contains("s3cret"))
        #expect {
            try load("database: /tmp/orders.sqlite\ndatabase_password_file: pg.password\n")
        } throws: { error in
            "\(error)".contains("database_password_file") && "\(error)".contains("only a PostgreSQL database")
        }
        #expect {
            try load("database: postgresql://u@h/d?sslmode=maybe\n")
        } throws: { error in
            "\(error)".contains("database") && "\(error)".contains("sslmode must be one of")
        }
        // A --db override is checked as a database, but does not change what the file's keys mean.
        let file = try folder.write(
            "config.yaml", "database: postgresql://closeorderd@localhost/shop\ndatabase_password_file: pg.password\n" + merchants)
        #expect(try ConfigurationLoader.load(path: file, databaseOverride: "/tmp/other.sqlite").database == "/tmp/other.sqlite")
    }

    @Test func plainHTTPToAnotherHostGetsAWarning() throws {
        #expect(try load(minimal).warnings.isEmpty)
        #expect(try load(minimal + "\napi:\n  base_url: http://localhost:8099\n").warnings.isEmpty)
        let remote = try load(minimal + "\napi:\n  base_url: http://proxy.internal:8080\n")
        #expect(remote.warnings.count == 1)
        #expect(remote.warnings.first?.contains("api.base_url is plain http:// to proxy.internal") == true)
    }

    @Test func aKeyFileThatIsALinkIsJudgedByTheFileItLeadsTo() throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        // The layout of a Kubernetes Secret volume: key -> ..data/key -> ..2026_11_29/key.
        try FileManager.default.createDirectory(atPath: folder.path("..2026_11_29"), withIntermediateDirectories: true)
        let target = try folder.write("..2026_11_29/key", Fixtures.keyText + "\n")
        try FileManager.default.createSymbolicLink(atPath: folder.path("..data"), withDestinationPath: "..2026_11_29")
        try FileManager.default.createSymbolicLink(atPath: folder.path("key"), withDestinationPath: "..data/key")
        let file = try folder.write("config.yaml", minimal)
        #expect(try ConfigurationLoader.load(path: file).merchants.count == 1, "a link to a 600 file is accepted")

        chmod(target, 0o644)
        let open = #expect(throws: ConfigurationError.self) { try ConfigurationLoader.load(path: file) }
        #expect(open?.description.contains("mode 644") == true, "\(open?.description ?? "")")
        #expect(open?.description.contains("a link to \(target)") == true, "names the file to chmod: \(open?.description ?? "")")
        #expect(open?.description.contains("defaultMode") == true)

        try FileManager.default.removeItem(atPath: folder.path("key"))
        try FileManager.default.createDirectory(atPath: folder.path("key"), withIntermediateDirectories: true)
        let directory = #expect(throws: ConfigurationError.self) { try ConfigurationLoader.load(path: file) }
        #expect(directory?.description.contains("is a directory") == true, "\(directory?.description ?? "")")
    }

    @Test func aMerchantIdWithSpacesOrOddCharactersIsRefused() {
        for mchID in [" 1900000109", "1900000109 ", "19000\\e00109", String(repeating: "1", count: 33)] {
            let yaml = "database: /tmp/orders.sqlite\nmerchants:\n  - mch_id: \"\(mchID)\"\n    key_file: key\n"
            let error = #expect(throws: ConfigurationError.self) { try load(yaml) }
            #expect(error?.key == "merchants[0].mch_id", "\(mchID)")
            #expect(error?.description.contains("\u{1B}") == false, "quoted and escaped")
        }
    }

    @Test func aHugeKeyFileOrALinkLoopIsRefusedWithAMessageThatFits() throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let file = try folder.write("config.yaml", minimal)
        try folder.write("key", String(repeating: "k", count: 100_000))
        let huge = #expect(throws: ConfigurationError.self) { try ConfigurationLoader.load(path: file) }
        #expect(huge?.description.contains("has 100000 bytes") == true, "\(huge?.description ?? "")")
        try FileManager.default.removeItem(atPath: folder.path("key"))
        try FileManager.default.createSymbolicLink(atPath: folder.path("key"), withDestinationPath: "loop")
        try FileManager.default.createSymbolicLink(atPath: folder.path("loop"), withDestinationPath: "key")
        let loop = #expect(throws: ConfigurationError.self) { try ConfigurationLoader.load(path: file) }
        #expect(loop?.description.contains("Too many levels of symbolic links") == true, "\(loop?.description ?? "")")
    }

    @Test func invalidYAMLIsOneLine() {
        let error = #expect(throws: ConfigurationError.self) { try load(minimal + "\ndatabase: /tmp/other.sqlite\n") }
        #expect(error?.description.contains("not valid YAML") == true)
        #expect(error?.description.contains("\n") == false, "\(error?.description ?? "")")
    }
}
