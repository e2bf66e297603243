/// Why a call brought no usable answer, in the terms the daemon acts on.
public enum FailureSymptom: String, Sendable, Equatable {
    /// The connection failed before the request reached WeChat Pay (refused, reset, DNS,
    /// TLS, connect timeout): another host may serve it.
    case connectionFailed
    /// The request may have arrived but no answer came in time, or the connection dropped mid-answer.
    case noAnswer
    /// HTTP 5xx.
    case serverError
    /// `FREQUENCY_LIMITED`, or `return_code=FAIL` with `频率限制`: slow this merchant down.
    case frequencyLimited

    /// Failures that say WeChat Pay (or the way to it) is down, rather than something about this order.
    public var isOutage: Bool { self != .frequencyLimited }
}

/// An answer that cannot be believed or read: the call is retried later.
public struct UnusableAnswer: Error, Sendable, Equatable {
    public var message: String
    public var errCodeDes: String?
    public var symptom: FailureSymptom?

    public init(message: String, errCodeDes: String? = nil, symptom: FailureSymptom? = nil) {
        self.message = message
        self.errCodeDes = errCodeDes
        self.symptom = symptom
    }
}

/// The checks every API v2 answer goes through before anything in it is believed.
public enum V2Answer {
    /// The message WeChat Pay sends with `return_code=FAIL` when a merchant calls too often.
    public static let frequencyLimitMessage = "频率限制"

    /// The fields of an HTTP 200, well-formed, `return_code=SUCCESS` answer whose `sign`
    /// verifies with the merchant's key and that is about this order (see
    /// `OrderIdentity.v2AnswerMismatch`); otherwise why not. Nothing of an answer that fails
    /// these checks is kept but a sentence saying so (with `return_msg` quoted and escaped).
    public static func verifiedFields(
        status: Int, body: [UInt8], order: OrderIdentity, key: MerchantKey
    ) -> Result<[String: String], UnusableAnswer> {
        guard status == 200 else {
            return .failure(
                UnusableAnswer(
                    message: "WeChat Pay answered HTTP \(status); will retry", symptom: status >= 500 ? .serverError : nil))
        }
        let fields: [String: String]
        do {
            fields = try FlatXML.decode(body)
        } catch {
            return .failure(UnusableAnswer(message: "unreadable answer from WeChat Pay (\(error)); will retry"))
        }
        guard fields["return_code"] == "SUCCESS" else {
            // A return_code=FAIL answer carries no sign: its text is shown quoted, never stored as err_code_des.
            let returnMessage = fields["return_msg"].map(key.redacting)
            let reason = returnMessage.map { ", return_msg \(Untrusted.quote($0))" } ?? ""
            let limited = returnMessage?.contains(frequencyLimitMessage) == true
            return .failure(
                UnusableAnswer(
                    message:
                        "WeChat Pay refused the request (return_code=\(Untrusted.quote(fields["return_code"] ?? "missing"))\(reason), "
                        + "unsigned); will retry (if this persists, check the merchant key, sign_type and appid)",
                    symptom: limited ? .frequencyLimited : nil))
        }
        guard Signature.isValid(fields, key: key) else {
            let what = fields["sign"] == nil ? "carries no sign" : "has a sign that does not verify with the merchant key"
            return .failure(UnusableAnswer(message: "answer \(what); not believed, will retry"))
        }
        if let mismatch = order.v2AnswerMismatch(fields, orderNumberRequired: false) {
            return .failure(UnusableAnswer(message: mismatch))
        }
        return .success(fields)
    }
}
