import WeChatPay

/// Renders rows as columns aligned with spaces, a header line first. Control characters in
/// cells (the app can write anything into a row) are shown escaped, never sent to the terminal.
struct TextTable {
    let header: [String]
    var rows: [[String]] = []

    init(_ header: String...) { self.header = header }

    /// Adds a row; control characters in cells (an ESC, CR or line separator from the
    /// database) are escaped, so they cannot move the cursor or split a line.
    mutating func add(_ cells: [String]) { rows.append(cells.map(Untrusted.escapingControls)) }

    var rendered: String {
        let all = [header] + rows
        let widths = header.indices.map { column in all.map { $0.indices.contains(column) ? $0[column].count : 0 }.max() ?? 0 }
        return all.map { cells in
            cells.enumerated().map { index, cell in
                index == cells.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }
}
