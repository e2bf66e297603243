import ArgumentParser
import ConfigurationFile
import Foundation
import OrderStore
import Reaper
import WeChatPay

struct QueryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "query",
        abstract:
            "Show what closeorderd did: a summary, orders in a state, one order and its attempts, or a window of history.",
        discussion: "Read-only: safe to run while the daemon and the app write to the database."
    )

    @OptionGroup var options: DatabaseOptions

    @Argument(help: "Show this order and its attempt history.")
    var outTradeNo: String?

    @Option(help: "List orders in this state: pending, closing, closed, paid or failed.")
    var state: OrderState?

    @Option(help: "At most this many orders with --state.")
    var limit: Int = 50

    @Option(
        help: ArgumentHelp(
            "What happened in the last DURATION (e.g. 90s, 15m, 1h, 2d, 1h30m; at most 3650d): history lines by outcome and err_code, and how late orders were closed.",
            valueName: "duration"), transform: HistoryWindow.init(parsing:))
    var since: HistoryWindow?

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    func validate() throws {
        guard limit > 0 else { throw ValidationError("--limit must be at least 1") }
        if [outTradeNo != nil, state != nil, since != nil].filter({ $0 }).count > 1 {
            throw ValidationError("give one of OUT_TRADE_NO, --state and --since")
        }
    }

    func run() async throws {
        // The due summary needs the timing keys; without a config file, --db and the defaults do.
        var policy = DaemonConfiguration.ReaperSettings().duePolicy
        let (database, password): (String, String?)
        if options.db != nil && !FileManager.default.fileExists(atPath: options.config) {
            (database, password) = (options.db ?? "", nil)
        } else {
            let configuration = loadConfiguration(options, readKeys: false)
            (database, password) = (configuration.database, configuration.databasePassword)
            policy = configuration.reaper.duePolicy
        }
        let report = QueryReport(json: json)
        do {
            let store = try await OrderTables.open(database, password: password, access: .readOnly, logger: quietLogger)
            let now = Int64(Date().timeIntervalSince1970)
            if let outTradeNo {
                let orders = try await store.orders(outTradeNo: outTradeNo)
                guard !orders.isEmpty else {
                    exitWithMessage("no order with out_trade_no \(outTradeNo) in \(OrderTables.redacted(database))", code: 1)
                }
                var histories: [[AttemptHistoryRecord]] = []
                for order in orders { histories.append(try await store.attempts(orderID: order.id)) }
                output(report.details(orders, histories: histories))
            } else if let state {
                output(report.list(try await store.orders(inState: state, limit: limit)))
            } else if let since {
                output(report.activity(try await store.activity(since: now - since.seconds, until: now, policy: policy)))
            } else {
                output(report.summary(try await store.summary(now: now, policy: policy)))
            }
        } catch {
            exitWithMessage("\(error)", code: ExitCodes.database)
        }
    }
}

extension OrderState: ExpressibleByArgument {}

/// A length of time back from now, as `--since` takes it: whole numbers with a unit each,
/// `s`, `m`, `h` or `d`, e.g. `90s`, `15m`, `1h30m`, `7d`; at most ten years.
struct HistoryWindow: Equatable {
    let seconds: Int64

    static let longest: Int64 = 3650 * 86400

    init(parsing argument: String) throws {
        let problem = ValidationError(
            "--since takes a length of time: whole numbers each with a unit s, m, h or d, e.g. 90s, 15m, 1h30m, 7d "
                + "(at most 3650d), got '\(argument)'")
        var total: Int64 = 0
        var digits = ""
        for character in argument {
            if character.isASCII && character.isNumber {
                digits.append(character)
                continue
            }
            let unit: Int64? =
                switch character {
                case "s": 1
                case "m": 60
                case "h": 3600
                case "d": 86400
                default: nil
                }
            guard let unit, let count = Int64(digits), count <= Self.longest else { throw problem }
            total += count * unit
            digits = ""
        }
        guard digits.isEmpty, total > 0, total <= Self.longest else { throw problem }
        seconds = total
    }
}

/// Renders query results as aligned tables or as JSON.
struct QueryReport {
    let json: Bool

    func summary(_ summary: StoreSummary) -> String {
        if json { return encode(summary) }
        var states = TextTable("STATE", "ORDERS")
        for state in OrderState.allCases { states.add([state.rawValue, "\(summary.countsByState[state.rawValue] ?? 0)"]) }
        var text = states.rendered + "\n\n"
        if summary.failuresByErrCode.isEmpty {
            text += "no failed orders\n"
        } else {
            var failures = TextTable("FAILED BY ERR_CODE", "ORDERS")
            for (code, count) in summary.failuresByErrCode.sorted(by: {
                $0.value > $1.value || ($0.value == $1.value && $0.key < $1.key)
            }) {
                failures.add([code, "\(count)"])
            }
            text += failures.rendered + "\n"
        }
        text += "\ndue now: \(summary.due)"
        if let lateness = summary.oldestDueLatenessSeconds { text += " (oldest due for \(lateness) s)" }
        return text
    }

    func activity(_ activity: RecentActivity) -> String {
        if json { return encode(activity) }
        var text = "from \(Self.time(activity.since)) to \(Self.time(activity.until))\n\n"
        var outcomes = TextTable("CALL", "OUTCOME", "HISTORY LINES")
        for (call, counts) in activity.outcomes.sorted(by: { $0.key < $1.key }) {
            for (outcome, count) in counts.sorted(by: { $0.key < $1.key }) { outcomes.add([call, outcome, "\(count)"]) }
        }
        text += activity.outcomes.isEmpty ? "no history lines in this window\n" : outcomes.rendered + "\n"
        if !activity.errCodes.isEmpty {
            var codes = TextTable("ERR_CODE", "HISTORY LINES")
            for (code, count) in activity.errCodes.sorted(by: { $0.value > $1.value || ($0.value == $1.value && $0.key < $1.key) }
            ) {
                codes.add([code, "\(count)"])
            }
            text += "\n" + codes.rendered + "\n"
        }
        let lateness = activity.closeLateness
        if let p50 = lateness.p50, let p90 = lateness.p90, let p99 = lateness.p99, let max = lateness.max {
            text +=
                "\nclosed \(lateness.orders) orders, this late after they became due: "
                + "p50 \(p50) s, p90 \(p90) s, p99 \(p99) s, max \(max) s"
        } else {
            text += "\nno order closed in this window"
        }
        return text
    }

    func list(_ orders: [OrderRecord]) -> String {
        if json { return encode(orders) }
        var table = TextTable("OUT_TRADE_NO", "MCH_ID", "STATE", "ATTEMPTS", "ERR_CODE", "UPDATED", "LAST_ERROR")
        for order in orders {
            table.add([
                order.outTradeNo, order.mchID, order.unreadable["state"] ?? order.state?.rawValue ?? "-", "\(order.attempts)",
                order.errCode ?? "-",
                order.unreadable["updated_at"] ?? Self.time(order.updatedAt), order.lastError ?? "-",
            ])
        }
        return orders.isEmpty ? "no orders" : table.rendered
    }

    struct OrderDetails: Encodable {
        let order: OrderRecord
        let attempts: [AttemptHistoryRecord]
    }

    func details(_ orders: [OrderRecord], histories: [[AttemptHistoryRecord]]) -> String {
        if json { return encode(zip(orders, histories).map { OrderDetails(order: $0, attempts: $1) }) }
        return zip(orders, histories).map { order, attempts in
            var fields = TextTable("FIELD", "VALUE")
            let values: [(String, String?)] = [
                ("out_trade_no", order.outTradeNo), ("mch_id", order.mchID), ("appid", order.appid),
                ("sub_mch_id", order.subMchID), ("sub_appid", order.subAppID), ("state", order.state?.rawValue),
                ("attempts", "\(order.attempts)"), ("created_at", Self.time(order.createdAt)),
                ("expires_at", order.expiresAt.map(Self.time)), ("next_attempt_at", order.nextAttemptAt.map(Self.time)),
                ("lease_expires_at", order.leaseExpiresAt.map(Self.time)), ("err_code", order.errCode),
                ("err_code_des", order.errCodeDes), ("last_error", order.lastError),
                ("closed_at", order.closedAt.map(Self.time)), ("updated_at", Self.time(order.updatedAt)),
                ("trade_state", order.tradeState), ("transaction_id", order.transactionID),
                ("total_fee", order.totalFee.map(String.init)), ("time_end", order.timeEnd), ("trade_type", order.tradeType),
            ]
            for (name, value) in values {
                // A value the app wrote in another type than the column's is shown as it is.
                let shown = order.unreadable[name].map { "\($0) (not a valid value for \(name))" } ?? value
                fields.add([name, shown ?? "-"])
            }
            var history = TextTable("ATTEMPT", "FINISHED", "CALL", "HOST", "OUTCOME", "HTTP", "LATENCY_MS", "ERR_CODE", "MESSAGE")
            for attempt in attempts {
                history.add([
                    "\(attempt.attempt)", Self.time(attempt.finishedAt), attempt.call?.rawValue ?? "-", attempt.host ?? "-",
                    attempt.outcome?.rawValue ?? "?",
                    attempt.httpStatus.map(String.init) ?? "-", attempt.latencyMilliseconds.map(String.init) ?? "-",
                    attempt.errCode ?? "-", attempt.message,
                ])
            }
            return fields.rendered + "\n\n" + (attempts.isEmpty ? "no attempts yet" : history.rendered)
        }.joined(separator: "\n\n")
    }

    private func encode<T: Encodable>(_ value: T) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        guard let json = (try? encoder.encode(value)).map({ String(decoding: $0, as: UTF8.self) }) else { return "{}" }
        return Self.escapingControls(inJSON: json)
    }

    /// JSONEncoder escapes C0 controls itself; DEL, C1 controls, line and paragraph separators
    /// and bidirectional overrides it leaves raw. They become `\uXXXX` here (all are in the
    /// Basic Multilingual Plane), so the output is safe on a terminal and in JavaScript. The
    /// line breaks of pretty printing stay (inside strings the encoder has escaped them).
    static func escapingControls(inJSON json: String) -> String {
        let raw = { (scalar: Unicode.Scalar) in scalar != "\n" && Untrusted.isControl(scalar) }
        guard json.unicodeScalars.contains(where: raw) else { return json }
        var result = ""
        for scalar in json.unicodeScalars {
            if raw(scalar) {
                result += "\\u" + String(format: "%04X", scalar.value)
            } else {
                result.unicodeScalars.append(scalar)
            }
        }
        return result
    }

    /// Unix seconds as UTC ISO 8601, e.g. `2026-11-29T10:46:10Z`.
    static func time(_ seconds: Int64) -> String {
        Date(timeIntervalSince1970: TimeInterval(seconds)).formatted(.iso8601)
    }
}
