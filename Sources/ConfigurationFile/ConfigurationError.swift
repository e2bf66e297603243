import Foundation

/// A configuration that cannot be used, naming the key at fault.
public struct ConfigurationError: Error, CustomStringConvertible, Equatable {
    /// The dotted path of the key, e.g. `reaper.concurrency` or `merchants[0].key_file`.
    public let key: String
    public let reason: String
    public let file: String

    public init(key: String, reason: String, file: String) {
        self.key = key
        self.reason = reason
        self.file = file
    }

    public var description: String {
        key.isEmpty ? "\(file): \(reason)" : "\(file): \(key): \(reason)"
    }
}
