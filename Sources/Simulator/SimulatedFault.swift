/// A misbehaviour the simulator can show for chosen orders, to drive every branch of a
/// client: WeChat-side errors, transport failures and hostile bodies.
public enum SimulatedFault: String, Sendable, CaseIterable {
    // Business answers (signed, return_code=SUCCESS, result_code=FAIL).
    case systemError = "systemerror"
    case frequencyLimited = "frequency_limited"
    case signError = "signerror"
    case xmlFormatError = "xml_format_error"
    case requirePostMethod = "require_post_method"
    case unknownErrCode = "unknown_err_code"
    // Communication failures.
    case returnFail = "return_fail"
    case http500 = "http500"
    case http502 = "http502"
    case http503 = "http503"
    case hang = "hang"
    case drop = "drop"
    case truncated = "truncated"
    // Untrustworthy or hostile bodies.
    case forgedSign = "forged_sign"
    case forgedPaid = "forged_paid"
    case unsignedSuccess = "unsigned_success"
    case doctype = "doctype"
    case billionLaughs = "billion_laughs"
    case huge = "huge"
    case invalidUTF8 = "invalid_utf8"
}

/// A fault for one order: shown on its first `remaining` calls (all calls when nil).
public struct FaultPlan: Sendable, Equatable {
    public var fault: SimulatedFault
    public var remaining: Int?

    public init(_ fault: SimulatedFault, times: Int? = nil) {
        self.fault = fault
        self.remaining = times
    }

    /// Parses `KIND` or `KIND:N`, as `--fault ORDER=KIND[:N]` takes it.
    public init?(parsing text: String) {
        let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
        guard let fault = SimulatedFault(rawValue: parts[0]) else { return nil }
        var times: Int?
        if parts.count == 2 {
            guard let count = Int(parts[1]), count > 0 else { return nil }
            times = count
        }
        self.init(fault, times: times)
    }
}
