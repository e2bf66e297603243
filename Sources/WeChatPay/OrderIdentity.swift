/// The fields that identify one order to WeChat Pay, as the merchant's app recorded them.
public struct OrderIdentity: Sendable, Equatable {
    public var appid: String
    public var mchID: String
    public var outTradeNo: String
    public var subAppID: String?
    public var subMchID: String?

    public init(appid: String, mchID: String, outTradeNo: String, subAppID: String? = nil, subMchID: String? = nil) {
        self.appid = appid
        self.mchID = mchID
        self.outTradeNo = outTradeNo
        self.subAppID = subAppID
        self.subMchID = subMchID
    }

    /// The characters API v2 allows in `out_trade_no`: `0-9 A-Z a-z _ - | * @`.
    public static func isAllowedOrderNumberCharacter(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "a")...UInt8(ascii: "z"):
            true
        case UInt8(ascii: "_"), UInt8(ascii: "-"), UInt8(ascii: "|"), UInt8(ascii: "*"), UInt8(ascii: "@"):
            true
        default:
            false
        }
    }

    /// Checks the fields WeChat Pay would reject, so a bad row fails without a call.
    ///
    /// Returns nil when the order can be sent, otherwise a sentence saying what is wrong.
    public func problem() -> String? {
        let number = Array(outTradeNo.utf8)
        if !(6...32).contains(number.count) {
            return "out_trade_no must be 6 to 32 bytes, this one has \(number.count)"
        }
        for (name, value) in [("out_trade_no", outTradeNo), ("appid", appid), ("mch_id", mchID)] {
            if value.isEmpty { return "\(name) is empty" }
            // Not trimmed: WeChat Pay knows the value without the spaces, so the app must fix the row.
            if value.first?.isWhitespace == true || value.last?.isWhitespace == true {
                return "\(name) \(Untrusted.quote(value)) has spaces around it: write it without them"
            }
        }
        if let bad = number.first(where: { !Self.isAllowedOrderNumberCharacter($0) }) {
            return "out_trade_no may hold only 0-9 A-Z a-z _ - | * @, found \(Self.describe(bad))"
        }
        for (name, value) in [("appid", appid), ("mch_id", mchID), ("sub_appid", subAppID ?? ""), ("sub_mch_id", subMchID ?? "")]
        {
            if value.utf8.count > 32 { return "\(name) is longer than 32 bytes (\(value.utf8.count))" }
            if !value.utf8.allSatisfy({ Self.isAllowedOrderNumberCharacter($0) }) {
                return "\(name) may hold only letters, digits, _ - | * @"
            }
        }
        return nil
    }

    private static func describe(_ byte: UInt8) -> String {
        if byte > 0x20 && byte < 0x7F { return "'\(Character(Unicode.Scalar(byte)))'" }
        return "byte 0x" + String(byte, radix: 16, uppercase: true)
    }
}
