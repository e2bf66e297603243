import Foundation
import _CryptoExtras

/// SHA256-with-RSA over an API v3 message, PKCS#1 v1.5 padding (WeChat Pay rejects the PSS
/// default), Base64: how a merchant signs its requests and WeChat Pay its answers. One
/// implementation for both sides, so that the client and the simulator cannot drift apart.
///
/// ```swift
/// let message = V3Answer.message(timestamp: "1554209980", nonce: nonce, body: body)
/// let signature = try V3Signing.sign(message, with: privateKey)
/// V3Signing.isValid(signature, of: message, by: privateKey.publicKey)   // true
/// ```
public enum V3Signing {
    /// The `Wechatpay-Signature-Type` of every v3 signature.
    public static let signatureType = "WECHATPAY2-SHA256-RSA2048"

    /// The Base64 signature of `message` with `privateKey`.
    public static func sign(_ message: String, with privateKey: _RSA.Signing.PrivateKey) throws -> String {
        try privateKey.signature(for: Data(message.utf8), padding: .insecurePKCS1v1_5).rawRepresentation.base64EncodedString()
    }

    /// Whether `signature` (Base64) is `publicKey`'s signature of `message`.
    public static func isValid(_ signature: String, of message: String, by publicKey: _RSA.Signing.PublicKey) -> Bool {
        guard let bytes = Data(base64Encoded: signature) else { return false }
        return publicKey.isValidSignature(
            _RSA.Signing.RSASignature(rawRepresentation: bytes), for: Data(message.utf8), padding: .insecurePKCS1v1_5)
    }

    /// The headers WeChat Pay signs an answer with: `Wechatpay-Timestamp`, `-Nonce`,
    /// `-Signature` (over `V3Answer.message`), `-Serial` (the signing key's id) and
    /// `Wechatpay-Signature-Type`, as `V3Answer.untrusted` checks them.
    public static func answerHeaders(
        body: [UInt8], timestamp: Int64, nonce: String, privateKey: _RSA.Signing.PrivateKey, publicKeyID: String
    ) throws -> [String: String] {
        let message = V3Answer.message(timestamp: String(timestamp), nonce: nonce, body: body)
        return [
            "Wechatpay-Timestamp": String(timestamp), "Wechatpay-Nonce": nonce,
            "Wechatpay-Signature": try sign(message, with: privateKey), "Wechatpay-Serial": publicKeyID,
            "Wechatpay-Signature-Type": signatureType,
        ]
    }
}
