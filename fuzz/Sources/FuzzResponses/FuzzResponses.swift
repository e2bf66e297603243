// Feeds arbitrary bytes to the close and query answer readers as if WeChat Pay had sent
// them. The inputs are mutations of answers signed with an attacker's key (fuzz/corpus), so
// any answer that is believed is a forgery: the target traps, and libFuzzer keeps the input.
import WeChatPay

let merchantKey = try! MerchantKey("192006250b4c09247ec02edce69f6a2d")
let order = OrderIdentity(appid: "wx8888888888888888", mchID: "1900000109", outTradeNo: "FUZZORDER01")

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let body = Array(UnsafeBufferPointer(start: data, count: size))
    let close = CloseOrderResponse.interpret(status: 200, body: body, order: order, key: merchantKey)
    if close.outcome != .retry {
        fatalError("a forged close answer was believed: \(close)")
    }
    switch OrderQueryResponse.interpret(status: 200, body: body, order: order, key: merchantKey) {
    case .unclear: break
    case let conclusion: fatalError("a forged query answer was believed: \(conclusion)")
    }
    if let fields = try? FlatXML.decode(body), Signature.isValid(fields, key: merchantKey) {
        fatalError("a forged signature verified")
    }
    return 0
}

// SwiftPM links an executable's `main` to `<Module>_main`; hand over to libFuzzer's driver there.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt
) -> CInt

@_cdecl("FuzzResponses_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    var count = argc
    var arguments: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = argv
    return LLVMFuzzerRunDriver(&count, &arguments) { data, size in fuzzOneInput(data, size) }
}
