import OrderStore
import WeChatPay

/// How one answer reads in the history (`close_attempts`), and what it tells the breaker.
struct HistoryLine: Equatable {
    var call: CallKind
    var outcome: HistoryOutcome
    var errCode: String?
    var errCodeDes: String?
    var message: String
    var symptom: FailureSymptom?
}

extension AttemptPolicy.Answer {
    /// The history line for this answer.
    var historyLine: HistoryLine {
        switch self {
        case .close(let verdict):
            return HistoryLine(
                call: .closeorder, outcome: verdict.outcome.historyOutcome, errCode: verdict.errCode,
                errCodeDes: verdict.errCodeDes, message: verdict.message, symptom: verdict.symptom)
        case .query(let conclusion):
            return conclusion.historyLine
        }
    }

    /// Whether WeChat Pay answered in a way that says it is up: any answer but an unusable one,
    /// and a rate-limited one too.
    var isUsable: Bool {
        switch self {
        case .close(let verdict): verdict.outcome != .retry || verdict.symptom == .frequencyLimited
        case .query(.unclear(let unusable, _)): unusable.symptom == .frequencyLimited
        case .query: true
        }
    }
}

extension CloseOutcome {
    var historyOutcome: HistoryOutcome {
        switch self {
        case .closed: .closed
        case .paid: .paid
        case .retry: .retry
        case .failed: .failed
        case .paymentUnderWay: .paying
        }
    }
}

extension QueryConclusion {
    var historyLine: HistoryLine {
        switch self {
        case .paid(let state, _):
            HistoryLine(call: .orderquery, outcome: .paid, message: "order query: trade_state=\(state.rawValue)")
        case .closed(let state, let errCode):
            HistoryLine(
                call: .orderquery, outcome: .closed, errCode: errCode,
                message: "order query: \(state.map { "trade_state=\($0.rawValue)" } ?? errCode ?? "closed")")
        case .notPaid:
            HistoryLine(call: .orderquery, outcome: .notPaid, message: "order query: trade_state=NOTPAY")
        case .paymentUnderWay(let state):
            HistoryLine(call: .orderquery, outcome: .paying, message: "order query: trade_state=\(state.rawValue)")
        case .unclear(let unusable, let errCode):
            HistoryLine(
                call: .orderquery, outcome: .retry, errCode: errCode, message: "order query: \(unusable.message)",
                symptom: unusable.symptom)
        case .failed(let errCode, _, let message):
            HistoryLine(call: .orderquery, outcome: .failed, errCode: errCode, message: "order query: \(message)")
        }
    }
}
