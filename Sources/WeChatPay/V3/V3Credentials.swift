import Foundation
import _CryptoExtras

/// What an API v3 merchant signs with and verifies with: its API private key and the
/// WeChat Pay public key (with the ids both sides name them by).
public struct V3Credentials: Sendable {
    public let mchID: String
    /// The serial number of the merchant's API certificate, sent in `Authorization`.
    public let serialNo: String
    let privateKey: _RSA.Signing.PrivateKey
    /// The WeChat Pay public key that signs answers, and its id (`PUB_KEY_ID_…`), which
    /// answers name in `Wechatpay-Serial`.
    let wechatpayPublicKey: _RSA.Signing.PublicKey
    public let wechatpayPublicKeyID: String

    /// RSA keys shorter than this are refused.
    public static let minimumKeyBits = 2048

    public init(
        mchID: String, serialNo: String, privateKeyPEM: String, wechatpayPublicKeyPEM: String, wechatpayPublicKeyID: String
    ) throws(V3KeyError) {
        guard !serialNo.isEmpty else { throw .missing("serial_no") }
        guard !wechatpayPublicKeyID.isEmpty else { throw .missing("wechatpay_public_key_id") }
        let privateKey: _RSA.Signing.PrivateKey
        do {
            // The unsafe initializer also reads keys under 2048 bits, so that a short key is named as such.
            privateKey = try _RSA.Signing.PrivateKey(unsafePEMRepresentation: privateKeyPEM)
        } catch {
            throw .unreadable("the merchant private key", "not an RSA private key in PEM (PKCS#8, -----BEGIN PRIVATE KEY-----)")
        }
        guard privateKey.keySizeInBits >= Self.minimumKeyBits else {
            throw .tooShort("the merchant private key", privateKey.keySizeInBits)
        }
        let publicKey: _RSA.Signing.PublicKey
        do {
            publicKey = try _RSA.Signing.PublicKey(unsafePEMRepresentation: wechatpayPublicKeyPEM)
        } catch {
            throw .unreadable("the WeChat Pay public key", "not an RSA public key in PEM (-----BEGIN PUBLIC KEY-----)")
        }
        guard publicKey.keySizeInBits >= Self.minimumKeyBits else {
            throw .tooShort("the WeChat Pay public key", publicKey.keySizeInBits)
        }
        self.mchID = mchID
        self.serialNo = serialNo
        self.privateKey = privateKey
        self.wechatpayPublicKey = publicKey
        self.wechatpayPublicKeyID = wechatpayPublicKeyID
    }

    /// Base64 of SHA256-with-RSA, PKCS#1 v1.5 padding (WeChat Pay rejects the PSS default).
    func sign(_ message: String) throws -> String {
        try V3Signing.sign(message, with: privateKey)
    }

    /// Whether `signature` (Base64) is WeChat Pay's signature of `message`.
    func isWeChatPaySignature(_ signature: String, of message: String) -> Bool {
        V3Signing.isValid(signature, of: message, by: wechatpayPublicKey)
    }
}

/// Why API v3 keys cannot be used. Never quotes key material.
public enum V3KeyError: Error, Equatable, CustomStringConvertible {
    case missing(String)
    case unreadable(String, String)
    case tooShort(String, Int)

    public var description: String {
        switch self {
        case .missing(let field): "\(field) is required for an API v3 merchant"
        case .unreadable(let what, let reason): "\(what) is \(reason)"
        case .tooShort(let what, let bits): "\(what) has \(bits) bits; at least \(V3Credentials.minimumKeyBits) are required"
        }
    }
}
