import ConfigurationFile
import OrderStore
import Testing
import WeChatPay

@testable import Reaper

/// The rules of one attempt, as a table: no database, no HTTP, no clock.
@Suite struct AttemptPolicyTests {
    static let now: Int64 = 1_800_000_000
    /// No outage, the latest retry the backoff allows.
    static let calm = AttemptPolicy.Circumstances(now: now, outageUnderWay: false, jitter: 1)

    static func policy(confirm: DaemonConfiguration.ConfirmMode = .none, maxAttempts: Int = 5) -> AttemptPolicy {
        var settings = DaemonConfiguration.ReaperSettings()
        settings.confirm = confirm
        settings.maxAttempts = maxAttempts
        settings.backoffBaseSeconds = 30
        settings.backoffMaxSeconds = 3600
        return AttemptPolicy(settings: settings)
    }

    static func order(
        attempt: Int = 1, recovered: Bool = false, previousErrCode: String? = nil, previousTradeState: String? = nil
    ) -> ClaimedOrder {
        ClaimedOrder(
            id: 1, mchID: "1900000109", appid: "wx8888888888888888", outTradeNo: "ORDER000001", attempt: attempt,
            leaseToken: "t", leaseExpiresAt: now + 120, recoveredFromExpiredLease: recovered,
            previousErrCode: previousErrCode, previousTradeState: previousTradeState)
    }

    static let closed = CloseVerdict(outcome: .closed, message: "closed by WeChat Pay")
    static let orderPaid = CloseVerdict(outcome: .paid, errCode: "ORDERPAID", message: "paid")
    static let userPaying = CloseVerdict(outcome: .paymentUnderWay, errCode: "USER_PAYING", message: "paying")
    static let systemError = CloseVerdict(outcome: .retry, errCode: "SYSTEMERROR", message: "busy")
    static let noAnswer = CloseVerdict(outcome: .retry, message: "no answer", symptom: .noAnswer)
    static let signError = CloseVerdict(outcome: .failed, errCode: "SIGNERROR", message: "bad key")
    static let payment = PaymentDetails(transactionID: "4200", totalFee: 101, timeEnd: "20261129120000", tradeType: "JSAPI")

    func decision(
        _ policy: AttemptPolicy = policy(), order: ClaimedOrder = order(), after answers: [AttemptPolicy.Answer],
        outage: Bool = false, jitter: Double = 1
    ) throws -> AttemptPolicy.Decision {
        let step = policy.next(
            for: order, after: answers, in: .init(now: Self.now, outageUnderWay: outage, jitter: jitter))
        guard case .record(let decision) = step else {
            throw PolicyTestError(message: "expected a decision after \(answers), got \(step)")
        }
        return decision
    }

    // MARK: The first call

    @Test(arguments: [
        (order(), DaemonConfiguration.ConfirmMode.none, AttemptPolicy.Step.close),
        (order(), .before, .query), (order(), .after, .close),
        (order(recovered: true), .none, .query), (order(previousErrCode: "FREQUENCY_LIMITED"), .none, .query),
        (order(previousErrCode: "SYSTEMERROR"), .none, .close), (order(previousTradeState: "USERPAYING"), .none, .query),
        (order(previousTradeState: "ACCEPT"), .none, .query), (order(previousTradeState: "NOTPAY"), .none, .close),
        (order(attempt: 5), .none, .query), (order(attempt: 4), .none, .close),
    ])
    func aQueryComesFirstWhereTheOutcomeIsUnknown(
        order: ClaimedOrder, confirm: DaemonConfiguration.ConfirmMode, first: AttemptPolicy.Step
    ) {
        #expect(Self.policy(confirm: confirm).next(for: order, after: [], in: Self.calm) == first)
    }

    @Test func aSingleAllowedAttemptIsNotPrecededByAQuery() {
        #expect(Self.policy(maxAttempts: 1).next(for: Self.order(attempt: 1), after: [], in: Self.calm) == .close)
    }

    // MARK: After the close

    @Test func aClosedAnswerClosesTheRow() throws {
        let decision = try decision(after: [.close(Self.closed)])
        #expect(decision.state == .closed)
        #expect(decision.nextAttemptAt == nil)
    }

    @Test(arguments: [AttemptPolicy.Answer.close(orderPaid), .close(userPaying)])
    func paidOrPayingAnswersAreConfirmedWithAQuery(answer: AttemptPolicy.Answer) {
        #expect(Self.policy().next(for: Self.order(), after: [answer], in: Self.calm) == .query)
    }

    @Test func confirmAfterQueriesEveryClose() {
        #expect(Self.policy(confirm: .after).next(for: Self.order(), after: [.close(Self.closed)], in: Self.calm) == .query)
    }

    @Test func aFailedAnswerFailsTheRowAtOnce() throws {
        let decision = try decision(after: [.close(Self.signError)])
        #expect(decision.state == .failed)
        #expect(decision.errCode == "SIGNERROR")
    }

    @Test func aTransientFailureBacksOffWithinTheCap() throws {
        let early = try decision(order: Self.order(attempt: 3), after: [.close(Self.systemError)], jitter: 0)
        let late = try decision(order: Self.order(attempt: 3), after: [.close(Self.systemError)], jitter: 1)
        #expect(early.state == .pending && late.state == .pending)
        #expect(early.nextAttemptAt == Self.now + 1, "at least a second")
        #expect(late.nextAttemptAt == Self.now + 120, "30 s doubled twice")
        #expect(!late.refundsAttempt)
        #expect(late.errCode == "SYSTEMERROR")
    }

    @Test func theLastAttemptGivesUp() throws {
        let decision = try decision(order: Self.order(attempt: 5), after: [.query(.notPaid), .close(Self.systemError)])
        #expect(decision.state == .failed)
        #expect(decision.message.hasSuffix("(gave up: attempt 5 of 5)"))
    }

    @Test func anOutageFailureDuringAnOutageDoesNotCount() throws {
        let during = try decision(order: Self.order(attempt: 5), after: [.query(.notPaid), .close(Self.noAnswer)], outage: true)
        #expect(during.state == .pending)
        #expect(during.refundsAttempt)
        let otherwise = try decision(order: Self.order(attempt: 5), after: [.query(.notPaid), .close(Self.noAnswer)])
        #expect(otherwise.state == .failed, "the breaker is closed: the attempt counts")
        let businessError = try decision(order: Self.order(attempt: 2), after: [.close(Self.systemError)], outage: true)
        #expect(!businessError.refundsAttempt, "SYSTEMERROR is an answer, not an outage")
    }

    // MARK: The confirming query

    @Test func aPaidCloseRecordsThePaymentTheQueryFound() throws {
        let found = try decision(after: [.close(Self.orderPaid), .query(.paid(.success, Self.payment))])
        #expect(found.state == .paid)
        #expect(found.payment == Self.payment)
        #expect(found.tradeState == .success)
        let unanswered = try decision(after: [
            .close(Self.orderPaid), .query(.unclear(UnusableAnswer(message: "?"), errCode: nil)),
        ])
        #expect(unanswered.state == .paid, "paid whatever the query says")
        #expect(unanswered.payment == nil)
    }

    @Test(arguments: [
        (QueryConclusion.paid(.success, payment), OrderState.paid), (.closed(.closed, errCode: nil), .closed),
        (.notPaid, .pending), (.paymentUnderWay(.userPaying), .pending),
        (.unclear(UnusableAnswer(message: "?"), errCode: nil), .closed),
        (.failed(errCode: "X", errCodeDes: nil, message: "m"), .closed),
    ])
    func aConfirmingQueryAfterACloseDecides(conclusion: QueryConclusion, state: OrderState) throws {
        let decision = try decision(Self.policy(confirm: .after), after: [.close(Self.closed), .query(conclusion)])
        #expect(decision.state == state)
        if state == .paid { #expect(decision.message.contains("although the close succeeded")) }
    }

    @Test(arguments: [
        QueryConclusion.notPaid, .unclear(UnusableAnswer(message: "?"), errCode: nil),
        .failed(errCode: "X", errCodeDes: nil, message: "m"),
    ])
    func aUserPayingIsNeverOverruledByAQueryThatCannotTell(conclusion: QueryConclusion) throws {
        let decision = try decision(after: [.close(Self.userPaying), .query(conclusion)])
        #expect(decision.state == .pending)
        #expect(decision.tradeState == .userPaying)
        #expect(decision.refundsAttempt)
        #expect(decision.nextAttemptAt == Self.now + 30, "min(backoff_base_seconds, 60)")
    }

    // MARK: A query first

    @Test func aQueryFirstThatSaysNotPaidLeadsToTheClose() {
        #expect(Self.policy().next(for: Self.order(recovered: true), after: [.query(.notPaid)], in: Self.calm) == .close)
    }

    @Test(arguments: [
        (QueryConclusion.paid(.refund, payment), OrderState.paid, nil as String?),
        (.closed(nil, errCode: "ORDERNOTEXIST"), .closed, "ORDERNOTEXIST"), (.paymentUnderWay(.accept), .pending, nil),
        (.unclear(UnusableAnswer(message: "?"), errCode: "SYSTEMERROR"), .pending, "SYSTEMERROR"),
        (.failed(errCode: "SIGNERROR", errCodeDes: nil, message: "m"), .failed, "SIGNERROR"),
    ])
    func aQueryFirstCanSettleTheOrderWithoutAClose(conclusion: QueryConclusion, state: OrderState, errCode: String?) throws {
        let decision = try decision(order: Self.order(recovered: true), after: [.query(conclusion)])
        #expect(decision.state == state)
        #expect(decision.errCode == errCode)
    }

    // MARK: Rules pinned one by one

    @Test(arguments: [
        (QueryConclusion.paid(.success, payment), OrderState.paid), (.closed(.closed, errCode: nil), .closed),
        (.paymentUnderWay(.accept), .pending),
    ])
    func aUserPayingCloseTakesWhatTheQueryFound(conclusion: QueryConclusion, state: OrderState) throws {
        let found = try decision(after: [.close(Self.userPaying), .query(conclusion)])
        #expect(found.state == state)
    }

    @Test func aPaidCloseStaysPaidWhateverTheQuerySays() throws {
        let found = try decision(after: [.close(Self.orderPaid), .query(.closed(.closed, errCode: nil))])
        #expect(found.state == .paid)
        #expect(found.errCode == "ORDERPAID")
    }

    @Test func aQueryFirstRecordsTheTradeStateItFound() throws {
        let found = try decision(order: Self.order(recovered: true), after: [.query(.closed(.revoked, errCode: nil))])
        #expect(found.state == .closed)
        #expect(found.tradeState == .revoked)
        #expect(found.message.contains("REVOKED"))
    }

    @Test func theMessagesSayWhatHappened() throws {
        let outage = try decision(order: Self.order(attempt: 2), after: [.close(Self.noAnswer)], outage: true)
        #expect(outage.message.hasSuffix("(WeChat Pay looks down: this attempt does not count)"))
        let unanswered = try decision(
            Self.policy(confirm: .after),
            after: [.close(Self.closed), .query(.unclear(UnusableAnswer(message: "?"), errCode: nil))])
        #expect(unanswered.message.hasSuffix("; the confirming order query gave no answer"))
    }

    @Test(arguments: [(0.2, 1 as Int64), (30, 30), (45.5, 46), (600, 60)])
    func aPaymentUnderWayIsAskedAboutAgainAfterTheBaseClampedToAMinute(base: Double, wait: Int64) throws {
        var settings = DaemonConfiguration.ReaperSettings()
        settings.backoffBaseSeconds = base
        settings.backoffMaxSeconds = max(base, 3600)
        let found = try decision(AttemptPolicy(settings: settings), after: [.close(Self.userPaying), .query(.notPaid)])
        #expect(found.nextAttemptAt == Self.now + wait)
    }

    @Test func theDescriptionOfAnErrorIsKept() throws {
        let verdict = CloseVerdict(outcome: .failed, errCode: "SIGNERROR", errCodeDes: "签名错误", message: "m")
        #expect(try decision(after: [.close(verdict)]).errCodeDes == "签名错误")
    }

    @Test func aNotPaidAfterAConfirmedCloseOnTheLastAttemptGivesUp() throws {
        let found = try decision(
            Self.policy(confirm: .after, maxAttempts: 3), order: Self.order(attempt: 3),
            after: [.query(.notPaid), .close(Self.closed), .query(.notPaid)])
        #expect(found.state == .failed)
        #expect(found.tradeState == .notPaid)
    }

    @Test func noSequenceOfAnswersAsksForAFourthCall() {
        let closes = [Self.closed, Self.orderPaid, Self.userPaying, Self.systemError, Self.signError]
        let queries: [QueryConclusion] = [
            .paid(.success, Self.payment), .closed(nil, errCode: "ORDERNOTEXIST"), .notPaid, .paymentUnderWay(.userPaying),
            .unclear(UnusableAnswer(message: "?"), errCode: nil), .failed(errCode: nil, errCodeDes: nil, message: "m"),
        ]
        for confirm in DaemonConfiguration.ConfirmMode.allCases {
            let policy = Self.policy(confirm: confirm)
            for order in [Self.order(), Self.order(recovered: true)] {
                var sequences: [[AttemptPolicy.Answer]] = [[]]
                for depth in 0...3 {
                    var next: [[AttemptPolicy.Answer]] = []
                    for sequence in sequences {
                        switch policy.next(for: order, after: sequence, in: Self.calm) {
                        case .record: continue
                        case .close: next += closes.map { sequence + [.close($0)] }
                        case .query: next += queries.map { sequence + [.query($0)] }
                        }
                    }
                    #expect(depth < 3 || next.isEmpty, "a fourth call after \(next.first ?? [])")
                    sequences = next
                }
            }
        }
    }
}

struct PolicyTestError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

/// How each answer reads in the history, and which answers tell the breaker WeChat Pay is up.
@Suite struct HistoryLineTests {
    @Test(arguments: [
        (CloseOutcome.closed, HistoryOutcome.closed), (.paid, .paid), (.retry, .retry), (.failed, .failed),
        (.paymentUnderWay, .paying),
    ])
    func aCloseIsRecordedUnderItsOutcome(outcome: CloseOutcome, recorded: HistoryOutcome) {
        let line = AttemptPolicy.Answer.close(CloseVerdict(outcome: outcome, errCode: "E", errCodeDes: "D", message: "m"))
            .historyLine
        #expect(line == HistoryLine(call: .closeorder, outcome: recorded, errCode: "E", errCodeDes: "D", message: "m"))
    }

    @Test func aQueryIsRecordedWithWhatItFound() {
        let lines = [
            QueryConclusion.paid(.success, PaymentDetails()), .closed(nil, errCode: "ORDERNOTEXIST"), .notPaid,
            .paymentUnderWay(.userPaying), .unclear(UnusableAnswer(message: "busy", symptom: .serverError), errCode: "X"),
            .failed(errCode: "SIGNERROR", errCodeDes: "d", message: "bad key"),
        ].map { AttemptPolicy.Answer.query($0).historyLine }
        #expect(lines.allSatisfy { $0.call == .orderquery })
        #expect(lines.map(\.outcome) == [.paid, .closed, .notPaid, .paying, .retry, .failed])
        #expect(
            lines.map(\.message) == [
                "order query: trade_state=SUCCESS", "order query: ORDERNOTEXIST", "order query: trade_state=NOTPAY",
                "order query: trade_state=USERPAYING", "order query: busy", "order query: bad key",
            ])
        #expect(lines.map(\.errCode) == [nil, "ORDERNOTEXIST", nil, nil, "X", "SIGNERROR"])
        #expect(lines[4].symptom == .serverError)
    }

    @Test func onlyAnswersFromAWorkingWeChatPayCountAsUsable() {
        let limited = UnusableAnswer(message: "slow down", symptom: .frequencyLimited)
        let down = UnusableAnswer(message: "no answer", symptom: .noAnswer)
        #expect(AttemptPolicy.Answer.close(CloseVerdict(outcome: .closed, message: "m")).isUsable)
        #expect(AttemptPolicy.Answer.close(CloseVerdict(outcome: .failed, message: "m")).isUsable)
        #expect(AttemptPolicy.Answer.close(CloseVerdict(limited)).isUsable, "a rate limit is an answer")
        #expect(!AttemptPolicy.Answer.close(CloseVerdict(down)).isUsable)
        #expect(AttemptPolicy.Answer.query(.notPaid).isUsable)
        #expect(AttemptPolicy.Answer.query(.unclear(limited, errCode: nil)).isUsable)
        #expect(!AttemptPolicy.Answer.query(.unclear(down, errCode: nil)).isUsable)
    }
}
