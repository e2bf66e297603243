#!/usr/bin/env python3
"""closeorderd's PostgreSQL benchmark: several daemons on one table, and the idle poll.

Run through `bench/run --postgresql`, which builds the release binary and installs
Debian's postgresql and wrk and PyPI's psycopg first; `BENCH_QUICK=1 bench/run
--postgresql` is a smaller pass (about 3 minutes; the full run about 13). Starts its own
throw-away cluster with scripts/postgres-cluster and stops it on every exit path (SIGKILL
aside). Prints one table and writes bench/results/postgresql.json. Every figure comes from
this one run:

  bound  the simulator alone under wrk at 50 ms latency with as many connections as 4
         daemons have call slots: what the simulator itself allows them.
  1.     1, 2 and 4 daemons on one table and one simulator at 50 ms, draining a backlog of
         due orders with `run --once` (10 s of work at concurrency ÷ latency), while the
         app inserts 1,000 new orders/s (transactions of 10, on its own connection; due in
         15 minutes, so they add writes, not work). Each daemon has `--concurrency` call
         slots, so one daemon is bounded by concurrency ÷ latency: by default series at 4,
         8 and 32 slots, from what 4 daemons can get of the machine's 2 cores to far past
         them (the series show where the cores run out). No merchant rate limit. Rounds
         alternate the cases; the table shows medians. Closes/s runs from the first call to
         the last answer; CPU is split between the daemons, PostgreSQL (postmaster and
         backends; also less what the app's inserts cost it alone, measured for 2 s before
         the daemons start), the simulator, the app, and the rest of the machine.
  2.     the idle poll over 1,000,000 finished rows (+ 10,000 open, deadline in an hour):
         the claim statement exactly as the daemon sends it (taken from the server's
         statement log while a daemon polls), its plan and EXPLAIN ANALYZE execution time,
         and the poll timed as the daemon runs it (BEGIN; claim; COMMIT, parameters bound,
         a custom plan each time) under pgbench, beside a bare `SELECT 1` for the
         round-trip floor; then a claim of 256 out of 1,000 due orders (rolled back).

    python3 bench/postgres.py [--concurrency N...] [--rounds N]   # what bench/run runs
"""

import argparse
import json
import os
import re
import signal
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

sys.dont_write_bytecode = True  # no __pycache__ in bench/ or scripts/ from these imports
import bench  # noqa: E402  (its helpers; it sets CLOSEORDERD and imports the suites' World)
from bench import QUICK, RESULTS  # noqa: E402
from reliability import APPID, MCH_ID, World  # noqa: E402

CLUSTER_SCRIPT = os.path.join(bench.ROOT, "scripts", "postgres-cluster")
LATENCY_MS = 50
APP_RATE = 1000
# Simulators (in their Worlds) and daemons to end if the run is cut short (SIGTERM, Ctrl-C, an error).
LEFT_RUNNING = []


def end_left_running():
    for item in reversed(LEFT_RUNNING):
        if isinstance(item, World):
            item.close()
            shutil.rmtree(item.dir, ignore_errors=True)
        elif isinstance(item, threading.Thread):
            item.running = False
            item.join(timeout=10)
        elif item.poll() is None:
            item.kill()
            item.wait()
    LEFT_RUNNING.clear()


# --- the cluster -------------------------------------------------------------------------


class Cluster:
    """A throw-away cluster from scripts/postgres-cluster; one database per scenario."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="closeorderd-pgbench-")
        os.chmod(self.dir, 0o755)  # as root the cluster runs as `postgres`, which must reach its folder
        self.data = os.path.join(self.dir, "cluster")
        started = subprocess.run([CLUSTER_SCRIPT, "start", self.data], capture_output=True, text=True)
        if started.returncode != 0:
            self.stop()
            raise RuntimeError(f"scripts/postgres-cluster start failed: {started.stderr}")
        self.url = started.stdout.strip()
        parts = urllib.parse.urlsplit(self.url)
        self.user, self.password, self.host, self.port = parts.username, parts.password, parts.hostname, parts.port
        self.env = dict(os.environ, PGPASSWORD=self.password)

    def url_of(self, database):
        """The URL the daemons get: no password (it is in a file of mode 600)."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}?sslmode=disable"

    def psql(self, database, sql):
        return subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", self.url_of(database)],
                              input=sql, capture_output=True, text=True, check=True, env=self.env).stdout

    def create(self, database):
        """A fresh database, migrated by the binary under test."""
        self.psql("postgres", f"DROP DATABASE IF EXISTS {database}; CREATE DATABASE {database};")
        subprocess.run([bench.reliability.BINARY, "migrate", "--db", self.url_of(database)], capture_output=True,
                       text=True, check=True, env=self.env)
        return self.url_of(database)

    def drop(self, database):
        self.psql("postgres", f"DROP DATABASE IF EXISTS {database} WITH (FORCE);")

    def cpu(self):
        """CPU seconds of the server so far: the postmaster, its live backends and the ones gone."""
        with open(os.path.join(self.data, "data", "postmaster.pid")) as f:
            postmaster = int(f.readline())
        total = process_cpu(postmaster, children=True)
        for entry in os.listdir("/proc"):
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if entry.isdigit() and int(f.read().rsplit(")", 1)[1].split()[1]) == postmaster:
                        total += process_cpu(int(entry))
            except (OSError, ValueError):
                pass
        return total

    def settled_cpu(self, database, timeout=10):
        """cpu() once `database` has no client left and the server has reaped their backends.
        Read at once after a client exits, cpu() can miss its backend, on its way out, whole."""
        deadline = time.time() + timeout
        while time.time() < deadline and self.psql(
                "postgres", f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{database}';").strip() != "0":
            time.sleep(0.1)
        before = self.cpu()
        while time.time() < deadline:
            time.sleep(0.2)
            after = self.cpu()
            if after - before < 0.01:
                return after
            before = after
        return before

    def server_log(self):
        with open(os.path.join(self.data, "server.log"), errors="replace") as f:
            return f.read()

    def stop(self):
        subprocess.run([CLUSTER_SCRIPT, "stop", self.data], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


class PgWorld(World):
    """The suites' World (simulator, config, call log) with its orders in a PostgreSQL database."""

    def __init__(self, name, cluster, database):
        super().__init__(name)
        self.cluster, self.database = cluster, database
        self.db = cluster.url_of(database)
        self.password_file = os.path.join(self.dir, "postgres.password")
        with open(self.password_file, "w") as f:
            f.write(cluster.password + "\n")
        os.chmod(self.password_file, 0o600)

    def write_config(self, max_requests_per_second=None, **reaper):
        super().write_config(max_requests_per_second, **reaper)
        with open(self.config, "a") as f:
            f.write(f"database_password_file: {self.password_file}\n")

    def states(self):
        rows = self.cluster.psql(self.database, "SELECT state, count(*) FROM orders GROUP BY state;")
        return {state: int(count) for state, count in (line.split("|") for line in rows.split())}


class PgInserter(threading.Thread):
    """The app: inserts new orders (created now, deadline in 15 minutes, so not due during the
    run) in transactions of `batch`, paced to `per_second`, on its own connection."""

    def __init__(self, cluster, database, per_second, batch=10):
        super().__init__(daemon=True)
        self.url = cluster.url_of(database)
        self.password, self.per_second, self.batch = cluster.password, per_second, batch
        self.inserted, self.errors, self.latencies = 0, [], []
        self.running = True

    def run(self):
        import psycopg
        with psycopg.connect(self.url, password=self.password) as connection:
            interval = self.batch / self.per_second
            self.started = next_time = time.time()
            while self.running:
                rows = [(MCH_ID, APPID, f"APP{self.inserted + i:010d}") for i in range(self.batch)]
                began = time.time()
                try:
                    with connection.cursor() as cursor:
                        cursor.executemany("INSERT INTO orders (mch_id, appid, out_trade_no, expires_at) "
                                           "VALUES (%s, %s, %s, now() + interval '15 minutes')", rows)
                    connection.commit()
                    self.inserted += self.batch
                    self.latencies.append(time.time() - began)
                except psycopg.Error as error:
                    self.errors.append(str(error))
                    connection.rollback()
                next_time += interval
                time.sleep(max(0, next_time - time.time()))
            self.seconds = time.time() - self.started

    def stop(self):
        self.running = False
        self.join()


def machine_cpu():
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def process_cpu(pid, children=False):
    """CPU seconds of a process (with its reaped children's when `children`)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if children else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def insert_due(cluster, database, orders):
    """`orders` due orders (created 15 minutes ago, deadline a second ago), and fresh statistics."""
    cluster.psql(database, f"""
        INSERT INTO orders (mch_id, appid, out_trade_no, created_at, expires_at)
        SELECT '{MCH_ID}', '{APPID}', 'DUE' || lpad(n::text, 8, '0'), now() - interval '15 minutes', now() - interval '1 second'
          FROM generate_series(1, {orders}) AS n;
        VACUUM ANALYZE orders;""")


# --- 1. several daemons on one table ----------------------------------------------------------


def daemons_on_one_table(cluster, daemons, concurrency, seconds, round_):
    ideal = daemons * concurrency / (LATENCY_MS / 1000)
    orders = int(ideal * seconds)
    database = f"scale{daemons}_{round_}"
    cluster.create(database)
    world = PgWorld(database, cluster, database)
    LEFT_RUNNING.append(world)
    world.start_simulator("--latency-ms", str(LATENCY_MS))
    world.write_config(concurrency=concurrency, batch_size=max(256, concurrency), lease_seconds=120, timeout_seconds=10)
    insert_due(cluster, database, orders)
    app = PgInserter(cluster, database, APP_RATE)
    LEFT_RUNNING.append(app)
    app.start()
    time.sleep(1)
    # The server's CPU for the app's inserts alone, to tell it from the closes' share.
    alone_before, alone_started = cluster.cpu(), time.time()
    time.sleep(2)
    server_app_cores = (cluster.cpu() - alone_before) / (time.time() - alone_started)
    busy_before, total_before = machine_cpu()
    simulator_before, server_before = process_cpu(world.simulator.pid), cluster.cpu()
    app_before = time.process_time()  # this process: the app's thread, the rest of it waits
    started = time.time()
    processes = []
    for index in range(daemons):
        log = open(os.path.join(world.dir, f"daemon-{index}.log"), "w")
        world.logs.append(log.name)
        processes.append(subprocess.Popen([bench.reliability.BINARY, "run", "--config", world.config, "--once"],
                                          stdout=log, stderr=log))
        LEFT_RUNNING.append(processes[-1])
    daemon_cpu, statuses = 0.0, []
    for process in processes:
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        statuses.append(process.returncode)
        daemon_cpu += usage.ru_utime + usage.ru_stime
    wall = time.time() - started
    busy_after, total_after = machine_cpu()
    simulator_cpu, server_cpu = process_cpu(world.simulator.pid) - simulator_before, cluster.cpu() - server_before
    app_cpu = time.process_time() - app_before
    app.stop()
    call_latency = cluster.psql(database, "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) "
                                          "FROM close_attempts WHERE call = 'closeorder';")
    calls = sorted(t for t, endpoint, _ in world.calls() if endpoint == "closeorder")
    numbers = [n for _, endpoint, n in world.calls() if endpoint == "closeorder"]
    states = world.states()
    world.close()
    if any(statuses):
        raise RuntimeError(f"a daemon exited with {statuses}; logs in {world.dir}")
    complaints = [line for line in world.log_text().splitlines() if re.search(r"\b(warning|error|critical)\b", line, re.I)]
    if os.environ.get("BENCH_KEEP"):
        print(f"   kept {world.dir}")
    else:
        shutil.rmtree(world.dir, ignore_errors=True)
    cluster.drop(database)
    busy = calls[-1] - calls[0] + LATENCY_MS / 1000
    closed = states.get("closed", 0)
    latencies = sorted(app.latencies)
    return {"daemons": daemons, "concurrency": concurrency, "orders": orders, "closed": closed, "states": states,
            "log_complaints": len(complaints), "first_complaints": complaints[:3],
            "close_calls": len(numbers), "orders_called_twice": len(numbers) - len(set(numbers)),
            "seconds": busy, "closes_per_second": closed / busy, "ideal": ideal, "of_ideal": closed / busy / ideal,
            "daemon_cpu_seconds_per_10k": daemon_cpu / closed * 10_000,
            "server_cpu_seconds_per_10k": server_cpu / closed * 10_000, "server_app_alone_cores": server_app_cores,
            "server_cpu_seconds_per_10k_net_of_app": max(0, server_cpu - server_app_cores * wall) / closed * 10_000,
            "simulator_cpu_seconds_per_10k": simulator_cpu / closed * 10_000,
            # Cores busy while the daemons ran, by whom ("app" is this process: the inserting thread).
            "cores": {"daemons": daemon_cpu / wall, "postgresql": server_cpu / wall, "simulator": simulator_cpu / wall,
                      "app": app_cpu / wall},
            "machine_busy_cores": (busy_after - busy_before) / (total_after - total_before) * os.cpu_count(),
            "machine_busy_percent": (busy_after - busy_before) / (total_after - total_before) * 100,
            # A call slot's turn: the HTTP call, then the write-back before the slot is free again.
            "call_latency_p50_ms": float(call_latency), "slot_cycle_ms": daemons * concurrency / (closed / busy) * 1000,
            "app_inserted": app.inserted, "app_seconds": app.seconds, "app_inserts_per_second": app.inserted / app.seconds,
            "app_insert_errors": len(app.errors), "app_first_errors": app.errors[:3],
            "app_transaction_p50_ms": latencies[len(latencies) // 2] * 1000,
            "app_transaction_p99_ms": latencies[min(len(latencies) - 1, len(latencies) * 99 // 100)] * 1000}


# --- 2. the idle poll --------------------------------------------------------------------


def captured_claim(cluster, database):
    """The claim statement and its parameters as a daemon sends them: from the server's log
    while one `run --once` polls (with `log_statement = all` on that database only)."""
    world = PgWorld("poll-capture", cluster, database)
    LEFT_RUNNING.append(world)
    world.start_simulator()
    world.write_config(concurrency=16, batch_size=256, lease_seconds=120, timeout_seconds=10)
    cluster.psql("postgres", f"ALTER DATABASE {database} SET log_statement = 'all';")
    result = world.run("run", "--config", world.config, "--once")
    cluster.psql("postgres", f"ALTER DATABASE {database} RESET log_statement;")
    world.close()
    shutil.rmtree(world.dir, ignore_errors=True)
    if result.returncode != 0:
        raise RuntimeError(result.stderr)
    entries = re.split(r"\n(?=\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", cluster.server_log())
    for index in range(len(entries) - 1, -1, -1):
        match = re.search(r"LOG:  execute [^:]*: (.*)", entries[index], re.S)
        if match and "SKIP LOCKED" in match.group(1) and "UPDATE orders" in match.group(1):
            detail = re.search(r"DETAIL:  parameters: (.*)", entries[index + 1], re.S)
            parameters = dict(re.findall(r"\$(\d+) = '([^']*)'", detail.group(1)))
            return match.group(1).strip(), {int(k): v for k, v in parameters.items()}
    raise RuntimeError("no claim statement in the server's log")


def pgbench(cluster, database, directory, name, script, variables, transactions):
    """Runs `script` `transactions` times on one connection, parameters bound (extended
    protocol, as postgres-nio sends them); returns the per-transaction latencies in µs."""
    path = os.path.join(directory, f"{name}.sql")
    with open(path, "w") as f:
        f.write(script)
    defines = [f"-D{key}={value}" for key, value in variables.items()]
    subprocess.run(["pgbench", "-n", "-M", "extended", "-c", "1", "-t", str(transactions), "-f", path, "-l",
                    f"--log-prefix={os.path.join(directory, name + '-log')}", *defines, cluster.url_of(database)],
                   capture_output=True, text=True, check=True, env=cluster.env)
    log = next(os.path.join(directory, f) for f in os.listdir(directory) if f.startswith(f"{name}-log."))
    with open(log) as f:
        return sorted(int(line.split()[2]) for line in f)


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, len(values) * p // 100)]


def idle_poll(cluster, finished):
    database = "poll"
    cluster.create(database)
    filled = time.time()
    cluster.psql(database, f"""
        INSERT INTO orders (mch_id, appid, out_trade_no, created_at, expires_at, state, attempts, closed_at, updated_at)
        SELECT '{MCH_ID}', '{APPID}', 'DONE' || lpad(n::text, 8, '0'), now() - interval '1 day', now() - interval '80000 seconds',
               CASE n % 20 WHEN 0 THEN 'paid' WHEN 1 THEN 'failed' ELSE 'closed' END, 1,
               now() - interval '80000 seconds', now() - interval '80000 seconds'
          FROM generate_series(1, {finished}) AS n;
        -- Orders still open, their deadline an hour away: the poll must not read them either.
        INSERT INTO orders (mch_id, appid, out_trade_no, created_at, expires_at)
        SELECT '{MCH_ID}', '{APPID}', 'OPEN' || lpad(n::text, 8, '0'), now() - interval '10 minutes', now() + interval '1 hour'
          FROM generate_series(1, 10000) AS n;
        VACUUM ANALYZE orders;""")
    fill_seconds = time.time() - filled
    statement, parameters = captured_claim(cluster, database)
    directory = os.path.join(cluster.dir, "pgbench")  # removed with the cluster, whatever happens
    os.makedirs(directory, exist_ok=True)
    script = re.sub(r"\$(\d+)", r":p\1", statement)
    variables = {f"p{k}": v for k, v in parameters.items()}
    runs = 300 if QUICK else 1000

    # The plan and the server's own time, as postgres-nio's unnamed statements get it:
    # a custom plan for the bound values each time.
    types = {7: "text"}
    prepare = (f"PREPARE claim({', '.join(types.get(k, 'bigint') for k in sorted(parameters))}) AS {statement};\n"
               "SET plan_cache_mode = force_custom_plan;\n")
    execute = lambda values: "EXECUTE claim(" + ", ".join(f"'{values[k]}'" for k in sorted(values)) + ")"
    explained = cluster.psql(database, prepare + f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {execute(parameters)};\n" * runs)
    executions = [float(x) for x in re.findall(r"Execution Time: ([\d.]+) ms", explained)]
    plannings = [float(x) for x in re.findall(r"Planning Time: ([\d.]+) ms", explained)]
    plan = explained.split("Execution Time")[0].strip().splitlines()
    plan = [line for line in plan if line.strip()]
    idle = pgbench(cluster, database, directory, "idle", f"BEGIN;\n{script};\nCOMMIT;\n", variables, runs * 2)
    floor = pgbench(cluster, database, directory, "floor", "SELECT 1;\n", {}, runs * 2)

    # Claims of 256 out of 1,000 due orders, rolled back each time so the next finds them.
    cluster.psql(database, f"""
        INSERT INTO orders (mch_id, appid, out_trade_no, created_at, expires_at)
        SELECT '{MCH_ID}', '{APPID}', 'DUE' || lpad(n::text, 8, '0'), now() - interval '15 minutes', now() - interval '1 minute'
          FROM generate_series(1, 1000) AS n;
        ANALYZE orders;""")
    # The limit: 256, as the README's SQLite figure (the captured poll asked for what its slots wanted).
    claimed = cluster.psql(database, prepare + f"BEGIN;\n{execute({**parameters, 6: '256'})};\nROLLBACK;\n")
    claims = pgbench(cluster, database, directory, "claim", f"BEGIN;\n{script};\nROLLBACK;\n", dict(variables, p6="256"),
                     100 if QUICK else 300)
    shutil.rmtree(directory, ignore_errors=True)
    cluster.drop(database)
    return {"finished_rows": finished, "fill_seconds": fill_seconds, "plan": plan,
            "full_scan": any("Seq Scan" in line for line in plan),
            "explain_runs": len(executions), "execution_median_ms": statistics.median(executions),
            "execution_p99_ms": percentile(executions, 99), "planning_median_ms": statistics.median(plannings),
            "idle_poll_runs": len(idle), "idle_poll_median_us": statistics.median(idle),
            "idle_poll_p99_us": percentile(idle, 99), "select_1_median_us": statistics.median(floor),
            "claim_256_rows": len(claimed.split()), "claim_256_runs": len(claims),
            "claim_256_median_us": statistics.median(claims), "claim_256_p99_us": percentile(claims, 99),
            "claim_statement": statement}


# --- the run -----------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[4, 8, 32],
                        help="call slots per daemon, one series each (default 4 8 32: from what 4 daemons need of this "
                             "machine's 2 cores to well past them)")
    parser.add_argument("--rounds", type=int, default=1 if QUICK else 3, help="rounds of 1, 2, 4 daemons")
    arguments = parser.parse_args()
    for tool in ["wrk", "psql", "pgbench"]:
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: run bench/run --postgresql, which installs it")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that `finally` stops the cluster
    results = {"machine": {"cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d")}, "latency_ms": LATENCY_MS,
               "app_rate": APP_RATE, "rounds": arguments.rounds}
    step = lambda title: print(f"-- {title}", flush=True)
    cluster = Cluster()
    try:
        results["postgresql"] = cluster.psql("postgres", "SHOW server_version;").strip()
        most = 4 * max(arguments.concurrency)
        step(f"bound: the simulator alone at {LATENCY_MS} ms, {most} connections")
        results["simulator_bound"] = bench.ceiling(5 if QUICK else 10, "--latency-ms", str(LATENCY_MS), connections=most)
        step(f"1. 1, 2 and 4 daemons on one table, {LATENCY_MS} ms, the app inserting {APP_RATE}/s; "
             f"concurrency {' and '.join(map(str, arguments.concurrency))} per daemon")
        runs = []
        for round_ in range(arguments.rounds):
            for concurrency in arguments.concurrency:
                for daemons in [1, 2, 4]:
                    run = daemons_on_one_table(cluster, daemons, concurrency, 4 if QUICK else 10, round_)
                    print(f"   round {round_ + 1}, {daemons} × {concurrency}: {run['closes_per_second']:,.0f} closes/s "
                          f"({run['of_ideal']:.0%} of ideal), machine {run['machine_busy_percent']:.0f} % busy, "
                          f"app {run['app_inserts_per_second']:,.0f} inserts/s, {run['app_insert_errors']} errors",
                          flush=True)
                    runs.append(run)
        results["daemons"] = runs
        step(f"2. the idle poll over {100_000 if QUICK else 1_000_000:,} finished rows")
        results["poll"] = idle_poll(cluster, 100_000 if QUICK else 1_000_000)
    finally:
        end_left_running()
        cluster.stop()
    report(results)
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "postgresql.json"), "w") as f:
        json.dump(results, f, indent=2, sort_keys=True)


def median_of(runs, concurrency, daemons, key):
    return statistics.median(x[key] for x in runs if x["daemons"] == daemons and x["concurrency"] == concurrency)


def report(r):
    runs, bound, poll = r["daemons"], r["simulator_bound"], r["poll"]
    simulator = bound["requests_per_second"]
    rows = [[f"bound: simulator alone under wrk, {LATENCY_MS} ms, {bound['connections']} connections",
             f"{simulator:,.0f} req/s", f"{simulator / (bound['connections'] / (LATENCY_MS / 1000)):.0%} of connections ÷ latency"]]
    targets = []
    for concurrency in sorted({x["concurrency"] for x in runs}):
        mine = [x for x in runs if x["concurrency"] == concurrency]
        m = lambda daemons, key: median_of(runs, concurrency, daemons, key)
        one = m(1, "closes_per_second")
        for daemons in [1, 2, 4]:
            rate = m(daemons, "closes_per_second")
            cores = {who: statistics.median(x["cores"][who] for x in mine if x["daemons"] == daemons)
                     for who in ["daemons", "postgresql", "simulator", "app"]}
            others = statistics.median(x["machine_busy_cores"] - sum(x["cores"].values())
                                       for x in mine if x["daemons"] == daemons)
            rows += [
                [f"1. {daemons} daemon(s) × concurrency {concurrency}, {LATENCY_MS} ms, one table",
                 f"{rate:,.0f} closes/s (ideal {daemons * concurrency / (LATENCY_MS / 1000):,.0f})",
                 f"{rate / one:.2f}× one daemon; {m(daemons, 'of_ideal'):.0%} of ideal"],
                ["   machine busy; cores: daemons, PostgreSQL, simulator, app, other work",
                 f"{m(daemons, 'machine_busy_percent'):.0f} % of 2 cores",
                 f"{cores['daemons']:.2f}, {cores['postgresql']:.2f}, {cores['simulator']:.2f}, {cores['app']:.2f}, "
                 f"{max(0, others):.2f}"],
                ["   CPU s per 10k closes: daemons / PostgreSQL (less the app's)",
                 f"{m(daemons, 'daemon_cpu_seconds_per_10k'):.1f} / {m(daemons, 'server_cpu_seconds_per_10k_net_of_app'):.1f}",
                 f"slot turn {m(daemons, 'slot_cycle_ms'):.0f} ms (call p50 {m(daemons, 'call_latency_p50_ms'):.0f} ms)"],
                ["   the app meanwhile (transactions of 10)",
                 f"{m(daemons, 'app_inserts_per_second'):,.0f} inserts/s, "
                 f"{sum(x['app_insert_errors'] for x in mine if x['daemons'] == daemons)} errors",
                 f"p99 {m(daemons, 'app_transaction_p99_ms'):.1f} ms a transaction"],
            ]
        four = m(4, "closes_per_second")
        target = min(3.5 * one, simulator)
        binding = "3.5× one daemon" if 3.5 * one <= simulator else "the simulator's own bound"
        targets.append([f"concurrency {concurrency}: 4 daemons ≥ {target:,.0f} closes/s ({binding}); "
                        f"got {four:,.0f}, {four / one:.2f}×", four >= target])
    twice = sum(x["orders_called_twice"] for x in runs)
    lost = sum(x["orders"] - x["closed"] for x in runs)
    complaints = sum(x["log_complaints"] for x in runs)
    rows.append(["   every order closed, none called twice", f"{lost} not closed, {twice} called twice",
                 f"{complaints} warning/error log lines"])
    rows += [
        [f"2. idle poll over {poll['finished_rows']:,} finished rows, EXPLAIN ANALYZE",
         f"execution median {poll['execution_median_ms'] * 1000:.0f} µs",
         f"p99 {poll['execution_p99_ms'] * 1000:.0f} µs; planning {poll['planning_median_ms'] * 1000:.0f} µs"],
        ["   the poll as the daemon runs it (BEGIN; claim; COMMIT)", f"median {poll['idle_poll_median_us']:.0f} µs",
         f"p99 {poll['idle_poll_p99_us']:.0f} µs; a bare SELECT 1: {poll['select_1_median_us']:.0f} µs"],
        [f"   claim of {poll['claim_256_rows']} due orders (+ ROLLBACK)",
         f"median {poll['claim_256_median_us'] / 1000:.2f} ms", "full scan: " + ("YES" if poll["full_scan"] else "no")],
    ]
    print()
    print(f"PostgreSQL {r['postgresql']}; medians of {r['rounds']} round(s); 2 cores shared with everything else here")
    print(bench.reliability.table(rows, ["scenario", "figure", "comparison"]))
    print("\nthe idle poll's plan (the claim statement as the daemon sends it):")
    details = ("Buffers", "Recheck", "Filter", "Index Cond", "Sort Key", "Sort Method", "Heap Blocks", "Planning")
    print("\n".join("  " + line for line in poll["plan"] if not line.strip().startswith(details)))
    print(f"\nbounds: one daemon is bounded by concurrency ÷ latency; the simulator alone answers {simulator:,.0f} req/s "
          f"to {bound['connections']} connections at {LATENCY_MS} ms; past both, the machine's 2 cores, shared by the "
          "daemons, PostgreSQL, the simulator and the app")
    targets += [
        [f"the app inserts ≥ 95 % of {APP_RATE}/s throughout", all(x["app_inserts_per_second"] >= 0.95 * APP_RATE for x in runs)],
        ["0 insert errors", all(x["app_insert_errors"] == 0 for x in runs)],
        ["every order closed once", lost == 0 and twice == 0],
        ["idle poll: no full scan, execution < 1 ms", not poll["full_scan"] and poll["execution_median_ms"] < 1],
    ]
    r["targets"] = {name: met for name, met in targets}
    print()
    print(bench.reliability.table([[name, "met" if met else "MISSED"] for name, met in targets], ["target", "result"]))


if __name__ == "__main__":
    main()
