import Foundation

/// An API v3 HTTP answer: status, headers (names lower-cased) and body.
public struct V3HTTPAnswer: Sendable {
    public var status: Int
    public var headers: [String: String]
    public var body: [UInt8]

    public init(status: Int, headers: [String: String], body: [UInt8]) {
        self.status = status
        self.headers = Dictionary(headers.map { ($0.key.lowercased(), $0.value) }) { $1 }
        self.body = body
    }
}

/// Reads API v3 answers. Nothing in an answer moves an order to a final state unless its
/// `Wechatpay-Signature` verifies with the WeChat Pay public key named by `Wechatpay-Serial`
/// over `{Wechatpay-Timestamp}\n{Wechatpay-Nonce}\n{body}\n`, and the timestamp is within
/// 300 s of now.
public enum V3Answer {
    public static let maximumClockSkew: Int64 = 300

    /// The message WeChat Pay signs for an answer (for a 204 the body line is empty).
    public static func message(timestamp: String, nonce: String, body: [UInt8]) -> String {
        "\(timestamp)\n\(nonce)\n\(String(decoding: body, as: UTF8.self))\n"
    }

    /// Why the answer cannot be believed, or nil if it can.
    public static func untrusted(_ answer: V3HTTPAnswer, credentials: V3Credentials, now: Int64) -> UnusableAnswer? {
        let headers = answer.headers
        guard let timestamp = headers["wechatpay-timestamp"], let nonce = headers["wechatpay-nonce"],
            let signature = headers["wechatpay-signature"], let serial = headers["wechatpay-serial"]
        else {
            return UnusableAnswer(message: "answer carries no Wechatpay-Signature headers; not believed, will retry")
        }
        guard serial == credentials.wechatpayPublicKeyID else {
            return UnusableAnswer(
                message:
                    "answer is signed by key \(Untrusted.quote(serial)), not the configured \(credentials.wechatpayPublicKeyID); not believed, will retry"
            )
        }
        guard let seconds = Int64(timestamp), abs(seconds - now) <= maximumClockSkew else {
            return UnusableAnswer(
                message: "answer's Wechatpay-Timestamp \(Untrusted.quote(timestamp)) is more than 300 s from now; not believed, will retry")
        }
        guard credentials.isWeChatPaySignature(signature, of: message(timestamp: timestamp, nonce: nonce, body: answer.body))
        else {
            return UnusableAnswer(
                message: "answer's signature does not verify with the WeChat Pay public key; not believed, will retry")
        }
        return nil
    }

    /// `code` and `message` of a JSON error body.
    static func error(_ body: [UInt8]) -> (code: String?, message: String?) {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] else { return (nil, nil) }
        return (object["code"] as? String, object["message"] as? String)
    }

    /// Maps an answer to `POST …/close` to a verdict. The signature is checked first, for
    /// every status: an unsigned 5xx is retried on its status alone, its body unread.
    public static func closeVerdict(_ answer: V3HTTPAnswer, credentials: V3Credentials, now: Int64) -> CloseVerdict {
        if let untrusted = untrusted(answer, credentials: credentials, now: now) {
            var verdict = CloseVerdict(untrusted)
            if answer.status >= 500 {
                verdict.message = "WeChat Pay answered HTTP \(answer.status) (\(untrusted.message))"
                verdict.symptom = .serverError
            }
            return verdict
        }
        if answer.status >= 500 {
            let (code, message) = error(answer.body)
            return CloseVerdict(
                outcome: .retry, errCode: code, errCodeDes: message,
                message: "WeChat Pay answered HTTP \(answer.status)\(code.map { " \($0)" } ?? ""); will retry",
                symptom: .serverError)
        }
        if answer.status == 204 { return CloseVerdict(outcome: .closed, message: "closed by WeChat Pay (204)") }
        let (code, description) = error(answer.body)
        let detail = description.map { " (\($0))" } ?? ""
        let make = { (outcome: CloseOutcome, text: String) in
            CloseVerdict(outcome: outcome, errCode: code, errCodeDes: description, message: text)
        }
        switch (answer.status, code) {
        case (202, _), (_, "USER_PAYING"):
            return make(
                .paymentUnderWay, "the user is paying right now (USER_PAYING): not closed; will confirm with an order query")
        case (_, "ORDER_CLOSED"):
            return make(.closed, "already closed at WeChat Pay (ORDER_CLOSED)")
        case (_, "ORDERPAID"), (_, "ORDER_PAID"):
            return make(
                .paid, "WeChat Pay says the order is paid (\(code ?? "ORDERPAID")); it was not closed: reconcile the payment")
        case (_, "ORDERNOTEXIST"), (_, "ORDER_NOT_EXIST"):
            var verdict = make(.closed, "WeChat Pay has no such order (\(code ?? "")): nothing can be paid")
            verdict.errCode = "ORDERNOTEXIST"
            return verdict
        case (429, _), (_, "FREQUENCY_LIMITED"):
            var verdict = make(.retry, "WeChat Pay rate-limited the call (\(code ?? "429"))\(detail); will retry later")
            verdict.symptom = .frequencyLimited
            return verdict
        case (_, "RULE_LIMIT"), (_, "SYSTEM_ERROR"):
            return make(.retry, "WeChat Pay refused for now (\(code ?? ""))\(detail); will retry")
        case (401, _), (_, "SIGN_ERROR"):
            return make(
                .failed,
                "WeChat Pay rejected the signature (\(code ?? "401"))\(detail): check serial_no and the merchant private key")
        case (_, "PARAM_ERROR"), (_, "INVALID_REQUEST"), (_, "NO_AUTH"):
            return make(.failed, "WeChat Pay refused the request (\(code ?? ""))\(detail); not retried automatically")
        case (200..<400, _), (408, _):
            return make(.retry, "unexpected HTTP \(answer.status) to a close; will retry")
        default:
            return make(.failed, "WeChat Pay answered HTTP \(answer.status) \(code ?? "")\(detail); not retried automatically")
        }
    }

    /// Maps an answer to `GET /v3/pay/transactions/out-trade-no/{no}` to a conclusion.
    public static func queryConclusion(_ answer: V3HTTPAnswer, order: OrderIdentity, credentials: V3Credentials, now: Int64)
        -> QueryConclusion
    {
        if let untrusted = untrusted(answer, credentials: credentials, now: now) {
            guard answer.status >= 500 else { return .unclear(untrusted, errCode: nil) }
            return .unclear(
                UnusableAnswer(
                    message: "WeChat Pay answered the query with HTTP \(answer.status) (\(untrusted.message))",
                    symptom: .serverError),
                errCode: nil)
        }
        if answer.status >= 500 {
            return .unclear(
                UnusableAnswer(
                    message: "WeChat Pay answered the query with HTTP \(answer.status); will retry", symptom: .serverError),
                errCode: nil)
        }
        let (code, description) = error(answer.body)
        switch (answer.status, code) {
        case (200, _):
            guard let object = try? JSONSerialization.jsonObject(with: Data(answer.body)) as? [String: Any],
                let text = object["trade_state"] as? String, let state = TradeState(rawValue: text)
            else {
                return .unclear(UnusableAnswer(message: "query answer has no known trade_state; will retry"), errCode: nil)
            }
            if let mismatch = order.v3QueryAnswerMismatch(object) {
                return .unclear(UnusableAnswer(message: "query \(mismatch)"), errCode: nil)
            }
            switch state {
            case .success, .refund:
                let amount = object["amount"] as? [String: Any]
                return .paid(
                    state,
                    PaymentDetails(
                        transactionID: object["transaction_id"] as? String, totalFee: amount?["total"] as? Int,
                        timeEnd: object["success_time"] as? String, tradeType: object["trade_type"] as? String))
            case .closed, .revoked, .payError: return .closed(state, errCode: nil)
            case .notPaid: return .notPaid
            case .userPaying, .accept: return .paymentUnderWay(state)
            }
        case (_, "ORDERNOTEXIST"), (_, "ORDER_NOT_EXIST"), (404, _):
            return .closed(nil, errCode: "ORDERNOTEXIST")
        case (429, _), (_, "FREQUENCY_LIMITED"):
            return .unclear(
                UnusableAnswer(message: "WeChat Pay rate-limited the query; will retry", symptom: .frequencyLimited),
                errCode: code)
        case (200..<400, _), (408, _), (_, "SYSTEM_ERROR"):
            return .unclear(
                UnusableAnswer(message: "unexpected HTTP \(answer.status) to an order query; will retry"), errCode: code)
        default:
            return .failed(
                errCode: code, errCodeDes: description,
                message: "WeChat Pay refused the order query (HTTP \(answer.status) \(code ?? "")): check the merchant's v3 keys")
        }
    }
}
