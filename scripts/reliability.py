#!/usr/bin/env python3
"""closeorderd's long reliability suites: crash, faults, database, load, hosts.

Each suite runs the real `closeorderd` binary against `closeorderd simulate` on loopback and
a real SQLite file (hosts: on network namespaces and a PostgreSQL cluster), checks the four
promises of README.md "Reliability", and prints its figures. Run through scripts/reliability,
which builds the binary first:

    scripts/reliability all            # every suite (about 10 minutes; hosts only as root)
    scripts/reliability crash --runs 50
    scripts/reliability faults | database | load
    scripts/reliability hosts          # as root: three daemons on three hosts, one PostgreSQL table

Exit status 0 when every promise held, 1 otherwise.
"""

import argparse
import collections
import glob
import json
import os
import random
import re
import shutil
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
V3_SERIAL_NO = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"  # the merchant certificate's serial; the simulator does not check it


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
        # Where the simulator listens, and what its command line is run under (a network namespace).
        self.simulator_host = "127.0.0.1"
        self.simulator_wrapper = []
        # API v3 (add_v3_merchant): the merchant's key pair, and the simulator's public key and its id.
        self.v3_private_key = self.v3_public_key = self.wechatpay_public_key = self.wechatpay_public_key_id = None

    def add_v3_merchant(self):
        """Makes MCH_ID an API v3 merchant as well (call before start_simulator): an RSA-2048 key
        pair for its requests, whose public half the simulator checks them with."""
        self.v3_private_key = os.path.join(self.dir, "merchant-v3.pem")
        self.v3_public_key = os.path.join(self.dir, "merchant-v3.pub.pem")
        self.wechatpay_public_key = os.path.join(self.dir, "wechatpay.pub.pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                        "-out", self.v3_private_key], capture_output=True, check=True)
        os.chmod(self.v3_private_key, 0o600)
        subprocess.run(["openssl", "pkey", "-in", self.v3_private_key, "-pubout", "-out", self.v3_public_key],
                       capture_output=True, check=True)

    def start_simulator(self, *flags, port=None):
        self.simulator_args = list(flags)
        log = open(os.path.join(self.dir, f"simulator-{len(self.logs)}.log"), "w")
        self.logs.append(log.name)
        v3 = ["--v3-merchant", f"{MCH_ID}={self.v3_public_key}", "--wechatpay-key-out", self.wechatpay_public_key] \
            if self.v3_private_key else []
        process = subprocess.Popen(
            [*self.simulator_wrapper, BINARY, "simulate", "--listen", f"{self.simulator_host}:{port or self.port}",
             "--key", f"{MCH_ID}={self.key_file}", *v3,
             "--call-log", self.call_log, *flags],
            stdout=subprocess.PIPE, stderr=log, text=True)
        line = process.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"simulator did not start: {line!r}")
        self.port = int(line.strip().rsplit(":", 1)[1])
        if v3:
            # "v3 answers signed by wechatpay_public_key_id PUB_KEY_ID_…"
            self.wechatpay_public_key_id = process.stdout.readline().strip().rsplit(" ", 1)[-1]
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

    def write_config(self, max_requests_per_second=None, merchant="hmac", **reaper):
        """The daemon's config; `merchant`: "hmac" or "md5" (API v2 sign types) or "v3" (after add_v3_merchant)."""
        settings = {"poll_interval_seconds": 0.2, "concurrency": 16, "backoff_base_seconds": 1, "backoff_max_seconds": 2,
                    "lease_seconds": 5, "max_attempts": 10}
        settings.update(reaper)
        timeout = settings.pop("timeout_seconds", 2)
        lines = [*self.database_config(), "api:", f"  base_url: http://{self.simulator_host}:{self.port}",
                 '  backup_base_url: ""', f"  timeout_seconds: {timeout}", "reaper:"]
        lines += [f"  {key}: {value}" for key, value in settings.items()]
        lines += ["merchants:", f'  - mch_id: "{MCH_ID}"', *self.merchant_config(merchant)]
        if max_requests_per_second:
            lines.append(f"    max_requests_per_second: {max_requests_per_second}")
        self.config = os.path.join(self.dir, "config.yaml")
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")

    def merchant_config(self, merchant):
        if merchant == "v3":
            if not self.wechatpay_public_key_id:
                raise RuntimeError("a v3 merchant needs add_v3_merchant() before start_simulator()")
            return ["    api: v3", f'    serial_no: "{V3_SERIAL_NO}"', f"    private_key_file: {self.v3_private_key}",
                    f"    wechatpay_public_key_file: {self.wechatpay_public_key}",
                    f"    wechatpay_public_key_id: {self.wechatpay_public_key_id}"]
        sign_type = {"hmac": "HMAC-SHA256", "md5": "MD5"}[merchant]
        return [f"    sign_type: {sign_type}", f"    key_file: {self.key_file}"]

    def database_config(self):
        return [f"database: {self.db}"]

    def start_daemon(self, *extra, wrapper=()):
        log = open(os.path.join(self.dir, f"daemon-{len(self.logs)}.log"), "w")
        self.logs.append(log.name)
        process = subprocess.Popen([*wrapper, BINARY, "run", "--config", self.config, *extra], stdout=log, stderr=log)
        process.log = log.name
        return process

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

    def order_rows(self):
        """Every order: (out_trade_no, state, created_at, deadline, last_error, next_attempt_at), times in unix seconds."""
        connection = self.connect()
        try:
            return connection.execute(
                "SELECT out_trade_no, state, created_at, coalesce(expires_at, created_at + 7200), last_error, "
                "next_attempt_at FROM orders").fetchall()
        finally:
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


class AppInsertError(Exception):
    """The app's INSERT failed (on PostgreSQL, where psql runs it)."""


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
            except (sqlite3.Error, AppInsertError) as error:
                self.errors.append(str(error))
                try:
                    if connection is not None:
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
    now = int(time.time())
    rows = world.order_rows()
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


# --- several hosts on one PostgreSQL table ---------------------------------------------

NETNS_PREFIX = "cod-"  # every namespace the suite makes; an aborted run's are removed at the next start
SWITCH = NETNS_PREFIX + "switch"
DB_HOST = "db"
DAEMON_HOSTS = ["host1", "host2", "host3"]
ADDRESSES = {DB_HOST: "10.231.0.1", "host1": "10.231.0.11", "host2": "10.231.0.12", "host3": "10.231.0.13"}
PG_USER = "closeorderd_test"
PG_PASSWORD = "closeorderd-test-password"  # scripts/postgres-cluster's; never printed by closeorderd
PG_DATABASE = "shop"
FENCED_NOTE = "[not written to the row"  # what the store appends to a fenced write-back's history line
FENCED_LOG = "row changed while its close was in flight"


def netns_exec(host):
    return ["ip", "netns", "exec", NETNS_PREFIX + host]


def ip(*arguments):
    result = subprocess.run(["ip", *arguments], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(arguments)}: {result.stderr.strip()}")
    return result.stdout


def remove_hosts(folders=()):
    """Removes what the hosts suite makes: clusters, the processes left in its namespaces, the namespaces.

    Called at the start too, for what an aborted run left behind."""
    for folder in folders:
        cluster = os.path.join(folder, "cluster")
        if os.path.isdir(cluster):
            subprocess.run([os.path.join(ROOT, "scripts", "postgres-cluster"), "stop", cluster], capture_output=True)
    names = [line.split()[0] for line in ip("netns", "list").splitlines() if line.startswith(NETNS_PREFIX)]
    for name in names:
        for pid in subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
    for name in names:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)
    return names


def make_network():
    """A switch (a bridge in a namespace of its own) and one namespace per host, each on a veth port of it."""
    ip("netns", "add", SWITCH)
    ip("-n", SWITCH, "link", "add", "switch", "type", "bridge")
    ip("-n", SWITCH, "link", "set", "switch", "up")
    for host, address in ADDRESSES.items():
        namespace = NETNS_PREFIX + host
        ip("netns", "add", namespace)
        ip("link", "add", host, "netns", SWITCH, "type", "veth", "peer", "name", "eth0", "netns", namespace)
        ip("-n", SWITCH, "link", "set", host, "master", "switch", "up")
        ip("-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
        ip("-n", namespace, "link", "set", "eth0", "up")
        ip("-n", namespace, "link", "set", "lo", "up")


class HostsWorld(World):
    """A World on several hosts: PostgreSQL and the simulator on `db`, one daemon on each other host."""

    def __init__(self):
        super().__init__("hosts")
        os.chmod(self.dir, 0o711)  # the cluster's folder in it belongs to the postgres user
        self.cluster = os.path.join(self.dir, "cluster")
        self.password_file = os.path.join(self.dir, "postgres.password")
        with open(self.password_file, "w") as f:
            f.write(PG_PASSWORD + "\n")
        os.chmod(self.password_file, 0o600)
        self.simulator_host = ADDRESSES[DB_HOST]
        # It stands in for WeChat Pay's own machines: on a loaded host, a starved simulator would stamp
        # calls late and bunched in its call log, and the one-second windows would measure the host.
        self.simulator_wrapper = [*netns_exec(DB_HOST), "nice", "-n", "-10"]
        self.pg_port = None
        self.daemons = {}

    def start_database(self):
        result = subprocess.run(
            [*netns_exec(DB_HOST), os.path.join(ROOT, "scripts", "postgres-cluster"), "start", self.cluster,
             ADDRESSES[DB_HOST]], capture_output=True, text=True, timeout=180)
        if result.returncode != 0:
            raise RuntimeError(f"scripts/postgres-cluster start failed: {result.stderr.strip()}")
        self.pg_port = int(result.stdout.strip().rsplit(":", 1)[1].split("/")[0])
        self.sql(f"CREATE DATABASE {PG_DATABASE}", database="postgres")
        self.db = f"postgresql://{PG_USER}@{ADDRESSES[DB_HOST]}:{self.pg_port}/{PG_DATABASE}?sslmode=disable"

    def database_config(self):
        return [f"database: {self.db}", f"database_password_file: {self.password_file}"]

    def sql(self, statement, database=PG_DATABASE):
        """Rows of `statement`, run by psql on the database's host over its network address."""
        result = subprocess.run(
            [*netns_exec(DB_HOST), "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-F", "\t",
             "-h", ADDRESSES[DB_HOST], "-p", str(self.pg_port), "-U", PG_USER, "-d", database, "-c", statement],
            capture_output=True, text=True, timeout=60, env={**os.environ, "PGPASSWORD": PG_PASSWORD})
        if result.returncode != 0:
            raise AppInsertError(result.stderr.strip())
        return [line.split("\t") for line in result.stdout.splitlines()]

    def connect(self):
        return None  # each statement is one psql

    def dump(self):
        """The order table and its history as CSV files in the folder, for reading after the cluster is gone."""
        for name, query in [("orders", "SELECT * FROM orders ORDER BY id"),
                            ("history", "SELECT o.out_trade_no, a.* FROM close_attempts a JOIN orders o ON o.id = a.order_id "
                                        "ORDER BY a.id")]:
            rows = self.sql(f"COPY ({query}) TO STDOUT WITH CSV HEADER")
            with open(os.path.join(self.dir, f"{name}.csv"), "w") as f:
                f.writelines("\t".join(row) + "\n" for row in rows)

    def migrate(self):
        result = subprocess.run([*netns_exec(DAEMON_HOSTS[0]), BINARY, "migrate", "--config", self.config],
                                capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(result.stderr)

    def insert(self, numbers, created_ago=1200, expires_in=-60, connection=None, due_in=None):
        after = "NULL" if due_in is None else f"now() + make_interval(secs => {due_in})"
        values = ", ".join(
            f"('{MCH_ID}', '{APPID}', '{number}', now() - make_interval(secs => {created_ago}), "
            f"now() + make_interval(secs => {expires_in}), {after})" for number in numbers)
        self.sql("INSERT INTO orders (mch_id, appid, out_trade_no, created_at, expires_at, next_attempt_at) "
                 f"VALUES {values}")

    def states(self):
        try:
            return {state: int(count) for state, count in self.sql("SELECT state, count(*) FROM orders GROUP BY state")}
        except AppInsertError as error:
            return f"unreadable ({error})"

    def order_rows(self):
        return [(number, state, int(created), int(deadline), has_error == "1", int(after) if after else None)
                for number, state, created, deadline, has_error, after in self.sql(
                    "SELECT out_trade_no, state, extract(epoch FROM created_at)::bigint, "
                    "extract(epoch FROM coalesce(expires_at, created_at + interval '7200 seconds'))::bigint, "
                    "(last_error IS NOT NULL)::int, extract(epoch FROM next_attempt_at)::bigint FROM orders")]

    def history(self):
        """Every history line: (out_trade_no, line id, attempt, outcome, finished_at, fenced)."""
        return [(number, int(line), int(attempt), outcome, int(finished), fenced == "t")
                for number, line, attempt, outcome, finished, fenced in self.sql(
                    "SELECT o.out_trade_no, a.id, a.attempt, a.outcome, extract(epoch FROM a.finished_at)::bigint, "
                    f"strpos(a.message, '{FENCED_NOTE}') > 0 FROM close_attempts a JOIN orders o ON o.id = a.order_id "
                    "ORDER BY a.id")]

    def simulator_request(self, method, path):
        """A control request to the simulator, from its own host."""
        script = ("import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(urllib.request.Request("
                  "sys.argv[1], method=sys.argv[2], data=b'' if sys.argv[2] == 'POST' else None), timeout=30)"
                  ".read().decode())")
        result = subprocess.run(
            [*netns_exec(DB_HOST), sys.executable, "-c", script, f"http://{self.simulator_host}:{self.port}{path}",
             method], capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"simulator {path}: {result.stderr.strip()}")
        return result.stdout

    def start_host_daemon(self, host):
        self.daemons[host] = self.start_daemon(wrapper=netns_exec(host))

    def kill_host_daemon(self, host):
        self.daemons[host].send_signal(signal.SIGKILL)
        self.daemons[host].wait()

    def calls_in_flight(self, host):
        """Requests `host` has sent to the simulator and not yet had an answer to: connections that sent last."""
        output = subprocess.run(
            [*netns_exec(host), "ss", "-tniH", "state", "established", "dst", f"{self.simulator_host}:{self.port}"],
            capture_output=True, text=True).stdout
        waiting = 0
        for sent, received in re.findall(r"lastsnd:(\d+) lastrcv:(\d+)", output):
            waiting += int(sent) < int(received)
        return waiting

    def wait_for_call_in_flight(self, host, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.calls_in_flight(host):
                return True
            time.sleep(0.01)
        return False

    def log_of(self, host, since=0):
        with open(self.daemons[host].log, errors="replace") as f:
            f.seek(since)
            return f.read()

    def log_size(self, host):
        return os.path.getsize(self.daemons[host].log)


def write_backs(history):
    """Each order's write-backs in order: (outcome, finished_at, fenced) of the last history line of each
    record. A record's lines share its attempt and follow each other; a fenced one notes it on its last."""
    records = collections.defaultdict(list)
    previous = {}
    for number, _, attempt, outcome, finished, fenced in history:
        if previous.get(number) == (attempt, False):
            records[number][-1] = (outcome, finished, fenced)
        else:
            records[number].append((outcome, finished, fenced))
        previous[number] = (attempt, fenced)
    return records


def final_recorded_at(history):
    """When each order's first final outcome was written to its row (unix seconds)."""
    return {number: next((finished for outcome, finished, fenced in records
                          if outcome in ("closed", "paid", "failed") and not fenced), None)
            for number, records in write_backs(history).items()}


def applied_after_final(history):
    """Orders whose row a write-back changed after the order was final: what a stale daemon's write-back
    does when the fence fails (a fenced one is appended to the history with a note, and changes nothing)."""
    changed = []
    for number, records in write_backs(history).items():
        final = next((index for index, (outcome, _, fenced) in enumerate(records)
                      if outcome in ("closed", "paid", "failed") and not fenced), None)
        if final is not None and any(not fenced for _, _, fenced in records[final + 1:]):
            changed.append(number)
    return sorted(changed)


def overlapping_calls(calls, latency_ms):
    """Orders with two calls in flight at once: the simulator holds each call `latency_ms` before answering."""
    times = collections.defaultdict(list)
    for t, _, number in calls:
        times[number].append(round(t * 1000))
    return sorted(number for number, ts in times.items()
                  if any(b - a < latency_ms for a, b in zip(sorted(ts), sorted(ts)[1:])))


def busiest_second(calls):
    """The most calls in any one-second window, and when that window began."""
    times = sorted(round(t * 1000) for t, _, _ in calls)
    best, start, first = 0, None, 0
    for last, t in enumerate(times):
        while times[first] <= t - 1000:
            first += 1
        if last - first + 1 > best:
            best, start = last - first + 1, times[first] / 1000
    return best, start


def hosts_suite(limit, seconds):
    print(f"== hosts: three daemons on three hosts share one PostgreSQL table, {limit} calls/s for the merchant ==",
          flush=True)
    if os.geteuid() != 0:
        print("skipped: network namespaces need root")
        return True, []
    stale = remove_hosts(glob.glob(os.path.join(tempfile.gettempdir(), "closeorderd-hosts-*")))
    for folder in glob.glob(os.path.join(tempfile.gettempdir(), "closeorderd-hosts-*")):
        shutil.rmtree(folder, ignore_errors=True)
    if stale:
        print(f"  removed an earlier run's namespaces: {', '.join(stale)}", flush=True)
    previous_sigterm = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up on SIGTERM too
    world, app, ok = None, None, False
    try:
        make_network()
        world = HostsWorld()
        ok, figures = hosts_scenarios(world, limit, seconds)
        return ok, figures
    finally:
        if world:
            for process in list(world.daemons.values()):
                if process.poll() is None:
                    process.send_signal(signal.SIGKILL)
                    process.wait()
            world.close()
        remove_hosts([world.dir] if world else [])
        if world:
            if ok:
                shutil.rmtree(world.dir, ignore_errors=True)
            else:
                print(f"the run's logs and call log are in {world.dir} (removed by the next run)")
        signal.signal(signal.SIGTERM, previous_sigterm)


def hosts_scenarios(world, limit, seconds):
    started = time.time()
    latency_ms, lease, timeout = 100, 6, 2
    world.start_database()
    paid = [f"HOSTSPAID{i:03d}" for i in range(30)]
    world.start_simulator("--latency-ms", str(latency_ms), *sum((["--paid", n] for n in paid), []))
    world.write_config(max_requests_per_second=limit, concurrency=8, lease_seconds=lease, timeout_seconds=timeout,
                       max_attempts=100)
    world.migrate()
    version = world.sql("SHOW server_version")[0][0].split()[0]
    world.insert([f"HOSTS{i:05d}" for i in range(300)] + paid)
    never_due = [f"NOTDUE{i:03d}" for i in range(20)]
    world.insert(never_due, created_ago=1200, expires_in=3600)
    # Too young for the whole run, and old enough to fall due 15 s in: neither may be sent early.
    world.insert([f"YOUNG{i:03d}" for i in range(20)], created_ago=30, expires_in=-30)
    world.insert([f"SOON{i:03d}" for i in range(30)], created_ago=285, expires_in=-1)
    for host in DAEMON_HOSTS:
        world.start_host_daemon(host)
    app = AppInserter(world, "HOSTSAPP", per_second=15, batch=5)
    app.start()
    counts = collections.Counter()

    def closed():
        states = world.states()
        return states.get("closed", 0) if isinstance(states, dict) else 0

    def kill(*hosts):
        for host in hosts:
            counts["kills in flight"] += world.wait_for_call_in_flight(host, timeout=5)
            world.kill_host_daemon(host)
            counts["kills"] += 1
        time.sleep(1)
        for host in hosts:
            world.start_host_daemon(host)

    def fenced_in(host, since):
        return world.log_of(host, since).count(FENCED_LOG)

    def leases():
        return {tuple(row) for row in world.sql("SELECT id, lease_token FROM orders WHERE state = 'closing'")}

    def until_taken_over(held, since, host, what):
        """Waits past the lease until no row is still closing under a lease held at `since` (the other
        daemons took over what the lost one held: they reach expired leases behind older due orders).
        Rows still held 45 s past the lease are stuck: named, with the lost host's sessions."""
        try:
            world.wait_until(what, lambda: time.time() > since + lease + 1 and not held & leases(),
                             timeout=lease + 45)
        except RuntimeError:
            stuck = held & leases()
            sessions = world.sql("SELECT state, count(*) FROM pg_stat_activity "
                                 f"WHERE client_addr = '{ADDRESSES[host]}' GROUP BY state")
            counts["stuck closing"] += len(stuck)
            print(f"  {len(stuck)} rows still closing under {host}'s leases {lease + 45} s after they were taken; "
                  f"its sessions: {', '.join(f'{n} {state}' for state, n in sessions)}", flush=True)
        return time.time() - since

    def eventually(what, condition, timeout):
        try:
            world.wait_until(what, condition, timeout=timeout)
        except RuntimeError as error:
            print(f"  {error}", flush=True)

    scenario_end = time.time() + seconds
    world.wait_until("the daemons are at work", lambda: closed() >= 40, timeout=60)
    kill("host1")
    # host2 stops (a long GC pause, a frozen VM) with a call in flight, until the others have taken over
    # every row it held; meanwhile host1 dies again.
    counts["stalls in flight"] += world.wait_for_call_in_flight("host2")
    world.daemons["host2"].send_signal(signal.SIGSTOP)
    stopped, held = time.time(), leases()
    counts["stalls"] += 1
    time.sleep(2)
    kill("host1")
    stall_seconds = until_taken_over(held, stopped, "host2", "the others take over what the stalled daemon held")
    stalled_since = world.log_size("host2")
    world.daemons["host2"].send_signal(signal.SIGCONT)
    eventually("the stalled daemon's write-backs come back fenced", lambda: fenced_in("host2", stalled_since), 30)
    # host3's cable is pulled while the simulator holds its answer, and plugged back once its rows are taken over.
    world.simulator_request("POST", "/_sim/hold")
    counts["cuts in flight"] += world.wait_for_call_in_flight("host3")
    ip("-n", SWITCH, "link", "set", "host3", "down")
    cut, held = time.time(), leases()
    world.simulator_request("POST", "/_sim/release")
    counts["cuts"] += 1
    cut_seconds = until_taken_over(held, cut, "host3", "the others take over what the cut-off daemon held")
    cut_since = world.log_size("host3")
    ip("-n", SWITCH, "link", "set", "host3", "up")
    eventually("the cut-off daemon's write-backs come back fenced", lambda: fenced_in("host3", cut_since), 60)
    counts["fenced after the stall"] = fenced_in("host2", stalled_since)
    counts["fenced after the cut"] = fenced_in("host3", cut_since)
    kill("host1", "host2")
    kill("host3")
    # The rest of the run: random kills while the app inserts.
    rng = random.Random(int(os.environ.get("SEED", "3")))
    while time.time() < scenario_end:
        time.sleep(rng.uniform(1, 3))
        kill(rng.choice(DAEMON_HOSTS))
    app.stop()
    world.wait_until("nothing is due or closing", lambda: world.sql(
        "SELECT count(*) FROM orders WHERE state = 'closing' OR (state = 'pending' "
        "AND created_at <= now() - interval '5 minutes' AND coalesce(expires_at, created_at + interval '2 hours') <= now())"
    )[0][0] == "0", timeout=180)
    statuses = {host: stop(process) for host, process in world.daemons.items()}
    stats = json.loads(world.simulator_request("GET", "/_sim/stats"))
    world.dump()
    simulator_status = stop(world.simulator)
    duration = time.time() - started

    result = check_promises(world, paid, set(never_due))
    rows = {row[0]: row for row in world.order_rows()}
    due = [number for number, row in rows.items() if row[2] <= time.time() - 300 and row[3] <= time.time()]
    not_as_told = sorted(n for n in due if rows[n][1] != ("paid" if n in paid else "closed"))
    trade_states = stats.get("trade_states", {})
    disagree = sorted(n for n, row in rows.items() if (row[1] == "closed" and trade_states.get(n) != "CLOSED")
                      or (row[1] == "paid" and trade_states.get(n) != "SUCCESS"))
    history = world.history()
    stale_applied = applied_after_final(history)
    fenced_lines = sum(1 for line in history if line[5])
    calls = world.calls()
    overlapping = overlapping_calls(calls, latency_ms)
    busiest, busiest_at = busiest_second(calls)
    final_at = final_recorded_at(history)
    late = sorted({n for t, _, n in calls if final_at.get(n) and t > final_at[n] + 1})
    busiest_on_time = busiest_second([c for c in calls if not (final_at.get(c[2]) and c[0] > final_at[c[2]] + 1)])[0]
    log = world.log_text()
    secrets = world.secrets_found() + [name for name, secret in [("merchant key", KEY), ("database password", PG_PASSWORD)]
                                       if secret in log]
    endpoints = collections.Counter(endpoint for _, endpoint, _ in calls)
    finished = [n for n, row in rows.items() if row[1] in ("closed", "paid", "failed")]
    broken = [name for name, failed in [
        ("app insert errors", app.errors), ("orders lost", result["lost"] or not_as_told),
        ("orders left closing", result["closing"]),
        ("orders held closing long past their lease (no daemon could take them over)", counts["stuck closing"]),
        ("paid orders recorded closed", result["paid_marked_closed"]),
        ("orders sent before due", result["sent_early"]), ("database and WeChat disagree", disagree),
        ("write-backs applied after an order was final", stale_applied),
        ("two calls for one order at once", overlapping or stats.get("max_concurrent_calls_per_order", 0) > 1),
        (f"more than {limit} calls in a one-second window", busiest > limit),
        ("secrets in logs or files", secrets), ("exit status on SIGTERM", any(statuses.values()) or simulator_status),
        ("the stalled daemon's write-backs fenced", not counts["fenced after the stall"]),
        ("the cut-off daemon's write-backs fenced", not counts["fenced after the cut"])] if failed]
    figures = [
        ["hosts", f"db (PostgreSQL {version}, simulator), {', '.join(DAEMON_HOSTS)}: namespaces on one bridge"],
        ["orders", result["orders"]],
        ["  inserted by the app during the run", app.inserted],
        ["app insert errors (must be 0)", len(app.errors)],
        ["calls (closeorder / orderquery)", f"{len(calls)} ({endpoints['closeorder']} / {endpoints['orderquery']})"],
        ["daemons killed with SIGKILL (with a call in flight)", f"{counts['kills']} ({counts['kills in flight']})"],
        [f"stalls: SIGSTOP {stall_seconds:.0f} s, lease {lease} s (call in flight)",
         f"{counts['stalls']} ({counts['stalls in flight']})"],
        [f"link cuts of {cut_seconds:.0f} s mid-call (answer held, then lost)",
         f"{counts['cuts']} ({counts['cuts in flight']})"],
        ["stale write-backs fenced: after the stall, after the cut (log lines)",
         f"{counts['fenced after the stall']}, {counts['fenced after the cut']}"],
        ["  fenced history lines in the whole run", fenced_lines],
        ["write-backs applied after an order was final (must be 0)", len(stale_applied)],
        ["orders lost or not closed/paid as told (must be 0)", len(set(result["lost"]) | set(not_as_told))],
        ["orders left closing (must be 0)", len(result["closing"])],
        ["orders still closing 45 s past a lost daemon's lease (must be 0)", counts["stuck closing"]],
        ["paid orders recorded closed (must be 0)", len(result["paid_marked_closed"])],
        ["orders sent before due (must be 0)", len(result["sent_early"])],
        ["rows that disagree with WeChat's trade state (must be 0)", len(disagree)],
        ["orders with two calls at once (must be 0)",
         f"{len(overlapping)} (simulator: at most {stats.get('max_concurrent_calls_per_order')} close in flight per order)"],
        [f"max calls in any 1 s window (must be <= {limit})",
         f"{busiest} (from {time.strftime('%H:%M:%S', time.localtime(busiest_at)) if busiest_at else '-'})"],
        ["calls arriving > 1 s after the order was recorded final", len(late)],
        ["  max calls in any 1 s window without those", busiest_on_time],
        ["close calls per finished order", distribution(result["close_calls"], finished)],
        ["final states", json.dumps(result["states"], sort_keys=True)],
        ["exit status on SIGTERM (daemons, simulator)", f"{sorted(set(statuses.values()))}, {simulator_status}"],
        ["secrets in logs or files (must be none)", ", ".join(secrets) or "none"],
        ["duration (s)", f"{duration:.0f}"],
    ]
    print(table(figures, ["hosts", "figure"]))
    if late:
        print(f"  called after recorded final: {' '.join(late[:10])} (history in {world.dir}/history.csv)")
    if broken:
        print("broken: " + "; ".join(broken))
        for name, numbers in [("lost", sorted(set(result["lost"]) | set(not_as_told))), ("sent early", result["sent_early"]),
                              ("applied after final", stale_applied), ("at once", overlapping), ("disagree", disagree)]:
            if numbers:
                print(f"  {name}: {' '.join(numbers[:10])}")
    return not broken, figures


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("suite", choices=["crash", "faults", "database", "load", "hosts", "all"])
    parser.add_argument("--runs", type=int, default=50, help="crash: daemon kills (default 50)")
    parser.add_argument("--outage-seconds", type=int, default=60, help="faults: how long the simulator stays down")
    parser.add_argument("--load-seconds", type=int, default=30)
    parser.add_argument("--load-rate", type=int, default=1000, help="load: orders inserted per second")
    parser.add_argument("--hosts-limit", type=int, default=20,
                        help="hosts: max_requests_per_second of the merchant on every daemon (default 20)")
    parser.add_argument("--hosts-seconds", type=int, default=60,
                        help="hosts: how long the app inserts and daemons are disturbed (default 60)")
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
    if options.suite == "hosts" or (options.suite == "all" and os.geteuid() == 0):
        results["hosts"] = hosts_suite(options.hosts_limit, options.hosts_seconds)[0]
    print()
    for suite, ok in results.items():
        print(f"{suite}: {'every promise held' if ok else 'FAILED'}")
    sys.exit(0 if all(results.values()) else 1)


if __name__ == "__main__":
    main()
