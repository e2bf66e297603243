/// What one close attempt means for the order.
public enum CloseOutcome: String, Sendable, Equatable {
    /// WeChat Pay closed the order, or it was closed already: nobody can pay it now.
    case closed
    /// The order was paid: it must never be closed or marked closed.
    case paid
    /// The answer was not final (WeChat-side error, transport failure, untrusted body): try again later.
    case retry
    /// A configuration or client error that retrying will not fix.
    case failed
    /// The user is paying right now (API v3 `USER_PAYING`): never close; confirm with a query.
    case paymentUnderWay = "paying"
}

/// The reading of one close call: its outcome, WeChat's error fields, and a sentence an
/// operator can act on.
public struct CloseVerdict: Sendable, Equatable {
    public var outcome: CloseOutcome
    public var errCode: String?
    public var errCodeDes: String?
    public var message: String
    /// Set when the failure says something about WeChat Pay's availability or rate limit.
    public var symptom: FailureSymptom?

    public init(
        outcome: CloseOutcome, errCode: String? = nil, errCodeDes: String? = nil, message: String,
        symptom: FailureSymptom? = nil
    ) {
        self.outcome = outcome
        self.errCode = errCode
        self.errCodeDes = errCodeDes
        self.message = message
        self.symptom = symptom
    }

    public init(_ unusable: UnusableAnswer) {
        self.init(outcome: .retry, errCodeDes: unusable.errCodeDes, message: unusable.message, symptom: unusable.symptom)
    }
}

/// Reads WeChat Pay's answer to `/pay/closeorder`.
public enum CloseOrderResponse {
    /// Maps an HTTP answer to a verdict. Nothing in the body is believed unless
    /// `return_code=SUCCESS` and its `sign` verifies with the merchant's key.
    public static func interpret(status: Int, body: [UInt8], order: OrderIdentity, key: MerchantKey) -> CloseVerdict {
        switch V2Answer.verifiedFields(status: status, body: body, order: order, key: key) {
        case .failure(let unusable):
            return CloseVerdict(unusable)
        case .success(let fields):
            return verdict(resultCode: fields["result_code"], errCode: fields["err_code"], errCodeDes: fields["err_code_des"])
        }
    }

    /// The business meaning of a verified answer, as `../shared/wechatpay-v2-closeorder.md` tabulates it.
    public static func verdict(resultCode: String?, errCode: String?, errCodeDes: String?) -> CloseVerdict {
        switch resultCode {
        case "SUCCESS" where errCode?.isEmpty ?? true:
            return CloseVerdict(outcome: .closed, message: "closed by WeChat Pay")
        case "SUCCESS":
            return CloseVerdict(
                outcome: .retry,
                message:
                    "answer has result_code=SUCCESS and err_code=\(Untrusted.quote(errCode ?? "")): contradictory; will retry")
        case "FAIL":
            break
        default:
            return CloseVerdict(
                outcome: .retry, errCode: errCode, errCodeDes: errCodeDes,
                message: "answer has result_code=\(resultCode.map(Untrusted.quote) ?? "missing"); will retry")
        }
        guard let errCode, !errCode.isEmpty else {
            return CloseVerdict(
                outcome: .retry, errCodeDes: errCodeDes, message: "answer has result_code=FAIL but no err_code; will retry")
        }
        return AnswerTable.closeVerdict(Refusal(v2Code: errCode, description: errCodeDes), api: .v2)
    }
}
