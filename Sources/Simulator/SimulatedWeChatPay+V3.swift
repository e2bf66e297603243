import Foundation
import WeChatPay

/// API v3: `POST …/out-trade-no/{no}/close` and `GET …/out-trade-no/{no}`, plain and partner
/// (service-provider) paths. Requests must carry a valid `Authorization` signed with the
/// merchant's private key; every answer, errors too, is signed with the simulator's key and
/// carries the headers real SDKs check.
extension SimulatedWeChatPay {
    /// Which v3 call a request is.
    struct V3Call {
        let outTradeNo: String
        let isClose: Bool
        /// The service-provider path (`…/pay/partner/transactions/…`).
        let partner: Bool
    }

    func replyV3(
        method: String, path: String, uri: String, headers: [String: String], body: [UInt8], behaviour: SimulatorBehaviour,
        inFlight: inout String?
    ) -> SimulatorReply {
        let delay = behaviour.latencyMilliseconds
        guard let call = Self.v3Call(method: method, path: path) else {
            return answerV3(404, ["code": "NOT_FOUND", "message": "no such endpoint"], delay: delay)
        }
        let mchID: String
        switch authenticateV3(method: method, uri: uri, headers: headers, body: body) {
        case .failure(let refusal):
            state.withLockedValue { $0.stats.badSignatures += 1 }
            return answerV3(401, ["code": "SIGN_ERROR", "message": refusal.message], delay: delay)
        case .success(let signer):
            mchID = signer
        }
        if let refusal = countV3(call, path: path, mchID: mchID, body: body, inFlight: &inFlight) {
            return answerV3(400, ["code": "PARAM_ERROR", "message": refusal], delay: delay)
        }
        if let fault = takeFault(for: call.outTradeNo, behaviour: behaviour) {
            return faultV3(fault, call: call, delay: delay)
        }
        let current = state.withLockedValue { $0.tradeStates[call.outTradeNo] ?? "NOTPAY" }
        return call.isClose
            ? closeAnswerV3(call, current: current, delay: delay)
            : queryAnswerV3(call, current: current, mchID: mchID, uri: uri, delay: delay)
    }

    /// `v3 pay [partner] transactions out-trade-no {no} [close]`, or nil for any other path.
    static func v3Call(method: String, path: String) -> V3Call? {
        let parts = path.split(separator: "/").map(String.init)
        let partner = parts.count > 2 && parts[2] == "partner"
        let offset = partner ? 1 : 0
        guard parts.count >= 5 + offset, parts[0] == "v3", parts[1] == "pay", parts[2 + offset] == "transactions",
            parts[3 + offset] == "out-trade-no"
        else { return nil }
        let outTradeNo = parts[4 + offset].removingPercentEncoding ?? parts[4 + offset]
        let isClose = parts.count == 6 + offset && parts[5 + offset] == "close" && method == "POST"
        let isQuery = parts.count == 5 + offset && method == "GET"
        guard isClose || isQuery else { return nil }
        return V3Call(outTradeNo: outTradeNo, isClose: isClose, partner: partner)
    }

    /// Why a request's signature is refused.
    struct V3Refusal: Error {
        let message: String
    }

    /// The merchant that signed the request, or why it is refused. As WeChat Pay does, a
    /// request signed more than 5 minutes from now, or with a nonce already used within them,
    /// is refused (a replay, or a merchant clock that is off).
    func authenticateV3(method: String, uri: String, headers: [String: String], body: [UInt8]) -> Result<String, V3Refusal> {
        guard let authorization = V3Authorization(header: headers["authorization"] ?? ""),
            let publicKey = v3Merchants[authorization.mchID]
        else { return .failure(V3Refusal(message: "Authorization missing or for an unknown merchant")) }
        let (timestamp, nonce) = (authorization.timestamp, authorization.nonce)
        guard
            authorization.isValid(
                method: method, pathAndQuery: uri, body: String(decoding: body, as: UTF8.self), publicKey: publicKey)
        else { return .failure(V3Refusal(message: "签名错误")) }
        let now = Int64(Date().timeIntervalSince1970)
        guard let signedAt = Int64(timestamp), abs(signedAt - now) <= V3Answer.maximumClockSkew else {
            return .failure(V3Refusal(message: "请求时间戳与当前时间相差超过5分钟 (timestamp \(timestamp), now \(now))"))
        }
        let replayed = state.withLockedValue { state in
            if state.recentNonces.count > 10_000 {
                state.recentNonces = state.recentNonces.filter { now - $0.value <= V3Answer.maximumClockSkew }
            }
            guard state.recentNonces[nonce].map({ now - $0 <= V3Answer.maximumClockSkew }) != true else { return true }
            state.recentNonces[nonce] = signedAt
            return false
        }
        guard !replayed else { return .failure(V3Refusal(message: "随机串重复 (nonce_str \(nonce) was used already)")) }
        return .success(authorization.mchID)
    }

    /// Counts a signed call (a close in flight until answered) and logs it; for a close whose
    /// body names another merchant, says why it is refused instead.
    func countV3(_ call: V3Call, path: String, mchID: String, body: [UInt8], inFlight: inout String?) -> String? {
        if call.isClose {
            let fields = (try? JSONSerialization.jsonObject(with: Data(body)) as? [String: String]) ?? [:]
            let payer = call.partner ? fields["sp_mchid"] : fields["mchid"]
            guard payer == mchID, !call.partner || fields["sub_mchid"] != nil else { return "mchid does not match the signer" }
            var recorded = fields
            recorded["path"] = path
            countCall(call.outTradeNo, fields: recorded)
            inFlight = call.outTradeNo
        } else {
            state.withLockedValue { $0.stats.queryCalls[call.outTradeNo, default: 0] += 1 }
        }
        let arrived = Date().timeIntervalSince1970
        state.withLockedValue { state in
            state.noteCall(call.outTradeNo, at: arrived)
            callLog?.write(
                Data("\(Int64(arrived * 1000)) \(call.isClose ? "closeorder" : "orderquery") \(call.outTradeNo) \(mchID)\n".utf8))
        }
        return nil
    }

    /// A fault scripted for this order, as v3 would show it.
    func faultV3(_ fault: SimulatedFault, call: V3Call, delay: Int) -> SimulatorReply {
        switch fault {
        case .hang: return .hang
        case .drop: return .drop(afterMilliseconds: delay)
        case .frequencyLimited: return answerV3(429, ["code": "FREQUENCY_LIMITED", "message": "频率超限"], delay: delay)
        case .signError: return answerV3(401, ["code": "SIGN_ERROR", "message": "签名错误"], delay: delay)
        case .forgedSign, .forgedPaid:
            return answerV3(call.isClose ? 204 : 200, call.isClose ? nil : ["trade_state": "SUCCESS"], delay: delay, forge: true)
        case .unsignedSuccess:
            return .respondWithHeaders(status: 204, headers: [:], body: [], afterMilliseconds: delay)
        default:
            return answerV3(500, ["code": "SYSTEM_ERROR", "message": "系统错误"], delay: delay)
        }
    }

    /// The answer to a close, from the order's trade state (a close of an unpaid order closes it).
    func closeAnswerV3(_ call: V3Call, current: String, delay: Int) -> SimulatorReply {
        switch current {
        case "SUCCESS", "REFUND": return answerV3(400, ["code": "ORDERPAID", "message": "订单已支付"], delay: delay)
        case "CLOSED", "REVOKED", "PAYERROR": return answerV3(400, ["code": "ORDER_CLOSED", "message": "订单已关闭"], delay: delay)
        case "USERPAYING", "ACCEPT":
            state.withLockedValue { $0.stats.closesWhilePaying += 1 }
            return answerV3(202, ["code": "USER_PAYING", "message": "用户支付中"], delay: delay)
        case Self.nonexistent: return answerV3(404, ["code": "ORDERNOTEXIST", "message": "订单不存在"], delay: delay)
        default:
            state.withLockedValue { $0.tradeStates[call.outTradeNo] = "CLOSED" }
            return answerV3(204, nil, delay: delay)
        }
    }

    /// The answer to a query: the trade state, naming the order, with the payment if paid.
    func queryAnswerV3(_ call: V3Call, current: String, mchID: String, uri: String, delay: Int) -> SimulatorReply {
        if current == Self.nonexistent {
            return answerV3(404, ["code": "ORDER_NOT_EXIST", "message": "订单不存在"], delay: delay)
        }
        var answer: [String: Any] = ["trade_state": current, "out_trade_no": call.outTradeNo]
        if call.partner {
            let query = URLComponents(string: uri)?.queryItems ?? []
            answer["sp_mchid"] = mchID
            answer["sub_mchid"] = query.first { $0.name == "sub_mchid" }?.value
        } else {
            answer["mchid"] = mchID
        }
        if current == "SUCCESS" || current == "REFUND" {
            answer["transaction_id"] =
                "4200000000" + String(call.outTradeNo.utf8.reduce(UInt32(7)) { $0 &* 31 &+ UInt32($1) } % 100_000_000)
            answer["amount"] = ["total": 101, "currency": "CNY"]
            answer["success_time"] = "2026-11-29T12:00:00+08:00"
            answer["trade_type"] = "JSAPI"
        }
        return answerV3(200, answer, delay: delay)
    }

    /// A signed v3 answer: JSON body (none for 204) and the Wechatpay-* headers.
    func answerV3(_ status: Int, _ object: [String: Any]?, delay: Int, forge: Bool = false) -> SimulatorReply {
        let body =
            object.flatMap { try? JSONSerialization.data(withJSONObject: $0, options: [.sortedKeys]) }.map(Array.init) ?? []
        var headers =
            (try? V3Signing.answerHeaders(
                body: body, timestamp: Int64(Date().timeIntervalSince1970), nonce: Nonce.make(),
                privateKey: wechatpayPrivateKey, publicKeyID: Self.wechatpayPublicKeyID)) ?? [:]
        if forge { headers["Wechatpay-Signature"] = Data(repeating: 0x41, count: 256).base64EncodedString() }
        headers["Content-Type"] = "application/json"
        headers["Request-ID"] = "SIM-" + Nonce.make()
        return .respondWithHeaders(status: status, headers: headers, body: body, afterMilliseconds: delay)
    }
}
