import Foundation
import GRDB
import OrderStore
import Reaper
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
            ("      ", Fixtures.appid, Fixtures.mchID, "has spaces around it"),
            ("ORDER 00001", Fixtures.appid, Fixtures.mchID, "found byte 0x20"),
            ("SPACEDMCH01", Fixtures.appid, " \(Fixtures.mchID)", "mch_id \" \(Fixtures.mchID)\" has spaces around it"),
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
            #expect(order.state == .failed, "\(row.number.prefix(20))")
            #expect(order.lastError?.contains(row.reason) == true, "\(row.number.prefix(20)): \(order.lastError ?? "nil")")
        }
        #expect(world.stats.requests == 1, "only the good row reached the wire")
        #expect(try await world.database.order("GOODORDER01")?.state == .closed)
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
        #expect(try await world.database.order("FUTUREORDR1")?.state == .closed)
    }

    @Test func aDeadlineBeforeCreationMeansCloseAsSoonAsFiveMinutesHavePassed() async throws {
        let world = try await ReaperWorld.make()
        defer { Task { await world.tearDown() } }
        try world.database.insert("BACKWARDS01", createdAgo: 100, expiresIn: -3600)
        #expect(try await world.reaper.runOnce() == 0)
        world.clock.advance(by: 201)
        #expect(try await world.reaper.runOnce() == 1)
        #expect(try await world.database.order("BACKWARDS01")?.state == .closed)
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
        #expect(try await database.order("VISIBLE0001")?.state == .pending, "the table is intact")
    }

    /// Rows the schema refuses today but that older databases (or a tool that dropped the
    /// triggers) may still hold: each fails alone, naming the column, and is never sent.
    @Test func unreadableRowsFailAloneAndNeverReachTheWire() async throws {
        let world = try await ReaperWorld.make()
        defer { Task { await world.tearDown() } }
        try await world.database.app.write { db in
            try db.execute(sql: "DROP TRIGGER orders_refuse_bad_identity_on_insert")
            let due = "unixepoch() - 7200"
            for (values, _) in Self.unreadableRows {
                try db.execute(
                    sql:
                        "INSERT INTO orders (mch_id, appid, out_trade_no, created_at, expires_at) VALUES (\(values), \(due), \(due))"
                )
            }
            // The live order whose number the NUL row would have been cut to: due in 15 minutes.
            try db.execute(
                sql: """
                    INSERT INTO orders (mch_id, appid, out_trade_no, created_at, expires_at)
                    VALUES ('\(Fixtures.mchID)', '\(Fixtures.appid)', 'NULTEST1', unixepoch() - 600, unixepoch() + 900)
                    """)
        }
        try world.database.insert("GOODORDER02")
        #expect(try await world.reaper.runOnce() == 1, "only the readable row is claimed")
        #expect(world.stats.requests == 1, "only the good row reached the wire")
        #expect(world.stats.closeCalls["NULTEST1"] == nil, "the live order was not closed early")
        let failed = try await world.database.store.orders(inState: .failed, limit: 100)
        #expect(failed.count == Self.unreadableRows.count)
        for (_, reason) in Self.unreadableRows {
            #expect(failed.contains { $0.lastError?.contains(reason) == true }, "\(reason): \(failed.map(\.lastError))")
        }
        #expect(try await world.database.order("NULTEST1")?.state == .pending)
        #expect(try await world.database.order("GOODORDER02")?.state == .closed)
    }

    static let unreadableRows: [(values: String, reason: String)] = [
        ("'\(Fixtures.mchID)', '\(Fixtures.appid)', X'FFFEFDFCFBFAF9F8'", "column out_trade_no holds a BLOB of 8 bytes"),
        (
            "'\(Fixtures.mchID)', '\(Fixtures.appid)', CAST(X'B6A9B5A5BAC5303031' AS TEXT)",
            "column out_trade_no holds 9 bytes that are not UTF-8"
        ),
        (
            "'\(Fixtures.mchID)', '\(Fixtures.appid)', 'NULTEST1' || char(0) || 'ZZ'",
            "column out_trade_no holds a NUL byte at byte 9"
        ),
        ("X'31393030303030313039', '\(Fixtures.appid)', 'BLOBMCHID01'", "column mch_id holds a BLOB"),
        ("'\(Fixtures.mchID)', CAST(X'7778FF' AS TEXT), 'BADAPPID001'", "column appid holds 3 bytes that are not UTF-8"),
    ]

    @Test func aValueOfTheWrongTypeInClosecorderdsOwnColumnsFailsTheRowAlone() async throws {
        let world = try await ReaperWorld.make()
        defer { Task { await world.tearDown() } }
        try world.database.insert("TEXTATTEMPT")
        try world.database.insert("BLOBERRCODE")
        try world.database.insert("HUGEATTEMPT")
        try world.database.insert("GOODORDER03")
        try await world.database.app.write { db in
            #expect(throws: DatabaseError.self, "the schema refuses it today") {
                try db.execute(sql: "UPDATE orders SET attempts = 'three' WHERE out_trade_no = 'TEXTATTEMPT'")
            }
            // As a database from before migration 3 may hold it:
            try db.execute(sql: "DROP TRIGGER orders_refuse_bad_bookkeeping_on_update")
            try db.execute(sql: "UPDATE orders SET attempts = 'three' WHERE out_trade_no = 'TEXTATTEMPT'")
            try db.execute(sql: "UPDATE orders SET attempts = 9223372036854775807 WHERE out_trade_no = 'HUGEATTEMPT'")
            try db.execute(sql: "UPDATE orders SET err_code = X'00FF' WHERE out_trade_no = 'BLOBERRCODE'")
        }
        try await world.reaper.runOnce()
        #expect(
            try await world.database.order("TEXTATTEMPT")?.lastError?.contains("column attempts holds the text \"three\"") == true
        )
        #expect(try await world.database.order("BLOBERRCODE")?.lastError?.contains("column err_code holds a BLOB") == true)
        #expect(
            try await world.database.order("HUGEATTEMPT")?.lastError?.contains(
                "column attempts holds 9223372036854775807, not a count of attempts") == true)
        #expect(try await world.database.order("GOODORDER03")?.state == .closed)
        #expect(world.stats.requests == 1)
    }

    @Test func theSchemaRefusesWhatAnAppMostOftenGetsWrongWithAMessageItsDeveloperUnderstands() async throws {
        let database = try await TestDatabase.make()
        defer { database.remove() }
        let milliseconds = Int64(Date().timeIntervalSince1970 * 1000)
        let refused: [(sql: String, message: String)] = [
            (
                "INSERT INTO orders (mch_id, appid, out_trade_no, created_at) VALUES ('1', 'wx', 'MILLIS00001', \(milliseconds))",
                "created_at must be Unix time in whole seconds"
            ),
            (
                "INSERT INTO orders (mch_id, appid, out_trade_no, expires_at) VALUES ('1', 'wx', 'MILLIS00002', \(milliseconds))",
                "expires_at must be NULL or Unix time in whole seconds"
            ),
            (
                "INSERT INTO orders (mch_id, appid, out_trade_no, created_at) VALUES ('1', 'wx', 'DIGITS00001', 20261129100000)",
                "between 2000 and 2200"
            ),
            (
                "INSERT INTO orders (mch_id, appid, out_trade_no, created_at) VALUES ('1', 'wx', 'ZEROTIME001', 0)",
                "created_at must be"
            ),
            (
                "INSERT INTO orders (mch_id, appid, out_trade_no, created_at) VALUES ('1', 'wx', 'NEGATIVE001', -5)",
                "created_at must be"
            ),
            ("INSERT INTO orders (mch_id, appid, out_trade_no) VALUES ('1', 'wx', X'FFFEFDFCFBFAF9F8')", "must be TEXT"),
            ("INSERT INTO orders (mch_id, appid, out_trade_no) VALUES (X'31', 'wx', 'BLOBMCH0001')", "must be TEXT"),
            (
                "INSERT INTO orders (mch_id, appid, out_trade_no) VALUES ('1', 'wx', 'NULTEST1' || char(0) || 'ZZ')",
                "without NUL characters"
            ),
            (
                "INSERT INTO orders (mch_id, appid, out_trade_no, state) VALUES ('1', 'wx', 'CLOSING0001', 'closing')",
                "insert orders as pending"
            ),
        ]
        for (sql, message) in refused {
            do {
                try await database.app.write { db in try db.execute(sql: sql) }
                Issue.record("accepted: \(sql)")
            } catch let error as DatabaseError {
                #expect(error.message?.hasPrefix("closeorderd: ") == true, "\(sql)")
                #expect(error.message?.contains(message) == true, "\(sql): \(error.message ?? "")")
            }
        }
        try database.insert("UPDATEDLATE")
        for sql in [
            "UPDATE orders SET created_at = \(milliseconds) WHERE out_trade_no = 'UPDATEDLATE'",
            "UPDATE orders SET out_trade_no = X'00' WHERE out_trade_no = 'UPDATEDLATE'",
            "UPDATE orders SET state = 'closing' WHERE out_trade_no = 'UPDATEDLATE'",
        ] {
            await #expect(throws: DatabaseError.self, "\(sql)") {
                try await database.app.write { db in try db.execute(sql: sql) }
            }
        }
        try await database.app.write { db in
            try db.execute(
                sql: "UPDATE orders SET state = 'paid', updated_at = CURRENT_TIMESTAMP WHERE out_trade_no = 'UPDATEDLATE'")
        }
        #expect(try await database.order("UPDATEDLATE")?.state == .paid, "the app's usual update still works")
    }

    @Test func anOrderTheAppPaysWhileItWaitsInTheQueueIsNotCalled() async throws {
        // The first call's answer is held until the app has paid the second order, then comes
        // 1.5 s later: the second order has waited in the queue for more than a second.
        let world = try await ReaperWorld.make(
            behaviour: SimulatorBehaviour(latencyMilliseconds: 1500), timeoutSeconds: 120, concurrency: 1)
        defer { Task { await world.tearDown() } }
        let simulator = world.simulator.simulator
        simulator.holdAnswers()
        defer { simulator.releaseAnswers() }
        try world.database.insert("QUEUEFIRST1", createdAgo: 1300)
        try world.database.insert("QUEUEPAID01", createdAgo: 1200)
        let pass = Task { try await world.reaper.runOnce() }
        try await DaemonProcess.waitUntil(timeout: 60, "the first call is in flight") { simulator.heldAnswers == 1 }
        #expect(world.stats.closeCalls.keys.sorted() == ["QUEUEFIRST1"])
        try await world.database.app.write { db in
            try db.execute(sql: "UPDATE orders SET state = 'paid' WHERE out_trade_no = 'QUEUEPAID01'")
        }
        simulator.releaseAnswers()
        #expect(try await pass.value == 2)
        #expect(world.stats.closeCalls["QUEUEPAID01"] == nil, "re-read before its call: paid meanwhile")
        #expect(try await world.database.order("QUEUEPAID01")?.state == .paid)
        #expect(try await world.database.order("QUEUEFIRST1")?.state == .closed)
    }

    @Test func rowsFailedAtTheClaimDoNotEndAOncePassEarly() async throws {
        let world = try await ReaperWorld.make(concurrency: 1)
        defer { Task { await world.tearDown() } }
        try await world.database.app.write { db in
            try db.execute(sql: "DROP TRIGGER orders_refuse_bad_identity_on_insert")
            for index in 1...4 {
                try db.execute(
                    sql: """
                        INSERT INTO orders (mch_id, appid, out_trade_no, created_at, expires_at)
                        VALUES ('\(Fixtures.mchID)', '\(Fixtures.appid)', X'FF0\(index)', unixepoch() - 7200, unixepoch() - 7200)
                        """)
            }
        }
        for index in 1...3 { try world.database.insert("AFTERBAD00\(index)") }
        #expect(try await world.reaper.runOnce() == 3, "two rows a claim with one call slot: bad ones first")
        for index in 1...3 { #expect(try await world.database.order("AFTERBAD00\(index)")?.state == .closed) }
    }

    @Test func anOrderBeingClosedCannotBeRenamedAndBookkeepingIsRefusedAtInsert() async throws {
        let database = try await TestDatabase.make()
        defer { database.remove() }
        try database.insert("RENAMEME001")
        try await database.app.write { db in
            try db.execute(sql: "UPDATE orders SET out_trade_no = 'RENAMED0001' WHERE out_trade_no = 'RENAMEME001'")
            try db.execute(
                sql:
                    "UPDATE orders SET state = 'closing', lease_token = 't', lease_expires_at = unixepoch() + 60 WHERE out_trade_no = 'RENAMED0001'"
            )
        }
        do {
            try await database.app.write { db in
                try db.execute(sql: "UPDATE orders SET out_trade_no = 'RENAMED0002' WHERE out_trade_no = 'RENAMED0001'")
            }
            Issue.record("renamed while closing")
        } catch let error as DatabaseError {
            #expect(error.message?.contains("being closed right now") == true, "\(error.message ?? "")")
        }
        for sql in [
            "INSERT INTO orders (mch_id, appid, out_trade_no, attempts) VALUES ('1', 'wx', 'BOOKKEEP001', 'x')",
            "INSERT INTO orders (mch_id, appid, out_trade_no, next_attempt_at) VALUES ('1', 'wx', 'BOOKKEEP002', 'soon')",
            "INSERT INTO orders (mch_id, appid, out_trade_no, next_attempt_at) VALUES ('1', 'wx', 'BOOKKEEP003', \(Int64(Date().timeIntervalSince1970) * 1000))",
        ] {
            await #expect(throws: DatabaseError.self, "\(sql)") {
                try await database.app.write { db in try db.execute(sql: sql) }
            }
        }
    }
}
