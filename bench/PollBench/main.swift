// Measures the poll on a big table: 1,000,000 finished orders (plus pending ones whose
// deadline is far away), then 1,000 due ones. Prints the query plan, the time of one idle
// poll and of one claim (medians over many runs), and a JSON line for bench/bench.py.
//   PollBench DB_PATH [FINISHED_ROWS]
import Foundation
import OrderStore

let arguments = CommandLine.arguments
guard arguments.count >= 2 else {
    FileHandle.standardError.write(Data("usage: PollBench DB_PATH [FINISHED_ROWS]\n".utf8))
    exit(2)
}
let path = arguments[1]
let finished = arguments.count > 2 ? Int(arguments[2]) ?? 1_000_000 : 1_000_000
let policy = DuePolicy(minOrderAgeSeconds: 300, paymentTimeoutSeconds: 7200)
let now = Int64(Date().timeIntervalSince1970)

try? FileManager.default.removeItem(atPath: path)
let store = try OrderStore(path: path)
try await store.migrate()
let filled = ContinuousClock.now
try await store.withWriteTransaction { db in
    try db.execute(
        sql: """
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
            INSERT INTO orders (mch_id, appid, out_trade_no, created_at, expires_at, state, attempts, closed_at, updated_at)
            SELECT '1900000109', 'wx8888888888888888', 'DONE' || i, ? - 86400, ? - 80000,
                   CASE i % 20 WHEN 0 THEN 'paid' WHEN 1 THEN 'failed' ELSE 'closed' END, 1, ? - 80000, ? - 80000
              FROM n
            """, arguments: [finished, now, now, now, now])
    // Orders still open, their deadline an hour away: the poll must not read them either.
    try db.execute(
        sql: """
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000)
            INSERT INTO orders (mch_id, appid, out_trade_no, created_at, expires_at)
            SELECT '1900000109', 'wx8888888888888888', 'OPEN' || i, ? - 600, ? + 3600 FROM n
            """, arguments: [now, now])
}
try await store.withWriteTransaction { db in try db.execute(sql: "ANALYZE") }
let fillSeconds =
    Double((ContinuousClock.now - filled).components.attoseconds) / 1e18
    + Double((ContinuousClock.now - filled).components.seconds)

func microseconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) * 1e6 + Double(duration.components.attoseconds) / 1e12
}

func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
func percentile99(_ values: [Double]) -> Double { values.sorted()[min(values.count - 1, values.count * 99 / 100)] }

// Idle polls: nothing is due.
var idle: [Double] = []
for _ in 0..<2000 {
    let started = ContinuousClock.now
    let claimed = try await store.claimDue(now: now, policy: policy, limit: 256, leaseSeconds: 120, maxAttempts: 10)
    idle.append(microseconds(ContinuousClock.now - started))
    precondition(claimed.orders.isEmpty)
}

// Claims of 256 due orders out of 1,000, put back between runs.
try await store.withWriteTransaction { db in
    try db.execute(
        sql: """
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
            INSERT INTO orders (mch_id, appid, out_trade_no, created_at, expires_at)
            SELECT '1900000109', 'wx8888888888888888', 'DUE' || i, ? - 900, ? - 60 FROM n
            """, arguments: [now, now])
}
var claims: [Double] = []
for _ in 0..<50 {
    let started = ContinuousClock.now
    let claimed = try await store.claimDue(now: now, policy: policy, limit: 256, leaseSeconds: 120, maxAttempts: 10)
    claims.append(microseconds(ContinuousClock.now - started))
    precondition(claimed.orders.count == 256)
    try await store.withWriteTransaction { db in
        try db.execute(
            sql:
                "UPDATE orders SET state = 'pending', attempts = 0, lease_token = NULL, lease_expires_at = NULL WHERE state = 'closing'"
        )
    }
}
let plan = try await store.queryPlan(.poll, now: now, policy: policy)

print("rows: \(finished) finished + 10000 open (deadline in 1 h) + 1000 due; filled in \(String(format: "%.1f", fillSeconds)) s")
print("due-order query plan:")
for line in plan { print("  \(line)") }
print(
    String(format: "idle poll:        median %8.1f µs   p99 %8.1f µs   (%d runs)", median(idle), percentile99(idle), idle.count))
print(
    String(
        format: "claim of 256:     median %8.1f µs   p99 %8.1f µs   (%d runs)", median(claims), percentile99(claims), claims.count
    ))
let fullScan = plan.contains { $0.contains("SCAN orders") && !$0.contains("INDEX") }
let json: [String: Any] = [
    "finished_rows": finished, "idle_poll_median_us": median(idle), "idle_poll_p99_us": percentile99(idle),
    "claim_256_median_us": median(claims), "claim_256_p99_us": percentile99(claims), "plan": plan, "full_scan": fullScan,
]
let data = try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys])
print("JSON " + String(decoding: data, as: UTF8.self))
