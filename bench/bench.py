#!/usr/bin/env python3
"""closeorderd's benchmark: throughput, latency, the wechatpy peer, the ceiling, poll cost.

Run through bench/run, which builds release binaries and installs wrk, wechatpy 1.8.18 and
matplotlib first. Prints one table, writes bench/results/results.json and
bench/results/closes-per-second.png. Every figure comes from this one run, on this machine.
"""

import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(ROOT, ".build", "release")
os.environ.setdefault("CLOSEORDERD", os.path.join(RELEASE, "closeorderd"))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import reliability  # noqa: E402  (the suites' World: simulator, config, database helpers)
from reliability import APPID, KEY, MCH_ID, World, stop  # noqa: E402

RESULTS = os.path.join(ROOT, "bench", "results")
QUICK = os.environ.get("BENCH_QUICK") == "1"


def run_measured(arguments, **popen):
    """Runs a process to completion; returns (wall seconds, CPU seconds, peak RSS MB)."""
    started = time.time()
    process = subprocess.Popen(arguments, **popen)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.time() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{arguments[:2]} exited with {os.waitstatus_to_exitcode(status)}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def daemon_once(world, log_name):
    with open(os.path.join(world.dir, log_name), "w") as log:
        return run_measured([reliability.BINARY, "run", "--config", world.config, "--once"], stdout=log, stderr=log)


def closed_count(world):
    return world.states().get("closed", 0)


def fresh_world(name, *simulator_flags, orders=0, merchant="hmac", **reaper):
    """A World with its simulator, config (`merchant`: "hmac", "md5" or "v3", as World.write_config) and database."""
    world = World(name)
    if merchant == "v3":
        world.add_v3_merchant()
    world.start_simulator(*simulator_flags)
    world.write_config(merchant=merchant, **reaper)
    world.migrate()
    if orders:
        world.insert([f"B{i:08d}" for i in range(orders)])
    return world


# --- scenarios ----------------------------------------------------------------------------


def throughput_zero_latency(orders):
    world = fresh_world("zero", orders=orders, concurrency=64, batch_size=256, lease_seconds=120, timeout_seconds=10)
    os.remove(world.call_log) if os.path.exists(world.call_log) else None
    wall, cpu, rss = daemon_once(world, "daemon.log")
    closed = closed_count(world)
    world.close()
    return {"orders": orders, "closed": closed, "seconds": wall, "closes_per_second": closed / wall,
            "cpu_seconds_per_10k": cpu / closed * 10_000, "peak_rss_mb": rss}


def throughput_with_latency(concurrency, latency_ms=50):
    orders = max(100, int(concurrency * 1000 / latency_ms * (2 if QUICK else 5)))
    world = fresh_world(f"lat{concurrency}", "--latency-ms", str(latency_ms), orders=orders, concurrency=concurrency,
                        batch_size=max(256, concurrency), lease_seconds=120, timeout_seconds=10)
    wall, cpu, rss = daemon_once(world, "daemon.log")
    calls = sorted(t for t, endpoint, _ in world.calls() if endpoint == "closeorder")
    closed = closed_count(world)
    world.close()
    # From the first call to the last answer: start-up (opening the database) is not throughput.
    busy = calls[-1] - calls[0] + latency_ms / 1000 if len(calls) > 1 else wall
    ideal = concurrency / (latency_ms / 1000)
    return {"concurrency": concurrency, "orders": orders, "closed": closed, "seconds": busy,
            "closes_per_second": closed / busy, "ideal": ideal, "of_ideal": closed / busy / ideal}


PEER = r'''
import sqlite3, sys, time
from concurrent.futures import ThreadPoolExecutor
from wechatpy.pay import WeChatPay
from wechatpy.exceptions import WeChatPayException

db, base_url, key, mch_id, appid, threads = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6])
sign_type = sys.argv[7] if len(sys.argv) > 7 else "MD5"

def client():
    pay = WeChatPay(appid=appid, api_key=key, mch_id=mch_id, timeout=10)
    pay.API_BASE_URL = base_url
    return pay

def close_call(pay, number):
    if sign_type == "MD5":
        return pay.order.close(number)  # it sends no sign_type: signed with MD5
    # order.close takes no sign_type; its request with one, which wechatpy signs with HMAC-SHA256
    return pay.order._post("pay/closeorder", data={"appid": appid, "out_trade_no": number, "sign_type": sign_type})

def close_one(pay, connection, row_id, number):
    try:
        close_call(pay, number)
        state, code = "closed", None
    except WeChatPayException as error:
        code = error.errcode
        state = {"ORDERCLOSED": "closed", "ORDERPAID": "paid"}.get(code, "pending")
    connection.execute("UPDATE orders SET state = ?, err_code = ?, attempts = attempts + 1, updated_at = unixepoch() WHERE id = ?",
                       (state, code, row_id))

def due(connection):
    return connection.execute(
        "SELECT id, out_trade_no FROM orders WHERE state = 'pending' AND created_at <= unixepoch() - 300 "
        "AND coalesce(expires_at, created_at + 7200) <= unixepoch() LIMIT 1000").fetchall()

main = sqlite3.connect(db, timeout=10, isolation_level=None)
if threads == 1:
    pay = client()
    while rows := due(main):
        for row_id, number in rows:
            close_one(pay, main, row_id, number)
else:
    import threading
    local = threading.local()
    def work(row):
        if not hasattr(local, "pay"):
            local.pay = client()
            local.connection = sqlite3.connect(db, timeout=10, isolation_level=None)
        close_one(local.pay, local.connection, *row)
    with ThreadPoolExecutor(threads) as pool:
        while rows := due(main):
            list(pool.map(work, rows))
'''


# The sequential PEER on PostgreSQL (bench/compare): the same loop, psycopg in autocommit, one UPDATE per close.
# PEER's sign_type (argument 7) defaults to MD5, what wechatpy's order.close sends; bench/compare gives HMAC-SHA256.
PEER_POSTGRESQL = r'''
import sys
import psycopg
from wechatpy.pay import WeChatPay
from wechatpy.exceptions import WeChatPayException

url, base_url, key, mch_id, appid, sign_type = sys.argv[1:7]  # the password comes in PGPASSWORD

def close_call(pay, number):
    if sign_type == "MD5":
        return pay.order.close(number)  # it sends no sign_type: signed with MD5
    return pay.order._post("pay/closeorder", data={"appid": appid, "out_trade_no": number, "sign_type": sign_type})

def close_one(pay, connection, row_id, number):
    try:
        close_call(pay, number)
        state, code = "closed", None
    except WeChatPayException as error:
        code = error.errcode
        state = {"ORDERCLOSED": "closed", "ORDERPAID": "paid"}.get(code, "pending")
    connection.execute("UPDATE orders SET state = %s, err_code = %s, attempts = attempts + 1, updated_at = now() WHERE id = %s",
                       (state, code, row_id))

def due(connection):
    return connection.execute(
        "SELECT id, out_trade_no FROM orders WHERE state = 'pending' AND created_at <= now() - interval '300 seconds' "
        "AND coalesce(expires_at, created_at + interval '2 hours') <= now() LIMIT 1000").fetchall()

pay = WeChatPay(appid=appid, api_key=key, mch_id=mch_id, timeout=10)
pay.API_BASE_URL = base_url
with psycopg.connect(url, autocommit=True) as main:
    while rows := due(main):
        for row_id, number in rows:
            close_one(pay, main, row_id, number)
'''


def peer(threads, orders, latency_ms=0):
    flags = ["--latency-ms", str(latency_ms)] if latency_ms else []
    world = fresh_world(f"peer{threads}", *flags, orders=orders)
    script = os.path.join(world.dir, "peer.py")
    with open(script, "w") as f:
        f.write(PEER)
    wall, cpu, rss = run_measured([sys.executable, script, world.db, f"http://127.0.0.1:{world.port}/", KEY, MCH_ID, APPID,
                                   str(threads)])
    closed = closed_count(world)
    world.close()
    return {"threads": threads, "latency_ms": latency_ms, "orders": orders, "closed": closed, "seconds": wall,
            "closes_per_second": closed / wall, "cpu_seconds_per_10k": cpu / closed * 10_000, "peak_rss_mb": rss}


WRK_SCRIPT = '''
wrk.method = "POST"
wrk.body = [[%s]]
wrk.headers["Content-Type"] = "text/xml"
'''


def rate_limited(limit, orders):
    world = fresh_world("limit", orders=orders, concurrency=64, lease_seconds=120, timeout_seconds=10,
                        max_requests_per_second=limit)
    daemon_once(world, "daemon.log")
    calls = sorted(t for t, endpoint, _ in world.calls() if endpoint == "closeorder")
    world.close()
    busiest = max(sum(1 for u in calls[i:] if u < t + 1) for i, t in enumerate(calls))
    return {"limit": limit, "orders": orders, "calls_per_second": (len(calls) - 1) / (calls[-1] - calls[0]),
            "busiest_second": busiest}


def ceiling(seconds=10, *simulator_flags, connections=64):
    """wrk against the simulator alone (a signed closeorder body): the most it answers."""
    import hashlib
    import hmac
    world = World("ceiling")
    world.start_simulator(*simulator_flags)
    fields = {"appid": APPID, "mch_id": MCH_ID, "out_trade_no": "CEILING00001", "nonce_str": "ibuaiVcKdpRxkhJA",
              "sign_type": "HMAC-SHA256"}
    message = "&".join(f"{k}={v}" for k, v in sorted(fields.items())) + "&key=" + KEY
    fields["sign"] = hmac.new(KEY.encode(), message.encode(), hashlib.sha256).hexdigest().upper()
    body = "<xml>" + "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in fields.items()) + "</xml>"
    script = os.path.join(world.dir, "closeorder.lua")
    with open(script, "w") as f:
        f.write(WRK_SCRIPT % body)
    try:
        output = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script,
                                 f"http://127.0.0.1:{world.port}/pay/closeorder"], capture_output=True, text=True).stdout
    finally:
        world.close()
        shutil.rmtree(world.dir, ignore_errors=True)
    rate = float(re.search(r"Requests/sec:\s*([\d.]+)", output).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {"requests_per_second": rate, "non_2xx": int(non2xx.group(1)) if non2xx else 0, "seconds": seconds,
            "connections": connections}


def poll_cost(rows):
    output = subprocess.run([os.path.join(RELEASE, "PollBench"), os.path.join(tempfile.mkdtemp(), "poll.sqlite"), str(rows)],
                            capture_output=True, text=True, check=True).stdout
    print("\n".join("  " + line for line in output.splitlines() if not line.startswith("JSON ")))
    return json.loads(next(line for line in output.splitlines() if line.startswith("JSON "))[5:])


def idle_cpu(seconds):
    world = fresh_world("idle")
    world.write_config(poll_interval_seconds=5, concurrency=16, lease_seconds=120, timeout_seconds=10)
    daemon = world.start_daemon()
    time.sleep(2)
    ticks = os.sysconf("SC_CLK_TCK")

    def cpu():
        with open(f"/proc/{daemon.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / ticks

    before = cpu()
    time.sleep(seconds)
    used = cpu() - before
    stop(daemon)
    world.close()
    return {"seconds": seconds, "cpu_seconds": used, "percent_of_a_core": used / seconds * 100}


def due_to_closed(poll_interval, rate=100, seconds=20):
    world = fresh_world(f"latency{poll_interval}", "--latency-ms", "30")
    world.write_config(poll_interval_seconds=poll_interval, concurrency=16, lease_seconds=120, timeout_seconds=10)
    daemon = world.start_daemon()
    time.sleep(1)
    inserted = {}
    connection = world.connect()
    deadline = time.time() + seconds
    index = 0
    while time.time() < deadline:
        number = f"L{index:08d}"
        # Due at once: 400 s old, deadline now.
        connection.execute("INSERT INTO orders (mch_id, appid, out_trade_no, created_at, expires_at) "
                           "VALUES (?, ?, ?, unixepoch() - 400, unixepoch() - 1)", (MCH_ID, APPID, number))
        inserted[number] = time.time()
        index += 1
        time.sleep(1 / rate)
    world.wait_until("all closed", lambda: closed_count(world) == index, timeout=120)
    stop(daemon)
    delays = sorted(t - inserted[n] for t, endpoint, n in world.calls() if endpoint == "closeorder" and n in inserted)
    world.close()
    q = statistics.quantiles(delays, n=100)
    return {"poll_interval_seconds": poll_interval, "orders": index, "p50_seconds": q[49], "p99_seconds": q[98]}


# --- the run -----------------------------------------------------------------------------


def main():
    for tool in ["wrk"]:
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: run bench/run, which installs it")
    results = {"machine": {"cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d")}}
    step = lambda title: print(f"-- {title}", flush=True)

    step("ceiling: the simulator's own rate under wrk")
    results["ceiling"] = ceiling(5 if QUICK else 10)
    step("1. throughput at zero latency")
    results["zero_latency"] = throughput_zero_latency(10_000 if QUICK else 100_000)
    step("2. throughput at 50 ms latency")
    results["latency_50ms"] = [throughput_with_latency(c) for c in [1, 16, 64, 256]]
    step("3. the peer: wechatpy 1.8.18, sequential and 16 threads")
    results["peer"] = {
        "sequential_zero": peer(1, 1000 if QUICK else 3000),
        "threads16_zero": peer(16, 1000 if QUICK else 3000),
        "sequential_50ms": peer(1, 60 if QUICK else 100, latency_ms=50),
        "threads16_50ms": peer(16, 640 if QUICK else 1600, latency_ms=50),
    }
    step("rate limit: max_requests_per_second 200, zero latency, concurrency 64")
    results["rate_limit"] = rate_limited(200, 600 if QUICK else 2000)
    step("5. poll cost with 1,000,000 finished orders")
    results["poll"] = poll_cost(100_000 if QUICK else 1_000_000)
    step("5. idle daemon CPU")
    results["idle"] = idle_cpu(15 if QUICK else 60)
    step("6. latency from due to the close call, 100 orders/s arriving")
    results["due_to_close"] = [due_to_closed(5.0, seconds=10 if QUICK else 20), due_to_closed(0.5, seconds=10 if QUICK else 20)]

    report(results)
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "results.json"), "w") as f:
        json.dump(results, f, indent=2, sort_keys=True)
    plot(results)


def report(r):
    zero, ceiling_, peer_ = r["zero_latency"], r["ceiling"], r["peer"]
    c16 = next(x for x in r["latency_50ms"] if x["concurrency"] == 16)
    rows = [
        ["ceiling: simulator under wrk (2 threads, 64 connections)", f"{ceiling_['requests_per_second']:,.0f} req/s", ""],
        [f"1. closeorderd, zero latency, {zero['orders']:,} orders",
         f"{zero['closes_per_second']:,.0f} closes/s in {zero['seconds']:.1f} s",
         f"{zero['closes_per_second'] / ceiling_['requests_per_second']:.0%} of the ceiling"],
        ["   CPU per 10,000 closes / peak RSS", f"{zero['cpu_seconds_per_10k']:.2f} s / {zero['peak_rss_mb']:.0f} MB", ""],
    ]
    for x in r["latency_50ms"]:
        rows.append([f"2. closeorderd, 50 ms latency, concurrency {x['concurrency']}",
                     f"{x['closes_per_second']:,.0f} closes/s (ideal {x['ideal']:,.0f})", f"{x['of_ideal']:.0%} of ideal"])
    for name, label in [("sequential_zero", "sequential, zero latency"), ("threads16_zero", "16 threads, zero latency"),
                        ("sequential_50ms", "sequential, 50 ms"), ("threads16_50ms", "16 threads, 50 ms")]:
        p = peer_[name]
        mine = zero if "zero" in name else c16
        rows.append([f"3. wechatpy 1.8.18 {label}",
                     f"{p['closes_per_second']:,.0f} closes/s, {p['cpu_seconds_per_10k']:.1f} CPU s/10k",
                     f"closeorderd is {mine['closes_per_second'] / p['closes_per_second']:.1f}×"])
    limit = r["rate_limit"]
    rows.append([f"merchant limited to {limit['limit']}/s (concurrency 64, zero latency)",
                 f"{limit['calls_per_second']:.1f} calls/s", f"busiest second: {limit['busiest_second']} calls"])
    poll = r["poll"]
    rows += [
        [f"5. idle poll over {poll['finished_rows']:,} finished rows", f"median {poll['idle_poll_median_us']:.0f} µs",
         f"p99 {poll['idle_poll_p99_us']:.0f} µs"],
        ["   claim of 256 due orders", f"median {poll['claim_256_median_us'] / 1000:.2f} ms",
         "full scan: " + ("YES" if poll["full_scan"] else "no")],
        [f"   idle daemon over {r['idle']['seconds']} s", f"{r['idle']['cpu_seconds']:.3f} CPU s",
         f"{r['idle']['percent_of_a_core']:.3f} % of a core"],
    ]
    for x in r["due_to_close"]:
        rows.append([f"6. due → close call, poll every {x['poll_interval_seconds']} s",
                     f"p50 {x['p50_seconds']:.2f} s", f"p99 {x['p99_seconds']:.2f} s"])
    print()
    print(reliability.table(rows, ["scenario", "figure", "comparison"]))

    seq = peer_["sequential_zero"]
    targets = [
        ["≥ 10× sequential wechatpy at zero latency", zero["closes_per_second"] / seq["closes_per_second"] >= 10],
        ["≥ 10× threaded wechatpy at zero latency", zero["closes_per_second"] / peer_["threads16_zero"]["closes_per_second"] >= 10],
        ["≥ 50 % of the ceiling at zero latency", zero["closes_per_second"] / ceiling_["requests_per_second"] >= 0.5],
        ["within 10 % of concurrency/latency up to 64", all(x["of_ideal"] >= 0.9 for x in r["latency_50ms"] if x["concurrency"] <= 64)],
        ["CPU per 10k closes ≤ 1/10 of sequential wechatpy", zero["cpu_seconds_per_10k"] <= seq["cpu_seconds_per_10k"] / 10],
        ["idle poll over 1,000,000 rows < 1 ms", poll["idle_poll_median_us"] < 1000 and not poll["full_scan"]],
        ["idle daemon < 0.1 % of a core", r["idle"]["percent_of_a_core"] < 0.1],
        ["peak RSS < 64 MB at 100,000 due orders", zero["peak_rss_mb"] < 64],
    ]
    r["targets"] = {name: met for name, met in targets}
    print()
    print(reliability.table([[name, "met" if met else "MISSED"] for name, met in targets], ["target", "result"]))


def plot(r):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no plot written")
        return
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    points = r["latency_50ms"]
    left.plot([x["concurrency"] for x in points], [x["closes_per_second"] for x in points], "o-", label="closeorderd")
    left.plot([x["concurrency"] for x in points], [x["ideal"] for x in points], "--", color="gray", label="ideal: concurrency / 50 ms")
    left.axhline(r["peer"]["threads16_50ms"]["closes_per_second"], color="tab:red", linestyle=":", label="wechatpy, 16 threads")
    left.axhline(r["peer"]["sequential_50ms"]["closes_per_second"], color="tab:orange", linestyle=":", label="wechatpy, sequential")
    left.set_xscale("log", base=2)
    left.set_yscale("log")
    left.set_xlabel("concurrency")
    left.set_ylabel("closes per second")
    left.set_title("50 ms simulated latency")
    left.legend(fontsize=8)
    names = ["simulator\nceiling", "closeorderd", "wechatpy\n16 threads", "wechatpy\nsequential"]
    values = [r["ceiling"]["requests_per_second"], r["zero_latency"]["closes_per_second"],
              r["peer"]["threads16_zero"]["closes_per_second"], r["peer"]["sequential_zero"]["closes_per_second"]]
    bars = right.bar(names, values, color=["gray", "tab:blue", "tab:red", "tab:orange"])
    right.bar_label(bars, labels=[f"{v:,.0f}" for v in values], fontsize=8)
    right.set_ylabel("closes (requests) per second")
    right.set_title("zero latency, same machine, same run")
    figure.tight_layout()
    figure.savefig(os.path.join(RESULTS, "closes-per-second.png"), dpi=110)


if __name__ == "__main__":
    main()
