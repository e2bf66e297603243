import ConfigurationFile
import Foundation
import Logging
import OrderStore
import WeChatPay
import WeChatPayHTTP

/// One attempt at one claimed order, as I/O: the calls `AttemptPolicy` asks for, each
/// behind its merchant's rate limit and fed to the outage breaker, then the write-back.
extension Reaper {
    func close(_ order: ClaimedOrder, configuration: DaemonConfiguration, client: WeChatPayClient) async {
        let policy = AttemptPolicy(settings: configuration.reaper)
        let startedAt = clock.secondsSince1970
        // No call may be in flight when the lease ends, or another poll could claim the order and
        // call for it at the same time. Rows count whole seconds, so a second is taken off.
        let notAfter = clock.now + .seconds(order.leaseExpiresAt - startedAt - 1)
        let identity = OrderIdentity(
            appid: order.appid, mchID: order.mchID, outTradeNo: order.outTradeNo,
            subAppID: order.subAppID, subMchID: order.subMchID)
        var calls: [CallRecord] = []
        let decision: AttemptPolicy.Decision
        switch Self.destination(of: identity, in: configuration) {
        case .notSendable(let rejection):
            decision = rejection
        case .merchant(let merchant):
            let call = Call(identity: identity, merchant: merchant, client: client, notAfter: notAfter)
            decision = await decide(order, policy: policy) { step in
                let (answer, line) = await self.make(step, call)
                calls.append(line)
                return answer
            }
        }
        var record = AttemptRecord(
            orderID: order.id, leaseToken: order.leaseToken, attempt: order.attempt, newState: decision.state,
            nextAttemptAt: decision.nextAttemptAt, errCode: decision.errCode, errCodeDes: decision.errCodeDes,
            message: decision.message, calls: calls, startedAt: startedAt, finishedAt: clock.secondsSince1970)
        record.refundsAttempt = decision.refundsAttempt
        record.tradeState = decision.tradeState?.rawValue
        record.payment = decision.payment.map {
            PaymentColumns(transactionID: $0.transactionID, totalFee: $0.totalFee, timeEnd: $0.timeEnd, tradeType: $0.tradeType)
        }
        await write(record, order: order)
    }

    /// Asks the policy for the next step until it has a decision, making each call it asks for.
    private func decide(
        _ order: ClaimedOrder, policy: AttemptPolicy, making call: (AttemptPolicy.Step) async -> AttemptPolicy.Answer
    ) async -> AttemptPolicy.Decision {
        var answers: [AttemptPolicy.Answer] = []
        // One draw per attempt: only its decision waits, and each draw is a system call.
        let jitter = Double.random(in: 0...1)
        while true {
            let circumstances = AttemptPolicy.Circumstances(
                now: clock.secondsSince1970, outageUnderWay: breaker.isOpen, jitter: jitter)
            let step = policy.next(for: order, after: answers, in: circumstances)
            if case .record(let decision) = step { return decision }
            answers.append(await call(step))
        }
    }

    /// Who an order is sent as, or why it cannot be sent.
    private enum Destination {
        case merchant(DaemonConfiguration.Merchant)
        case notSendable(AttemptPolicy.Decision)
    }

    private static func destination(of identity: OrderIdentity, in configuration: DaemonConfiguration) -> Destination {
        let merchant = configuration.merchant(identity.mchID)
        let problem: String? =
            if case .v3 = merchant?.credentials { identity.v3Problem() } else { identity.problem() }
        if let problem { return .notSendable(.notSent(problem)) }
        guard let merchant else {
            return .notSendable(
                .notSent("no key is configured for mch_id \(identity.mchID): add it under merchants in the configuration"))
        }
        return .merchant(merchant)
    }

    /// What one call needs.
    private struct Call {
        let identity: OrderIdentity
        let merchant: DaemonConfiguration.Merchant
        let client: WeChatPayClient
        let notAfter: ContinuousClock.Instant
    }

    /// Makes one call behind the merchant's rate limit, feeds its result to the breaker and
    /// the limiter, and returns the answer with its history line.
    private func make(_ step: AttemptPolicy.Step, _ call: Call) async -> (AttemptPolicy.Answer, CallRecord) {
        await limiter.acquire(call.merchant.mchID)
        let answer: AttemptPolicy.Answer
        let exchange: Exchange
        if case .query = step {
            let (conclusion, made) = await call.client.query(
                call.identity, credentials: call.merchant.credentials, notAfter: call.notAfter)
            (answer, exchange) = (.query(conclusion), made)
        } else {
            let (verdict, made) = await call.client.close(
                call.identity, credentials: call.merchant.credentials, notAfter: call.notAfter)
            (answer, exchange) = (.close(verdict), made)
        }
        let line = answer.historyLine
        await observe(line.symptom, mchID: call.merchant.mchID, usable: answer.isUsable)
        if exchange.sent {
            metrics.callMade(
                api: call.merchant.credentials.api, call: line.call, outcome: line.outcome, errCode: line.errCode,
                symptom: line.symptom, onBackup: exchange.host != call.client.hosts.primary,
                milliseconds: exchange.latencyMilliseconds)
        }
        let finishedAt = clock.secondsSince1970
        return (
            answer,
            CallRecord(
                call: line.call, host: exchange.host, outcome: line.outcome, httpStatus: exchange.httpStatus,
                errCode: line.errCode, errCodeDes: line.errCodeDes, message: line.message,
                startedAt: finishedAt - Int64(exchange.latencyMilliseconds / 1000), finishedAt: finishedAt,
                latencyMilliseconds: exchange.latencyMilliseconds)
        )
    }

    /// Feeds a call's result to the outage breaker and the rate limiter.
    private func observe(_ symptom: FailureSymptom?, mchID: String, usable: Bool) async {
        if symptom == .frequencyLimited {
            await limiter.throttled(mchID)
        }
        let outage = symptom?.isOutage == true
        guard outage || usable, breaker.record(outageFailure: outage) else { return }
        if breaker.isOpen {
            logger.error("WeChat Pay looks down: most recent calls failed; claiming stops, probing with single calls")
        } else {
            logger.info("WeChat Pay answers again: claiming resumes")
        }
    }
}
