import ArgumentParser
import Foundation
import OrderStore

struct RetryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "retry",
        abstract: "Move failed orders back to pending, attempts reset and history kept, for the daemon to close.",
        discussion: """
            For an operator who fixed what made them fail (a wrong key, a missing merchant). Examples:
              closeorderd retry 1217752501201407033233368018
              closeorderd retry --state failed --err-code SIGNERROR --mch-id 1900000109
            """
    )

    @OptionGroup var options: DatabaseOptions

    @Argument(help: "Requeue this order (if it failed).")
    var outTradeNo: String?

    @Option(help: "Requeue every order in this state; only `failed` can be requeued.")
    var state: OrderState?

    @Option(help: "Only orders that failed with this err_code.")
    var errCode: String?

    @Option(help: "Only this merchant's orders.")
    var mchID: String?

    func validate() throws {
        if let state, state != .failed { throw ValidationError("only failed orders can be requeued (--state failed)") }
        if outTradeNo == nil && state == nil { throw ValidationError("give an OUT_TRADE_NO, or --state failed to requeue many") }
    }

    func run() async throws {
        let (database, password) = databaseAndPassword(options)
        do {
            let store = try await OrderTables.open(database, password: password, access: .existing, logger: quietLogger)
            let result = try await store.requeueFailed(
                RequeueSelection(outTradeNo: outTradeNo, errCode: errCode, mchID: mchID),
                now: Int64(Date().timeIntervalSince1970))
            let count = result.requeued
            output("requeued \(count) failed order\(count == 1 ? "" : "s")")
            if result.leftWithBadTimes > 0 {
                output(
                    "left \(result.leftWithBadTimes) failed: created_at or expires_at is not Unix seconds between 2000 and 2200; "
                        + "fix those rows first")
            }
        } catch {
            exitWithMessage("\(error)", code: ExitCodes.database)
        }
    }
}
