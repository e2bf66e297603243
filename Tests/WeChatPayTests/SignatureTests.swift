import Testing

@testable import WeChatPay

/// The vectors of `shared/wechatpay-v2-closeorder.md` §2, key `192006250b4c09247ec02edce69f6a2d`.
@Suite struct SignatureTests {
    let key = try! MerchantKey("192006250b4c09247ec02edce69f6a2d")

    let wechatExample = [
        "appid": "wxd930ea5d5a258f4f", "mch_id": "10000100", "device_info": "1000", "body": "test",
        "nonce_str": "ibuaiVcKdpRxkhJA",
    ]

    @Test func wechatOwnExampleBuildsTheDocumentedString() {
        #expect(
            Signature.canonicalString(wechatExample)
                == "appid=wxd930ea5d5a258f4f&body=test&device_info=1000&mch_id=10000100&nonce_str=ibuaiVcKdpRxkhJA")
    }

    @Test func wechatOwnExampleSignsWithBothAlgorithms() {
        #expect(Signature.sign(wechatExample, key: key, type: .md5) == "9A0A8659F005D6984697E2CA0A9CF3B7")
        #expect(
            Signature.sign(wechatExample, key: key, type: .hmacSHA256)
                == "6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6")
    }

    @Test func wechatpyVectorsSign() {
        let fields = ["test1": "test1", "test2": "test2"]
        #expect(Signature.sign(fields, key: key, type: .md5) == "1E3A8D73B5A4AEE787C0F68B5DAB8520")
        #expect(
            Signature.sign(fields, key: key, type: .hmacSHA256)
                == "EDAC6D70D2FDF5A2382F8204FC96A1918017E46ACC5297F565ED1A7610ACF659")
    }

    let closeRequest = [
        "appid": "wxd930ea5d5a258f4f", "mch_id": "10000100", "nonce_str": "ibuaiVcKdpRxkhJA", "out_trade_no": "1415983244",
    ]

    @Test func closeRequestWithoutSignTypeSignsWithMD5() {
        #expect(Signature.sign(closeRequest, key: key, type: .md5) == "E4D5D57302289EECE13D2A0B6D5C4EBD")
    }

    @Test func signTypeIsAnOrdinarySignedParameter() {
        var md5 = closeRequest
        md5["sign_type"] = "MD5"
        #expect(Signature.sign(md5, key: key, type: .md5) == "8727744663D7A9F14994430375C7E61F")
        var hmac = closeRequest
        hmac["sign_type"] = "HMAC-SHA256"
        #expect(
            Signature.sign(hmac, key: key, type: .hmacSHA256)
                == "EBC69D61644C4DCBB8FF96A89483C26D8FE8D9F10E95248544D721C5BDC1D91B")
    }

    @Test func closeRequestBuilderMatchesTheServiceProviderVector() {
        let order = OrderIdentity(
            appid: "wxd930ea5d5a258f4f", mchID: "10000100", outTradeNo: "1415983244", subAppID: "", subMchID: "1900000109")
        let parameters = V2Request.parameters(for: order, nonce: "ibuaiVcKdpRxkhJA", key: key, signType: .hmacSHA256)
        #expect(parameters["sub_appid"] == nil, "an empty sub_appid is not sent")
        #expect(parameters["sub_mch_id"] == "1900000109")
        #expect(parameters["sign"] == "539A2B17CB89494A510C67922E29148FC7498405A24DACCFA17AE211B4037C87")
    }

    @Test func closeRequestBuilderMatchesTheMD5Vector() {
        let order = OrderIdentity(appid: "wxd930ea5d5a258f4f", mchID: "10000100", outTradeNo: "1415983244")
        let parameters = V2Request.parameters(for: order, nonce: "ibuaiVcKdpRxkhJA", key: key, signType: .md5)
        #expect(parameters["sign_type"] == "MD5")
        #expect(parameters["sign"] == "8727744663D7A9F14994430375C7E61F")
    }

    let paidResponse = [
        "return_code": "SUCCESS", "return_msg": "OK", "appid": "wxd930ea5d5a258f4f", "mch_id": "10000100",
        "nonce_str": "BFK89FC6rxKCOjLX", "result_code": "FAIL", "result_msg": "", "err_code": "ORDERPAID",
        "err_code_des": "order paid", "sign": "5F5A433FBBAAA842460D072AA037B5B0",
    ]

    @Test func responseVectorVerifies() {
        #expect(Signature.isValid(paidResponse, key: key))
    }

    @Test func anyChangedFieldBreaksTheResponseSignature() {
        for field in paidResponse.keys where field != "sign" && field != "result_msg" {
            var tampered = paidResponse
            tampered[field]! += "x"
            #expect(!Signature.isValid(tampered, key: key), "changing \(field) must break the signature")
        }
    }

    @Test func unknownFieldsAreSignedToo() {
        var extended = paidResponse
        extended["brand_new_field"] = "1"
        #expect(!Signature.isValid(extended, key: key))
        extended["sign"] = Signature.sign(extended, key: key, type: .md5)
        #expect(Signature.isValid(extended, key: key))
    }

    @Test func missingOrMalformedSignNeverVerifies() {
        var unsigned = paidResponse
        unsigned["sign"] = nil
        #expect(!Signature.isValid(unsigned, key: key))
        unsigned["sign"] = "ABC"
        #expect(!Signature.isValid(unsigned, key: key))
    }

    @Test func aDifferentKeyDoesNotVerify() throws {
        let other = try MerchantKey("00000000000000000000000000000000")
        #expect(!Signature.isValid(paidResponse, key: other))
    }

    @Test func constantTimeComparisonComparesEveryByte() {
        #expect(Signature.constantTimeEquals(Array("ABCD".utf8), Array("ABCD".utf8)))
        #expect(!Signature.constantTimeEquals(Array("ABCD".utf8), Array("ABCE".utf8)))
        #expect(!Signature.constantTimeEquals(Array("ABCD".utf8), Array("ABC".utf8)))
    }
}

@Suite struct MerchantKeyTests {
    @Test func keyMustHave32Characters() {
        #expect(throws: MerchantKeyError.wrongLength(31)) { try MerchantKey(String(repeating: "a", count: 31)) }
        #expect(throws: MerchantKeyError.notPrintableASCII) { try MerchantKey(String(repeating: "a", count: 31) + " ") }
    }

    @Test func keyIsRedactedWhenPrinted() throws {
        let key = try MerchantKey("192006250b4c09247ec02edce69f6a2d")
        #expect(!"\(key)".contains("192006250b"))
        #expect(!String(reflecting: key).contains("192006250b"))
    }
}

@Suite struct NonceTests {
    @Test func nonceIs32FreshAlphanumericCharacters() {
        let nonces = (0..<100).map { _ in Nonce.make() }
        #expect(Set(nonces).count == 100)
        for nonce in nonces {
            #expect(nonce.count == 32)
            #expect(nonce.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) })
        }
    }
}
