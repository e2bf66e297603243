import Testing

@testable import WeChatPay

@Suite struct CloseVerdictTests {
    let key = try! MerchantKey("192006250b4c09247ec02edce69f6a2d")
    let order = OrderIdentity(appid: "wx8888888888888888", mchID: "1900000109", outTradeNo: "1217752501201407033233368018")

    /// The table of `shared/wechatpay-v2-closeorder.md` §1, "what a reaper does".
    @Test(arguments: [
        ("ORDERPAID", CloseOutcome.paid), ("ORDERCLOSED", .closed), ("SYSTEMERROR", .retry),
        ("FREQUENCY_LIMITED", .retry), ("SIGNERROR", .failed), ("REQUIRE_POST_METHOD", .failed),
        ("XML_FORMAT_ERROR", .failed), ("SOMETHING_NEW", .failed),
    ])
    func businessErrorCodesMapToTheirOutcome(errCode: String, outcome: CloseOutcome) {
        let verdict = CloseOrderResponse.verdict(resultCode: "FAIL", errCode: errCode, errCodeDes: "d")
        #expect(verdict.outcome == outcome)
        #expect(verdict.errCode == errCode)
        #expect(verdict.errCodeDes == "d")
    }

    @Test func resultSuccessIsClosed() {
        #expect(CloseOrderResponse.verdict(resultCode: "SUCCESS", errCode: nil, errCodeDes: nil).outcome == .closed)
    }

    func signedBody(_ fields: [String: String], type: SignType = .hmacSHA256) -> [UInt8] {
        var answer = fields
        answer["sign"] = Signature.sign(answer, key: key, type: type)
        return Array(FlatXML.encode(answer).utf8)
    }

    @Test func aSignedPaidAnswerIsBelievedWithEitherAlgorithm() {
        for type in SignType.allCases {
            let body = signedBody(
                [
                    "return_code": "SUCCESS", "result_code": "FAIL", "err_code": "ORDERPAID", "mch_id": "1900000109",
                    "appid": order.appid,
                ], type: type)
            #expect(CloseOrderResponse.interpret(status: 200, body: body, order: order, key: key).outcome == .paid)
        }
    }

    @Test func anUnsignedSuccessIsNotBelieved() {
        let body = Array(FlatXML.encode(["return_code": "SUCCESS", "result_code": "SUCCESS"]).utf8)
        let verdict = CloseOrderResponse.interpret(status: 200, body: body, order: order, key: key)
        #expect(verdict.outcome == .retry)
        #expect(verdict.message.contains("no sign"))
    }

    @Test func aForgedPaidAnswerIsNotBelieved() {
        var fields = ["return_code": "SUCCESS", "result_code": "FAIL", "err_code": "ORDERPAID"]
        fields["sign"] = String(repeating: "0", count: 64)
        let verdict = CloseOrderResponse.interpret(status: 200, body: Array(FlatXML.encode(fields).utf8), order: order, key: key)
        #expect(verdict.outcome == .retry)
        #expect(verdict.errCode == nil, "nothing from an unverified body is recorded")
    }

    @Test func anAnswerForAnotherMerchantIsNotBelieved() {
        let body = signedBody(["return_code": "SUCCESS", "result_code": "SUCCESS", "mch_id": "1999999999"])
        #expect(CloseOrderResponse.interpret(status: 200, body: body, order: order, key: key).outcome == .retry)
    }

    @Test func returnCodeFailIsRetriedWithItsMessageQuotedButNotStored() {
        let body = Array(FlatXML.encode(["return_code": "FAIL", "return_msg": "频率限制\u{1B}[2J"]).utf8)
        let verdict = CloseOrderResponse.interpret(status: 200, body: body, order: order, key: key)
        #expect(verdict.outcome == .retry)
        #expect(verdict.symptom == .frequencyLimited)
        #expect(verdict.errCodeDes == nil, "an unsigned answer's text never becomes err_code_des")
        #expect(verdict.message.contains(#"return_msg "频率限制\u{1B}[2J""#), "\(verdict.message)")
    }

    @Test(arguments: [500, 502, 503, 404, 302])
    func nonOKStatusIsRetried(status: Int) {
        let body = signedBody(["return_code": "SUCCESS", "result_code": "SUCCESS"])
        #expect(CloseOrderResponse.interpret(status: status, body: body, order: order, key: key).outcome == .retry)
    }

    @Test func aDoctypeBodyIsRetriedNotParsed() {
        let body = Array(
            #"<!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]><xml><return_code>&x;</return_code></xml>"#.utf8)
        let verdict = CloseOrderResponse.interpret(status: 200, body: body, order: order, key: key)
        #expect(verdict.outcome == .retry)
        #expect(verdict.message.contains("DOCTYPE"))
    }
}

@Suite struct OrderIdentityTests {
    func identity(_ number: String, appid: String = "wx8888888888888888", mchID: String = "1900000109") -> OrderIdentity {
        OrderIdentity(appid: appid, mchID: mchID, outTradeNo: number)
    }

    @Test(arguments: ["123456", "ABCdef_-|*@", String(repeating: "9", count: 32)])
    func allowedOrderNumbersPass(number: String) {
        #expect(identity(number).problem() == nil)
    }

    @Test(arguments: [
        "12345", String(repeating: "9", count: 33), "bad<order>", "a&b]]>cd", "with space", "中文订单号码号", "12345\n", "",
    ])
    func badOrderNumbersAreNamed(number: String) throws {
        let problem = try #require(identity(number).problem())
        #expect(problem.contains("out_trade_no"))
    }

    @Test func emptyAppidOrMchIDIsAProblem() {
        #expect(identity("123456", appid: "").problem()?.contains("appid") == true)
        #expect(identity("123456", mchID: "").problem()?.contains("mch_id") == true)
    }
}
