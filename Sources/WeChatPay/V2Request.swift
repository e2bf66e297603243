import Glibc
import Synchronization

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

    /// 32 random characters from `0-9 A-Z a-z`, from the kernel's secure generator,
    /// without modulo bias (bytes past the largest multiple of 62 are drawn again).
    public static func make() -> String {
        var characters: [UInt8] = []
        characters.reserveCapacity(32)
        while characters.count < 32 {
            for byte in randomBytes.take(32 - characters.count) where byte < 248 {
                characters.append(alphabet[Int(byte % 62)])
            }
        }
        return String(decoding: characters, as: UTF8.self)
    }

    static let randomBytes = RandomBytes()
}

/// Random bytes from the kernel (`getentropy`), 256 at a time: a nonce costs a system call
/// in about one of eight instead of four. Each byte is handed out once.
final class RandomBytes: Sendable {
    private let pool = Mutex((bytes: [UInt8](repeating: 0, count: 256), used: 256))

    /// `count` (at most 256) bytes no one else gets.
    func take(_ count: Int) -> ArraySlice<UInt8> {
        pool.withLock { pool in
            if pool.bytes.count - pool.used < count {
                pool.bytes.withUnsafeMutableBytes { buffer in
                    // getentropy fails only for more than 256 bytes or without getrandom (Linux < 3.17).
                    if getentropy(buffer.baseAddress!, buffer.count) != 0 {
                        var generator = SystemRandomNumberGenerator()
                        for index in buffer.indices { buffer[index] = generator.next() as UInt8 }
                    }
                }
                pool.used = 0
            }
            defer { pool.used += count }
            return pool.bytes[pool.used..<pool.used + count]
        }
    }
}
