import Foundation

/// An API v3 request: method, path (with query), JSON body, and the signed `Authorization` header.
public struct V3Request: Sendable, Equatable {
    public var method: String
    public var pathAndQuery: String
    public var body: String

    /// `POST /v3/pay/transactions/out-trade-no/{no}/close` with `{"mchid":…}`; in service-provider
    /// mode `POST /v3/pay/partner/transactions/out-trade-no/{no}/close` with `{"sp_mchid":…,"sub_mchid":…}`.
    public static func close(_ order: OrderIdentity) -> V3Request {
        let number = escape(order.outTradeNo)
        if let subMchID = order.subMchID, !subMchID.isEmpty {
            return V3Request(
                method: "POST", pathAndQuery: "/v3/pay/partner/transactions/out-trade-no/\(number)/close",
                body: #"{"sp_mchid":"\#(jsonEscape(order.mchID))","sub_mchid":"\#(jsonEscape(subMchID))"}"#)
        }
        return V3Request(
            method: "POST", pathAndQuery: "/v3/pay/transactions/out-trade-no/\(number)/close",
            body: #"{"mchid":"\#(jsonEscape(order.mchID))"}"#)
    }

    /// `GET /v3/pay/transactions/out-trade-no/{no}?mchid=…` (partner: `?sp_mchid=…&sub_mchid=…`).
    public static func query(_ order: OrderIdentity) -> V3Request {
        let number = escape(order.outTradeNo)
        if let subMchID = order.subMchID, !subMchID.isEmpty {
            return V3Request(
                method: "GET",
                pathAndQuery:
                    "/v3/pay/partner/transactions/out-trade-no/\(number)?sp_mchid=\(escape(order.mchID))&sub_mchid=\(escape(subMchID))",
                body: "")
        }
        return V3Request(
            method: "GET", pathAndQuery: "/v3/pay/transactions/out-trade-no/\(number)?mchid=\(escape(order.mchID))", body: "")
    }

    /// The five lines that are signed: method, path, timestamp, nonce, body, each ending in `\n`.
    public static func message(method: String, pathAndQuery: String, timestamp: Int64, nonce: String, body: String) -> String {
        "\(method)\n\(pathAndQuery)\n\(timestamp)\n\(nonce)\n\(body)\n"
    }

    /// `WECHATPAY2-SHA256-RSA2048 mchid="…",nonce_str="…",signature="…",timestamp="…",serial_no="…"`.
    public func authorization(credentials: V3Credentials, timestamp: Int64, nonce: String) throws -> String {
        let signature = try credentials.sign(
            Self.message(method: method, pathAndQuery: pathAndQuery, timestamp: timestamp, nonce: nonce, body: body))
        return V3Authorization(
            mchID: credentials.mchID, nonce: nonce, signature: signature, timestamp: String(timestamp),
            serialNo: credentials.serialNo
        ).header
    }

    /// Percent-encodes everything but unreserved characters, so an order number is one path segment.
    static func escape(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? text
    }

    static func jsonEscape(_ text: String) -> String {
        var out = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case _ where scalar.value < 0x20: out += String(format: "\\u%04x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}

extension OrderIdentity {
    /// Checks an order for an API v3 merchant: `out_trade_no` of 6–32 characters of
    /// `0-9 A-Z a-z _ - *` only. Nil when it can be sent.
    public func v3Problem() -> String? {
        if let problem = problem() { return problem }
        let allowed = outTradeNo.utf8.allSatisfy { byte in
            (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
                || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || byte == UInt8(ascii: "_")
                || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "*")
        }
        return allowed ? nil : "out_trade_no for an API v3 merchant may hold only 0-9 A-Z a-z _ - *"
    }
}
