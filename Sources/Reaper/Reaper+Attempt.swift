import Foundation
import Logging
import OrderStore
import WeChatPay

/// One attempt at one claimed order: validation, the calls (an order query where the
/// outcome is unclear or the configuration asks for one, the close), and the decision.
extension Reaper {
    func close(_ order: ClaimedOrder, configuration: DaemonConfiguration, client: WeChatPayClient) async {
        var attempt = Attempt(order: order, settings: configuration.reaper, startedAt: clock())
        // No call may be in flight when the lease ends, or another poll could claim the order and
        // call for it at the same time. `clock()` counts whole seconds, so a second is taken off.
        attempt.notAfter = .now + .seconds(order.leaseExpiresAt - clock() - 1)
        let identity = OrderIdentity(
            appid: order.appid, mchID: order.mchID, outTradeNo: order.outTradeNo,
            subAppID: order.subAppID, subMchID: order.subMchID)
        let merchant = configuration.merchant(order.mchID)
        let problem: String? =
            if case .v3 = merchant?.credentials { identity.v3Problem() } else { identity.problem() }
        if let problem {
            attempt.finish(.failed, message: "not sent: \(problem)")
        } else if let merchant {
            await run(&attempt, identity: identity, merchant: merchant, client: client)
        } else {
            attempt.finish(
                .failed,
                message: "not sent: no key is configured for mch_id \(order.mchID): add it under merchants in the configuration")
        }
        attempt.record.finishedAt = clock()
        await write(attempt.record, order: order)
    }

    private func run(
        _ attempt: inout Attempt, identity: OrderIdentity, merchant: DaemonConfiguration.Merchant, client: WeChatPayClient
    ) async {
        let settings = attempt.settings
        if attempt.needsQueryFirst {
            let conclusion = await query(&attempt, identity: identity, merchant: merchant, client: client)
            guard conclusion == .notPaid else { return conclude(&attempt, from: conclusion, afterClose: false) }
        }
        let (verdict, exchange) = await call(merchant.mchID) {
            await client.close(identity, credentials: merchant.credentials, notAfter: attempt.notAfter)
        }
        attempt.add(call: "closeorder", exchange: exchange, outcome: verdict.outcome.rawValue, verdict: verdict, clock: clock())
        observe(verdict.symptom, mchID: merchant.mchID, usable: verdict.outcome != .retry || verdict.symptom == .frequencyLimited)
        switch verdict.outcome {
        case .paid:
            // Record what was paid, for reconciliation; the order is paid whatever the query says.
            let conclusion = await query(&attempt, identity: identity, merchant: merchant, client: client)
            if case .paid(let state, let details) = conclusion { attempt.recordPayment(state, details) }
            attempt.finish(.paid, verdict: verdict)
        case .closed where settings.confirm == .after:
            let conclusion = await query(&attempt, identity: identity, merchant: merchant, client: client)
            switch conclusion {
            case .paid, .paymentUnderWay, .notPaid, .closed: conclude(&attempt, from: conclusion, afterClose: true)
            case .unclear, .failed:
                attempt.finish(.closed, verdict: verdict, note: "; the confirming order query gave no answer")
            }
        case .closed:
            attempt.finish(.closed, verdict: verdict)
        case .paymentUnderWay:
            // Never close under a paying user: ask WeChat Pay what became of the payment.
            let conclusion = await query(&attempt, identity: identity, merchant: merchant, client: client)
            switch conclusion {
            case .notPaid, .unclear, .failed:
                conclude(&attempt, from: .paymentUnderWay(.userPaying), afterClose: false)
            default:
                conclude(&attempt, from: conclusion, afterClose: false)
            }
        case .failed:
            attempt.finish(.failed, verdict: verdict)
        case .retry:
            retry(&attempt, verdict.message, errCode: verdict.errCode, errCodeDes: verdict.errCodeDes, symptom: verdict.symptom)
        }
    }

    /// Acts on an order query's answer.
    private func conclude(_ attempt: inout Attempt, from conclusion: QueryConclusion, afterClose: Bool) {
        switch conclusion {
        case .paid(let state, let details):
            attempt.recordPayment(state, details)
            attempt.finish(
                .paid,
                message: "the order query says \(state.rawValue): the order was paid"
                    + (afterClose ? " although the close succeeded" : "") + "; it is not closed: reconcile the payment")
        case .closed(let state, let errCode):
            attempt.record.tradeState = state?.rawValue
            attempt.finish(
                .closed, errCode: errCode,
                message: errCode == "ORDERNOTEXIST"
                    ? "WeChat Pay has no such order (ORDERNOTEXIST): nothing can be paid"
                    : "the order query says \(state?.rawValue ?? "closed"): nobody can pay it")
        case .notPaid:
            attempt.record.tradeState = TradeState.notPaid.rawValue
            retry(
                &attempt, "the close succeeded but the order query still says NOTPAY; will close again", errCode: nil,
                errCodeDes: nil, symptom: nil)
        case .paymentUnderWay(let state):
            attempt.record.tradeState = state.rawValue
            let wait = Int64(min(max(attempt.settings.backoffBaseSeconds, 1), 60).rounded(.up))
            attempt.record.newState = .pending
            attempt.record.nextAttemptAt = clock() + wait
            attempt.record.refundsAttempt = true
            attempt.record.message = "a payment is under way (\(state.rawValue)): not closed; will ask again in \(wait) s"
        case .unclear(let unusable, let errCode):
            retry(&attempt, unusable.message, errCode: errCode, errCodeDes: unusable.errCodeDes, symptom: unusable.symptom)
        case .failed(let errCode, let errCodeDes, let message):
            attempt.finish(.failed, errCode: errCode, errCodeDes: errCodeDes, message: message)
        }
    }

    /// A transient failure: back off, or give up after `max_attempts`. Failures during an
    /// outage (the breaker is open) do not count.
    private func retry(
        _ attempt: inout Attempt, _ message: String, errCode: String?, errCodeDes: String?, symptom: FailureSymptom?
    ) {
        let settings = attempt.settings
        let number = attempt.order.attempt
        attempt.record.errCode = errCode
        attempt.record.errCodeDes = errCodeDes
        let outage = symptom?.isOutage == true && breaker.isOpen
        if !outage && number >= settings.maxAttempts {
            attempt.record.newState = .failed
            attempt.record.message = message + " (gave up: attempt \(number) of \(settings.maxAttempts))"
            return
        }
        var random = SystemRandomNumberGenerator()
        attempt.record.newState = .pending
        attempt.record.refundsAttempt = outage
        attempt.record.nextAttemptAt = settings.backoff.nextAttempt(afterAttempt: max(number, 1), now: clock(), using: &random)
        attempt.record.message = message + (outage ? " (WeChat Pay looks down: this attempt does not count)" : "")
    }

    private func query(
        _ attempt: inout Attempt, identity: OrderIdentity, merchant: DaemonConfiguration.Merchant, client: WeChatPayClient
    ) async -> QueryConclusion {
        let (conclusion, exchange) = await call(merchant.mchID) {
            await client.query(identity, credentials: merchant.credentials, notAfter: attempt.notAfter)
        }
        let (outcome, message, symptom): (String, String, FailureSymptom?) =
            switch conclusion {
            case .paid(let state, _): ("paid", "order query: trade_state=\(state.rawValue)", nil)
            case .closed(let state, let errCode):
                ("closed", "order query: \(state.map { "trade_state=\($0.rawValue)" } ?? errCode ?? "closed")", nil)
            case .notPaid: ("not_paid", "order query: trade_state=NOTPAY", nil)
            case .paymentUnderWay(let state): ("paying", "order query: trade_state=\(state.rawValue)", nil)
            case .unclear(let unusable, _): ("retry", "order query: \(unusable.message)", unusable.symptom)
            case .failed(_, _, let message): ("failed", "order query: \(message)", nil)
            }
        var errCode: String?
        if case .unclear(_, let code) = conclusion { errCode = code }
        if case .failed(let code, _, _) = conclusion { errCode = code }
        if case .closed(_, let code) = conclusion { errCode = code }
        attempt.record.calls.append(
            CallRecord(
                call: "orderquery", host: exchange.host, outcome: outcome, httpStatus: exchange.httpStatus, errCode: errCode,
                message: message, startedAt: clock() - Int64(exchange.latencyMilliseconds / 1000), finishedAt: clock(),
                latencyMilliseconds: exchange.latencyMilliseconds))
        var usable = true
        if case .unclear = conclusion { usable = symptom == .frequencyLimited }
        observe(symptom, mchID: merchant.mchID, usable: usable)
        return conclusion
    }

    /// Every call waits for its merchant's rate limit.
    private func call<T>(_ mchID: String, _ body: () async -> T) async -> T {
        await limiter.acquire(mchID)
        return await body()
    }

    /// Feeds a call's result to the outage breaker and the rate limiter.
    private func observe(_ symptom: FailureSymptom?, mchID: String, usable: Bool) {
        if symptom == .frequencyLimited {
            limiter.throttled(mchID)
        }
        let outage = symptom?.isOutage == true
        if outage || usable {
            if breaker.record(outageFailure: outage) {
                if breaker.isOpen {
                    logger.error("WeChat Pay looks down: most recent calls failed; claiming stops, probing with single calls")
                } else {
                    logger.info("WeChat Pay answers again: claiming resumes")
                }
            }
        }
    }
}

/// The attempt being built for one claimed order.
struct Attempt {
    let order: ClaimedOrder
    let settings: DaemonConfiguration.ReaperSettings
    var record: AttemptRecord
    /// The end of the claim's lease: no call may still be in flight then.
    var notAfter: ContinuousClock.Instant = .now

    init(order: ClaimedOrder, settings: DaemonConfiguration.ReaperSettings, startedAt: Int64) {
        self.order = order
        self.settings = settings
        self.record = AttemptRecord(
            orderID: order.id, leaseToken: order.leaseToken, attempt: order.attempt, newState: .failed, message: "",
            startedAt: startedAt, finishedAt: startedAt)
    }

    /// Where a close's outcome is unknown or a query was asked for, ask before closing.
    var needsQueryFirst: Bool {
        settings.confirm == .before || order.recoveredFromExpiredLease
            || order.previousErrCode == "FREQUENCY_LIMITED"
            || [TradeState.userPaying.rawValue, TradeState.accept.rawValue].contains(order.previousTradeState)
            || (order.attempt >= settings.maxAttempts && order.attempt > 1)
    }

    mutating func add(call: String, exchange: Exchange, outcome: String, verdict: CloseVerdict, clock: Int64) {
        record.calls.append(
            CallRecord(
                call: call, host: exchange.host, outcome: outcome, httpStatus: exchange.httpStatus, errCode: verdict.errCode,
                errCodeDes: verdict.errCodeDes, message: verdict.message,
                startedAt: clock - Int64(exchange.latencyMilliseconds / 1000),
                finishedAt: clock, latencyMilliseconds: exchange.latencyMilliseconds))
    }

    mutating func recordPayment(_ state: TradeState, _ details: PaymentDetails) {
        record.tradeState = state.rawValue
        record.payment = PaymentColumns(
            transactionID: details.transactionID, totalFee: details.totalFee, timeEnd: details.timeEnd,
            tradeType: details.tradeType)
    }

    mutating func finish(_ state: OrderState, verdict: CloseVerdict, note: String = "") {
        finish(state, errCode: verdict.errCode, errCodeDes: verdict.errCodeDes, message: verdict.message + note)
    }

    mutating func finish(_ state: OrderState, errCode: String? = nil, errCodeDes: String? = nil, message: String) {
        record.newState = state
        record.nextAttemptAt = nil
        record.errCode = errCode
        record.errCodeDes = errCodeDes
        record.message = message
    }
}
