import Foundation
import _CryptoExtras

/// The `Authorization` header of an API v3 request:
/// `WECHATPAY2-SHA256-RSA2048 mchid="…",nonce_str="…",signature="…",timestamp="…",serial_no="…"`.
///
/// ```swift
/// let authorization = V3Authorization(header: request.headers["authorization"] ?? "")
/// authorization?.isValid(method: "POST", pathAndQuery: uri, body: body, publicKey: merchantKey)
/// ```
public struct V3Authorization: Sendable, Equatable {
    public var mchID: String
    public var nonce: String
    /// Base64 of the merchant's signature over `V3Request.message`.
    public var signature: String
    /// Seconds since 1970, as sent (a server refuses one that is not a number).
    public var timestamp: String
    /// The merchant's API certificate serial number; nil when the header names none.
    public var serialNo: String?

    public init(mchID: String, nonce: String, signature: String, timestamp: String, serialNo: String?) {
        self.mchID = mchID
        self.nonce = nonce
        self.signature = signature
        self.timestamp = timestamp
        self.serialNo = serialNo
    }

    /// Reads a header; nil if it is not this scheme or lacks `mchid`, `nonce_str`,
    /// `signature` or `timestamp`.
    public init?(header: String) {
        let scheme = V3Signing.signatureType + " "
        guard header.hasPrefix(scheme) else { return nil }
        var fields: [String: String] = [:]
        for pair in header.dropFirst(scheme.count).split(separator: ",") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else { return nil }
            fields[parts[0].trimmingCharacters(in: .whitespaces)] = parts[1].trimmingCharacters(
                in: CharacterSet(charactersIn: "\" "))
        }
        guard let mchID = fields["mchid"], let nonce = fields["nonce_str"], let signature = fields["signature"],
            let timestamp = fields["timestamp"]
        else { return nil }
        self.init(mchID: mchID, nonce: nonce, signature: signature, timestamp: timestamp, serialNo: fields["serial_no"])
    }

    /// The header's text.
    public var header: String {
        var text =
            #"\#(V3Signing.signatureType) mchid="\#(mchID)",nonce_str="\#(nonce)",signature="\#(signature)",timestamp="\#(timestamp)""#
        if let serialNo { text += #",serial_no="\#(serialNo)""# }
        return text
    }

    /// Whether the signature is `publicKey`'s over this request (`V3Request.message`).
    public func isValid(method: String, pathAndQuery: String, body: String, publicKey: _RSA.Signing.PublicKey) -> Bool {
        let message = V3Request.message(
            method: method, pathAndQuery: pathAndQuery, timestamp: Int64(timestamp) ?? 0, nonce: nonce, body: body)
        return V3Signing.isValid(signature, of: message, by: publicKey)
    }
}
