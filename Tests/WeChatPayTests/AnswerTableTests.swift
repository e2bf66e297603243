import Testing

@testable import WeChatPay

/// One table gives each error code its meaning, whichever API the answer came in.
@Suite struct AnswerTableTests {
    static let closeTable: [(v2: String, v3: String, CloseOutcome)] = [
        ("ORDERPAID", "ORDER_PAID", .paid), ("ORDERCLOSED", "ORDER_CLOSED", .closed),
        ("ORDERNOTEXIST", "ORDER_NOT_EXIST", .closed), ("USERPAYING", "USER_PAYING", .paymentUnderWay),
        ("SYSTEMERROR", "SYSTEM_ERROR", .retry), ("FREQUENCY_LIMITED", "FREQUENCY_LIMITED", .retry),
        ("RULE_LIMIT", "RULE_LIMIT", .retry), ("SIGNERROR", "SIGN_ERROR", .failed),
        ("XML_FORMAT_ERROR", "XML_FORMAT_ERROR", .failed), ("REQUIRE_POST_METHOD", "REQUIRE_POST_METHOD", .failed),
        ("PARAM_ERROR", "PARAM_ERROR", .failed), ("INVALID_REQUEST", "INVALID_REQUEST", .failed), ("NO_AUTH", "NO_AUTH", .failed),
        ("SOMETHING_NEW", "SOMETHING_NEW", .failed),
    ]

    @Test(arguments: closeTable)
    func aCodeMeansTheSameInBothSpellingsAndBothAPIs(v2: String, v3: String, outcome: CloseOutcome) {
        let fromV2 = AnswerTable.closeVerdict(code: v2, description: "d", api: .v2)
        let fromV3 = AnswerTable.closeVerdict(code: v3, description: "d", api: .v3)
        #expect(fromV2.outcome == outcome)
        #expect(fromV3.outcome == outcome)
        #expect(fromV2.symptom == fromV3.symptom)
        #expect(fromV2.message.contains(v2) && fromV3.message.contains(v3), "the message names the code as sent")
    }

    @Test func everyKnownCodeHasAnEntryOfItsOwn() {
        let unknown = AnswerTable.closeVerdict(code: "SOMETHING_NEW", description: nil, api: .v2).message
        for code in AnswerTable.knownCodes {
            let message = AnswerTable.closeVerdict(code: code, description: nil, api: .v2).message
            #expect(
                message.replacingOccurrences(of: code, with: "SOMETHING_NEW") != unknown, "\(code) falls to the default")
        }
        #expect(Set(Self.closeTable.map { AnswerTable.normalised($0.v3) }).isSuperset(of: AnswerTable.knownCodes))
    }

    @Test func noSuchOrderIsRecordedUnderOneCode() {
        #expect(AnswerTable.closeVerdict(code: "ORDER_NOT_EXIST", description: nil, api: .v3).errCode == "ORDERNOTEXIST")
        #expect(AnswerTable.queryConclusion(code: "ORDER_NOT_EXIST", description: nil, api: .v3) == .closed(nil, errCode: "ORDERNOTEXIST"))
        #expect(AnswerTable.queryConclusion(code: "ORDERNOTEXIST", description: nil, api: .v2) == .closed(nil, errCode: "ORDERNOTEXIST"))
    }

    @Test func onlyRateLimitingIsASymptom() {
        for code in AnswerTable.knownCodes {
            let symptom = AnswerTable.closeVerdict(code: code, description: nil, api: .v2).symptom
            #expect((symptom == .frequencyLimited) == (code == "FREQUENCY_LIMITED"), "\(code)")
        }
    }

    @Test(arguments: ["SYSTEMERROR", "SYSTEM_ERROR", "FREQUENCY_LIMITED", "RULE_LIMIT"])
    func aQueryRefusedForNowIsAskedAgain(code: String) {
        guard case .unclear(_, let errCode) = AnswerTable.queryConclusion(code: code, description: nil, api: .v3) else {
            Issue.record("\(code) is final")
            return
        }
        #expect(errCode == code)
    }

    @Test func aSignatureErrorTellsWhichKeysToCheck() {
        #expect(AnswerTable.closeVerdict(code: "SIGNERROR", description: nil, api: .v2).message.contains("sign_type"))
        #expect(AnswerTable.closeVerdict(code: "SIGN_ERROR", description: nil, api: .v3).message.contains("serial_no"))
    }

    @Test(arguments: TradeState.allCases)
    func aTradeStateConcludesTheSameWhateverTheAPI(state: TradeState) {
        let conclusion = AnswerTable.queryConclusion(tradeState: state, payment: PaymentDetails())
        switch state {
        case .success, .refund: #expect(conclusion == .paid(state, PaymentDetails()))
        case .closed, .revoked, .payError: #expect(conclusion == .closed(state, errCode: nil))
        case .notPaid: #expect(conclusion == .notPaid)
        case .userPaying, .accept: #expect(conclusion == .paymentUnderWay(state))
        }
    }
}
