/// Which API an answer came from. It changes only what an operator is told to check.
public enum APIVersion: String, Sendable {
    case v2, v3
}

/// What each WeChat Pay error code means for a reaper, for v2 and v3 alike: the one table
/// the protocol readers (`CloseOrderResponse`, `OrderQueryResponse`, `V3Answer`) consult
/// once they have parsed and verified an answer. `../shared/wechatpay-v2-closeorder.md`
/// tabulates the codes; the README's outcome tables say the same for operators.
///
/// ```swift
/// AnswerTable.closeVerdict(code: "ORDER_CLOSED", description: nil, api: .v3).outcome  // .closed
/// ```
public enum AnswerTable {
    /// v3 spells some codes with an underscore; the table knows them by their v2 name.
    public static func normalised(_ code: String) -> String {
        switch code {
        case "ORDER_NOT_EXIST": "ORDERNOTEXIST"
        case "ORDER_PAID": "ORDERPAID"
        case "ORDER_CLOSED": "ORDERCLOSED"
        case "SYSTEM_ERROR": "SYSTEMERROR"
        case "SIGN_ERROR": "SIGNERROR"
        case "USER_PAYING": "USERPAYING"
        default: code
        }
    }

    /// Every normalised code the table gives a meaning of its own; others are final failures.
    public static let knownCodes: Set<String> = [
        "ORDERPAID", "ORDERCLOSED", "ORDERNOTEXIST", "USERPAYING", "SYSTEMERROR", "FREQUENCY_LIMITED", "RULE_LIMIT",
        "SIGNERROR", "XML_FORMAT_ERROR", "REQUIRE_POST_METHOD", "PARAM_ERROR", "INVALID_REQUEST", "NO_AUTH",
    ]

    /// The verdict on a close that WeChat Pay refused with `code` (as sent; recorded as sent,
    /// except that every spelling of "no such order" is recorded as `ORDERNOTEXIST`).
    public static func closeVerdict(code: String, description: String?, api: APIVersion) -> CloseVerdict {
        let detail = description.map { " (\($0))" } ?? ""
        let make = { (outcome: CloseOutcome, message: String) in
            CloseVerdict(outcome: outcome, errCode: code, errCodeDes: description, message: message)
        }
        switch normalised(code) {
        case "ORDERPAID":
            return make(.paid, "WeChat Pay says the order is paid (\(code)); it was not closed: reconcile the payment")
        case "ORDERCLOSED":
            return make(.closed, "already closed at WeChat Pay (\(code))")
        case "ORDERNOTEXIST":
            var verdict = make(.closed, "WeChat Pay has no such order (\(code)): nothing can be paid")
            verdict.errCode = "ORDERNOTEXIST"
            return verdict
        case "USERPAYING":
            return make(
                .paymentUnderWay, "the user is paying right now (\(code)): not closed; will confirm with an order query")
        case "SYSTEMERROR":
            return make(.retry, "WeChat Pay had an internal error (\(code))\(detail); will retry")
        case "FREQUENCY_LIMITED":
            var verdict = make(.retry, "WeChat Pay rate-limited the call (\(code))\(detail); will retry later")
            verdict.symptom = .frequencyLimited
            return verdict
        case "RULE_LIMIT":
            return make(.retry, "WeChat Pay refused for now (\(code))\(detail); will retry")
        case "SIGNERROR":
            return make(.failed, "WeChat Pay rejected the signature (\(code))\(detail): \(signatureHint(api))")
        case "XML_FORMAT_ERROR", "REQUIRE_POST_METHOD":
            return make(.failed, "WeChat Pay rejected the request format (\(code))\(detail): a closeorderd bug, please report it")
        case "PARAM_ERROR", "INVALID_REQUEST", "NO_AUTH":
            return make(.failed, "WeChat Pay refused the request (\(code))\(detail); not retried automatically")
        default:
            return make(.failed, "WeChat Pay answered err_code=\(code)\(detail); not retried automatically")
        }
    }

    /// The conclusion of an order query that WeChat Pay refused with `code`.
    public static func queryConclusion(code: String, description: String?, api: APIVersion) -> QueryConclusion {
        switch normalised(code) {
        case "ORDERNOTEXIST":
            return .closed(nil, errCode: "ORDERNOTEXIST")
        case "SYSTEMERROR", "RULE_LIMIT":
            return .unclear(
                UnusableAnswer(message: "WeChat Pay could not answer the query (\(code)); will retry"), errCode: code)
        case "FREQUENCY_LIMITED":
            return .unclear(
                UnusableAnswer(message: "WeChat Pay rate-limited the query (\(code)); will retry", symptom: .frequencyLimited),
                errCode: code)
        default:
            return .failed(
                errCode: code, errCodeDes: description,
                message: "WeChat Pay refused the order query (err_code=\(code)): \(signatureHint(api))")
        }
    }

    /// The conclusion of an order query that answered `trade_state`.
    public static func queryConclusion(tradeState state: TradeState, payment: PaymentDetails) -> QueryConclusion {
        switch state {
        case .success, .refund: .paid(state, payment)
        case .closed, .revoked, .payError: .closed(state, errCode: nil)
        case .notPaid: .notPaid
        case .userPaying, .accept: .paymentUnderWay(state)
        }
    }

    /// What to check when WeChat Pay does not accept the merchant's signature.
    static func signatureHint(_ api: APIVersion) -> String {
        switch api {
        case .v2: "check the merchant key and sign_type"
        case .v3: "check serial_no and the merchant's v3 keys"
        }
    }
}
