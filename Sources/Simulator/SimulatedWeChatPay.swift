import Foundation
import NIOConcurrencyHelpers
import WeChatPay
import _CryptoExtras

/// What the HTTP layer should do with one request.
public enum SimulatorReply: Sendable, Equatable {
    case respond(status: Int, body: [UInt8], afterMilliseconds: Int)
    /// Never answer; the client's timeout has to fire.
    case hang
    /// Close the connection without answering.
    case drop(afterMilliseconds: Int)
    /// Announce the whole body, send half of it, close.
    case truncated(body: [UInt8], afterMilliseconds: Int)
    /// An answer with extra headers (API v3: the signature headers).
    case respondWithHeaders(status: Int, headers: [String: String], body: [UInt8], afterMilliseconds: Int)
}

/// What the simulator has seen, for tests and for `GET /_sim/stats`.
public struct SimulatorStats: Sendable, Codable, Equatable {
    /// Close calls with a valid signature, per order number.
    public var closeCalls: [String: Int] = [:]
    /// The most close calls for one order that were in flight at the same time.
    public var maxConcurrentCallsPerOrder = 0
    /// The most close calls, for any orders, that were in flight at the same time.
    public var maxConcurrentCalls = 0
    /// Every request received, valid or not.
    public var requests = 0
    /// Requests rejected for a bad or missing signature.
    public var badSignatures = 0
    /// When each signed call arrived (unix seconds), for measuring rates: the most recent
    /// `SimulatorMemoryLimits.callTimes` or a few more.
    public var callTimes: [Double] = []
    /// Order queries with a valid signature, per order number.
    public var queryCalls: [String: Int] = [:]
    /// Close calls that arrived while the user was paying (USERPAYING or ACCEPT): a client should make none.
    public var closesWhilePaying = 0
    /// The fields of the last signed close request per order number, `sign` left out.
    public var lastCloseRequests: [String: [String: String]] = [:]
    /// The simulated trade state of every order it has seen: NOTPAY, CLOSED or SUCCESS.
    public var tradeStates: [String: String] = [:]

    enum CodingKeys: String, CodingKey {
        case requests
        case closeCalls = "close_calls"
        case maxConcurrentCallsPerOrder = "max_concurrent_calls_per_order"
        case badSignatures = "bad_signatures"
        case tradeStates = "trade_states"
        case callTimes = "call_times"
        case lastCloseRequests = "last_close_requests"
        case queryCalls = "query_calls"
        case closesWhilePaying = "closes_while_paying"
    }
}

/// A stand-in for WeChat Pay v2 `/pay/closeorder` and `/pay/orderquery`, built from the
/// same protocol module as the client: it checks request signatures with each merchant's
/// key and signs its answers, and it can be told to misbehave.
///
/// Orders are `NOTPAY` until closed; `markPaid` and `markClosed` set them up otherwise.
public final class SimulatedWeChatPay: Sendable {
    struct State {
        var behaviour: SimulatorBehaviour
        let limits: SimulatorMemoryLimits
        var memory: OrderMemory
        /// API v3 request nonces seen in the last 5 minutes, with their timestamps.
        var recentNonces: [String: Int64] = [:]
        var faults: [String: FaultPlan] = [:]
        var tradeStates: [String: String] = [:]
        var inFlight: [String: Int] = [:]
        var totalInFlight = 0
        var stats = SimulatorStats()
        /// While true, answers wait in `heldAnswers` until released.
        var holding = false
        var heldAnswers: [@Sendable () -> Void] = []
    }

    let keys: [String: MerchantKey]
    let state: NIOLockedValueBox<State>
    /// Every signed call, one line each (`unix_ms endpoint out_trade_no mch_id`), appended
    /// as it arrives: a record that outlives the simulator being killed.
    let callLog: FileHandle?

    /// API v3 merchants: their public keys, to check request signatures.
    let v3Merchants: [String: _RSA.Signing.PublicKey]
    /// The simulator's own key pair, standing in for WeChat Pay's: it signs every v3 answer.
    let wechatpayPrivateKey: _RSA.Signing.PrivateKey
    /// The id v3 answers name their signing key by (`Wechatpay-Serial`).
    public static let wechatpayPublicKeyID = "PUB_KEY_ID_0100000000SIMULATOR20261129000000000001"

    public init(
        keys: [String: MerchantKey], behaviour: SimulatorBehaviour = SimulatorBehaviour(), callLog: FileHandle? = nil,
        v3Merchants: [String: _RSA.Signing.PublicKey] = [:], wechatpayPrivateKey: _RSA.Signing.PrivateKey? = nil,
        limits: SimulatorMemoryLimits = SimulatorMemoryLimits()
    ) throws {
        self.keys = keys
        self.state = NIOLockedValueBox(State(behaviour: behaviour, limits: limits, memory: OrderMemory(limit: limits.orders)))
        self.callLog = callLog
        self.v3Merchants = v3Merchants
        self.wechatpayPrivateKey = try wechatpayPrivateKey ?? _RSA.Signing.PrivateKey(keySize: .bits2048)
    }

    /// The public half of the simulator's signing key, in PEM: what a v3 merchant configures
    /// as `wechatpay_public_key_file`.
    public var wechatpayPublicKeyPEM: String { wechatpayPrivateKey.publicKey.pemRepresentation }

    public var behaviour: SimulatorBehaviour {
        get { state.withLockedValue { $0.behaviour } }
        set { state.withLockedValue { $0.behaviour = newValue } }
    }

    public func markPaid(_ outTradeNo: String) { setTradeState("SUCCESS", for: outTradeNo) }
    public func markClosed(_ outTradeNo: String) { setTradeState("CLOSED", for: outTradeNo) }
    /// The user is entering the payment password right now: queries answer USERPAYING and a
    /// close is refused with FREQUENCY_LIMITED, as WeChat Pay was seen to do.
    public func markPaying(_ outTradeNo: String) { setTradeState("USERPAYING", for: outTradeNo) }
    /// WeChat Pay never saw this order: queries answer ORDERNOTEXIST.
    public func markNonexistent(_ outTradeNo: String) { setTradeState(Self.nonexistent, for: outTradeNo) }
    /// Any `trade_state`: SUCCESS, REFUND, NOTPAY, CLOSED, REVOKED, USERPAYING, PAYERROR, ACCEPT.
    public func setTradeState(_ tradeState: String, for outTradeNo: String) {
        state.withLockedValue { state in
            state.noteOrder(outTradeNo)
            state.tradeStates[outTradeNo] = tradeState
        }
    }

    /// Forgets the statistics (not the orders' trade states or faults), as `POST /_sim/reset` does.
    public func resetStats() {
        state.withLockedValue { $0.stats = SimulatorStats() }
    }

    /// Holds every answer until `releaseAnswers()`, as `POST /_sim/hold` does: requests are
    /// still read, checked and counted as they arrive, but no answer goes back, so calls stay
    /// in flight for as long as a test needs to look at them.
    ///
    /// ```swift
    /// simulator.holdAnswers()
    /// // … wait for the calls to arrive, look at the rows …
    /// simulator.releaseAnswers()
    /// ```
    public func holdAnswers() { state.withLockedValue { $0.holding = true } }

    /// Sends every held answer, each after the usual latency, and stops holding, as
    /// `POST /_sim/release` does.
    public func releaseAnswers() {
        let held = state.withLockedValue { state in
            state.holding = false
            defer { state.heldAnswers = [] }
            return state.heldAnswers
        }
        for send in held { send() }
    }

    /// How many answers wait for `releaseAnswers()`.
    public var heldAnswers: Int { state.withLockedValue { $0.heldAnswers.count } }

    /// Runs `send` now, or once answers are released if they are held (for the HTTP layer:
    /// `send` may then run on the thread that releases them).
    func whenReleased(_ send: @escaping @Sendable () -> Void) {
        let sendNow = state.withLockedValue { state in
            if state.holding { state.heldAnswers.append(send) }
            return !state.holding
        }
        if sendNow { send() }
    }

    static let nonexistent = "(nonexistent)"
    public func setFault(_ plan: FaultPlan?, for outTradeNo: String) { state.withLockedValue { $0.faults[outTradeNo] = plan } }
    public var stats: SimulatorStats {
        state.withLockedValue { state in
            var stats = state.stats
            stats.tradeStates = state.tradeStates
            return stats
        }
    }

    /// Answers one HTTP request.
    public func reply(method: String, path: String, body: [UInt8], uri: String? = nil, headers: [String: String] = [:])
        -> SimulatorReply
    {
        var inFlight: String?
        return reply(method: method, path: path, body: body, uri: uri, headers: headers, inFlight: &inFlight)
    }

    /// Answers one HTTP request; sets `inFlight` to the order number when the request is a
    /// close call counted as in flight, which the HTTP layer reports `finished` once answered.
    func reply(
        method: String, path: String, body: [UInt8], uri: String?, headers: [String: String], inFlight: inout String?
    ) -> SimulatorReply {
        let behaviour = state.withLockedValue { state in
            state.stats.requests += 1
            return state.behaviour
        }
        if let control = controlReply(method: method, path: path) { return control }
        if path.hasPrefix("/v3/") {
            return replyV3(
                method: method, path: path, uri: uri ?? path, headers: headers, body: body, behaviour: behaviour,
                inFlight: &inFlight)
        }
        return replyV2(method: method, path: path, body: body, behaviour: behaviour, inFlight: &inFlight)
    }

    /// The test controls under `/_sim/`: statistics, reset, hold and release.
    func controlReply(method: String, path: String) -> SimulatorReply? {
        switch (method, path) {
        case ("GET", "/_sim/stats"):
            let json = (try? JSONEncoder().encode(stats)).map(Array.init) ?? []
            return .respond(status: 200, body: json, afterMilliseconds: 0)
        case ("POST", "/_sim/reset"):
            resetStats()
            return .respond(status: 200, body: Array("statistics reset\n".utf8), afterMilliseconds: 0)
        case ("POST", "/_sim/hold"):
            holdAnswers()
            return .respond(status: 200, body: Array("holding answers\n".utf8), afterMilliseconds: 0)
        case ("POST", "/_sim/release"):
            let count = heldAnswers
            releaseAnswers()
            return .respond(status: 200, body: Array("released \(count) answers\n".utf8), afterMilliseconds: 0)
        default:
            return nil
        }
    }

    /// API v2: `/pay/closeorder` and `/pay/orderquery`, signed XML.
    func replyV2(
        method: String, path: String, body: [UInt8], behaviour: SimulatorBehaviour, inFlight: inout String?
    ) -> SimulatorReply {
        let delay = behaviour.latencyMilliseconds
        let endpoint: Endpoint
        switch path {
        case "/pay/closeorder": endpoint = .close
        case "/pay/orderquery": endpoint = .query
        default: return .respond(status: 404, body: Array("not found\n".utf8), afterMilliseconds: 0)
        }
        guard method == "POST" else { return communicationFailure("请使用post方法", delay) }
        guard let fields = try? FlatXML.decode(body) else { return communicationFailure("XML格式错误", delay) }
        guard let mchID = fields["mch_id"], let key = keys[mchID] else {
            return communicationFailure("mch_id参数格式错误", delay)
        }
        guard Signature.isValid(fields, key: key) else {
            state.withLockedValue { $0.stats.badSignatures += 1 }
            return communicationFailure("签名错误", delay)
        }
        let signType = SignType(rawValue: fields["sign_type"] ?? "MD5") ?? .md5
        let outTradeNo = fields["out_trade_no"] ?? ""
        let context = AnswerContext(request: fields, key: key, signType: signType, delay: delay)

        let arrived = Date().timeIntervalSince1970
        state.withLockedValue { state in
            state.noteCall(outTradeNo, at: arrived)
            callLog?.write(Data("\(Int64(arrived * 1000)) \(endpoint.name) \(outTradeNo) \(mchID)\n".utf8))
        }
        if endpoint == .close {
            countCall(outTradeNo, fields: fields)
            inFlight = outTradeNo
        }
        if endpoint == .query { state.withLockedValue { $0.stats.queryCalls[outTradeNo, default: 0] += 1 } }
        if let fault = takeFault(for: outTradeNo, behaviour: behaviour) {
            return answer(fault, context)
        }
        switch endpoint {
        case .close: return close(outTradeNo, context)
        case .query: return query(outTradeNo, context)
        }
    }

    /// Called by the HTTP layer when it has sent (or given up on) the answer to a close call
    /// that `reply` counted as in flight for `outTradeNo`. Requests that were refused were
    /// never counted, so they end no other call's count.
    func finished(_ outTradeNo: String) {
        state.withLockedValue { state in
            if let count = state.inFlight[outTradeNo] {
                state.inFlight[outTradeNo] = count > 1 ? count - 1 : nil
                state.totalInFlight -= 1
            }
        }
    }

    enum Endpoint {
        case close, query
        var name: String { self == .close ? "closeorder" : "orderquery" }
    }

    struct AnswerContext {
        let request: [String: String]
        let key: MerchantKey
        let signType: SignType
        let delay: Int
    }

    private func close(_ outTradeNo: String, _ context: AnswerContext) -> SimulatorReply {
        let previous: String = state.withLockedValue { state in
            let current = state.tradeStates[outTradeNo] ?? "NOTPAY"
            if current == "NOTPAY" || current == Self.nonexistent { state.tradeStates[outTradeNo] = "CLOSED" }
            return current
        }
        switch previous {
        case "SUCCESS", "REFUND": return business(errCode: "ORDERPAID", description: "订单已支付", context)
        case "CLOSED", "REVOKED", "PAYERROR": return business(errCode: "ORDERCLOSED", description: "订单已关闭", context)
        case "USERPAYING", "ACCEPT":
            state.withLockedValue { $0.stats.closesWhilePaying += 1 }
            return business(errCode: "FREQUENCY_LIMITED", description: "频率限制", context)
        default: return signed(["result_code": "SUCCESS", "result_msg": "OK"], context)
        }
    }

    /// Counts a signed close call and how many calls for the same order are in flight with it.
    func countCall(_ outTradeNo: String, fields: [String: String]) {
        state.withLockedValue { state in
            state.stats.lastCloseRequests[outTradeNo] = fields.filter { $0.key != "sign" }
            state.stats.closeCalls[outTradeNo, default: 0] += 1
            let inFlight = state.inFlight[outTradeNo, default: 0] + 1
            state.inFlight[outTradeNo] = inFlight
            state.stats.maxConcurrentCallsPerOrder = max(state.stats.maxConcurrentCallsPerOrder, inFlight)
            state.totalInFlight += 1
            state.stats.maxConcurrentCalls = max(state.stats.maxConcurrentCalls, state.totalInFlight)
        }
    }

    private func query(_ outTradeNo: String, _ context: AnswerContext) -> SimulatorReply {
        let tradeState = state.withLockedValue { $0.tradeStates[outTradeNo] ?? "NOTPAY" }
        if tradeState == Self.nonexistent { return business(errCode: "ORDERNOTEXIST", description: "此交易订单号不存在", context) }
        var fields = ["result_code": "SUCCESS", "trade_state": tradeState, "out_trade_no": outTradeNo]
        if tradeState == "SUCCESS" || tradeState == "REFUND" {
            fields["transaction_id"] = "4200" + String(outTradeNo.utf8.reduce(UInt32(7)) { $0 &* 31 &+ UInt32($1) } % 100_000_000)
            fields["total_fee"] = "101"
            fields["time_end"] = "20261129120000"
            fields["trade_type"] = "JSAPI"
        }
        return signed(fields, context)
    }

    func takeFault(for outTradeNo: String, behaviour: SimulatorBehaviour) -> SimulatedFault? {
        let planned: SimulatedFault? = state.withLockedValue { state in
            guard var plan = state.faults[outTradeNo] else { return nil }
            if let remaining = plan.remaining {
                plan.remaining = remaining - 1
                state.faults[outTradeNo] = remaining > 1 ? plan : nil
            }
            return plan.fault
        }
        if let planned { return planned }
        if Double.random(in: 0..<1) < behaviour.timeoutRate { return .hang }
        if Double.random(in: 0..<1) < behaviour.http500Rate { return .http500 }
        if Double.random(in: 0..<1) < behaviour.systemErrorRate { return .systemError }
        return nil
    }

    private func answer(_ fault: SimulatedFault, _ context: AnswerContext) -> SimulatorReply {
        let delay = context.delay
        switch fault {
        case .systemError: return business(errCode: "SYSTEMERROR", description: "系统错误", context)
        case .frequencyLimited: return business(errCode: "FREQUENCY_LIMITED", description: "频率限制", context)
        case .signError: return business(errCode: "SIGNERROR", description: "签名错误", context)
        case .xmlFormatError: return business(errCode: "XML_FORMAT_ERROR", description: "XML格式错误", context)
        case .requirePostMethod: return business(errCode: "REQUIRE_POST_METHOD", description: "请使用post方法", context)
        case .unknownErrCode: return business(errCode: "BRAND_NEW_ERROR", description: "a code no client knows", context)
        case .returnFail: return communicationFailure("频率限制", delay)
        case .http500: return .respond(status: 500, body: Array("Internal Server Error".utf8), afterMilliseconds: delay)
        case .http502: return .respond(status: 502, body: Array("Bad Gateway".utf8), afterMilliseconds: delay)
        case .http503: return .respond(status: 503, body: Array("Service Unavailable".utf8), afterMilliseconds: delay)
        case .hang: return .hang
        case .drop: return .drop(afterMilliseconds: delay)
        case .truncated:
            guard case .respond(_, let body, _) = signed(["result_code": "SUCCESS"], context) else { return .hang }
            return .truncated(body: body, afterMilliseconds: delay)
        case .forgedSign:
            var fields = signedFields(["result_code": "SUCCESS"], context)
            fields["sign"] = String(repeating: "A", count: fields["sign"]?.count ?? 32)
            return .respond(status: 200, body: Array(FlatXML.encode(fields).utf8), afterMilliseconds: delay)
        case .forgedPaid:
            var fields = signedFields(["result_code": "FAIL", "err_code": "ORDERPAID", "err_code_des": "订单已支付"], context)
            fields["sign"] = String(repeating: "0", count: fields["sign"]?.count ?? 32)
            return .respond(status: 200, body: Array(FlatXML.encode(fields).utf8), afterMilliseconds: delay)
        case .unsignedSuccess:
            var fields = signedFields(["result_code": "SUCCESS"], context)
            fields["sign"] = nil
            return .respond(status: 200, body: Array(FlatXML.encode(fields).utf8), afterMilliseconds: delay)
        case .doctype, .billionLaughs, .huge:
            return .respond(status: 200, body: Self.hostileBody(fault), afterMilliseconds: delay)
        case .invalidUTF8:
            guard case .respond(_, var body, _) = signed(["result_code": "SUCCESS"], context) else { return .hang }
            body.insert(contentsOf: [0xFF, 0xFE, 0xC0], at: body.count / 2)
            return .respond(status: 200, body: body, afterMilliseconds: delay)
        }
    }

    /// Bodies no parser should expand or read whole: an external entity, nested entities
    /// ("billion laughs"), and 10 MB.
    static func hostileBody(_ fault: SimulatedFault) -> [UInt8] {
        switch fault {
        case .doctype:
            let body = """
                <?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\
                <xml><return_code>SUCCESS</return_code><result_code>&xxe;</result_code></xml>
                """
            return Array(body.utf8)
        case .billionLaughs:
            var body = "<?xml version=\"1.0\"?><!DOCTYPE xml [<!ENTITY lol \"lol\">"
            for level in 1...9 {
                body +=
                    "<!ENTITY lol\(level) \"" + String(repeating: "&lol\(level == 1 ? "" : String(level - 1));", count: 10)
                    + "\">"
            }
            body += "]><xml><return_code>&lol9;</return_code></xml>"
            return Array(body.utf8)
        case .huge:
            var body = Array("<xml><return_code>SUCCESS</return_code><padding>".utf8)
            body += [UInt8](repeating: UInt8(ascii: "x"), count: 10 * 1024 * 1024)
            body += Array("</padding></xml>".utf8)
            return body
        default:
            return []
        }
    }

    private func business(errCode: String, description: String, _ context: AnswerContext) -> SimulatorReply {
        signed(["result_code": "FAIL", "err_code": errCode, "err_code_des": description], context)
    }

    private func signedFields(_ fields: [String: String], _ context: AnswerContext) -> [String: String] {
        var answer = fields
        answer["return_code"] = "SUCCESS"
        answer["return_msg"] = "OK"
        answer["appid"] = context.request["appid"]
        answer["mch_id"] = context.request["mch_id"]
        if let subMchID = context.request["sub_mch_id"] { answer["sub_mch_id"] = subMchID }
        if let subAppID = context.request["sub_appid"] { answer["sub_appid"] = subAppID }
        answer["nonce_str"] = Nonce.make()
        answer["sign"] = Signature.sign(answer, key: context.key, type: context.signType)
        return answer
    }

    private func signed(_ fields: [String: String], _ context: AnswerContext) -> SimulatorReply {
        .respond(status: 200, body: Array(FlatXML.encode(signedFields(fields, context)).utf8), afterMilliseconds: context.delay)
    }

    private func communicationFailure(_ message: String, _ delay: Int) -> SimulatorReply {
        .respond(
            status: 200, body: Array(FlatXML.encode(["return_code": "FAIL", "return_msg": message]).utf8),
            afterMilliseconds: delay)
    }
}
