import GRDB
import OrderStore
import TestSupport
import Testing

/// Each enum of the vocabulary names exactly the values its column's CHECK constraint allows.
@Suite struct VocabularyTests {
    /// The quoted values of `column … CHECK (… column IN ('a', 'b', …))` in the table's schema.
    func allowedValues(_ database: TestDatabase, table: String, column: String) async throws -> Set<String> {
        let schema = try #require(
            try await database.app.read { db in
                try String.fetchOne(
                    db, sql: "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", arguments: [table])
            })
        let start = try #require(schema.range(of: "\(column) IN ("), "no CHECK on \(table).\(column)")
        let list = schema[start.upperBound...].prefix { $0 != ")" }
        return Set(list.split(separator: ",").map { $0.trimmingCharacters(in: .whitespacesAndNewlines.union(["'"])) })
    }

    @Test func theStatesAreTheOnesTheOrdersTableAllows() async throws {
        let database = try await TestDatabase.make()
        defer { database.remove() }
        #expect(try await allowedValues(database, table: "orders", column: "state") == Set(OrderState.allCases.map(\.rawValue)))
    }

    @Test func theCallKindsAndOutcomesAreTheOnesTheHistoryAllows() async throws {
        let database = try await TestDatabase.make()
        defer { database.remove() }
        #expect(
            try await allowedValues(database, table: "close_attempts", column: "call") == Set(CallKind.allCases.map(\.rawValue)))
        #expect(
            try await allowedValues(database, table: "close_attempts", column: "outcome")
                == Set(HistoryOutcome.allCases.map(\.rawValue)))
    }
}
