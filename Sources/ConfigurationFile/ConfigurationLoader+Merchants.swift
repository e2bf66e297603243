import WeChatPay
import Yams

extension ConfigurationLoader {
    /// The `merchants:` list: at least one, each `mch_id` once.
    static func readMerchants(_ nodes: [Node], context: ConfigurationContext)
        throws(ConfigurationError) -> [DaemonConfiguration.Merchant]
    {
        var merchants: [DaemonConfiguration.Merchant] = []
        for (index, node) in nodes.enumerated() {
            let path = "merchants[\(index)]"
            guard let entry = node.mapping else {
                throw context.fail(path, "expected a mapping with mch_id, sign_type, key_file")
            }
            let section = MappingReader(mapping: entry, path: path, fail: context.fail)
            guard let merchant = try readMerchant(section, context: context, configured: merchants) else { continue }
            merchants.append(merchant)
        }
        return merchants
    }

    /// One merchant; nil when its keys are not read (`query`, a reload's credentials).
    static func readMerchant(
        _ section: MappingReader, context: ConfigurationContext, configured: [DaemonConfiguration.Merchant]
    ) throws(ConfigurationError) -> DaemonConfiguration.Merchant? {
        let path = section.path
        let version = try section.string("api") ?? "v2"
        guard version == "v2" || version == "v3" else {
            throw context.fail("\(path).api", "must be v2 or v3, got \"\(version)\"")
        }
        try section.onlyKeys(
            version == "v2"
                ? ["mch_id", "api", "sign_type", "key_file", "key_credential", "max_requests_per_second"]
                : [
                    "mch_id", "api", "serial_no", "private_key_file", "private_key_credential", "wechatpay_public_key_file",
                    "wechatpay_public_key_credential", "wechatpay_public_key_id", "max_requests_per_second",
                ])
        let maxRequestsPerSecond = try section.number("max_requests_per_second", in: 0.01...100_000)
        let mchID = try readMerchantID(section)
        guard !configured.contains(where: { $0.mchID == mchID }) else {
            throw context.fail("\(path).mch_id", "\(mchID) is configured twice")
        }
        let credentials =
            version == "v3"
            ? try readV3Credentials(section, mchID: mchID, context: context)
            : try readV2Credentials(section, context: context)
        return credentials.map { credentials, source in
            DaemonConfiguration.Merchant(
                mchID: mchID, credentials: credentials, keySource: source, maxRequestsPerSecond: maxRequestsPerSecond)
        }
    }

    static func readMerchantID(_ section: MappingReader) throws(ConfigurationError) -> String {
        guard let mchID = try section.string("mch_id"), !mchID.isEmpty else {
            throw section.fail("\(section.path).mch_id", "required")
        }
        guard mchID.utf8.count <= 32, mchID.utf8.allSatisfy(OrderIdentity.isAllowedOrderNumberCharacter) else {
            throw section.fail(
                "\(section.path).mch_id",
                "must be the merchant id as WeChat Pay issued it (digits, at most 32, no spaces), got \(Untrusted.quote(mchID))")
        }
        return mchID
    }

    /// An API v2 merchant's key and sign type, with where the key came from.
    static func readV2Credentials(_ section: MappingReader, context: ConfigurationContext)
        throws(ConfigurationError) -> (DaemonConfiguration.Merchant.Credentials, String)?
    {
        var signType = SignType.hmacSHA256
        if let text = try section.string("sign_type") {
            guard let parsed = SignType(rawValue: text) else {
                throw context.fail("\(section.path).sign_type", "must be MD5 or HMAC-SHA256, got \"\(text)\"")
            }
            signType = parsed
        }
        guard
            let located = try locate(section, name: "key", what: "a file holding the 32-character API v2 key", context: context),
            context.readKeys
        else { return nil }
        let key = try readKey(at: located.path, key: located.key, fail: context.fail)
        return (.v2(key: key, signType: signType), located.path)
    }

    /// An API v3 merchant's keys, with where they came from.
    static func readV3Credentials(_ section: MappingReader, mchID: String, context: ConfigurationContext)
        throws(ConfigurationError) -> (DaemonConfiguration.Merchant.Credentials, String)?
    {
        let path = section.path
        let serialNo = try section.string("serial_no") ?? ""
        let publicKeyID = try section.string("wechatpay_public_key_id") ?? ""
        guard !serialNo.isEmpty else {
            throw context.fail(
                "\(path).serial_no", "required for an API v3 merchant: the merchant API certificate's serial number")
        }
        guard !publicKeyID.isEmpty else {
            throw context.fail(
                "\(path).wechatpay_public_key_id",
                "required for an API v3 merchant: the id of the WeChat Pay public key (PUB_KEY_ID_…)")
        }
        let privateKey = try locate(
            section, name: "private_key", what: "the merchant API private key (PKCS#8 PEM)", context: context)
        let publicKey = try locate(
            section, name: "wechatpay_public_key", what: "the WeChat Pay public key (PEM)", context: context)
        guard context.readKeys, let privateKey, let publicKey else { return nil }
        let privatePEM = try readText(at: privateKey.path, key: privateKey.key, ownerOnly: true, fail: context.fail)
        let publicPEM = try readText(at: publicKey.path, key: publicKey.key, ownerOnly: false, fail: context.fail)
        do {
            let credentials = try V3Credentials(
                mchID: mchID, serialNo: serialNo, privateKeyPEM: privatePEM, wechatpayPublicKeyPEM: publicPEM,
                wechatpayPublicKeyID: publicKeyID)
            return (.v3(credentials), "\(privateKey.path), \(publicKey.path)")
        } catch {
            let key = error.description.contains("WeChat Pay public key") ? publicKey.key : privateKey.key
            throw context.fail(key, "\(error)")
        }
    }
}
