import Foundation

/// A migration file as separate statements: PostgreSQL's extended query protocol, which
/// postgres-nio speaks, takes one statement at a time.
enum SQLScript {
    /// Splits `script` at each `;` outside quotes ('…', "…"), dollar quotes ($$…$$,
    /// $tag$…$tag$) and comments (-- …, /* … */); drops statements that hold only comments
    /// and space.
    static func statements(_ script: String) -> [String] {
        let characters = Array(script)
        var statements: [String] = []
        var current = ""
        var meaningful = false
        var index = 0
        func take(_ count: Int) {
            current += String(characters[index..<min(index + count, characters.count)])
            index += count
        }
        func take(through terminator: [Character]) {
            let start = index
            while index < characters.count {
                if characters[index...].starts(with: terminator) {
                    index += terminator.count
                    current += String(characters[start..<index])
                    return
                }
                index += 1
            }
            current += String(characters[start...])
        }
        while index < characters.count {
            let character = characters[index]
            let rest = characters[index...]
            if rest.starts(with: ["-", "-"]) {
                take(through: ["\n"])
            } else if rest.starts(with: ["/", "*"]) {
                take(2)
                take(through: ["*", "/"])
            } else if character == "'" || character == "\"" {
                meaningful = true
                take(1)
                take(through: [character])
            } else if character == "$", let tag = dollarTag(characters, at: index) {
                meaningful = true
                take(tag.count)
                take(through: tag)
            } else if character == ";" {
                if meaningful { statements.append(current.trimmingCharacters(in: .whitespacesAndNewlines)) }
                current = ""
                meaningful = false
                index += 1
            } else {
                if !character.isWhitespace { meaningful = true }
                take(1)
            }
        }
        if meaningful { statements.append(current.trimmingCharacters(in: .whitespacesAndNewlines)) }
        return statements
    }

    /// The dollar-quote opening at `index` (`$$` or `$tag$`), if one starts there.
    private static func dollarTag(_ characters: [Character], at index: Int) -> [Character]? {
        var end = index + 1
        while end < characters.count, characters[end] == "_" || characters[end].isLetter || characters[end].isNumber {
            end += 1
        }
        guard end < characters.count, characters[end] == "$" else { return nil }
        if end > index + 1, characters[index + 1].isNumber { return nil }  // $1 is a parameter
        return Array(characters[index...end])
    }
}
