import Foundation
import Logging

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

    public init(syslogPrefixes: Bool = false) {
        self.syslogPrefixes = syslogPrefixes
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
        FileHandle.standardError.write(Data(line(for: event).utf8))
    }

    /// The text written for one event, newline included.
    public func line(for event: LogEvent) -> String {
        var fields = metadata
        if let extra = event.metadata { fields.merge(extra) { $1 } }
        var line = syslogPrefixes ? "<\(Self.syslogPriority(event.level))>" : ""
        line += "\(event.level.rawValue.uppercased()) \("\(event.message)".replacingOccurrences(of: "\n", with: " "))"
        for (key, value) in fields.sorted(by: { $0.key < $1.key }) {
            line += " \(key)=\(Self.quoted("\(value)"))"
        }
        return line + "\n"
    }

    static func quoted(_ value: String) -> String {
        guard value.isEmpty || value.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" || $0.isNewline }) else {
            return value
        }
        let escaped = value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
        return "\"\(escaped)\""
    }
}
