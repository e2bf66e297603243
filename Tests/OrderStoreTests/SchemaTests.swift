import Foundation
import GRDB
import TestSupport
import Testing

@testable import OrderStore

@Suite struct SchemaTests {
    @Test func migrateCreatesTheTablesAndRecordsTheVersion() async throws {
        let database = try await TestDatabase.make()
        defer { database.remove() }
        let versions = try await database.app.read { db in try Int.fetchAll(db, sql: "SELECT version FROM schema_migrations") }
        #expect(versions == Array(1...OrderStore.schemaVersion))
        #expect(try await database.store.migrate() == [], "a current database is left alone")
        let tables = try await database.app.read { db in
            try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        }
        #expect(tables.contains("orders") && tables.contains("close_attempts"))
    }

    @Test func aDatabaseMigratedBeforeDatabaseMigratorIsBridgedNotMigratedAgain() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let store = try OrderStore(path: folder.path("older.sqlite"))
        #expect(try await store.migrate(upTo: 1) == [1])
        // What a build before DatabaseMigrator left: schema_migrations only.
        try await store.withWriteTransaction { db in try db.execute(sql: "DROP TABLE grdb_migrations") }
        #expect(try await store.migrate() == Array(2...OrderStore.schemaVersion))
        #expect(try await store.migrate() == [])
        let identifiers = try await store.withWriteTransaction { db in
            try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations ORDER BY identifier")
        }
        #expect(identifiers == EmbeddedMigration.all.map(\.fileName).sorted())
    }

    @Test func twoProcessesMigratingOneFreshFileAtOnceApplyEachVersionOnce() async throws {
        for round in 1...10 {
            let folder = try TemporaryDirectory()
            defer { folder.remove() }
            let path = folder.path("fresh-\(round).sqlite")
            // Two stores are two connections, as two daemons starting at once would have.
            let first = try OrderStore(path: path)
            let second = try OrderStore(path: path)
            async let one = first.migrate()
            async let two = second.migrate()
            let applied = try await one + two
            #expect(applied.sorted() == Array(1...OrderStore.schemaVersion), "round \(round)")
            let versions = try await first.withWriteTransaction { db in
                try Int.fetchAll(db, sql: "SELECT version FROM schema_migrations ORDER BY version")
            }
            #expect(versions == Array(1...OrderStore.schemaVersion))
        }
    }

    @Test func databaseRunsInWALMode() async throws {
        let database = try await TestDatabase.make()
        defer { database.remove() }
        let mode = try await database.app.read { db in try String.fetchOne(db, sql: "PRAGMA journal_mode") }
        #expect(mode == "wal")
    }

    @Test func aDatabaseFromANewerVersionIsRefused() async throws {
        let database = try await TestDatabase.make()
        defer { database.remove() }
        try await database.app.write { db in
            try db.execute(sql: "INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, '0999_future', 0)")
        }
        let error = await #expect(throws: StoreError.self) { try await database.store.migrate() }
        #expect(error?.message.contains("newer closeorderd") == true)
        #expect(throws: StoreError.self) { try OrderStore.openReadOnly(path: database.path) }
    }

    @Test func theAppsExampleInsertWorksAndDefaultsApply() async throws {
        let database = try await TestDatabase.make()
        defer { database.remove() }
        let before = Int64(Date().timeIntervalSince1970)
        try await database.app.write { db in
            try db.execute(
                sql: """
                    INSERT INTO orders (mch_id, appid, out_trade_no, expires_at)
                    VALUES ('1900000109', 'wx8888888888888888', '1217752501201407033233368018', unixepoch() + 900);
                    """)
        }
        let order = try #require(try await database.order("1217752501201407033233368018"))
        let after = Int64(Date().timeIntervalSince1970)
        #expect(order.state == .pending)
        #expect(order.attempts == 0)
        #expect((before...after).contains(order.createdAt), "created_at defaults to the insert time")
        #expect(order.expiresAt.map { $0 - order.createdAt } == 900)
    }

    @Test func aDuplicateOrderIsRefusedWithAConstraintError() async throws {
        let database = try await TestDatabase.make()
        defer { database.remove() }
        try database.insert("DUPLICATE01")
        #expect(throws: DatabaseError.self) { try database.insert("DUPLICATE01") }
        try database.insert("DUPLICATE01", subMchID: "1900000110")
        #expect(throws: DatabaseError.self) { try database.insert("DUPLICATE01", subMchID: "1900000110") }
        try database.insert("DUPLICATE01", mchID: "1900000111")
    }

    @Test(arguments: [
        "INSERT INTO orders (mch_id, appid, out_trade_no, state) VALUES ('1', 'wx', 'BADSTATE01', 'done')",
        "INSERT INTO orders (mch_id, appid, out_trade_no, created_at) VALUES ('1', 'wx', 'BADTIME01', '2026-01-01')",
        "INSERT INTO orders (mch_id, appid, out_trade_no, expires_at) VALUES ('1', 'wx', 'BADTIME02', 1.5)",
        "INSERT INTO orders (appid, out_trade_no) VALUES ('wx', 'NOMCHID01')",
        "INSERT INTO orders (mch_id, out_trade_no) VALUES ('1', 'NOAPPID01')",
    ])
    func rowsThatBreakTheContractAreRefusedAtInsert(sql: String) async throws {
        let database = try await TestDatabase.make()
        defer { database.remove() }
        #expect(throws: DatabaseError.self) { try database.app.write { db in try db.execute(sql: sql) } }
    }

    @Test func aVersionOneDatabaseUpgradesKeepingItsRowsAndHistory() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let store = try OrderStore(path: folder.path("old.sqlite"))
        #expect(try await store.migrate(upTo: 1) == [1])
        try await store.withWriteTransaction { db in
            try db.execute(
                sql: "INSERT INTO orders (mch_id, appid, out_trade_no, state) VALUES ('1', 'wx1', 'OLDORDER01', 'closed')")
            try db.execute(
                sql: """
                    INSERT INTO close_attempts (order_id, attempt, started_at, finished_at, outcome, http_status, message)
                    VALUES (1, 1, 0, 0, 'closed', 200, 'closed by WeChat Pay')
                    """)
        }
        #expect(try await store.migrate() == Array(2...OrderStore.schemaVersion))
        let history = try await store.attempts(orderID: 1)
        #expect(history.map(\.outcome) == [.closed])
        #expect(history.first?.call == .closeorder)
        #expect(try await store.orders(outTradeNo: "OLDORDER01").first?.state == .closed)
    }

    @Test func upgradingToVersionThreeFailsUnfinishedRowsWithImplausibleTimesAndRecoversLeaselessClosingRows() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let store = try OrderStore(path: folder.path("v2.sqlite"))
        #expect(try await store.migrate(upTo: 2) == [1, 2])
        let milliseconds = Int64(Date().timeIntervalSince1970 * 1000)
        try await store.withWriteTransaction { db in
            for (number, created, state) in [
                ("MILLISPEND1", "\(milliseconds)", "pending"), ("MILLISPAID1", "\(milliseconds)", "paid"),
                ("ZEROTIME001", "0", "pending"), ("GOODTIME001", "unixepoch() - 900", "pending"),
                ("NOLEASE0001", "unixepoch() - 900", "closing"),
            ] {
                try db.execute(
                    sql:
                        "INSERT INTO orders (mch_id, appid, out_trade_no, created_at, state) VALUES ('1', 'wx1', ?, \(created), ?)",
                    arguments: [number, state])
            }
        }
        #expect(try await store.migrate() == Array(3...OrderStore.schemaVersion))
        let failed = try #require(try await store.orders(outTradeNo: "MILLISPEND1").first)
        #expect(failed.state == .failed)
        #expect(failed.lastError?.contains("not Unix time in seconds") == true)
        #expect(try await store.attempts(orderID: failed.id).map(\.outcome) == [.invalid])
        #expect(try await store.orders(outTradeNo: "ZEROTIME001").first?.state == .failed)
        #expect(try await store.orders(outTradeNo: "MILLISPAID1").first?.state == .paid, "finished rows are left alone")
        #expect(try await store.orders(outTradeNo: "GOODTIME001").first?.state == .pending)
        let claimed = try await store.claimDue(
            now: Int64(Date().timeIntervalSince1970), policy: DuePolicy(minOrderAgeSeconds: 300, paymentTimeoutSeconds: 600),
            limit: 10, leaseSeconds: 60, maxAttempts: 10)
        let recovered = try #require(
            claimed.orders.first { $0.outTradeNo == "NOLEASE0001" }, "a closing row without a lease is due")
        #expect(recovered.recoveredFromExpiredLease, "so it is confirmed with an order query before any close")

        let requeue = try await store.requeueFailed(RequeueSelection(), now: Int64(Date().timeIntervalSince1970))
        #expect(requeue == RequeueResult(requeued: 0, leftWithBadTimes: 2), "retry leaves them failed until fixed")
    }
}
