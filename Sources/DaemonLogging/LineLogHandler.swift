import Foundation
import Logging
import WeChatPay

/// Writes one line per log event to stderr: `LEVEL message key=value …`, metadata sorted
/// by key so that fields like `out_trade_no=…` stay greppable. Values with spaces are quoted.
///
/// When stderr is the systemd journal, each line starts with its syslog priority (`<3>`
/// error, `<4>` warning, `<6>` info, …) so that `journalctl -p warning` selects by level.
public struct LineLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    let syslogPrefixes: Bool
    let sink: LineSink

    /// A handler writing to `sink`: lines below `warning` are buffered briefly and written
    /// together (see `LineSink`).
    public init(syslogPrefixes: Bool = false, sink: LineSink = .standardError) {
        self.syslogPrefixes = syslogPrefixes
        self.sink = sink
    }

    /// The syslog priority of a level, as `sd-daemon(3)` prefixes expect.
    public static func syslogPriority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        sink.append(line(for: event), urgent: event.level >= .warning)
    }

    /// The text written for one event, newline included. Control characters (CR, LF, ESC,
    /// U+2028, bidirectional overrides, …) in the message and in values are escaped, so a line
    /// is always one line and cannot rewrite a terminal or forge another entry.
    public func line(for event: LogEvent) -> String {
        var fields = metadata
        if let extra = event.metadata { fields.merge(extra) { $1 } }
        var line = syslogPrefixes ? "<\(Self.syslogPriority(event.level))>" : ""
        line += "\(event.level.rawValue.uppercased()) \(Self.escaped("\(event.message)"))"
        for (key, value) in fields.sorted(by: { $0.key < $1.key }) {
            line += " \(Self.escaped(key))=\(Self.quoted("\(value)"))"
        }
        return line + "\n"
    }

    /// The value as it is, or in quotes when it is empty or holds a space, quote, `=` or control character.
    static func quoted(_ value: String) -> String {
        guard
            value.isEmpty
                || value.unicodeScalars.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" || Untrusted.isControl($0) })
        else {
            return value
        }
        return "\"" + escaped(value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\""))
            + "\""
    }

    /// `\n`, `\r`, `\t` and `\u{…}` for every control character.
    static func escaped(_ text: String) -> String { Untrusted.escapingControls(text) }
}
