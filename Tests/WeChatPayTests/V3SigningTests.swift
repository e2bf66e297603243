import Foundation
import TestSupport
import Testing
import WeChatPay
import _CryptoExtras

/// The signing both sides share: what the simulator makes, the client believes, and the
/// other way round, checked against openssl's signatures.
@Suite struct V3SigningTests {
    let credentials = V3TestKeys.credentials
    let order = OrderIdentity(appid: "wx8888888888888888", mchID: "1900000109", outTradeNo: "1217752501201407033233368018")

    @Test func anAuthorizationHeaderReadsBackAsItWasWrittenAndVerifiesWithTheMerchantsPublicKey() throws {
        let request = V3Request.close(order)
        let header = try request.authorization(
            credentials: credentials, timestamp: 1_554_208_460, nonce: "593BEC0C930BF1AFEB40B4A08C8FB242")
        let authorization = try #require(V3Authorization(header: header))
        #expect(authorization.mchID == "1900000109")
        #expect(authorization.nonce == "593BEC0C930BF1AFEB40B4A08C8FB242")
        #expect(authorization.timestamp == "1554208460")
        #expect(authorization.serialNo == V3TestKeys.merchantSerialNo)
        #expect(authorization.signature == V3TestKeys.closeRequestSignature, "openssl's signature")
        #expect(authorization.header == header)
        let merchantKey = try _RSA.Signing.PublicKey(pemRepresentation: V3TestKeys.merchantPublicKey)
        #expect(
            authorization.isValid(method: "POST", pathAndQuery: request.pathAndQuery, body: request.body, publicKey: merchantKey))
        #expect(!authorization.isValid(method: "POST", pathAndQuery: request.pathAndQuery, body: "{}", publicKey: merchantKey))
    }

    @Test(arguments: [
        "", "Bearer abc", #"WECHATPAY2-SHA256-RSA2048 mchid="1",nonce_str="n",timestamp="1""#,
        #"WECHATPAY2-SHA256-RSA2048 mchid="1",nonce_str="n",signature="s",timestamp="1",broken"#,
    ])
    func anAuthorizationHeaderWithoutEveryFieldIsNotRead(header: String) {
        #expect(V3Authorization(header: header) == nil)
    }

    @Test func answerHeadersAreBelievedByTheClientsVerifier() throws {
        let key = try _RSA.Signing.PrivateKey(pemRepresentation: V3TestKeys.wechatpayPrivateKey)
        let body = Array(#"{"code":"ORDER_CLOSED","message":"订单已关闭"}"#.utf8)
        let headers = try V3Signing.answerHeaders(
            body: body, timestamp: 1_554_209_980, nonce: "c5ac7061fccab6bf3e254dcf98995b8c", privateKey: key,
            publicKeyID: credentials.wechatpayPublicKeyID)
        #expect(headers["Wechatpay-Signature-Type"] == "WECHATPAY2-SHA256-RSA2048")
        let answer = V3HTTPAnswer(status: 400, headers: headers, body: body)
        #expect(V3Answer.untrusted(answer, credentials: credentials, now: 1_554_209_980) == nil)
        let tampered = V3HTTPAnswer(status: 400, headers: headers, body: Array(#"{"code":"ORDERPAID"}"#.utf8))
        #expect(V3Answer.untrusted(tampered, credentials: credentials, now: 1_554_209_980) != nil)
    }

    @Test func anEmptyAnswerIsSignedAsOpenSSLSignedIt() throws {
        let key = try _RSA.Signing.PrivateKey(pemRepresentation: V3TestKeys.wechatpayPrivateKey)
        let headers = try V3Signing.answerHeaders(
            body: [], timestamp: 1_554_209_980, nonce: "c5ac7061fccab6bf3e254dcf98995b8c", privateKey: key,
            publicKeyID: credentials.wechatpayPublicKeyID)
        #expect(headers["Wechatpay-Signature"] == V3TestKeys.emptyAnswerSignature)
    }
}
