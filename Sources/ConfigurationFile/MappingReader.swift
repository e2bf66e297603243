import Foundation
import Yams

/// What every section reader needs besides its mapping: the file (named in errors, and the
/// anchor of relative key paths) and whether keys are to be read.
struct ConfigurationContext {
    let file: String
    var readKeys = true
    var readCredentials = true
    var environment: [String: String] = ProcessInfo.processInfo.environment

    var baseDirectory: URL { URL(fileURLWithPath: file).deletingLastPathComponent() }

    func fail(_ key: String, _ reason: String) -> ConfigurationError {
        ConfigurationError(key: key, reason: reason, file: file)
    }
}

/// Reads typed values from one YAML mapping, remembering its path for error messages.
struct MappingReader {
    let mapping: Node.Mapping
    let path: String
    let fail: (String, String) -> ConfigurationError

    func keyPath(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    func onlyKeys(_ known: [String]) throws(ConfigurationError) {
        for key in mapping.keys {
            let name = key.string ?? "?"
            guard known.contains(name) else {
                throw fail(keyPath(name), "unknown key (known here: \(known.joined(separator: ", ")))")
            }
        }
    }

    func node(_ key: String) -> Node? {
        mapping[key].flatMap { node in
            if case .scalar(let scalar) = node, scalar.style == .plain, ["", "~", "null", "Null", "NULL"].contains(scalar.string)
            {
                return nil
            }
            return node
        }
    }

    func string(_ key: String) throws(ConfigurationError) -> String? {
        guard let node = node(key) else { return nil }
        guard case .scalar(let scalar) = node else { throw fail(keyPath(key), "expected a single value") }
        return scalar.string
    }

    func integer(_ key: String, in range: ClosedRange<Int64>) throws(ConfigurationError) -> Int64? {
        guard let text = try string(key) else { return nil }
        guard let value = Int64(text), range.contains(value) else {
            throw fail(keyPath(key), "must be a whole number from \(range.lowerBound) to \(range.upperBound), got \"\(text)\"")
        }
        return value
    }

    func number(_ key: String, in range: ClosedRange<Double>) throws(ConfigurationError) -> Double? {
        guard let text = try string(key) else { return nil }
        guard let value = Double(text), value.isFinite, range.contains(value) else {
            throw fail(keyPath(key), "must be a number from \(range.lowerBound) to \(range.upperBound), got \"\(text)\"")
        }
        return value
    }

    func mapping(_ key: String) throws(ConfigurationError) -> Node.Mapping? {
        guard let node = node(key) else { return nil }
        guard let mapping = node.mapping else { throw fail(keyPath(key), "expected a mapping of keys") }
        return mapping
    }

    func sequence(_ key: String) throws(ConfigurationError) -> [Node]? {
        guard let node = node(key) else { return nil }
        guard let sequence = node.sequence else { throw fail(keyPath(key), "expected a list") }
        return Array(sequence)
    }
}
