#!/usr/bin/env python3
"""closeorderd's long reliability suites: crash, faults, database, load.

Each suite runs the real `closeorderd` binary against `closeorderd simulate` on loopback and
a real SQLite file, checks the four promises of README.md "Reliability", and prints its
figures. Run through scripts/reliability, which builds the binary first:

    scripts/reliability all            # every suite (about 10 minutes)
    scripts/reliability crash --runs 50
    scripts/reliability faults | database | load

Exit status 0 when every promise held, 1 otherwise.
"""

import argparse
import collections
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = "192006250b4c09247ec02edce69f6a2d"  # the protocol file's test key; never printed by closeorderd
MCH_ID = "1900000109"
APPID = "wx8888888888888888"
BINARY = os.environ.get("CLOSEORDERD", os.path.join(ROOT, ".build", "debug", "closeorderd"))


# --- the world: a folder, a simulator, a database, daemons ------------------------------


class World:
    """A scratch folder with a key, a config, a database and the processes of one suite."""

    def __init__(self, name, db_dir=None):
        self.dir = tempfile.mkdtemp(prefix=f"closeorderd-{name}-")
        self.key_file = os.path.join(self.dir, "merchant.key")
        with open(self.key_file, "w") as f:
            f.write(KEY + "\n")
        os.chmod(self.key_file, 0o600)
        self.db = os.path.join(db_dir or self.dir, "orders.sqlite")
        self.call_log = os.path.join(self.dir, "calls.log")
        self.simulator = None
        self.simulator_args = []
        self.port = 0
        self.logs = []

    def start_simulator(self, *flags, port=None):
        self.simulator_args = list(flags)
        log = open(os.path.join(self.dir, f"simulator-{len(self.logs)}.log"), "w")
        self.logs.append(log.name)
        process = subprocess.Popen(
            [BINARY, "simulate", "--listen", f"127.0.0.1:{port or self.port}", "--key", f"{MCH_ID}={self.key_file}",
             "--call-log", self.call_log, *flags],
            stdout=subprocess.PIPE, stderr=log, text=True)
        line = process.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"simulator did not start: {line!r}")
        self.port = int(line.strip().rsplit(":", 1)[1])
        self.simulator = process
        return process

    def kill_simulator(self):
        if self.simulator and self.simulator.poll() is None:
            self.simulator.send_signal(signal.SIGKILL)
            self.simulator.wait()

    def restart_simulator(self):
        for _ in range(100):
            try:
                return self.start_simulator(*self.simulator_args, port=self.port)
            except RuntimeError:
                time.sleep(0.1)
        raise RuntimeError("simulator did not restart")

    def write_config(self, max_requests_per_second=None, **reaper):
        settings = {"poll_interval_seconds": 0.2, "concurrency": 16, "backoff_base_seconds": 1, "backoff_max_seconds": 2,
                    "lease_seconds": 5, "max_attempts": 10}
        settings.update(reaper)
        timeout = settings.pop("timeout_seconds", 2)
        lines = [f"database: {self.db}", "api:", f"  base_url: http://127.0.0.1:{self.port}", '  backup_base_url: ""',
                 f"  timeout_seconds: {timeout}", "reaper:"]
        lines += [f"  {key}: {value}" for key, value in settings.items()]
        lines += ["merchants:", f'  - mch_id: "{MCH_ID}"', "    sign_type: HMAC-SHA256", f"    key_file: {self.key_file}"]
        if max_requests_per_second:
            lines.append(f"    max_requests_per_second: {max_requests_per_second}")
        self.config = os.path.join(self.dir, "config.yaml")
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")

    def start_daemon(self, *extra):
        log = open(os.path.join(self.dir, f"daemon-{len(self.logs)}.log"), "w")
        self.logs.append(log.name)
        return subprocess.Popen([BINARY, "run", "--config", self.config, *extra], stdout=log, stderr=log)

    def run(self, *arguments):
        return subprocess.run([BINARY, *arguments], capture_output=True, text=True, timeout=120)

    def connect(self):
        connection = sqlite3.connect(self.db, timeout=10, isolation_level=None)
        connection.execute("PRAGMA busy_timeout = 10000")
        return connection

    def migrate(self):
        result = self.run("migrate", "--db", self.db)
        if result.returncode != 0:
            raise RuntimeError(result.stderr)

    def insert(self, numbers, created_ago=1200, expires_in=-60, connection=None, due_in=None):
        own = connection is None
        connection = connection or self.connect()
        connection.execute("BEGIN")
        connection.executemany(
            "INSERT INTO orders (mch_id, appid, out_trade_no, created_at, expires_at, next_attempt_at) "
            "VALUES (?, ?, ?, unixepoch() - ?, unixepoch() + ?, unixepoch() + ?)",
            [(MCH_ID, APPID, number, created_ago, expires_in, due_in) for number in numbers])
        connection.execute("COMMIT")
        if own:
            connection.close()

    def states(self):
        connection = self.connect()
        try:
            return dict(connection.execute("SELECT state, count(*) FROM orders GROUP BY state").fetchall())
        finally:
            connection.close()

    def wait_until(self, what, condition, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if condition():
                return True
            time.sleep(0.2)
        raise RuntimeError(f"timed out waiting until {what}; states {self.states()}")

    def calls(self):
        """The simulator's call log: (unix seconds, endpoint, out_trade_no)."""
        if not os.path.exists(self.call_log):
            return []
        with open(self.call_log) as f:
            return [(int(t) / 1000, endpoint, number) for t, endpoint, number, _ in
                    (line.split() for line in f if line.count(" ") == 3)]

    def log_text(self):
        text = ""
        for path in self.logs:
            with open(path, errors="replace") as f:
                text += f.read()
        return text

    def secrets_found(self):
        """Files in the folder that hold the key, other than the key file itself."""
        found = []
        for name in os.listdir(self.dir):
            path = os.path.join(self.dir, name)
            if path == self.key_file or not os.path.isfile(path):
                continue
            with open(path, "rb") as f:
                if KEY.encode() in f.read():
                    found.append(name)
        if os.path.exists(self.db):
            for suffix in ["", "-wal"]:
                if os.path.exists(self.db + suffix):
                    with open(self.db + suffix, "rb") as f:
                        if KEY.encode() in f.read():
                            found.append(os.path.basename(self.db + suffix))
        return found

    def close(self):
        self.kill_simulator()


def peak_rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None


def stop(process, timeout=30):
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    return process.wait(timeout=timeout)


class AppInserter(threading.Thread):
    """The merchant's app: inserts due orders in small transactions on its own connection."""

    def __init__(self, world, prefix, per_second, batch=10):
        super().__init__(daemon=True)
        self.world, self.prefix, self.per_second, self.batch = world, prefix, per_second, batch
        self.inserted = 0
        self.errors = []
        self.running = True

    def run(self):
        connection = self.world.connect()
        interval = self.batch / self.per_second
        next_time = time.time()
        while self.running:
            numbers = [f"{self.prefix}{self.inserted + i:08d}" for i in range(self.batch)]
            try:
                # Due at once: old enough, deadline now (a failed payment, say).
                self.world.insert(numbers, created_ago=400, expires_in=0, connection=connection)
                self.inserted += self.batch
            except sqlite3.Error as error:
                self.errors.append(str(error))
                try:
                    connection.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            next_time += interval
            time.sleep(max(0, next_time - time.time()))

    def stop(self):
        self.running = False
        self.join()


def check_promises(world, paid_numbers, never_due_numbers):
    """The four promises, checked on the database and the simulator's call log."""
    connection = world.connect()
    now = int(time.time())
    rows = connection.execute(
        "SELECT out_trade_no, state, created_at, coalesce(expires_at, created_at + 7200), last_error, next_attempt_at "
        "FROM orders").fetchall()
    due = [r for r in rows if r[2] <= now - 300 and r[3] <= now]
    lost = [r[0] for r in due if r[1] not in ("closed", "paid", "failed")
            and not (r[1] == "pending" and r[4] and r[5])]
    closing = [r[0] for r in rows if r[1] == "closing"]
    by_number = {r[0]: r for r in rows}
    paid_marked_closed = [n for n in paid_numbers if by_number.get(n, (None, None))[1] == "closed"]
    early = []
    close_calls = collections.Counter()
    for t, endpoint, number in world.calls():
        if endpoint == "closeorder":
            close_calls[number] += 1
        row = by_number.get(number)
        if number in never_due_numbers or (row and (row[2] > t - 300 + 1 or row[3] > t + 1)):
            early.append(number)
    return {"orders": len(rows), "due": len(due), "lost": lost, "closing": closing,
            "paid_marked_closed": paid_marked_closed, "sent_early": sorted(set(early)), "close_calls": close_calls,
            "states": world.states()}


def distribution(counter, numbers):
    dist = collections.Counter(counter.get(n, 0) for n in numbers)
    return ", ".join(f"{calls}×: {count}" for calls, count in sorted(dist.items()))


def table(rows, header):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


# --- crash -----------------------------------------------------------------------------


def write_lock_held(world):
    """True if another process holds the database's write lock: a write transaction is open."""
    probe = sqlite3.connect(world.db, timeout=0, isolation_level=None)
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError:
        return True
    finally:
        probe.close()


def crash_suite(runs):
    print(f"== crash: {runs} runs of kill -9 ==", flush=True)
    world = World("crash")
    paid = [f"CRASHPAID{i:05d}" for i in range(100)]
    world.start_simulator("--latency-ms", "50", *sum((["--paid", n] for n in paid), []))
    world.write_config(concurrency=16, lease_seconds=4, max_attempts=100, timeout_seconds=2)
    world.migrate()
    world.insert([f"CRASH{i:06d}" for i in range(2000)] + paid)
    never_due = [f"NOTDUE{i:04d}" for i in range(50)]
    world.insert(never_due, created_ago=1200, expires_in=3600)
    young = [f"YOUNG{i:05d}" for i in range(50)]
    world.insert(young, created_ago=60, expires_in=-30)
    app = AppInserter(world, "CRASHAPP", per_second=20)
    app.start()

    kills_in_transaction = 0
    simulator_kills = 0
    rng = random.Random(int(os.environ.get("SEED", "2")))
    for run in range(runs):
        daemon = world.start_daemon()
        time.sleep(rng.uniform(0.3, 1.2))
        if run % 10 == 5:
            # The simulator dies mid-response while calls are in flight, then comes back empty-handed.
            world.kill_simulator()
            simulator_kills += 1
            time.sleep(rng.uniform(0.1, 0.5))
            world.restart_simulator()
            time.sleep(rng.uniform(0.1, 0.5))
        if run % 2 == 1:
            # Stop the daemon at random moments until one lands inside a write transaction (a claim
            # or a write-back), and kill it there.
            for _ in range(400):
                daemon.send_signal(signal.SIGSTOP)
                if write_lock_held(world):
                    kills_in_transaction += 1
                    break
                daemon.send_signal(signal.SIGCONT)
                time.sleep(rng.uniform(0.001, 0.02))
        daemon.send_signal(signal.SIGKILL)
        daemon.wait()
        if (run + 1) % 10 == 0:
            print(f"  run {run + 1}/{runs}: {world.states()}", flush=True)

    app.stop()
    # A last, undisturbed run: everything due must end somewhere final.
    daemon = world.start_daemon()
    connection = world.connect()
    world.wait_until("nothing is due or closing", lambda: connection.execute(
        "SELECT count(*) FROM orders WHERE state = 'closing' OR (state = 'pending' AND "
        "(next_attempt_at IS NULL OR next_attempt_at <= unixepoch()) AND created_at <= unixepoch() - 300 "
        "AND coalesce(expires_at, created_at + 7200) <= unixepoch())").fetchone()[0] == 0, timeout=180)
    status = stop(daemon)
    world.kill_simulator()
    result = check_promises(world, paid, set(never_due) | set(young))
    due_numbers = [n for (n,) in world.connect().execute(
        "SELECT out_trade_no FROM orders WHERE state IN ('closed', 'paid', 'failed')").fetchall()]
    secrets = world.secrets_found() + (["daemon logs"] if KEY in world.log_text() else [])
    figures = [
        ["runs (daemon killed with SIGKILL)", runs],
        ["  of which killed inside a write transaction", kills_in_transaction],
        ["simulator killed mid-response", simulator_kills],
        ["orders", result["orders"]],
        ["  inserted by the app during the runs", app.inserted],
        ["app insert errors (must be 0)", len(app.errors)],
        ["orders lost (must be 0)", len(result["lost"])],
        ["orders left closing (must be 0)", len(result["closing"])],
        ["paid orders recorded closed (must be 0)", len(result["paid_marked_closed"])],
        ["orders sent before due (must be 0)", len(result["sent_early"])],
        ["close calls per finished order", distribution(result["close_calls"], due_numbers)],
        ["final states", json.dumps(result["states"], sort_keys=True)],
        ["last run's exit status on SIGTERM", status],
        ["files holding the key (must be none)", ", ".join(secrets) or "none"],
    ]
    print(table(figures, ["crash", "figure"]))
    ok = not (app.errors or result["lost"] or result["closing"] or result["paid_marked_closed"] or result["sent_early"]
              or secrets or status != 0)
    return ok, figures


# --- faults from WeChat's side --------------------------------------------------------

FAULTS = [
    ("HTTP 500", "http500"), ("HTTP 502", "http502"), ("HTTP 503", "http503"), ("SYSTEMERROR", "systemerror"),
    ("FREQUENCY_LIMITED", "frequency_limited"), ("unsigned return_code=FAIL", "return_fail"),
    ("slow answer past the timeout", "hang"), ("dropped connection", "drop"), ("truncated body", "truncated"),
    ("forged signature", "forged_sign"), ("forged ORDERPAID", "forged_paid"), ("unsigned SUCCESS", "unsigned_success"),
    ("DOCTYPE / XXE body", "doctype"), ("billion-laughs body", "billion_laughs"), ("10 MB body", "huge"),
    ("invalid UTF-8", "invalid_utf8"),
]


def faults_suite(outage_seconds):
    print("== faults from WeChat's side ==", flush=True)
    world = World("faults")
    flags = []
    numbers = {}
    for index, (_, fault) in enumerate(FAULTS):
        number = f"FAULT{index:02d}{fault.upper().replace('_', '')[:10]}"
        numbers[fault] = number
        flags += ["--fault", f"{number}={fault}:2"]
    world.start_simulator(*flags)
    world.write_config(timeout_seconds=1, max_attempts=5, lease_seconds=10)
    world.migrate()
    world.insert(list(numbers.values()))
    daemon = world.start_daemon()
    connection = world.connect()
    placeholders = ",".join("?" * len(numbers))
    world.wait_until("every faulty order is final", lambda: connection.execute(
        f"SELECT count(*) FROM orders WHERE out_trade_no IN ({placeholders}) AND state IN ('closed','paid','failed')",
        list(numbers.values())).fetchone()[0] == len(numbers), timeout=120)
    rows = []
    ok = True
    for label, fault in FAULTS:
        number = numbers[fault]
        state, attempts = connection.execute(
            "SELECT state, attempts FROM orders WHERE out_trade_no = ?", (number,)).fetchone()
        history = connection.execute(
            "SELECT a.outcome, coalesce(a.err_code, ''), a.message FROM close_attempts a JOIN orders o ON o.id = a.order_id "
            "WHERE o.out_trade_no = ? ORDER BY a.id", (number,)).fetchall()
        first = history[0][2] if history else ""
        outcomes = " → ".join(o for o, _, _ in history)
        expected = state == "closed" and history[0][0] == "retry" and not any(o == "paid" for o, _, _ in history)
        ok = ok and expected
        rows.append([label, outcomes, state, first[:70]])

    # Connection refused: the simulator down for a while, then back.
    world.kill_simulator()
    down = [f"REFUSED{i:04d}" for i in range(20)]
    world.insert(down)
    time.sleep(outage_seconds)
    alive_during_outage = daemon.poll() is None
    world.restart_simulator()
    world.wait_until("the orders queued during the outage close", lambda: connection.execute(
        f"SELECT count(*) FROM orders WHERE out_trade_no LIKE 'REFUSED%' AND state = 'closed'").fetchone()[0] == len(down),
        timeout=180)
    failed = connection.execute("SELECT count(*) FROM orders WHERE out_trade_no LIKE 'REFUSED%' AND state = 'failed'").fetchone()[0]
    rows.append([f"connection refused ({outage_seconds} s down)", "retry … → closed", "closed" if failed == 0 else "FAILED",
                 "no usable answer from WeChat Pay: could not connect (…)"])
    ok = ok and failed == 0 and alive_during_outage
    rss = peak_rss_mb(daemon.pid)
    alive = daemon.poll() is None
    status = stop(daemon)
    secrets = world.secrets_found() + (["daemon logs"] if KEY in world.log_text() else [])
    print(table(rows, ["fault (first 2 calls)", "calls", "final state", "first recorded reason"]))
    figures = [["daemon alive after every fault", alive], ["peak RSS of the daemon (MB)", f"{rss:.1f}" if rss else "?"],
               ["exit status on SIGTERM", status], ["files holding the key (must be none)", ", ".join(secrets) or "none"]]
    print(table(figures, ["faults", "figure"]))
    world.close()
    ok = ok and alive and status == 0 and not secrets
    return ok, rows + figures


# --- faults on the database side -----------------------------------------------------


def database_suite():
    print("== faults on the database side ==", flush=True)
    rows = []
    ok = True

    # 1. The app holds a write transaction past the busy timeout.
    world = World("db-lock")
    world.start_simulator()
    world.write_config()
    world.migrate()
    world.insert([f"LOCKED{i:04d}" for i in range(50)])
    daemon = world.start_daemon()
    world.wait_until("the first orders close", lambda: world.states().get("closed", 0) == 50)
    # An order that becomes due in a second, then the lock: the daemon's claim waits on it.
    world.insert(["LOCKEDLATE1"], due_in=1)
    holder = world.connect()
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("UPDATE orders SET updated_at = updated_at WHERE 0")
    time.sleep(14)
    holder.execute("COMMIT")
    world.wait_until("the order that was due under the lock closes", lambda: world.states().get("closed", 0) == 51)
    log = world.log_text()
    alive = daemon.poll() is None
    stop(daemon)
    reported = "cannot claim due orders" in log and "database is locked" in log
    rows.append(["app holds a write transaction for 14 s", "claim gave up after the 10 s busy timeout, retried, closed all 51"
                 if reported else "no lock error seen", "\"database is locked\" logged, then recovered"])
    ok = ok and alive and reported
    world.close()

    # 2. The disk fills up.
    mount = tempfile.mkdtemp(prefix="closeorderd-full-")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", mount], capture_output=True).returncode == 0
    if mounted:
        try:
            world = World("db-full", db_dir=mount)
            world.start_simulator()
            world.write_config()
            world.migrate()
            # Orders that fall due in 3 s; the disk fills while the daemon runs.
            world.insert([f"FULL{i:05d}" for i in range(300)], due_in=3)
            daemon = world.start_daemon()
            time.sleep(1)
            filler = os.path.join(mount, "filler")
            try:
                with open(filler, "wb") as f:
                    while True:
                        f.write(b"\0" * 65536)
                        f.flush()
            except OSError:
                pass  # full
            time.sleep(6)
            try:
                during = json.dumps(world.states())
            except sqlite3.Error as error:
                during = f"the app's own reads fail too ({error})"
            log = world.log_text()
            os.remove(filler)
            world.wait_until("every order closes once space is back", lambda: world.states().get("closed", 0) == 300)
            alive = daemon.poll() is None
            stop(daemon)
            rows.append(["disk full (16 MB tmpfs, filled)", f"during: {during}; after: all 300 closed",
                         "error logged: " + ("yes" if "disk is full" in log or "full" in log else "no")])
            ok = ok and alive
            world.close()
        finally:
            subprocess.run(["umount", "--lazy", mount])
    else:
        rows.append(["disk full", "skipped: cannot mount a tmpfs here (needs root)", ""])

    # 3. The database file deleted, then replaced, under the daemon.
    for action in ["deleted", "replaced"]:
        world = World(f"db-{action}")
        world.start_simulator()
        world.write_config()
        world.migrate()
        daemon = world.start_daemon()
        time.sleep(1)
        if action == "deleted":
            for suffix in ["", "-wal", "-shm"]:
                if os.path.exists(world.db + suffix):
                    os.remove(world.db + suffix)
        else:
            other = os.path.join(world.dir, "restored.sqlite")
            subprocess.run([BINARY, "migrate", "--db", other], capture_output=True, check=True)
            os.replace(other, world.db)
        try:
            status = daemon.wait(timeout=10)
        except subprocess.TimeoutExpired:
            status = None
            stop(daemon)
        log = world.log_text()
        said = f"was {action}" in log
        rows.append([f"database file {action} under the daemon", f"exited with status {status}",
                     "said so: " + ("yes" if said else "no")])
        ok = ok and status not in (None, 0) and said
        world.close()

    # 4. The app edits a row while its close is in flight.
    world = World("db-race")
    world.start_simulator("--latency-ms", "2000")
    world.write_config(timeout_seconds=5, lease_seconds=10)
    world.migrate()
    world.insert(["RACE000001"])
    daemon = world.start_daemon()
    connection = world.connect()
    world.wait_until("the close is in flight", lambda: world.states().get("closing", 0) == 1)
    connection.execute("UPDATE orders SET state = 'paid' WHERE out_trade_no = 'RACE000001'")
    world.wait_until("the call returns", lambda: "row changed while its close was in flight" in world.log_text(), timeout=20)
    state = connection.execute("SELECT state FROM orders WHERE out_trade_no = 'RACE000001'").fetchone()[0]
    stop(daemon)
    rows.append(["app sets paid while the close is in flight", f"row stays {state}", "conflict logged: yes"])
    ok = ok and state == "paid"
    world.close()

    print(table(rows, ["database fault", "what happened", "reported"]))
    return ok, rows


# --- load ----------------------------------------------------------------------------


def load_suite(seconds, per_second):
    print(f"== load: the app inserts {per_second} orders/s for {seconds} s ==", flush=True)
    world = World("load")
    world.start_simulator("--latency-ms", "20")
    world.write_config(concurrency=64, poll_interval_seconds=0.2)
    world.migrate()
    daemon = world.start_daemon()
    app = AppInserter(world, "LOAD", per_second=per_second, batch=10)
    started = time.time()
    app.start()
    time.sleep(seconds)
    app.stop()
    inserted_in = time.time() - started
    closed_at_stop = world.states().get("closed", 0)
    world.wait_until("the backlog drains", lambda: world.states().get("closed", 0) == app.inserted, timeout=300)
    drained_in = time.time() - started
    rss = peak_rss_mb(daemon.pid)
    stop(daemon)
    log = world.log_text()
    locked = log.count("database is locked") + log.count("SQLITE_BUSY")
    figures = [
        ["orders inserted by the app", app.inserted], ["insert rate (orders/s)", f"{app.inserted / inserted_in:.0f}"],
        ["app insert errors (must be 0)", len(app.errors)], ["daemon 'database is locked' errors (must be 0)", locked],
        ["closed while the app inserted", closed_at_stop], ["all closed after (s)", f"{drained_in:.1f}"],
        ["close rate overall (orders/s)", f"{app.inserted / drained_in:.0f}"],
        ["peak RSS of the daemon (MB)", f"{rss:.1f}" if rss else "?"],
    ]
    print(table(figures, ["load", "figure"]))
    world.close()
    return not app.errors and locked == 0, figures


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("suite", choices=["crash", "faults", "database", "load", "all"])
    parser.add_argument("--runs", type=int, default=50, help="crash: daemon kills (default 50)")
    parser.add_argument("--outage-seconds", type=int, default=60, help="faults: how long the simulator stays down")
    parser.add_argument("--load-seconds", type=int, default=30)
    parser.add_argument("--load-rate", type=int, default=1000, help="load: orders inserted per second")
    options = parser.parse_args()
    if not os.access(BINARY, os.X_OK):
        sys.exit(f"no closeorderd at {BINARY}: build it first (scripts/reliability does)")
    results = {}
    if options.suite in ("crash", "all"):
        results["crash"] = crash_suite(options.runs)[0]
    if options.suite in ("faults", "all"):
        results["faults"] = faults_suite(options.outage_seconds)[0]
    if options.suite in ("database", "all"):
        results["database"] = database_suite()[0]
    if options.suite in ("load", "all"):
        results["load"] = load_suite(options.load_seconds, options.load_rate)[0]
    print()
    for suite, ok in results.items():
        print(f"{suite}: {'every promise held' if ok else 'FAILED'}")
    sys.exit(0 if all(results.values()) else 1)


if __name__ == "__main__":
    main()
