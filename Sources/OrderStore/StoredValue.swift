import Foundation
import GRDB

/// A column whose value the merchant's app (or anyone with the file) wrote in a form
/// closeorderd cannot use: a BLOB where text belongs, bytes that are not UTF-8, a NUL,
/// text where a number belongs.
public struct ColumnProblem: Error, Sendable, Equatable, CustomStringConvertible {
    /// The column's name, e.g. `out_trade_no`.
    public let column: String
    /// What is wrong with it, e.g. `holds 8 bytes that are not UTF-8 text (FF FE …)`.
    public let reason: String

    public var description: String { "column \(column) \(reason)" }
}

/// Where a statement's select list put each column. GRDB finds a column by name with a
/// case-insensitive search (a lowercased copy of each name) on every lookup, which a claim
/// of hundreds of rows repeats thousands of times; these positions are found once per
/// statement, and rows are then read by position.
struct ColumnPositions {
    /// Plain columns by name.
    let plain: [String: Int]
    /// Text columns selected with `StoredValue.textSelection`, by the column's own name.
    let text: [String: (type: Int, bytes: Int)]

    init(_ names: [String]) {
        var plain: [String: Int] = [:]
        for (position, name) in names.enumerated() where plain[name] == nil { plain[name] = position }
        var text: [String: (type: Int, bytes: Int)] = [:]
        for (name, position) in plain where name.hasSuffix("__type") {
            let column = String(name.dropLast("__type".count))
            if let bytes = plain[column + "__bytes"] { text[column] = (position, bytes) }
        }
        self.plain = plain
        self.text = text
    }
}

/// Reads values that SQLite holds but nobody checked: every accessor here fails (or shows
/// the value as it is) instead of trapping, as GRDB's converting subscripts do when a value
/// is not of the expected type.
///
/// Text columns are selected twice, as `typeof(col)` and `CAST(col AS BLOB)`, because a
/// Swift `String` read through SQLite's C API stops at the first NUL and repairs invalid
/// UTF-8: `'NULTEST1' || char(0) || 'ZZ'` would read as `NULTEST1`, another order's number.
enum StoredValue {
    /// The select-list items that `text(_:_:)` reads for column `name`.
    static func textSelection(_ name: String) -> String {
        "typeof(\(name)) AS \(name)__type, CAST(\(name) AS BLOB) AS \(name)__bytes"
    }

    /// The exact text of column `name` (selected with `textSelection`), nil for NULL; found
    /// by position when `positions` are given.
    static func text(_ row: Row, _ name: String, positions: ColumnPositions? = nil) throws(ColumnProblem) -> String? {
        let typeValue: DatabaseValue
        let bytesValue: DatabaseValue
        if let at = positions?.text[name] {
            (typeValue, bytesValue) = (row[at.type], row[at.bytes])
        } else {
            (typeValue, bytesValue) = (row[name + "__type"], row[name + "__bytes"])
        }
        let type: String = String.fromDatabaseValue(typeValue) ?? "null"
        let bytes = Self.bytes(bytesValue)
        switch type {
        case "null":
            return nil
        case "blob":
            throw ColumnProblem(
                column: name,
                reason:
                    "holds a BLOB of \(bytes.count) bytes (\(hex(bytes))), not text: the app must write it as TEXT "
                    + "(bind a string, not Python bytes or Go []byte)")
        default:
            guard let text = String(validating: bytes, as: UTF8.self) else {
                throw ColumnProblem(
                    column: name,
                    reason: "holds \(bytes.count) bytes that are not UTF-8 text (\(hex(bytes))): the app must write UTF-8")
            }
            if let nul = bytes.firstIndex(of: 0) {
                throw ColumnProblem(
                    column: name, reason: "holds a NUL byte at byte \(nul + 1) of \(bytes.count) (\(hex(bytes)))")
            }
            return text
        }
    }

    /// The text of column `name` for display: the text itself (control characters are escaped
    /// where it is printed), or what the column holds instead, e.g. `<BLOB x'FFFE'>`.
    static func displayText(_ row: Row, _ name: String) -> String? {
        let type: String = String.fromDatabaseValue(row[name + "__type"] as DatabaseValue) ?? "null"
        let bytes = Self.bytes(row[name + "__bytes"] as DatabaseValue)
        switch type {
        case "null": return nil
        case "blob": return "<BLOB x'\(hex(bytes, limit: 64, separator: ""))'>"
        default:
            guard let text = String(validating: bytes, as: UTF8.self) else {
                return "<not UTF-8 x'\(hex(bytes, limit: 64, separator: ""))'>"
            }
            return text
        }
    }

    /// Column `name` as a whole number, nil for NULL; found by position when `positions` are given.
    static func integer(_ row: Row, _ name: String, positions: ColumnPositions? = nil) throws(ColumnProblem) -> Int64? {
        let value = positions?.plain[name].map { row[$0] as DatabaseValue } ?? (row[name] as DatabaseValue)
        switch value.storage {
        case .null: return nil
        case .int64(let number): return number
        case .double(let number):
            throw ColumnProblem(column: name, reason: "holds the real number \(number), not a whole number")
        case .string(let text):
            throw ColumnProblem(column: name, reason: "holds the text \(quoted(text)), not a whole number")
        case .blob(let data):
            throw ColumnProblem(column: name, reason: "holds a BLOB of \(data.count) bytes, not a whole number")
        }
    }

    /// Column `name` as Unix seconds for display: whole numbers as they are, and the text
    /// SQLite's `CURRENT_TIMESTAMP` writes (`2026-11-29 10:00:00`, UTC) converted; nil otherwise.
    static func displaySeconds(_ row: Row, _ name: String) -> Int64? {
        let value = row[name] as DatabaseValue
        switch value.storage {
        case .int64(let number): return number
        case .double(let number) where number.isFinite && abs(number) < 1e15: return Int64(number)
        case .string(let text): return sqliteTimestamp.date(from: text).map { Int64($0.timeIntervalSince1970) }
        default: return nil
        }
    }

    /// What column `name` holds when `displaySeconds` cannot read it, for `query` to show.
    static func displayRaw(_ row: Row, _ name: String) -> String? {
        let value = row[name] as DatabaseValue
        switch value.storage {
        case .null, .int64: return nil
        case .double(let number): return "\(number)"
        case .string(let text): return text
        case .blob(let data): return "<BLOB x'\(hex(Array(data), limit: 64, separator: ""))'>"
        }
    }

    private static let sqliteTimestamp: DateFormatter = {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd HH:mm:ss"
        return formatter
    }()

    private static func bytes(_ value: DatabaseValue) -> [UInt8] {
        switch value.storage {
        case .blob(let data): Array(data)
        case .string(let text): Array(text.utf8)
        default: []
        }
    }

    /// Up to `limit` bytes in hexadecimal, with `…` when there are more.
    static func hex(_ bytes: [UInt8], limit: Int = 16, separator: String = " ") -> String {
        let shown = bytes.prefix(limit).map { String(format: "%02X", $0) }.joined(separator: separator)
        return bytes.count > limit ? shown + separator + "…" : shown
    }

    /// Text from the database in quotes, control characters escaped, at most 64 characters.
    static func quoted(_ text: String) -> String {
        var result = "\""
        for scalar in text.unicodeScalars.prefix(64) {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case _ where scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value):
                result += String(format: "\\u{%X}", scalar.value)
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result + (text.unicodeScalars.count > 64 ? "…\"" : "\"")
    }
}
