/// How a merchant signs its calls: an API v2 key and sign type, or API v3 RSA keys.
public enum MerchantCredentials: Sendable {
    case v2(key: MerchantKey, signType: SignType)
    case v3(V3Credentials)

    /// The API these credentials speak.
    public var api: APIVersion {
        switch self {
        case .v2: .v2
        case .v3: .v3
        }
    }
}
