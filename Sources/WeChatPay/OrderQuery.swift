/// `trade_state` in an `/pay/orderquery` answer.
public enum TradeState: String, Sendable, CaseIterable, Equatable {
    case success = "SUCCESS"
    case refund = "REFUND"
    case notPaid = "NOTPAY"
    case closed = "CLOSED"
    case revoked = "REVOKED"
    case userPaying = "USERPAYING"
    case payError = "PAYERROR"
    case accept = "ACCEPT"
}

/// What an order query says about a payment, for reconciling a late one.
public struct PaymentDetails: Sendable, Equatable {
    public var transactionID: String?
    public var totalFee: Int?
    public var timeEnd: String?
    public var tradeType: String?

    public init(transactionID: String? = nil, totalFee: Int? = nil, timeEnd: String? = nil, tradeType: String? = nil) {
        self.transactionID = transactionID
        self.totalFee = totalFee
        self.timeEnd = timeEnd
        self.tradeType = tradeType
    }
}

/// The reading of one order query, as the reaper acts on it.
public enum QueryConclusion: Sendable, Equatable {
    /// `SUCCESS` or `REFUND`: the order was paid. Never close it.
    case paid(TradeState, PaymentDetails)
    /// `CLOSED`, `REVOKED`, `PAYERROR`: nobody can pay it; or `ORDERNOTEXIST`: WeChat never saw it.
    case closed(TradeState?, errCode: String?)
    /// `NOTPAY`: not paid, so it can be closed now.
    case notPaid
    /// `USERPAYING` or `ACCEPT`: a payment is under way. Do not close; ask again later.
    case paymentUnderWay(TradeState)
    /// No usable answer, or `SYSTEMERROR`: ask again later.
    case unclear(UnusableAnswer, errCode: String?)
    /// A configuration or client error (e.g. `SIGNERROR`).
    case failed(errCode: String?, errCodeDes: String?, message: String)
}

/// Reads WeChat Pay's answer to `/pay/orderquery`.
public enum OrderQueryResponse {
    /// Success needs `return_code`, `result_code` and `trade_state` all checked, and the
    /// signature verified; an answer about another order is not believed.
    public static func interpret(status: Int, body: [UInt8], order: OrderIdentity, key: MerchantKey) -> QueryConclusion {
        let fields: [String: String]
        switch V2Answer.verifiedFields(status: status, body: body, order: order, key: key) {
        case .failure(let unusable): return .unclear(unusable, errCode: nil)
        case .success(let verified): fields = verified
        }
        guard fields["result_code"] == "SUCCESS" else {
            // A malformed answer (no result_code, or FAIL without err_code) is retried, never final.
            guard fields["result_code"] == "FAIL", let code = fields["err_code"], !code.isEmpty else {
                return .unclear(
                    UnusableAnswer(
                        message:
                            "query answer has result_code=\(fields["result_code"].map(Untrusted.quote) ?? "missing") "
                            + "and err_code=\(fields["err_code"].map(Untrusted.quote) ?? "missing"); will retry"),
                    errCode: nil)
            }
            return AnswerTable.queryConclusion(Refusal(v2Code: code, description: fields["err_code_des"]), api: .v2)
        }
        // A trade state is believed only from an answer that names this order's number.
        if let mismatch = order.v2AnswerMismatch(fields, orderNumberRequired: true) {
            return .unclear(UnusableAnswer(message: "query \(mismatch)"), errCode: nil)
        }
        guard let text = fields["trade_state"], let state = TradeState(rawValue: text) else {
            return .unclear(
                UnusableAnswer(
                    message: "query answer has trade_state=\(fields["trade_state"].map(Untrusted.quote) ?? "missing"); will retry"
                ),
                errCode: nil)
        }
        return AnswerTable.queryConclusion(
            tradeState: state,
            payment: PaymentDetails(
                transactionID: fields["transaction_id"], totalFee: fields["total_fee"].flatMap { Int($0) },
                timeEnd: fields["time_end"], tradeType: fields["trade_type"]))
    }
}
