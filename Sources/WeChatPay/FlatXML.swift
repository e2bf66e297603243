/// The flat XML that API v2 speaks: an `<xml>` root with one level of children, each
/// holding text or CDATA.
///
/// The decoder accepts exactly that shape and nothing more. A body with a DOCTYPE, an
/// entity declaration, a comment, a processing instruction other than the leading
/// `<?xml …?>`, nested elements, attributes, a repeated field, an unknown entity
/// reference or invalid UTF-8 is rejected before any value is read, so neither external
/// entities (XXE) nor entity expansion ("billion laughs") can happen.
///
/// ```swift
/// let body = FlatXML.encode(["return_code": "SUCCESS"])
/// let fields = try FlatXML.decode(Array(body.utf8))   // ["return_code": "SUCCESS"]
/// ```
public enum FlatXML {
    /// Bodies longer than this are refused; WeChat's answers are about 1 KB.
    public static let maximumBodySize = 64 * 1024

    /// `<xml>` with one child per field, in name order, each value in CDATA (a `]]>` inside
    /// a value is split across two CDATA sections).
    public static func encode(_ fields: [String: String]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(fields.reduce(11) { $0 + 2 * $1.key.utf8.count + $1.value.utf8.count + 17 })
        out.append(contentsOf: "<xml>".utf8)
        for (name, value) in fields.sorted(by: { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }) {
            out.append(UInt8(ascii: "<"))
            out.append(contentsOf: name.utf8)
            out.append(contentsOf: "><![CDATA[".utf8)
            var closing = 0  // how many of "]]" precede the current byte
            for byte in value.utf8 {
                if byte == UInt8(ascii: ">") && closing >= 2 {
                    out.append(contentsOf: "]]><![CDATA[".utf8)
                }
                out.append(byte)
                closing = byte == UInt8(ascii: "]") ? closing + 1 : 0
            }
            out.append(contentsOf: "]]></".utf8)
            out.append(contentsOf: name.utf8)
            out.append(UInt8(ascii: ">"))
        }
        out.append(contentsOf: "</xml>".utf8)
        return String(decoding: out, as: UTF8.self)
    }

    /// The fields of a flat `<xml>` body, or an error saying what is wrong with it.
    public static func decode(_ body: [UInt8]) throws(FlatXMLError) -> [String: String] {
        guard body.count <= maximumBodySize else { throw .tooLarge(body.count) }
        guard String(validating: body, as: UTF8.self) != nil else { throw .invalidUTF8 }
        var reader = Reader(bytes: body)
        return try reader.document()
    }
}

/// Why a body is not the flat XML WeChat Pay sends.
public enum FlatXMLError: Error, Equatable, CustomStringConvertible {
    case tooLarge(Int)
    case invalidUTF8
    case declarationsForbidden
    case malformed(String)

    public var description: String {
        switch self {
        case .tooLarge(let size): "body of \(size) bytes exceeds the \(FlatXML.maximumBodySize)-byte limit"
        case .invalidUTF8: "body is not valid UTF-8"
        case .declarationsForbidden: "body contains a DOCTYPE, ENTITY or other declaration (refused: XXE risk)"
        case .malformed(let reason): "body is not flat WeChat Pay XML: \(reason)"
        }
    }
}

private struct Reader {
    let bytes: [UInt8]
    var position = 0

    init(bytes: [UInt8]) { self.bytes = bytes }

    mutating func document() throws(FlatXMLError) -> [String: String] {
        skipByteOrderMark()
        skipWhitespace()
        if startsWith("<?xml") {
            guard let end = find("?>") else { throw .malformed("unterminated XML declaration") }
            position = end + 2
        }
        skipWhitespace()
        if startsWith("<!") { throw .declarationsForbidden }
        try expectOpenTag("xml")
        var fields: [String: String] = [:]
        while true {
            skipWhitespace()
            if startsWith("</") {
                try expectCloseTag("xml")
                break
            }
            if startsWith("<!") && !startsWith("<![CDATA[") { throw .declarationsForbidden }
            guard peek() == UInt8(ascii: "<") else { throw .malformed("text outside a field") }
            let (name, selfClosing) = try openTag()
            let value = selfClosing ? "" : try fieldValue(closing: name)
            guard fields.updateValue(value, forKey: name) == nil else {
                throw .malformed("field <\(name)> appears twice")
            }
        }
        skipWhitespace()
        guard position == bytes.count else {
            if find("<!") != nil { throw .declarationsForbidden }
            throw .malformed("content after </xml>")
        }
        return fields
    }

    // MARK: Tags

    mutating func expectOpenTag(_ expected: String) throws(FlatXMLError) {
        let (name, selfClosing) = try openTag()
        guard name == expected, !selfClosing else { throw .malformed("root element must be <\(expected)>") }
    }

    mutating func expectCloseTag(_ expected: String) throws(FlatXMLError) {
        position += 2
        let name = readName()
        skipWhitespace()
        guard name == expected, peek() == UInt8(ascii: ">") else {
            throw .malformed("expected </\(expected)>")
        }
        position += 1
    }

    /// Reads `<name>` or `<name/>`; attributes are not part of the format.
    mutating func openTag() throws(FlatXMLError) -> (name: String, selfClosing: Bool) {
        guard peek() == UInt8(ascii: "<") else { throw .malformed("expected a tag") }
        position += 1
        let name = readName()
        guard !name.isEmpty else { throw .malformed("tag without a name") }
        skipWhitespace()
        if startsWith("/>") {
            position += 2
            return (name, true)
        }
        guard peek() == UInt8(ascii: ">") else { throw .malformed("attributes are not allowed on <\(name)>") }
        position += 1
        return (name, false)
    }

    /// Reads text and CDATA up to `</name>`; a nested element is an error.
    mutating func fieldValue(closing name: String) throws(FlatXMLError) -> String {
        var value: [UInt8] = []
        while position < bytes.count {
            if startsWith("<![CDATA[") {
                position += 9
                guard let end = find("]]>") else { throw .malformed("unterminated CDATA in <\(name)>") }
                value += bytes[position..<end]
                position = end + 3
            } else if startsWith("</") {
                try expectCloseTag(name)
                return String(decoding: value, as: UTF8.self)
            } else if startsWith("<!") {
                throw .declarationsForbidden
            } else if peek() == UInt8(ascii: "<") {
                throw .malformed("nested element inside <\(name)>")
            } else if peek() == UInt8(ascii: "&") {
                value += try entityReference()
            } else {
                value.append(bytes[position])
                position += 1
            }
        }
        throw .malformed("unterminated <\(name)>")
    }

    /// The five predefined entities and numeric character references; nothing else exists here.
    mutating func entityReference() throws(FlatXMLError) -> [UInt8] {
        guard let end = bytes[position...].prefix(12).firstIndex(of: UInt8(ascii: ";")) else {
            throw .malformed("bare '&' in a value")
        }
        let name = String(decoding: bytes[(position + 1)..<end], as: UTF8.self)
        position = end + 1
        switch name {
        case "lt": return [UInt8(ascii: "<")]
        case "gt": return [UInt8(ascii: ">")]
        case "amp": return [UInt8(ascii: "&")]
        case "quot": return [UInt8(ascii: "\"")]
        case "apos": return [UInt8(ascii: "'")]
        default:
            var scalarValue: UInt32?
            if name.hasPrefix("#x") {
                scalarValue = UInt32(name.dropFirst(2), radix: 16)
            } else if name.hasPrefix("#") {
                scalarValue = UInt32(name.dropFirst(1), radix: 10)
            }
            guard let scalarValue, let scalar = Unicode.Scalar(scalarValue), scalarValue != 0 else {
                throw .malformed("unknown entity '&\(name);'")
            }
            return Array(String(Character(scalar)).utf8)
        }
    }

    // MARK: Bytes

    func peek() -> UInt8? { position < bytes.count ? bytes[position] : nil }

    /// Whether the bytes at `position` are `text` (a literal: no array is made per test).
    func startsWith(_ text: StaticString) -> Bool {
        matches(text, at: position)
    }

    /// Where `text` next occurs from `position`.
    func find(_ text: StaticString) -> Int? {
        var index = position
        while index + text.utf8CodeUnitCount <= bytes.count {
            if matches(text, at: index) { return index }
            index += 1
        }
        return nil
    }

    private func matches(_ text: StaticString, at start: Int) -> Bool {
        let count = text.utf8CodeUnitCount
        guard start + count <= bytes.count else { return false }
        let needle = UnsafeBufferPointer(start: text.utf8Start, count: count)
        for offset in 0..<count where bytes[start + offset] != needle[offset] { return false }
        return true
    }

    mutating func readName() -> String {
        let start = position
        while let byte = peek(), isNameByte(byte) { position += 1 }
        return String(decoding: bytes[start..<position], as: UTF8.self)
    }

    func isNameByte(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
            || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || byte == UInt8(ascii: "_")
            || byte == UInt8(ascii: "-") || byte == UInt8(ascii: ".")
    }

    mutating func skipWhitespace() {
        while let byte = peek(), byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D { position += 1 }
    }

    mutating func skipByteOrderMark() {
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { position = 3 }
    }
}
