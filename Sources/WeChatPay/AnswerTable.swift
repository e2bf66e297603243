/// Which API an answer came from. It changes only what an operator is told to check.
public enum APIVersion: String, Sendable, CaseIterable {
    case v2, v3
}

/// An answer that refused a call, as the answer table reads it.
public struct Refusal: Sendable, Equatable {
    /// What the table reads: the code under its v2 name, or what a v3 HTTP status alone
    /// stands for (429 rate limited, 401 a bad signature, 202 a user paying).
    public var meaning: String
    /// The code as WeChat Pay sent it, recorded as `err_code`; nil when the answer carried none.
    public var code: String?
    /// `err_code_des` (v2) or the JSON `message` (v3).
    public var description: String?
    /// How messages name it: the code as sent, or the HTTP status.
    public var shown: String

    public init(meaning: String, code: String?, description: String?, shown: String) {
        self.meaning = meaning
        self.code = code
        self.description = description
        self.shown = shown
    }

    /// A v2 `result_code=FAIL` answer: its `err_code` means itself.
    public init(v2Code code: String, description: String?) {
        self.init(meaning: code, code: code, description: description, shown: code)
    }
}

/// What each WeChat Pay error code means for a reaper, for v2 and v3 alike: the one table
/// the protocol readers (`CloseOrderResponse`, `OrderQueryResponse`, `V3Answer`) consult
/// once they have parsed and verified an answer. `../shared/wechatpay-v2-closeorder.md`
/// tabulates the codes; the README's outcome tables say the same for operators.
///
/// ```swift
/// AnswerTable.closeVerdict(Refusal(v2Code: "ORDERCLOSED", description: nil), api: .v2).outcome  // .closed
/// ```
public enum AnswerTable {
    /// v3 spells some codes with an underscore; the table knows them by their v2 name.
    /// (`USER_PAYING` is v3's alone: a v2 close never answers that a user is paying.)
    public static func normalised(_ code: String) -> String {
        switch code {
        case "ORDER_NOT_EXIST": "ORDERNOTEXIST"
        case "ORDER_PAID": "ORDERPAID"
        case "ORDER_CLOSED": "ORDERCLOSED"
        case "SYSTEM_ERROR": "SYSTEMERROR"
        case "SIGN_ERROR": "SIGNERROR"
        default: code
        }
    }

    /// Every meaning the table gives a verdict of its own; other codes are final failures.
    public static let knownCodes: Set<String> = [
        "ORDERPAID", "ORDERCLOSED", "ORDERNOTEXIST", "USER_PAYING", "SYSTEMERROR", "FREQUENCY_LIMITED", "RULE_LIMIT",
        "SIGNERROR", "XML_FORMAT_ERROR", "REQUIRE_POST_METHOD", "PARAM_ERROR", "INVALID_REQUEST", "NO_AUTH",
    ]

    /// The verdict on a refused close. The row records the code as sent, except that every
    /// spelling of "no such order" is recorded as `ORDERNOTEXIST`.
    public static func closeVerdict(_ refusal: Refusal, api: APIVersion) -> CloseVerdict {
        let (shown, detail) = (refusal.shown, refusal.description.map { " (\($0))" } ?? "")
        var verdict = CloseVerdict(
            outcome: .failed, errCode: refusal.code, errCodeDes: refusal.description,
            message: "WeChat Pay answered err_code=\(shown)\(detail); not retried automatically")
        switch refusal.meaning {
        case "ORDERPAID":
            (verdict.outcome, verdict.message) =
                (.paid, "WeChat Pay says the order is paid (\(shown)); it was not closed: reconcile the payment")
        case "ORDERCLOSED":
            (verdict.outcome, verdict.message) = (.closed, "already closed at WeChat Pay (\(shown))")
        case "ORDERNOTEXIST":
            (verdict.outcome, verdict.message) = (.closed, "WeChat Pay has no such order (\(shown)): nothing can be paid")
            verdict.errCode = "ORDERNOTEXIST"
        case "USER_PAYING":
            (verdict.outcome, verdict.message) =
                (.paymentUnderWay, "the user is paying right now (\(shown)): not closed; will confirm with an order query")
        case "SYSTEMERROR":
            (verdict.outcome, verdict.message) = (.retry, "WeChat Pay had an internal error (\(shown))\(detail); will retry")
        case "FREQUENCY_LIMITED":
            (verdict.outcome, verdict.message) =
                (.retry, "WeChat Pay rate-limited the call (\(shown))\(detail); will retry later")
            verdict.symptom = .frequencyLimited
        case "RULE_LIMIT":
            (verdict.outcome, verdict.message) = (.retry, "WeChat Pay refused for now (\(shown))\(detail); will retry")
        case "SIGNERROR":
            verdict.message = "WeChat Pay rejected the signature (\(shown))\(detail): \(signatureHint(api))"
        case "XML_FORMAT_ERROR", "REQUIRE_POST_METHOD":
            verdict.message = "WeChat Pay rejected the request format (\(shown))\(detail): a closeorderd bug, please report it"
        case "PARAM_ERROR", "INVALID_REQUEST", "NO_AUTH":
            verdict.message = "WeChat Pay refused the request (\(shown))\(detail); not retried automatically"
        default:
            break
        }
        return verdict
    }

    /// The conclusion of a refused order query.
    public static func queryConclusion(_ refusal: Refusal, api: APIVersion) -> QueryConclusion {
        let shown = refusal.shown
        switch refusal.meaning {
        case "ORDERNOTEXIST":
            return .closed(nil, errCode: "ORDERNOTEXIST")
        case "SYSTEMERROR", "RULE_LIMIT":
            return .unclear(
                UnusableAnswer(message: "WeChat Pay could not answer the query (\(shown)); will retry"), errCode: refusal.code)
        case "FREQUENCY_LIMITED":
            return .unclear(
                UnusableAnswer(message: "WeChat Pay rate-limited the query (\(shown)); will retry", symptom: .frequencyLimited),
                errCode: refusal.code)
        default:
            return .failed(
                errCode: refusal.code, errCodeDes: refusal.description,
                message: "WeChat Pay refused the order query (err_code=\(shown)): \(signatureHint(api))")
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
        case .v3: "check serial_no and the merchant private key"
        }
    }
}
