import ConfigurationFile
import OrderStore
import WeChatPay

/// Every rule about one attempt at one order, as a pure function: given the order, the
/// answers so far and the circumstances, the next step is a call (an order query or the
/// close) or the record to write. The reaper only makes the calls the policy asks for.
///
/// ```swift
/// let policy = AttemptPolicy(settings: configuration.reaper)
/// policy.next(for: order, after: [], in: circumstances)           // .close (or .query first)
/// policy.next(for: order, after: [.close(verdict)], in: circumstances)  // .record(decision)
/// ```
///
/// An attempt is at most three calls: a query first where the outcome is unknown, the close,
/// and a query after it where the answer asks for one.
public struct AttemptPolicy: Sendable, Equatable {
    public var confirm: DaemonConfiguration.ConfirmMode
    public var maxAttempts: Int
    public var backoff: Backoff
    /// How long to wait before asking again about a payment under way.
    public var paymentUnderWayWaitSeconds: Int64

    public init(settings: DaemonConfiguration.ReaperSettings) {
        confirm = settings.confirm
        maxAttempts = settings.maxAttempts
        backoff = settings.backoff
        paymentUnderWayWaitSeconds = Int64(min(max(settings.backoffBaseSeconds, 1), 60).rounded(.up))
    }

    /// One answer an attempt got.
    public enum Answer: Sendable, Equatable {
        case close(CloseVerdict)
        case query(QueryConclusion)
    }

    /// What the reaper does next.
    public enum Step: Sendable, Equatable {
        case query
        case close
        case record(Decision)
    }

    /// What the policy may know beyond the order and its answers.
    public struct Circumstances: Sendable, Equatable {
        /// Seconds since 1970, as rows record time.
        public var now: Int64
        /// The outage breaker is open: outage failures do not count against `max_attempts`.
        public var outageUnderWay: Bool
        /// Where in the backoff window a retry lands, from 0 to 1 (full jitter).
        public var jitter: Double

        public init(now: Int64, outageUnderWay: Bool, jitter: Double) {
            self.now = now
            self.outageUnderWay = outageUnderWay
            self.jitter = jitter
        }
    }

    /// The row an attempt leaves behind.
    public struct Decision: Sendable, Equatable {
        public var state: OrderState
        public var errCode: String?
        public var errCodeDes: String?
        /// A sentence an operator can act on.
        public var message: String
        /// When a `pending` row is due again.
        public var nextAttemptAt: Int64?
        /// The attempt does not count against `max_attempts`.
        public var refundsAttempt = false
        public var tradeState: TradeState?
        public var payment: PaymentDetails?

        public init(state: OrderState, errCode: String? = nil, errCodeDes: String? = nil, message: String) {
            self.state = state
            self.errCode = errCode
            self.errCodeDes = errCodeDes
            self.message = message
        }

        /// An order that is not sent at all: `failed`, saying why.
        public static func notSent(_ reason: String) -> Decision {
            Decision(state: .failed, message: "not sent: \(reason)")
        }
    }

    /// The next step of the attempt at `order`, after `answers`.
    public func next(for order: ClaimedOrder, after answers: [Answer], in now: Circumstances) -> Step {
        switch (answers.dropLast().last, answers.last) {
        case (_, nil):
            return needsQueryFirst(order) ? .query : .close
        case (_, .close(let verdict)):
            return afterClose(verdict, order: order, now: now)
        case (.close(let verdict)?, .query(let conclusion)):
            return .record(afterConfirmingQuery(conclusion, close: verdict, order: order, now: now))
        case (_, .query(let conclusion)):
            if conclusion == .notPaid { return .close }
            return .record(conclude(conclusion, afterClose: false, order: order, now: now))
        }
    }

    /// Where the outcome of earlier calls is unknown, or the configuration asks, the close
    /// waits for an order query.
    func needsQueryFirst(_ order: ClaimedOrder) -> Bool {
        confirm == .before || order.recoveredFromExpiredLease
            || order.previousErrCode == "FREQUENCY_LIMITED"
            || [TradeState.userPaying.rawValue, TradeState.accept.rawValue].contains(order.previousTradeState)
            || (order.attempt >= maxAttempts && order.attempt > 1)
    }

    private func afterClose(_ verdict: CloseVerdict, order: ClaimedOrder, now: Circumstances) -> Step {
        switch verdict.outcome {
        // Paid: the query records what was paid, for reconciliation. A payment under way: never
        // close under a paying user; ask what became of it.
        case .paid, .paymentUnderWay: .query
        case .closed where confirm == .after: .query
        case .closed: .record(Decision(verdict, state: .closed))
        case .failed: .record(Decision(verdict, state: .failed))
        case .retry:
            .record(
                retry(
                    verdict.message, errCode: verdict.errCode, errCodeDes: verdict.errCodeDes, symptom: verdict.symptom,
                    order: order, now: now))
        }
    }

    private func afterConfirmingQuery(
        _ conclusion: QueryConclusion, close verdict: CloseVerdict, order: ClaimedOrder, now: Circumstances
    ) -> Decision {
        switch (verdict.outcome, conclusion) {
        case (.paid, .paid(let state, let details)):
            var decision = Decision(verdict, state: .paid)
            decision.tradeState = state
            decision.payment = details
            return decision
        case (.paid, _):
            return Decision(verdict, state: .paid)
        case (.closed, .unclear), (.closed, .failed):
            return Decision(verdict, state: .closed, note: "; the confirming order query gave no answer")
        case (.closed, _):
            return conclude(conclusion, afterClose: true, order: order, now: now)
        case (_, .notPaid), (_, .unclear), (_, .failed):
            // The close said a user is paying; a query that cannot tell otherwise does not overrule it.
            return conclude(.paymentUnderWay(.userPaying), afterClose: false, order: order, now: now)
        default:
            return conclude(conclusion, afterClose: false, order: order, now: now)
        }
    }

    /// What an order query's answer means for the row.
    private func conclude(_ conclusion: QueryConclusion, afterClose: Bool, order: ClaimedOrder, now: Circumstances)
        -> Decision
    {
        switch conclusion {
        case .paid(let state, let details):
            var decision = Decision(
                state: .paid,
                message: "the order query says \(state.rawValue): the order was paid"
                    + (afterClose ? " although the close succeeded" : "") + "; it is not closed: reconcile the payment")
            decision.tradeState = state
            decision.payment = details
            return decision
        case .closed(let state, let errCode):
            var decision = Decision(
                state: .closed, errCode: errCode,
                message: errCode == "ORDERNOTEXIST"
                    ? "WeChat Pay has no such order (ORDERNOTEXIST): nothing can be paid"
                    : "the order query says \(state?.rawValue ?? "closed"): nobody can pay it")
            decision.tradeState = state
            return decision
        case .notPaid:
            var decision = retry(
                "the close succeeded but the order query still says NOTPAY; will close again", errCode: nil,
                errCodeDes: nil, symptom: nil, order: order, now: now)
            decision.tradeState = .notPaid
            return decision
        case .paymentUnderWay(let state):
            let wait = paymentUnderWayWaitSeconds
            var decision = Decision(
                state: .pending, message: "a payment is under way (\(state.rawValue)): not closed; will ask again in \(wait) s")
            decision.nextAttemptAt = now.now + wait
            decision.refundsAttempt = true
            decision.tradeState = state
            return decision
        case .unclear(let unusable, let errCode):
            return retry(
                unusable.message, errCode: errCode, errCodeDes: unusable.errCodeDes, symptom: unusable.symptom, order: order,
                now: now)
        case .failed(let errCode, let errCodeDes, let message):
            return Decision(state: .failed, errCode: errCode, errCodeDes: errCodeDes, message: message)
        }
    }

    /// A transient failure: back off, or give up after `max_attempts`. Failures during an
    /// outage (the breaker is open) do not count.
    private func retry(
        _ message: String, errCode: String?, errCodeDes: String?, symptom: FailureSymptom?, order: ClaimedOrder,
        now: Circumstances
    ) -> Decision {
        let number = order.attempt
        let outage = symptom?.isOutage == true && now.outageUnderWay
        if !outage && number >= maxAttempts {
            return Decision(
                state: .failed, errCode: errCode, errCodeDes: errCodeDes,
                message: message + " (gave up: attempt \(number) of \(maxAttempts))")
        }
        var decision = Decision(
            state: .pending, errCode: errCode, errCodeDes: errCodeDes,
            message: message + (outage ? " (WeChat Pay looks down: this attempt does not count)" : ""))
        decision.refundsAttempt = outage
        decision.nextAttemptAt = backoff.nextAttempt(afterAttempt: max(number, 1), now: now.now, jitter: now.jitter)
        return decision
    }
}

extension AttemptPolicy.Decision {
    /// A final state taken from a close's verdict.
    init(_ verdict: CloseVerdict, state: OrderState, note: String = "") {
        self.init(state: state, errCode: verdict.errCode, errCodeDes: verdict.errCodeDes, message: verdict.message + note)
    }
}
