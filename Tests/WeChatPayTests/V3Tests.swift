import Foundation
import TestSupport
import Testing
import _CryptoExtras

@testable import WeChatPay

/// API v3 signing and verification, against signatures computed with openssl.
@Suite struct V3Tests {
    let credentials = V3TestKeys.credentials
    let order = OrderIdentity(appid: "wx8888888888888888", mchID: "1900000109", outTradeNo: "1217752501201407033233368018")

    @Test func theAuthorizationHeaderCarriesOpenSSLsSignature() throws {
        let header = try V3Request.close(order).authorization(
            credentials: credentials, timestamp: 1_554_208_460, nonce: "593BEC0C930BF1AFEB40B4A08C8FB242")
        #expect(
            header
                == #"WECHATPAY2-SHA256-RSA2048 mchid="1900000109",nonce_str="593BEC0C930BF1AFEB40B4A08C8FB242",signature="\#(V3TestKeys.closeRequestSignature)",timestamp="1554208460",serial_no="5157F09EFDC096DE15EBE81A47057A7232F1B8E1""#
        )
    }

    @Test func closeRequestsUseThePlainOrPartnerPath() {
        let plain = V3Request.close(order)
        #expect(plain.method == "POST")
        #expect(plain.pathAndQuery == "/v3/pay/transactions/out-trade-no/1217752501201407033233368018/close")
        #expect(plain.body == #"{"mchid":"1900000109"}"#)
        var partnerOrder = order
        partnerOrder.subMchID = "1900000110"
        let partner = V3Request.close(partnerOrder)
        #expect(partner.pathAndQuery == "/v3/pay/partner/transactions/out-trade-no/1217752501201407033233368018/close")
        #expect(partner.body == #"{"sp_mchid":"1900000109","sub_mchid":"1900000110"}"#)
        #expect(
            V3Request.query(order).pathAndQuery
                == "/v3/pay/transactions/out-trade-no/1217752501201407033233368018?mchid=1900000109")
        #expect(
            V3Request.query(partnerOrder).pathAndQuery
                == "/v3/pay/partner/transactions/out-trade-no/1217752501201407033233368018?sp_mchid=1900000109&sub_mchid=1900000110"
        )
    }

    @Test func theOrderNumberIsPathEscaped() {
        var odd = order
        odd.outTradeNo = "A*B/C?D%E"
        #expect(V3Request.close(odd).pathAndQuery == "/v3/pay/transactions/out-trade-no/A%2AB%2FC%3FD%25E/close")
    }

    func signedAnswer(status: Int, body: String, timestamp: Int64 = 1_554_209_980, serial: String? = nil) throws -> V3HTTPAnswer {
        let key = try _RSA.Signing.PrivateKey(pemRepresentation: V3TestKeys.wechatpayPrivateKey)
        let nonce = "c5ac7061fccab6bf3e254dcf98995b8c"
        let message = V3Answer.message(timestamp: "\(timestamp)", nonce: nonce, body: Array(body.utf8))
        let signature = try key.signature(for: Data(message.utf8), padding: .insecurePKCS1v1_5).rawRepresentation
            .base64EncodedString()
        return V3HTTPAnswer(
            status: status,
            headers: [
                "Wechatpay-Timestamp": "\(timestamp)", "Wechatpay-Nonce": nonce, "Wechatpay-Signature": signature,
                "Wechatpay-Serial": serial ?? credentials.wechatpayPublicKeyID,
            ], body: Array(body.utf8))
    }

    @Test func openSSLsSignatureOfAnEmpty204Verifies() {
        let answer = V3HTTPAnswer(
            status: 204,
            headers: [
                "Wechatpay-Timestamp": "1554209980", "Wechatpay-Nonce": "c5ac7061fccab6bf3e254dcf98995b8c",
                "Wechatpay-Signature": V3TestKeys.emptyAnswerSignature, "Wechatpay-Serial": credentials.wechatpayPublicKeyID,
            ], body: [])
        #expect(V3Answer.closeVerdict(answer, credentials: credentials, now: 1_554_209_980).outcome == .closed)
    }

    @Test func staleUnknownOrBadlySignedAnswersAreNeverBelieved() throws {
        let good = try signedAnswer(status: 204, body: "")
        #expect(V3Answer.closeVerdict(good, credentials: credentials, now: 1_554_209_980 + 300).outcome == .closed)
        #expect(V3Answer.closeVerdict(good, credentials: credentials, now: 1_554_209_980 + 301).outcome == .retry, "stale")
        #expect(
            V3Answer.closeVerdict(good, credentials: credentials, now: 1_554_209_980 - 301).outcome == .retry, "from the future")
        let unknown = try signedAnswer(status: 204, body: "", serial: "PUB_KEY_ID_SOMEONE_ELSE")
        #expect(V3Answer.closeVerdict(unknown, credentials: credentials, now: 1_554_209_980).outcome == .retry)
        var tampered = try signedAnswer(status: 400, body: #"{"code":"ORDER_CLOSED","message":"closed"}"#)
        tampered.body = Array(#"{"code":"ORDERPAID","message":"paid"}"#.utf8)
        #expect(V3Answer.closeVerdict(tampered, credentials: credentials, now: 1_554_209_980).outcome == .retry)
        var unsigned = good
        unsigned.headers = [:]
        #expect(V3Answer.closeVerdict(unsigned, credentials: credentials, now: 1_554_209_980).outcome == .retry)
    }

    @Test(arguments: [
        (204, "", CloseOutcome.closed, nil as String?), (400, "ORDER_CLOSED", .closed, "ORDER_CLOSED"),
        (400, "ORDERPAID", .paid, "ORDERPAID"), (202, "USER_PAYING", .paymentUnderWay, "USER_PAYING"),
        (429, "FREQUENCY_LIMITED", .retry, "FREQUENCY_LIMITED"), (403, "RULE_LIMIT", .retry, "RULE_LIMIT"),
        (500, "SYSTEM_ERROR", .retry, "SYSTEM_ERROR"), (502, "", .retry, nil), (401, "SIGN_ERROR", .failed, "SIGN_ERROR"),
        (400, "PARAM_ERROR", .failed, "PARAM_ERROR"), (400, "INVALID_REQUEST", .failed, "INVALID_REQUEST"),
        (403, "NO_AUTH", .failed, "NO_AUTH"), (404, "ORDERNOTEXIST", .closed, "ORDERNOTEXIST"),
    ])
    func eachV3AnswerMapsToItsOutcome(status: Int, code: String, outcome: CloseOutcome, errCode: String?) throws {
        let body = code.isEmpty ? "" : #"{"code":"\#(code)","message":"m"}"#
        let verdict = V3Answer.closeVerdict(
            try signedAnswer(status: status, body: body), credentials: credentials, now: 1_554_209_980)
        #expect(verdict.outcome == outcome)
        #expect(verdict.errCode == errCode)
    }

    @Test func queryAnswersCarryThePayment() throws {
        let body =
            #"{"trade_state":"SUCCESS","out_trade_no":"1217752501201407033233368018","mchid":"1900000109","appid":"wx8888888888888888","transaction_id":"4200000001","amount":{"total":101},"success_time":"2026-11-29T12:00:00+08:00","trade_type":"JSAPI"}"#
        let conclusion = V3Answer.queryConclusion(
            try signedAnswer(status: 200, body: body), order: order, credentials: credentials, now: 1_554_209_980)
        #expect(
            conclusion
                == .paid(
                    .success,
                    PaymentDetails(
                        transactionID: "4200000001", totalFee: 101, timeEnd: "2026-11-29T12:00:00+08:00", tradeType: "JSAPI")))
        let missing = V3Answer.queryConclusion(
            try signedAnswer(status: 404, body: #"{"code":"ORDER_NOT_EXIST","message":"m"}"#), order: order,
            credentials: credentials,
            now: 1_554_209_980)
        #expect(missing == .closed(nil, errCode: "ORDERNOTEXIST"))
    }

    @Test func keysAreCheckedWhenLoaded() {
        #expect(throws: V3KeyError.self) {
            try V3Credentials(
                mchID: "1", serialNo: "S", privateKeyPEM: V3TestKeys.shortPrivateKey,
                wechatpayPublicKeyPEM: V3TestKeys.wechatpayPublicKey,
                wechatpayPublicKeyID: "PUB_KEY_ID_1")
        }
        #expect(
            throws: V3KeyError.unreadable(
                "the merchant private key", "not an RSA private key in PEM (PKCS#8, -----BEGIN PRIVATE KEY-----)")
        ) {
            try V3Credentials(
                mchID: "1", serialNo: "S", privateKeyPEM: "garbage", wechatpayPublicKeyPEM: V3TestKeys.wechatpayPublicKey,
                wechatpayPublicKeyID: "PUB_KEY_ID_1")
        }
        #expect(throws: V3KeyError.missing("wechatpay_public_key_id")) {
            try V3Credentials(
                mchID: "1", serialNo: "S", privateKeyPEM: V3TestKeys.merchantPrivateKey,
                wechatpayPublicKeyPEM: V3TestKeys.wechatpayPublicKey,
                wechatpayPublicKeyID: "")
        }
    }

    @Test(arguments: ["A|B123456", "ABC@123456", "ABC 123456"])
    func v3OrderNumbersAllowFewerCharacters(number: String) {
        let identity = OrderIdentity(appid: "wx1", mchID: "1", outTradeNo: number)
        #expect(identity.v3Problem() != nil)
    }
}
