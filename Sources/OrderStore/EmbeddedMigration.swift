import Foundation

/// One file of `migrations/ENGINE/`, embedded into the binary at build time by the
/// `EmbedMigrationsPlugin` so that a binary copied alone can create a fresh database.
public struct EmbeddedMigration: Sendable {
    /// The file name without `.sql`, e.g. `0001_orders`.
    public let fileName: String
    let sqlBytes: [UInt8]

    /// A migration file's name and bytes (the generated source builds each one).
    public init(fileName: String, sqlBytes: [UInt8]) {
        self.fileName = fileName
        self.sqlBytes = sqlBytes
    }

    /// The version number: the file name's leading digits.
    public var version: Int { Int(fileName.prefix(while: \.isNumber)) ?? 0 }
    public var sql: String { String(decoding: sqlBytes, as: UTF8.self) }
}
