/// The signature algorithm of an API v2 request, sent as `sign_type`.
public enum SignType: String, Sendable, CaseIterable {
    case md5 = "MD5"
    case hmacSHA256 = "HMAC-SHA256"

    /// The algorithm a response's `sign` was made with, told by its length:
    /// 32 hex digits for MD5, 64 for HMAC-SHA256.
    public init?(signatureLength: Int) {
        switch signatureLength {
        case 32: self = .md5
        case 64: self = .hmacSHA256
        default: return nil
        }
    }
}
