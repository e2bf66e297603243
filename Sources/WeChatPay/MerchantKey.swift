/// A merchant's 32-character API v2 key.
///
/// The key signs requests and verifies responses; it never appears in any output.
/// `description` and `debugDescription` are redacted so that string interpolation,
/// logging or `dump` cannot leak it by accident.
public struct MerchantKey: Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    /// The number of characters WeChat Pay issues for an API v2 key.
    public static let length = 32

    let bytes: [UInt8]

    /// Creates a key from its text, or fails with a reason that does not quote the key.
    public init(_ text: String) throws(MerchantKeyError) {
        let bytes = Array(text.utf8)
        guard bytes.count == Self.length else {
            throw .wrongLength(bytes.count)
        }
        guard bytes.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw .notPrintableASCII
        }
        self.bytes = bytes
    }

    public var description: String { "<redacted merchant key>" }

    /// `text` with every occurrence of the key replaced by `<redacted merchant key>`: for text
    /// from an unverified answer, which a hostile server could make echo the key.
    public func redacting(_ text: String) -> String {
        let keyText = String(decoding: bytes, as: UTF8.self)
        return text.contains(keyText) ? text.replacingOccurrences(of: keyText, with: description) : text
    }
    public var debugDescription: String { description }
}

/// Why a text cannot be a merchant API v2 key. The messages never include the key itself.
public enum MerchantKeyError: Error, Equatable, CustomStringConvertible {
    case wrongLength(Int)
    case notPrintableASCII

    public var description: String {
        switch self {
        case .wrongLength(let count):
            "an API v2 key has \(MerchantKey.length) ASCII characters, this one has \(count) bytes"
        case .notPrintableASCII:
            "an API v2 key is printable ASCII without spaces"
        }
    }
}
