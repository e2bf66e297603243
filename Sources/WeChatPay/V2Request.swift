/// The API v2 endpoints closeorderd calls.
public enum V2Endpoint: String, Sendable, CaseIterable {
    case closeOrder = "/pay/closeorder"
    case orderQuery = "/pay/orderquery"

    /// The name shown in the attempt history: `closeorder` or `orderquery`.
    public var name: String { String(rawValue.dropFirst(5)) }
}

/// Builds signed API v2 request bodies. `/pay/closeorder` and `/pay/orderquery` take the
/// same fields: the order's identity, a nonce and the signature.
public enum V2Request {
    /// The signed parameters of a call about `order`.
    public static func parameters(
        for order: OrderIdentity, nonce: String, key: MerchantKey, signType: SignType
    ) -> [String: String] {
        var fields = [
            "appid": order.appid,
            "mch_id": order.mchID,
            "out_trade_no": order.outTradeNo,
            "nonce_str": nonce,
            "sign_type": signType.rawValue,
        ]
        if let subAppID = order.subAppID, !subAppID.isEmpty { fields["sub_appid"] = subAppID }
        if let subMchID = order.subMchID, !subMchID.isEmpty { fields["sub_mch_id"] = subMchID }
        fields["sign"] = Signature.sign(fields, key: key, type: signType)
        return fields
    }

    /// The XML body of a call about `order`, with a fresh nonce.
    public static func body(for order: OrderIdentity, key: MerchantKey, signType: SignType) -> String {
        FlatXML.encode(parameters(for: order, nonce: Nonce.make(), key: key, signType: signType))
    }
}
/// Fresh random `nonce_str` values.
public enum Nonce {
    static let alphabet = Array("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".utf8)

    /// 32 random characters from `0-9 A-Z a-z`, from the system's secure generator,
    /// without modulo bias (bytes past the largest multiple of 62 are drawn again).
    public static func make() -> String {
        var generator = SystemRandomNumberGenerator()
        var characters: [UInt8] = []
        characters.reserveCapacity(32)
        while characters.count < 32 {
            // Eight random bytes per system call.
            var word = generator.next() as UInt64
            for _ in 0..<8 where characters.count < 32 {
                let byte = UInt8(truncatingIfNeeded: word)
                word >>= 8
                if byte < 248 { characters.append(alphabet[Int(byte % 62)]) }
            }
        }
        return String(decoding: characters, as: UTF8.self)
    }
}
