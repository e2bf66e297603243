import Testing

@testable import WeChatPay

/// One table gives each error code its meaning, whichever API the answer came in.
@Suite struct AnswerTableTests {
    static let closeTable: [(v2: String, v3: String, CloseOutcome)] = [
        ("ORDERPAID", "ORDER_PAID", .paid), ("ORDERCLOSED", "ORDER_CLOSED", .closed),
        ("ORDERNOTEXIST", "ORDER_NOT_EXIST", .closed), ("SYSTEMERROR", "SYSTEM_ERROR", .retry),
        ("FREQUENCY_LIMITED", "FREQUENCY_LIMITED", .retry), ("RULE_LIMIT", "RULE_LIMIT", .retry),
        ("SIGNERROR", "SIGN_ERROR", .failed), ("XML_FORMAT_ERROR", "XML_FORMAT_ERROR", .failed),
        ("REQUIRE_POST_METHOD", "REQUIRE_POST_METHOD", .failed), ("PARAM_ERROR", "PARAM_ERROR", .failed),
        ("INVALID_REQUEST", "INVALID_REQUEST", .failed), ("NO_AUTH", "NO_AUTH", .failed),
        ("SOMETHING_NEW", "SOMETHING_NEW", .failed),
    ]

    static func v3(_ code: String) -> Refusal {
        Refusal(meaning: AnswerTable.normalised(code), code: code, description: "d", shown: code)
    }

    @Test(arguments: closeTable)
    func aCodeMeansTheSameInBothSpellingsAndBothAPIs(v2: String, v3: String, outcome: CloseOutcome) {
        let fromV2 = AnswerTable.closeVerdict(Refusal(v2Code: v2, description: "d"), api: .v2)
        let fromV3 = AnswerTable.closeVerdict(Self.v3(v3), api: .v3)
        #expect(fromV2.outcome == outcome)
        #expect(fromV3.outcome == outcome)
        #expect(fromV2.symptom == fromV3.symptom)
        #expect(fromV2.message.contains(v2) && fromV3.message.contains(v3), "the message names the code as sent")
        #expect(fromV3.errCode == (v3 == "ORDER_NOT_EXIST" ? "ORDERNOTEXIST" : v3), "recorded as sent")
    }

    @Test func everyKnownCodeHasAnEntryOfItsOwn() {
        let unknown = AnswerTable.closeVerdict(Refusal(v2Code: "SOMETHING_NEW", description: nil), api: .v3).message
        for code in AnswerTable.knownCodes {
            let message = AnswerTable.closeVerdict(Refusal(v2Code: code, description: nil), api: .v3).message
            #expect(message.replacingOccurrences(of: code, with: "SOMETHING_NEW") != unknown, "\(code) falls to the default")
        }
    }

    @Test func aUserPayingIsV3sAloneAndAV2SpellingOfAV3CodeIsNotRenamed() {
        #expect(AnswerTable.closeVerdict(Self.v3("USER_PAYING"), api: .v3).outcome == .paymentUnderWay)
        #expect(AnswerTable.closeVerdict(Refusal(v2Code: "USERPAYING", description: nil), api: .v2).outcome == .failed)
        #expect(AnswerTable.closeVerdict(Refusal(v2Code: "ORDER_CLOSED", description: nil), api: .v2).outcome == .failed)
    }

    @Test func noSuchOrderIsRecordedUnderOneCode() {
        #expect(AnswerTable.closeVerdict(Self.v3("ORDER_NOT_EXIST"), api: .v3).errCode == "ORDERNOTEXIST")
        #expect(AnswerTable.queryConclusion(Self.v3("ORDER_NOT_EXIST"), api: .v3) == .closed(nil, errCode: "ORDERNOTEXIST"))
        #expect(
            AnswerTable.queryConclusion(Refusal(v2Code: "ORDERNOTEXIST", description: nil), api: .v2)
                == .closed(nil, errCode: "ORDERNOTEXIST"))
    }

    @Test func onlyRateLimitingIsASymptom() {
        for code in AnswerTable.knownCodes {
            let symptom = AnswerTable.closeVerdict(Refusal(v2Code: code, description: nil), api: .v2).symptom
            #expect((symptom == .frequencyLimited) == (code == "FREQUENCY_LIMITED"), "\(code)")
        }
    }

    @Test(arguments: ["SYSTEMERROR", "FREQUENCY_LIMITED", "RULE_LIMIT"])
    func aQueryRefusedForNowIsAskedAgain(code: String) {
        guard case .unclear(_, let errCode) = AnswerTable.queryConclusion(Refusal(v2Code: code, description: nil), api: .v2)
        else {
            Issue.record("\(code) is final")
            return
        }
        #expect(errCode == code)
    }

    @Test func aSignatureErrorTellsWhichKeysToCheck() {
        #expect(AnswerTable.closeVerdict(Refusal(v2Code: "SIGNERROR", description: nil), api: .v2).message.contains("sign_type"))
        #expect(AnswerTable.closeVerdict(Self.v3("SIGN_ERROR"), api: .v3).message.contains("serial_no"))
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

    // MARK: What a v3 status means beside the body's code

    @Test(arguments: [
        (202, "ORDER_CLOSED" as String?, "USER_PAYING" as String?), (202, nil, "USER_PAYING"),
        (400, "ORDER_CLOSED", "ORDERCLOSED"), (429, "ORDER_PAID", "ORDERPAID"), (404, "ORDER_NOT_EXIST", "ORDERNOTEXIST"),
        (429, "SYSTEM_ERROR", "FREQUENCY_LIMITED"), (429, nil, "FREQUENCY_LIMITED"), (401, "PARAM_ERROR", "PARAM_ERROR"),
        (401, nil, "SIGNERROR"), (401, "WHO_KNOWS", "SIGNERROR"), (403, "RULE_LIMIT", "RULE_LIMIT"),
        (404, nil, nil), (404, "NOT_FOUND", nil), (400, "WHO_KNOWS", nil), (200, nil, nil),
    ])
    func aV3CloseIsReadByStatusAndCodeInOrder(status: Int, code: String?, meaning: String?) {
        #expect(V3Answer.closeMeaning(status: status, code: code) == meaning)
    }

    @Test(arguments: [
        (404, nil as String?, "ORDERNOTEXIST" as String?), (404, "ORDER_NOT_EXIST", "ORDERNOTEXIST"),
        (400, "ORDERNOTEXIST", "ORDERNOTEXIST"), (404, "NOT_FOUND", nil), (429, nil, "FREQUENCY_LIMITED"),
        (400, "FREQUENCY_LIMITED", "FREQUENCY_LIMITED"), (500, "SYSTEM_ERROR", "SYSTEMERROR"), (202, "USER_PAYING", nil),
        (403, "RULE_LIMIT", nil),
    ])
    func aV3QueryIsReadByStatusAndCodeInOrder(status: Int, code: String?, meaning: String?) {
        #expect(V3Answer.queryMeaning(status: status, code: code) == meaning)
    }
}
