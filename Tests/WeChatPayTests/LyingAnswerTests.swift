import Foundation
import TestSupport
import Testing
import _CryptoExtras

@testable import WeChatPay

/// Answers that verify but are not about this order, or are malformed, or are not signed:
/// none of them may decide an order, and nothing unverified reaches a row.
@Suite struct LyingAnswerTests {
    let key = Fixtures.key
    let order = OrderIdentity(appid: Fixtures.appid, mchID: Fixtures.mchID, outTradeNo: "LYING000001")
    var partnerOrder: OrderIdentity {
        var partner = order
        partner.subMchID = "1900000110"
        partner.subAppID = "wx1111111111111111"
        return partner
    }

    func signed(_ fields: [String: String]) -> [UInt8] {
        var answer = fields
        answer["return_code"] = "SUCCESS"
        answer["sign"] = Signature.sign(answer, key: key, type: .hmacSHA256)
        return Array(FlatXML.encode(answer).utf8)
    }

    func about(_ order: OrderIdentity, _ fields: [String: String]) -> [String: String] {
        var answer = fields
        answer["appid"] = order.appid
        answer["mch_id"] = order.mchID
        if let subMchID = order.subMchID { answer["sub_mch_id"] = subMchID }
        if let subAppID = order.subAppID { answer["sub_appid"] = subAppID }
        return answer
    }

    // MARK: API v2

    @Test func aSignedCloseAnswerForAnotherSubMerchantIsNotBelieved() {
        var fields = about(partnerOrder, ["result_code": "SUCCESS"])
        fields["sub_mch_id"] = "1900000999"
        let verdict = CloseOrderResponse.interpret(status: 200, body: signed(fields), order: partnerOrder, key: key)
        #expect(verdict.outcome == .retry)
        #expect(verdict.message.contains("sub_mch_id=\"1900000999\""), "\(verdict.message)")
        #expect(
            CloseOrderResponse.interpret(
                status: 200, body: signed(about(partnerOrder, ["result_code": "SUCCESS"])), order: partnerOrder, key: key
            ).outcome == .closed)
    }

    @Test(arguments: ["appid", "mch_id", "sub_mch_id", "sub_appid"])
    func aSignedCloseAnswerThatOmitsAnIdentityFieldIsNotBelieved(field: String) {
        var fields = about(partnerOrder, ["result_code": "FAIL", "err_code": "ORDERPAID"])
        fields[field] = nil
        let verdict = CloseOrderResponse.interpret(status: 200, body: signed(fields), order: partnerOrder, key: key)
        #expect(verdict.outcome == .retry)
        #expect(verdict.errCode == nil)
        #expect(verdict.message.contains("omits \(field)"), "\(verdict.message)")
    }

    @Test func aSignedCloseAnswerNamingAnotherOrderNumberIsNotBelieved() {
        let fields = about(order, ["result_code": "SUCCESS", "out_trade_no": "OTHERORDER1"])
        #expect(CloseOrderResponse.interpret(status: 200, body: signed(fields), order: order, key: key).outcome == .retry)
    }

    @Test func aSignedQueryAnswerIsBelievedOnlyWhenItNamesThisOrder() {
        let closed = about(order, ["result_code": "SUCCESS", "trade_state": "CLOSED", "out_trade_no": order.outTradeNo])
        #expect(
            OrderQueryResponse.interpret(status: 200, body: signed(closed), order: order, key: key)
                == .closed(.closed, errCode: nil))
        var omitted = closed
        omitted["out_trade_no"] = nil
        guard
            case .unclear(let unusable, nil) = OrderQueryResponse.interpret(
                status: 200, body: signed(omitted), order: order, key: key)
        else {
            Issue.record("an answer without out_trade_no decided the order")
            return
        }
        #expect(unusable.message.contains("omits out_trade_no"))
        var other = closed
        other["out_trade_no"] = "OTHERORDER1"
        #expect(OrderQueryResponse.interpret(status: 200, body: signed(other), order: order, key: key).isUnclear)
        var otherApp = closed
        otherApp["appid"] = "wx9999999999999999"
        #expect(OrderQueryResponse.interpret(status: 200, body: signed(otherApp), order: order, key: key).isUnclear)
    }

    @Test func aSignedQueryAnswerForAnotherSubMerchantIsNotBelieved() {
        var fields = about(partnerOrder, ["result_code": "SUCCESS", "trade_state": "CLOSED", "out_trade_no": order.outTradeNo])
        fields["sub_mch_id"] = "1900000999"
        #expect(OrderQueryResponse.interpret(status: 200, body: signed(fields), order: partnerOrder, key: key).isUnclear)
    }

    @Test(arguments: [
        ["return_code": "SUCCESS"],
        ["result_code": "FAIL"],
        ["result_code": "FAIL", "err_code": ""],
        ["result_code": "MAYBE"],
    ])
    func aMalformedButSignedAnswerIsRetriedNeverFinal(shape: [String: String]) {
        let body = signed(about(order, shape))
        #expect(OrderQueryResponse.interpret(status: 200, body: body, order: order, key: key).isUnclear, "\(shape)")
        let verdict = CloseOrderResponse.interpret(status: 200, body: body, order: order, key: key)
        #expect(verdict.outcome == .retry, "\(shape): \(verdict.message)")
    }

    @Test func anUnsignedRefusalsTextIsQuotedAndNeverStored() {
        let body = Array(FlatXML.encode(["return_code": "FAIL\r\nINFO forged", "return_msg": "签名错误\u{1B}[31m\u{2028}x"]).utf8)
        let verdict = CloseOrderResponse.interpret(status: 200, body: body, order: order, key: key)
        #expect(verdict.outcome == .retry)
        #expect(verdict.errCode == nil && verdict.errCodeDes == nil)
        #expect(!verdict.message.unicodeScalars.contains { Untrusted.isControl($0) }, "\(verdict.message)")
        #expect(verdict.message.contains(#""FAIL\r\nINFO forged""#), "\(verdict.message)")
    }

    @Test func aContradictorySuccessIsRetried() {
        let fields = about(order, ["result_code": "SUCCESS", "err_code": "ORDERPAID"])
        let verdict = CloseOrderResponse.interpret(status: 200, body: signed(fields), order: order, key: key)
        #expect(verdict.outcome == .retry, "\(verdict.message)")
    }

    @Test func anUnverifiedAnswerThatEchoesTheKeyHasItRedacted() {
        let body = Array(FlatXML.encode(["return_code": "FAIL", "return_msg": "bad key \(Fixtures.keyText)!"]).utf8)
        let verdict = CloseOrderResponse.interpret(status: 200, body: body, order: order, key: key)
        #expect(!verdict.message.contains(Fixtures.keyText))
        #expect(verdict.message.contains("<redacted merchant key>"))
    }

    // MARK: API v3

    let credentials = V3TestKeys.credentials
    let now: Int64 = 1_764_400_000

    func v3Answer(status: Int, body: String, signed: Bool = true) throws -> V3HTTPAnswer {
        guard signed else { return V3HTTPAnswer(status: status, headers: [:], body: Array(body.utf8)) }
        let privateKey = try _RSA.Signing.PrivateKey(pemRepresentation: V3TestKeys.wechatpayPrivateKey)
        let nonce = "5K8264ILTKCH16CQ2502SI8ZNMTM67VS"
        let message = V3Answer.message(timestamp: "\(now)", nonce: nonce, body: Array(body.utf8))
        let signature = try privateKey.signature(for: Data(message.utf8), padding: .insecurePKCS1v1_5).rawRepresentation
        return V3HTTPAnswer(
            status: status,
            headers: [
                "wechatpay-timestamp": "\(now)", "wechatpay-nonce": nonce,
                "wechatpay-signature": signature.base64EncodedString(), "wechatpay-serial": credentials.wechatpayPublicKeyID,
            ], body: Array(body.utf8))
    }

    @Test func anUnsignedServerErrorIsRetriedWithoutReadingItsBody() throws {
        let answer = try v3Answer(status: 500, body: #"{"code":"ORDERPAID","message":"paid, trust me"}"#, signed: false)
        let verdict = V3Answer.closeVerdict(answer, credentials: credentials, now: now)
        #expect(verdict.outcome == .retry)
        #expect(verdict.symptom == .serverError, "still counts towards failover and the breaker")
        #expect(verdict.errCode == nil && verdict.errCodeDes == nil)
        #expect(!verdict.message.contains("ORDERPAID") && !verdict.message.contains("trust me"), "\(verdict.message)")
        let signedError = try v3Answer(status: 500, body: #"{"code":"SYSTEM_ERROR","message":"m"}"#)
        #expect(V3Answer.closeVerdict(signedError, credentials: credentials, now: now).errCode == "SYSTEM_ERROR")
    }

    @Test(arguments: [301, 302, 304, 408])
    func aSignedRedirectOrRequestTimeoutIsRetried(status: Int) throws {
        let answer = try v3Answer(status: status, body: "")
        #expect(V3Answer.closeVerdict(answer, credentials: credentials, now: now).outcome == .retry)
        #expect(V3Answer.queryConclusion(answer, order: order, credentials: credentials, now: now).isUnclear)
    }

    @Test func aSignedQueryAnswerForAnotherMerchantIsNotBelieved() throws {
        let mine = #"{"trade_state":"CLOSED","out_trade_no":"LYING000001","mchid":"1900000109","appid":"wx8888888888888888"}"#
        #expect(
            V3Answer.queryConclusion(try v3Answer(status: 200, body: mine), order: order, credentials: credentials, now: now)
                == .closed(.closed, errCode: nil))
        for body in [
            #"{"trade_state":"CLOSED","out_trade_no":"LYING000001","mchid":"1999999999"}"#,
            #"{"trade_state":"CLOSED","out_trade_no":"LYING000001"}"#,
            #"{"trade_state":"CLOSED","mchid":"1900000109"}"#,
            #"{"trade_state":"CLOSED","out_trade_no":"OTHERORDER1","mchid":"1900000109"}"#,
            #"{"trade_state":"CLOSED","out_trade_no":"LYING000001","mchid":"1900000109","appid":"wx9999999999999999"}"#,
        ] {
            let conclusion = V3Answer.queryConclusion(
                try v3Answer(status: 200, body: body), order: order, credentials: credentials, now: now)
            #expect(conclusion.isUnclear, "\(body)")
        }
    }

    @Test func aPartnerQueryAnswerMustNameTheSubMerchant() throws {
        let mine = #"{"trade_state":"CLOSED","out_trade_no":"LYING000001","sp_mchid":"1900000109","sub_mchid":"1900000110"}"#
        let other = #"{"trade_state":"CLOSED","out_trade_no":"LYING000001","sp_mchid":"1900000109","sub_mchid":"1900000999"}"#
        #expect(
            V3Answer.queryConclusion(
                try v3Answer(status: 200, body: mine), order: partnerOrder, credentials: credentials, now: now)
                == .closed(.closed, errCode: nil))
        #expect(
            V3Answer.queryConclusion(
                try v3Answer(status: 200, body: other), order: partnerOrder, credentials: credentials, now: now
            )
            .isUnclear)
    }
}

extension QueryConclusion {
    var isUnclear: Bool {
        if case .unclear = self { return true }
        return false
    }
}
