import Foundation
import GRDB
import OrderStore
import Simulator
import TestSupport
import Testing

/// Every way the app can get a row wrong fails that row alone, clearly, or is handled as
/// the README documents; nothing reaches the wire unescaped.
@Suite struct HostileInputTests {
    @Test func rowsTheAppGotWrongFailAloneWithAReason() async throws {
        let world = try await ReaperWorld.make()
        defer { Task { await world.tearDown() } }
        let hostile: [(number: String, appid: String, mchID: String, reason: String)] = [
            ("", Fixtures.appid, Fixtures.mchID, "6 to 32"),
            ("      ", Fixtures.appid, Fixtures.mchID, "found byte 0x20"),
            ("a<b>c&d", Fixtures.appid, Fixtures.mchID, "found '<'"),
            ("x]]>yzzz", Fixtures.appid, Fixtures.mchID, "found ']'"),
            ("quote'\"1", Fixtures.appid, Fixtures.mchID, "found '''"),
            ("'; DROP TABLE orders; --", Fixtures.appid, Fixtures.mchID, "found '''"),
            ("NEWLINE\n0001", Fixtures.appid, Fixtures.mchID, "byte 0xA"),
            ("订单号订单号", Fixtures.appid, Fixtures.mchID, "byte 0xE8"),
            (String(repeating: "9", count: 1_000_000), Fixtures.appid, Fixtures.mchID, "6 to 32"),
            ("HUGEAPPID01", String(repeating: "w", count: 100_000), Fixtures.mchID, "appid is longer than 32"),
            ("XMLAPPID001", "wx<evil/>", Fixtures.mchID, "appid may hold only"),
            ("EMPTYAPPID1", "", Fixtures.mchID, "appid is empty"),
            ("EMPTYMCHID1", Fixtures.appid, "", "mch_id is empty"),
            ("UNKNOWNMCH1", Fixtures.appid, "1999999999", "no key is configured"),
        ]
        for row in hostile { try world.database.insert(row.number, mchID: row.mchID, appid: row.appid) }
        try world.database.insert("GOODORDER01")
        try await world.reaper.runOnce()
        for row in hostile {
            let stored = try await world.database.store.orders(outTradeNo: row.number)
            let order = try #require(stored.first(where: { $0.mchID == row.mchID }), "\(row.number.prefix(20))")
            #expect(order.state == "failed", "\(row.number.prefix(20))")
            #expect(order.lastError?.contains(row.reason) == true, "\(row.number.prefix(20)): \(order.lastError ?? "nil")")
        }
        #expect(world.stats.requests == 1, "only the good row reached the wire")
        #expect(try await world.database.order("GOODORDER01")?.state == "closed")
    }

    @Test func aCreationTimeInTheFutureWaitsUntilTheOrderIsFiveMinutesOld() async throws {
        let world = try await ReaperWorld.make()
        defer { Task { await world.tearDown() } }
        try world.database.insert("FUTUREORDR1", createdAgo: -3600, expiresIn: -60)
        #expect(try await world.reaper.runOnce() == 0)
        // Seconds tick between the insert and the claim: keep clear of the boundary.
        world.clock.advance(by: 3600 + 290)
        #expect(try await world.reaper.runOnce() == 0, "still younger than 5 minutes")
        world.clock.advance(by: 15)
        #expect(try await world.reaper.runOnce() == 1)
        #expect(try await world.database.order("FUTUREORDR1")?.state == "closed")
    }

    @Test func aDeadlineBeforeCreationMeansCloseAsSoonAsFiveMinutesHavePassed() async throws {
        let world = try await ReaperWorld.make()
        defer { Task { await world.tearDown() } }
        try world.database.insert("BACKWARDS01", createdAgo: 100, expiresIn: -3600)
        #expect(try await world.reaper.runOnce() == 0)
        world.clock.advance(by: 201)
        #expect(try await world.reaper.runOnce() == 1)
        #expect(try await world.database.order("BACKWARDS01")?.state == "closed")
    }

    @Test func queryArgumentsAreDataNotSQL() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let database = try await TestDatabase.make()
        defer { database.remove() }
        try database.insert("VISIBLE0001")
        for argument in ["' OR '1'='1", "VISIBLE0001' --", "%", "VISIBLE%", "*", "\"; DROP TABLE orders; --"] {
            let result = try await DaemonProcess.run(["query", "--db", database.path, argument], in: folder)
            #expect(result.status == 1, "\(argument)")
            #expect(result.stderr.contains("no order with out_trade_no"), "\(argument)")
            #expect(!result.stdout.contains("VISIBLE0001"))
        }
        for state in ["pending' OR '1'='1", "closed; DROP TABLE orders"] {
            let result = try await DaemonProcess.run(["query", "--db", database.path, "--state", state], in: folder)
            #expect(result.status == 64, "an unknown state is a usage error")
        }
        let retry = try await DaemonProcess.run(
            ["retry", "--db", database.path, "--state", "failed", "--err-code", "' OR 1=1 --"], in: folder)
        #expect(retry.stdout.contains("requeued 0 failed orders"))
        #expect(try await database.order("VISIBLE0001")?.state == "pending", "the table is intact")
    }
}
