/// Whether a verified answer is about the order it answers: a correctly signed answer for
/// another merchant, sub-merchant, app or order (a misrouted reply, a replayed one, a proxy
/// that mixed connections up) must never decide this order.
extension OrderIdentity {
    /// Why a verified API v2 answer is not about this order, or nil when it is: `mch_id` and
    /// `appid` must be present and equal; `sub_mch_id` and `sub_appid` equal to the order's
    /// (present when the order has them, absent when it does not); `out_trade_no` equal when
    /// present, and present when `orderNumberRequired` (order queries).
    public func v2AnswerMismatch(_ fields: [String: String], orderNumberRequired: Bool) -> String? {
        let expected: [(String, String?)] = [
            ("mch_id", mchID), ("appid", appid), ("sub_mch_id", subMchID), ("sub_appid", subAppID),
        ]
        for (name, value) in expected {
            if let problem = Self.mismatch(name, received: fields[name], expected: value) { return problem }
        }
        if orderNumberRequired || fields["out_trade_no"] != nil {
            return Self.mismatch("out_trade_no", received: fields["out_trade_no"], expected: outTradeNo)
        }
        return nil
    }

    /// Why a verified API v3 order query answer is not about this order, or nil when it is:
    /// `out_trade_no` and the merchant (`mchid`, or `sp_mchid` and `sub_mchid` for a
    /// service provider) must be present and equal; the app ids are compared when present
    /// (the query request does not carry them).
    public func v3QueryAnswerMismatch(_ object: [String: Any]) -> String? {
        func text(_ name: String) -> String? { object[name] as? String }
        var required: [(String, String?)] = [("out_trade_no", outTradeNo)]
        var optional: [(String, String?)] = []
        if let subMchID, !subMchID.isEmpty {
            required += [("sp_mchid", mchID), ("sub_mchid", subMchID)]
            optional += [("sp_appid", appid), ("sub_appid", subAppID)]
        } else {
            required += [("mchid", mchID)]
            optional += [("appid", appid)]
        }
        for (name, value) in required {
            if let problem = Self.mismatch(name, received: text(name), expected: value) { return problem }
        }
        for (name, value) in optional where object[name] != nil {
            if let problem = Self.mismatch(name, received: text(name) ?? "(not text)", expected: value) { return problem }
        }
        return nil
    }

    private static func mismatch(_ name: String, received: String?, expected: String?) -> String? {
        let expected = expected.flatMap { $0.isEmpty ? nil : $0 }
        let received = received.flatMap { $0.isEmpty ? nil : $0 }
        switch (received, expected) {
        case (nil, nil): return nil
        case (nil, let expected?): return "answer omits \(name) (this order's is \(expected)); not believed, will retry"
        case (let received?, nil):
            return "answer carries \(name)=\(Untrusted.quote(received)), which this order has none of; not believed, will retry"
        case (let received?, let expected?):
            return received == expected
                ? nil : "answer is for \(name)=\(Untrusted.quote(received)), not \(expected); not believed, will retry"
        }
    }
}

/// Text that came from a server or a file and has not been checked, made safe to put in a
/// message: in quotes, control and line-breaking characters escaped, at most 64 characters.
public enum Untrusted {
    public static let maximumShownCharacters = 64

    public static func quote(_ text: String) -> String {
        var result = "\""
        let scalars = text.unicodeScalars
        for scalar in scalars.prefix(maximumShownCharacters) {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            default: append(scalar, to: &result)
            }
        }
        return result + (scalars.count > maximumShownCharacters ? "…\"" : "\"")
    }

    /// The text with every control character escaped (`\n`, `\r`, `\t`, `\u{1B}`, …), so that it
    /// stays one line and cannot move a terminal's cursor or reorder what is shown.
    public static func escapingControls(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: isControl) else { return text }
        var result = ""
        for scalar in text.unicodeScalars { append(scalar, to: &result) }
        return result
    }

    private static func append(_ scalar: Unicode.Scalar, to result: inout String) {
        switch scalar {
        case "\n": result += "\\n"
        case "\r": result += "\\r"
        case "\t": result += "\\t"
        case _ where isControl(scalar): result += "\\u{\(String(scalar.value, radix: 16, uppercase: true))}"
        default: result.unicodeScalars.append(scalar)
        }
    }

    /// C0 and C1 controls, DEL, line and paragraph separators, and the bidirectional
    /// formatting characters that can make a terminal or log viewer show text out of order.
    public static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0..<0x20, 0x7F...0x9F, 0x2028, 0x2029, 0x200E, 0x200F, 0x202A...0x202E, 0x2066...0x2069, 0xFEFF: true
        default: false
        }
    }
}
