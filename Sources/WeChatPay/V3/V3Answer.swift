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
                message:
                    "answer's Wechatpay-Timestamp \(Untrusted.quote(timestamp)) is more than 300 s from now; not believed, will retry"
            )
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
        if let meaning = closeMeaning(status: answer.status, code: code) {
            return AnswerTable.closeVerdict(
                Refusal(meaning: meaning, code: code, description: description, shown: code ?? "\(answer.status)"), api: .v3)
        }
        if isUnexpected(answer.status) {
            return CloseVerdict(
                outcome: .retry, errCode: code, errCodeDes: description,
                message: "unexpected HTTP \(answer.status) to a close; will retry")
        }
        return CloseVerdict(
            outcome: .failed, errCode: code, errCodeDes: description,
            message:
                "WeChat Pay answered HTTP \(answer.status) \(code ?? "")\(description.map { " (\($0))" } ?? ""); not retried automatically"
        )
    }

    /// A signed answer with a status no refusal uses: retried, never final.
    static func isUnexpected(_ status: Int) -> Bool { (200..<400).contains(status) || status == 408 }

    /// The answer table's meaning of a refused close, from the status and the body's code:
    /// 202 is a user paying whatever the code; a code that settles the order comes next; then
    /// 429 (rate limited), any other code the table knows, and 401 (a bad signature). Nil: the
    /// table has no entry (an unexpected status is retried, anything else fails).
    static func closeMeaning(status: Int, code: String?) -> String? {
        let normalised = code.map(AnswerTable.normalised)
        if status == 202 || normalised == "USER_PAYING" { return "USER_PAYING" }
        if let normalised, ["ORDERCLOSED", "ORDERPAID", "ORDERNOTEXIST"].contains(normalised) { return normalised }
        if status == 429 { return "FREQUENCY_LIMITED" }
        if let normalised, AnswerTable.knownCodes.contains(normalised) { return normalised }
        return status == 401 ? "SIGNERROR" : nil
    }

    /// The answer table's meaning of a refused query: no such order (its code, or a 404
    /// without a code: a 404 naming another code is a wrong path, not a missing order), rate
    /// limited (429 or the code), or a WeChat-side error. Nil: the table has no entry.
    static func queryMeaning(status: Int, code: String?) -> String? {
        let normalised = code.map(AnswerTable.normalised)
        if normalised == "ORDERNOTEXIST" || (status == 404 && code == nil) { return "ORDERNOTEXIST" }
        if status == 429 || normalised == "FREQUENCY_LIMITED" { return "FREQUENCY_LIMITED" }
        return normalised == "SYSTEMERROR" ? "SYSTEMERROR" : nil
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
        guard answer.status == 200 else {
            let (code, description) = error(answer.body)
            if let meaning = queryMeaning(status: answer.status, code: code) {
                return AnswerTable.queryConclusion(
                    Refusal(meaning: meaning, code: code, description: description, shown: code ?? "\(answer.status)"),
                    api: .v3)
            }
            if isUnexpected(answer.status) {
                return .unclear(
                    UnusableAnswer(message: "unexpected HTTP \(answer.status) to an order query; will retry"), errCode: code)
            }
            return .failed(
                errCode: code, errCodeDes: description,
                message: "WeChat Pay refused the order query (HTTP \(answer.status) \(code ?? "")): check the merchant's v3 keys")
        }
        guard let object = try? JSONSerialization.jsonObject(with: Data(answer.body)) as? [String: Any],
            let text = object["trade_state"] as? String, let state = TradeState(rawValue: text)
        else {
            return .unclear(UnusableAnswer(message: "query answer has no known trade_state; will retry"), errCode: nil)
        }
        if let mismatch = order.v3QueryAnswerMismatch(object) {
            return .unclear(UnusableAnswer(message: "query \(mismatch)"), errCode: nil)
        }
        let amount = object["amount"] as? [String: Any]
        return AnswerTable.queryConclusion(
            tradeState: state,
            payment: PaymentDetails(
                transactionID: object["transaction_id"] as? String, totalFee: amount?["total"] as? Int,
                timeEnd: object["success_time"] as? String, tradeType: object["trade_type"] as? String))
    }
}
