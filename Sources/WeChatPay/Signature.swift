import Crypto
import Foundation

/// The API v2 signature: how requests are signed and responses verified.
///
/// 1. Take every parameter except `sign`, drop empty values.
/// 2. Sort by name in byte order.
/// 3. Join as `k1=v1&k2=v2`, values raw, and append `&key=` and the merchant key.
/// 4. MD5, or HMAC-SHA256 keyed with the merchant key, as upper-case hex.
///
/// ```swift
/// let sign = Signature.sign(["appid": "wx…", "mch_id": "10000100"], key: key, type: .hmacSHA256)
/// ```
public enum Signature {
    /// The string that is hashed, without the key; exposed for tests and diagnostics.
    public static func canonicalString(_ parameters: [String: String]) -> String {
        String(decoding: canonicalBytes(parameters, reserving: 0), as: UTF8.self)
    }

    /// `canonicalString` as bytes, with room for `reserving` more, built without
    /// intermediate strings: every request and answer is signed this way.
    static func canonicalBytes(_ parameters: [String: String], reserving extra: Int) -> [UInt8] {
        var names: [String] = []
        names.reserveCapacity(parameters.count)
        var length = extra
        for (name, value) in parameters where name != "sign" && !value.isEmpty {
            names.append(name)
            length += name.utf8.count + value.utf8.count + 2
        }
        names.sort { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(length)
        for name in names {
            if !bytes.isEmpty { bytes.append(UInt8(ascii: "&")) }
            bytes.append(contentsOf: name.utf8)
            bytes.append(UInt8(ascii: "="))
            bytes.append(contentsOf: parameters[name]!.utf8)
        }
        return bytes
    }

    /// The upper-case hex signature of `parameters` (any `sign` among them is ignored).
    public static func sign(_ parameters: [String: String], key: MerchantKey, type: SignType) -> String {
        var message = canonicalBytes(parameters, reserving: 5 + key.bytes.count)
        message.append(contentsOf: "&key=".utf8)
        message.append(contentsOf: key.bytes)
        switch type {
        case .md5:
            return hex(Insecure.MD5.hash(data: message))
        case .hmacSHA256:
            let mac = HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: key.bytes))
            return hex(mac)
        }
    }

    /// Whether `parameters["sign"]` is the signature of the other parameters.
    ///
    /// The algorithm is told by the length of the received sign; the comparison runs in
    /// constant time. Every received field, known or not, is part of the signed string.
    public static func isValid(_ parameters: [String: String], key: MerchantKey) -> Bool {
        guard let received = parameters["sign"], let type = SignType(signatureLength: received.utf8.count) else {
            return false
        }
        let expected = sign(parameters, key: key, type: type)
        let receivedUppercase = received.utf8.map { $0 >= UInt8(ascii: "a") && $0 <= UInt8(ascii: "z") ? $0 - 32 : $0 }
        return constantTimeEquals(Array(expected.utf8), receivedUppercase)
    }

    static func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for index in a.indices {
            difference |= a[index] ^ b[index]
        }
        return difference == 0
    }

    private static let hexDigits = Array("0123456789ABCDEF".utf8)

    private static func hex<D: Sequence>(_ digest: D) -> String where D.Element == UInt8 {
        var out = [UInt8]()
        out.reserveCapacity(64)
        for byte in digest {
            out.append(hexDigits[Int(byte >> 4)])
            out.append(hexDigits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
