import Foundation
import WeChatPay

/// API v3: `POST …/out-trade-no/{no}/close` and `GET …/out-trade-no/{no}`, plain and partner
/// (service-provider) paths. Requests must carry a valid `Authorization` signed with the
/// merchant's private key; every answer, errors too, is signed with the simulator's key and
/// carries the headers real SDKs check.
extension SimulatedWeChatPay {
    func replyV3(
        method: String, path: String, uri: String, headers: [String: String], body: [UInt8], behaviour: SimulatorBehaviour,
        inFlight: inout String?
    ) -> SimulatorReply {
        let delay = behaviour.latencyMilliseconds
        let parts = path.split(separator: "/").map(String.init)
        // v3 pay [partner] transactions out-trade-no {no} [close]
        let partner = parts.count > 2 && parts[2] == "partner"
        let offset = partner ? 1 : 0
        guard parts.count >= 5 + offset, parts[0] == "v3", parts[1] == "pay", parts[2 + offset] == "transactions",
            parts[3 + offset] == "out-trade-no"
        else { return answerV3(404, ["code": "NOT_FOUND", "message": "no such endpoint"], delay: delay) }
        let outTradeNo = parts[4 + offset].removingPercentEncoding ?? parts[4 + offset]
        let isClose = parts.count == 6 + offset && parts[5 + offset] == "close" && method == "POST"
        let isQuery = parts.count == 5 + offset && method == "GET"
        guard isClose || isQuery else {
            return answerV3(404, ["code": "NOT_FOUND", "message": "no such endpoint"], delay: delay)
        }

        guard let authorization = V3Authorization(header: headers["authorization"] ?? ""),
            let publicKey = v3Merchants[authorization.mchID]
        else {
            state.withLockedValue { $0.stats.badSignatures += 1 }
            return answerV3(
                401, ["code": "SIGN_ERROR", "message": "Authorization missing or for an unknown merchant"], delay: delay)
        }
        let (mchID, timestamp, nonce) = (authorization.mchID, authorization.timestamp, authorization.nonce)
        guard
            authorization.isValid(
                method: method, pathAndQuery: uri, body: String(decoding: body, as: UTF8.self), publicKey: publicKey)
        else {
            state.withLockedValue { $0.stats.badSignatures += 1 }
            return answerV3(401, ["code": "SIGN_ERROR", "message": "签名错误"], delay: delay)
        }
        // As WeChat Pay does: a request signed more than 5 minutes from now, or with a nonce
        // already used within them, is refused (a replay, or a merchant clock that is off).
        let now = Int64(Date().timeIntervalSince1970)
        guard let signedAt = Int64(timestamp), abs(signedAt - now) <= V3Answer.maximumClockSkew else {
            state.withLockedValue { $0.stats.badSignatures += 1 }
            return answerV3(
                401, ["code": "SIGN_ERROR", "message": "请求时间戳与当前时间相差超过5分钟 (timestamp \(timestamp), now \(now))"],
                delay: delay)
        }
        let replayed = state.withLockedValue { state in
            if state.recentNonces.count > 10_000 {
                state.recentNonces = state.recentNonces.filter { now - $0.value <= V3Answer.maximumClockSkew }
            }
            guard state.recentNonces[nonce].map({ now - $0 <= V3Answer.maximumClockSkew }) != true else { return true }
            state.recentNonces[nonce] = signedAt
            return false
        }
        guard !replayed else {
            state.withLockedValue { $0.stats.badSignatures += 1 }
            return answerV3(401, ["code": "SIGN_ERROR", "message": "随机串重复 (nonce_str \(nonce) was used already)"], delay: delay)
        }
        if isClose {
            let fields = (try? JSONSerialization.jsonObject(with: Data(body)) as? [String: String]) ?? [:]
            let payer = partner ? fields["sp_mchid"] : fields["mchid"]
            guard payer == mchID, !partner || fields["sub_mchid"] != nil else {
                return answerV3(400, ["code": "PARAM_ERROR", "message": "mchid does not match the signer"], delay: delay)
            }
            var recorded = fields
            recorded["path"] = path
            countCall(outTradeNo, fields: recorded)
            inFlight = outTradeNo
        } else {
            state.withLockedValue { $0.stats.queryCalls[outTradeNo, default: 0] += 1 }
        }
        let arrived = Date().timeIntervalSince1970
        state.withLockedValue { state in
            state.noteCall(outTradeNo, at: arrived)
            callLog?.write(
                Data("\(Int64(arrived * 1000)) \(isClose ? "closeorder" : "orderquery") \(outTradeNo) \(mchID)\n".utf8))
        }

        if let fault = takeFault(for: outTradeNo, behaviour: behaviour) {
            switch fault {
            case .hang: return .hang
            case .drop: return .drop(afterMilliseconds: delay)
            case .frequencyLimited: return answerV3(429, ["code": "FREQUENCY_LIMITED", "message": "频率超限"], delay: delay)
            case .signError: return answerV3(401, ["code": "SIGN_ERROR", "message": "签名错误"], delay: delay)
            case .forgedSign, .forgedPaid:
                return answerV3(isClose ? 204 : 200, isClose ? nil : ["trade_state": "SUCCESS"], delay: delay, forge: true)
            case .unsignedSuccess:
                return .respondWithHeaders(status: 204, headers: [:], body: [], afterMilliseconds: delay)
            default:
                return answerV3(500, ["code": "SYSTEM_ERROR", "message": "系统错误"], delay: delay)
            }
        }

        let current = state.withLockedValue { $0.tradeStates[outTradeNo] ?? "NOTPAY" }
        if isQuery {
            if current == Self.nonexistent {
                return answerV3(404, ["code": "ORDER_NOT_EXIST", "message": "订单不存在"], delay: delay)
            }
            var answer: [String: Any] = ["trade_state": current, "out_trade_no": outTradeNo]
            if partner {
                let query = URLComponents(string: uri)?.queryItems ?? []
                answer["sp_mchid"] = mchID
                answer["sub_mchid"] = query.first { $0.name == "sub_mchid" }?.value
            } else {
                answer["mchid"] = mchID
            }
            if current == "SUCCESS" || current == "REFUND" {
                answer["transaction_id"] =
                    "4200000000" + String(outTradeNo.utf8.reduce(UInt32(7)) { $0 &* 31 &+ UInt32($1) } % 100_000_000)
                answer["amount"] = ["total": 101, "currency": "CNY"]
                answer["success_time"] = "2026-11-29T12:00:00+08:00"
                answer["trade_type"] = "JSAPI"
            }
            return answerV3(200, answer, delay: delay)
        }
        switch current {
        case "SUCCESS", "REFUND": return answerV3(400, ["code": "ORDERPAID", "message": "订单已支付"], delay: delay)
        case "CLOSED", "REVOKED", "PAYERROR": return answerV3(400, ["code": "ORDER_CLOSED", "message": "订单已关闭"], delay: delay)
        case "USERPAYING", "ACCEPT":
            state.withLockedValue { $0.stats.closesWhilePaying += 1 }
            return answerV3(202, ["code": "USER_PAYING", "message": "用户支付中"], delay: delay)
        case Self.nonexistent: return answerV3(404, ["code": "ORDERNOTEXIST", "message": "订单不存在"], delay: delay)
        default:
            state.withLockedValue { $0.tradeStates[outTradeNo] = "CLOSED" }
            return answerV3(204, nil, delay: delay)
        }
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
