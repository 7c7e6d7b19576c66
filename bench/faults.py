#!/usr/bin/env python3
"""Faults under load: the server killed with SIGKILL, and its PostgreSQL restarted.

(a) kill -9 under load. A demo server on SQLite takes client_credentials grants from
    CONCURRENCY threads for SECONDS; the x-request-id of every 200 is recorded (an
    acknowledged grant). Halfway through, the server is killed with SIGKILL and started
    again on the same data directory and port while the load goes on. Then the audit log
    is checked with the auditor's tool, `identity-audit verify`, against the key pinned
    (GET /audit/key) before the crash and the checkpoint it saved before the load
    (--state: the log after the crash must extend it), and every acknowledged request id
    must appear in a `request=` line of the log's entries (read through /audit/entries
    with the demo auditor's credential).

(b) PostgreSQL restarted under load. A private, throwaway PostgreSQL cluster is created in
    a temporary directory (initdb --auth=trust, port --pg-port, default 55432, socket in
    the temporary directory; as the `postgres` user via runuser when run as root; the
    machine's own PostgreSQL on 5432 is never touched). The demo server runs on it
    (IDENTITY_DATABASE_URL), takes client_credentials load, and the cluster is restarted
    with `pg_ctl restart -m fast` mid-load. Reported: answers by status (5xx other than 503
    must be 0), whether the 503s carried Retry-After, how long failed answers took (a
    failure should be quick, not a hang), the time from PostgreSQL accepting connections
    again to the first 200 (recovery, without restarting our server), /readyz during the
    outage, and that the server's PID did not change.

Everything started is torn down on exit. Ends with a Markdown summary for BENCHMARKS.md.
Exits 1 if an acknowledged grant is missing, the auditor's verification fails, a 5xx
other than 503 is seen in (b), the server's PID changed, or the service did not recover.

By default it builds the release binaries (IDENTITY_BIN and AUDIT_BIN override them).

Command:

    python3 bench/faults.py --seconds 10 --concurrency 8
"""

from __future__ import annotations

import argparse
import base64
import glob
import json
import os
import pwd
import re
import socket
import subprocess
import sys
import threading
import time
from collections import Counter

sys.dont_write_bytecode = True  # no bench/__pycache__ from importing benchlib
import benchlib as bl  # noqa: E402


# --------------------------------------------------------------------------- load


class Load:
    """CONCURRENCY threads of client_credentials grants until stopped. Each answer is kept
    as (t_start, t_end, status or error kind, x-request-id, has Retry-After)."""

    def __init__(self, host: str, port: int, threads: int, timeout: float):
        self.host, self.port, self.n, self.timeout = host, port, threads, timeout
        self.stop_flag = threading.Event()
        self.rows: list[list] = [[] for _ in range(threads)]
        self.threads = [threading.Thread(target=self._work, args=(i,), daemon=True) for i in range(threads)]

    def _work(self, i: int):
        conn = bl.Conn(self.host, self.port, self.timeout)
        out = self.rows[i]
        while not self.stop_flag.is_set():
            t0 = time.monotonic()
            try:
                st, h, _, _ = bl.client_credentials(conn)
                out.append((t0, time.monotonic(), st, h.get("x-request-id"), "retry-after" in h))
            except (OSError, bl.http.client.HTTPException) as e:
                out.append((t0, time.monotonic(), bl.error_kind(e), None, False))
                time.sleep(0.02)  # the server is gone or restarting: do not spin
        conn.close()

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self) -> list:
        self.stop_flag.set()
        for t in self.threads:
            t.join()
        return sorted((r for part in self.rows for r in part), key=lambda r: r[1])


def describe_answers(rows: list) -> tuple[Counter, int, int, int, int]:
    st = Counter(r[2] for r in rows)
    u5 = sum(v for k, v in st.items() if bl.is_unexpected_5xx(k))
    n503 = st.get(503, 0)
    n503_ra = sum(1 for r in rows if r[2] == 503 and r[4])
    errs = sum(v for k, v in st.items() if not isinstance(k, int))
    return st, u5, n503, n503_ra, errs


# --------------------------------------------------------------------------- audit log


def checkpoint_size(host: str, port: int) -> int | None:
    try:
        st, _, body = bl.get(host, port, "/audit/checkpoint")
    except OSError:
        return None
    if st != 200:
        return None
    return int(body.decode().splitlines()[1])


def logged_request_ids(audit: str, host: str, port: int, key: str, size: int) -> set[str]:
    """request= values of entries [0, size), through the auditor's interface (the tool
    authenticates with the demo auditor's key and DPoP-bound tokens)."""
    ids = set()
    cmd = [audit, "--url", f"http://{host}:{port}", "--key", key, "--client-id", bl.AUDITOR_ID,
           "--client-key", bl.AUDITOR_KEY, "entries", "--start", "0", "--end", str(size)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"identity-audit entries: {out.stderr.strip()}")
    for line in out.stdout.splitlines():
        _, _, b64 = line.partition(" ")
        for field in base64.b64decode(b64).decode("utf-8", "replace").splitlines():
            if field.startswith("request="):
                ids.add(field[len("request="):])
    return ids


def run_audit(audit: str, host: str, port: int, key: str, state: str) -> tuple[int, str]:
    cmd = [audit, "--url", f"http://{host}:{port}", "--key", key, "--client-id", bl.AUDITOR_ID,
           "--client-key", bl.AUDITOR_KEY, "verify", "--state", state]
    out = subprocess.run(cmd, capture_output=True, text=True)
    return out.returncode, (out.stdout + out.stderr).strip()


def part_kill(args, binary: str, audit: str, cleanup: bl.Cleanup) -> tuple[bool, list[str]]:
    print(f"\n== (a) SIGKILL under client_credentials load ({args.seconds:g} s, {args.concurrency} threads) ==", flush=True)
    d = bl.temp_dir(cleanup, "identity-faults-kill-")
    srv = bl.Server(binary, d, bl.free_port())
    cleanup.add(srv.stop)
    srv.start()
    host, port = "127.0.0.1", srv.port
    _, _, body = bl.get(host, port, "/audit/key")
    key = body.decode().strip()
    print(f"pinned audit key: {key}")

    # A first verified checkpoint, saved, before the load: the log after the crash must extend it.
    warm = bl.Conn(host, port)
    for _ in range(5):
        bl.client_credentials(warm)
    warm.close()
    state = os.path.join(d, "auditor.checkpoint")
    for _ in range(100):
        if (checkpoint_size(host, port) or 0) >= 5:
            break
        time.sleep(0.2)
    rc, out = run_audit(audit, host, port, key, state)
    print(f"before the load: identity-audit verify --state: {out}")
    if rc != 0:
        return False, [f"| identity-audit verify before the load | FAILED: {out} |"]

    load = Load(host, port, args.concurrency, args.timeout).start()
    t_start = time.monotonic()
    time.sleep(args.seconds / 2)
    old_pid = srv.pid
    t_kill = time.monotonic()
    srv.kill9()
    srv.start()
    t_ready = time.monotonic()
    print(f"killed pid {old_pid} with SIGKILL at {t_kill - t_start:.1f} s; restarted as pid {srv.pid}, "
          f"serving again after {t_ready - t_kill:.2f} s", flush=True)
    time.sleep(max(0.0, args.seconds - (time.monotonic() - t_start)))
    rows = load.stop()

    st, u5, n503, n503_ra, errs = describe_answers(rows)
    acked = [r[3] for r in rows if r[2] == 200]
    no_id = sum(1 for a in acked if not a)
    acked = [a for a in acked if a]
    before = [r for r in rows if r[2] == 200 and r[1] < t_kill]
    after = [r for r in rows if r[2] == 200 and r[1] >= t_kill]
    gap = (after[0][1] - before[-1][1]) if before and after else None
    print(f"answers: {bl.counts(st)}; acknowledged (200): {len(acked)} ({len(before)} before the kill, "
          f"{len(after)} after); no 200 for {gap:.2f} s around the crash" if gap is not None else
          f"answers: {bl.counts(st)}")

    # Every acknowledged grant in the log, once the restarted server has signed a checkpoint over it.
    key_after = bl.get(host, port, "/audit/key")[2].decode().strip()
    missing = set(acked)
    size = 0
    t_wait = time.monotonic()
    while time.monotonic() - t_wait < 60:
        size = checkpoint_size(host, port) or 0
        missing = set(acked) - logged_request_ids(audit, host, port, key, size)
        if not missing:
            break
        time.sleep(1)
    print(f"signed checkpoint: {size} entries; acknowledged grants missing from it: {len(missing)}"
          f"{' e.g. ' + ', '.join(sorted(missing)[:5]) if missing else ''}")
    rc, out = run_audit(audit, host, port, key, state)
    print(f"after the restart: identity-audit verify --state (key pinned before the crash): "
          f"{out if rc == 0 else 'FAILED: ' + out}")
    print(f"audit key after the restart {'unchanged' if key_after == key else 'CHANGED: ' + key_after}")
    srv.stop()
    ok = rc == 0 and not missing and not no_id and key_after == key and len(acked) > 0
    md = [
        f"| acknowledged grants (200 with `x-request-id`) | {len(acked):,} ({len(before):,} before the kill, "
        f"{len(after):,} after the restart) |",
        f"| other answers (connection refused or reset while the server was down) | "
        f"{bl.counts(Counter({k: v for k, v in st.items() if k != 200}))} |",
        f"| restart to serving again / no 200 around the crash | {t_ready - t_kill:.2f} s / "
        f"{'—' if gap is None else f'{gap:.2f} s'} |",
        f"| acknowledged grants missing from the signed log ({size:,} entries) | {len(missing)} |",
        f"| `identity-audit verify --state` after the restart, key pinned before | "
        f"{(out if rc == 0 else 'FAILED: ' + out).replace('|', '/')} |",
    ]
    return ok, md


# --------------------------------------------------------------------------- PostgreSQL


def pg_bindir(explicit: str | None) -> str:
    if explicit:
        return explicit
    dirs = glob.glob("/usr/lib/postgresql/*/bin")
    dirs.sort(key=lambda p: [int(x) for x in re.findall(r"\d+", p)])
    for d in reversed(dirs):
        if os.path.exists(os.path.join(d, "initdb")):
            return d
    raise SystemExit("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin (give --pg-bin)")


class Cluster:
    """A throwaway PostgreSQL cluster in `root`, on 127.0.0.1:port, socket in `root`."""

    def __init__(self, bindir: str, root: str, port: int):
        self.bindir, self.root, self.port = bindir, root, port
        self.data = os.path.join(root, "pg")
        self.log = os.path.join(root, "pg.log")
        self.as_user: list[str] = []
        self.started = False
        if os.geteuid() == 0:
            # initdb refuses to run as root: the cluster belongs to the postgres user.
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise SystemExit("running as root needs a `postgres` user to own the throwaway cluster")
            os.chown(root, pw.pw_uid, pw.pw_gid)
            os.chmod(root, 0o700)
            self.as_user = ["runuser", "-u", "postgres", "--"]

    def _run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        full = self.as_user + [os.path.join(self.bindir, cmd[0]), *cmd[1:]]
        out = subprocess.run(full, capture_output=True, text=True, cwd="/")
        if check and out.returncode != 0:
            raise RuntimeError(f"{' '.join(full)} failed:\n{out.stdout}{out.stderr}\n{self.log_tail()}")
        return out

    def _opts(self) -> str:
        return f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"

    def init(self):
        self._run("initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")

    def start(self):
        self._run("pg_ctl", "-D", self.data, "-o", self._opts(), "-l", self.log, "-w", "start")
        self.started = True

    def restart_fast(self, down: float = 0.0):
        """`pg_ctl restart -m fast`; with `down` > 0, a fast stop, `down` seconds, then a start."""
        if down <= 0:
            self._run("pg_ctl", "-D", self.data, "-o", self._opts(), "-l", self.log, "-w", "-m", "fast", "restart")
            return
        self._run("pg_ctl", "-D", self.data, "-w", "-m", "fast", "stop")
        time.sleep(down)
        self._run("pg_ctl", "-D", self.data, "-o", self._opts(), "-l", self.log, "-w", "start")

    def ready(self) -> bool:
        return self._run("pg_isready", "-h", "127.0.0.1", "-p", str(self.port), "-q", check=False).returncode == 0

    def stop(self):
        if self.started:
            self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop", check=False)
            self.started = False

    def createdb(self, name: str):
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)

    def log_tail(self, n: int = 10) -> str:
        try:
            return "\n".join(open(self.log, errors="replace").read().splitlines()[-n:])
        except OSError:
            return ""


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class ReadyzPoller(threading.Thread):
    """GET /readyz every 100 ms: [(t, status or error kind, seconds)]."""

    def __init__(self, host, port):
        super().__init__(daemon=True)
        self.host, self.port = host, port
        self.samples: list = []
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            t0 = time.monotonic()
            try:
                st, _, _ = bl.get(self.host, self.port, "/readyz", timeout=10)
            except OSError as e:
                st = bl.error_kind(e)
            self.samples.append((t0, st, time.monotonic() - t0))
            self.halt.wait(0.1)


def part_pg(args, binary: str, cleanup: bl.Cleanup) -> tuple[bool, list[str]]:
    print(f"\n== (b) PostgreSQL restarted under client_credentials load ({args.seconds:g} s, "
          f"{args.concurrency} threads) ==", flush=True)
    if port_in_use(args.pg_port):
        raise SystemExit(f"127.0.0.1:{args.pg_port} is in use: choose another --pg-port "
                         "(the throwaway cluster never reuses a running PostgreSQL)")
    bindir = pg_bindir(args.pg_bin)
    root = bl.temp_dir(cleanup, "identity-faults-pg-")
    cluster = Cluster(bindir, root, args.pg_port)
    cluster.init()
    cleanup.add(cluster.stop)
    cluster.start()
    cluster.createdb("identity")
    version = subprocess.run([os.path.join(bindir, "postgres"), "--version"], capture_output=True,
                             text=True).stdout.strip()
    print(f"throwaway cluster: {version}, 127.0.0.1:{args.pg_port}, data in {cluster.data}"
          f"{' (owned by postgres, commands via runuser)' if cluster.as_user else ''}")

    d = bl.temp_dir(cleanup, "identity-faults-pgsrv-")
    url = f"postgres://postgres@127.0.0.1:{args.pg_port}/identity"
    srv = bl.Server(binary, d, bl.free_port(), env={"IDENTITY_DATABASE_URL": url})
    cleanup.add(srv.stop)
    srv.start()
    host, port = "127.0.0.1", srv.port
    pid0 = srv.pid
    print(f"server pid {pid0} on http://{host}:{port}, IDENTITY_DATABASE_URL={url}")

    readyz = ReadyzPoller(host, port)
    readyz.start()
    load = Load(host, port, args.concurrency, args.timeout).start()
    t_start = time.monotonic()
    time.sleep(args.seconds / 3)
    t_restart = time.monotonic()
    cluster.restart_fast(args.pg_down)
    t_back = time.monotonic()  # pg_ctl -w returns once the cluster accepts connections
    if not cluster.ready():
        raise RuntimeError(f"PostgreSQL is not ready after pg_ctl restart:\n{cluster.log_tail()}")
    how = "pg_ctl restart -m fast" if args.pg_down <= 0 else f"pg_ctl stop -m fast, {args.pg_down:g} s down, pg_ctl start"
    print(f"{how} at {t_restart - t_start:.1f} s; PostgreSQL accepting connections "
          f"again {t_back - t_restart:.2f} s later", flush=True)
    time.sleep(max(0.0, args.seconds - (time.monotonic() - t_start)))
    rows = load.stop()
    readyz.halt.set()
    readyz.join()
    pid_alive = srv.alive()
    pid_same = pid_alive and srv.pid == pid0

    st, u5, n503, n503_ra, errs = describe_answers(rows)
    fails = [r for r in rows if r[2] != 200]
    fail_lat = [r[1] - r[0] for r in fails]
    slow_fails = sum(1 for x in fail_lat if x >= 1.0)
    ok_before = [r for r in rows if r[2] == 200 and r[1] < t_restart]
    first_ok_after = next((r for r in rows if r[2] == 200 and r[1] >= t_back), None)
    first_fresh_ok = next((r for r in sorted(rows, key=lambda r: r[0])
                           if r[2] == 200 and r[0] >= t_back), None)
    ok_during = sum(1 for r in rows if r[2] == 200 and t_restart <= r[1] < t_back)
    recovery = None if first_ok_after is None else first_ok_after[1] - t_back
    recovery_fresh = None if first_fresh_ok is None else first_fresh_ok[1] - t_back
    outage = None if not ok_before or first_ok_after is None else first_ok_after[1] - ok_before[-1][1]
    window = [r for r in rows if r[0] < t_back + 10 and r[1] >= t_restart]
    window_lat = [r[1] - r[0] for r in window]
    u5_rows = [r for r in rows if bl.is_unexpected_5xx(r[2])]

    rz = readyz.samples
    rz_down = [s for s in rz if s[1] != 200 and s[0] >= t_restart]
    rz_up = next((s for s in rz if s[1] == 200 and s[0] >= t_back), None)
    rz_status = Counter(s[1] for s in rz if s[0] >= t_restart and (rz_up is None or s[0] < rz_up[0]))

    log_lines = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in srv.log_text().splitlines()]
    errors_logged = [line for line in log_lines if re.search(r"\bERROR\b", line)]
    warns = [line for line in log_lines if re.search(r"\bWARN\b", line)]

    print(f"answers: {bl.counts(st)}")
    print(f"5xx other than 503: {u5}" + (f" (first at {u5_rows[0][1] - t_restart:+.2f} s from the restart)" if u5_rows else ""))
    print(f"503: {n503}, with Retry-After: {n503_ra}; transport errors: {errs}")
    print(f"failed answers took: p50 {bl.ms(bl.pct(fail_lat, 50))}, p99 {bl.ms(bl.pct(fail_lat, 99))}, "
          f"max {bl.ms(max(fail_lat) if fail_lat else None)}; {slow_fails} took 1 s or more")
    print(f"every answer from the restart to 10 s after PostgreSQL was back: p50 {bl.ms(bl.pct(window_lat, 50))}, "
          f"p99 {bl.ms(bl.pct(window_lat, 99))}, max {bl.ms(max(window_lat) if window_lat else None)}")
    print(f"200s completed while PostgreSQL was restarting: {ok_during}")
    print(f"recovery: first 200 {bl.ms(recovery)} after PostgreSQL was back "
          f"(first 200 of a request sent after it was back: {bl.ms(recovery_fresh)}); "
          f"no 200 for {'—' if outage is None else f'{outage:.2f} s'} in all")
    if rz_down:
        print(f"/readyz: {bl.counts(rz_status)} from the restart until ready again; 200 again "
              f"{bl.ms(None if rz_up is None else rz_up[0] - t_back)} after PostgreSQL was back; "
              f"slowest /readyz answer in the outage {bl.ms(max(s[2] for s in rz_down))}")
    else:
        print("/readyz: never left 200")
    print(f"server pid {pid0} -> {srv.pid if pid_alive else 'EXITED'}: "
          f"{'unchanged, still running' if pid_same else 'CHANGED OR GONE'}")
    print(f"server log: {len(errors_logged)} ERROR lines, {len(warns)} WARN lines")
    for line in (errors_logged[:3] + warns[:3]):
        print(f"  {line[:300]}")
    srv.stop()
    cluster.stop()

    ok = u5 == 0 and pid_same and first_ok_after is not None
    md = [
        f"| answers | {bl.counts(st)} |",
        f"| 5xx other than 503 | {u5} |",
        f"| 503 with `Retry-After` | {n503_ra} of {n503} |",
        f"| transport errors | {errs} |",
        f"| failed answers' latency (p50 / p99 / max) | {bl.ms(bl.pct(fail_lat, 50))} / "
        f"{bl.ms(bl.pct(fail_lat, 99))} / {bl.ms(max(fail_lat) if fail_lat else None)} |",
        f"| {'`pg_ctl restart -m fast`' if args.pg_down <= 0 else f'`pg_ctl stop -m fast`, {args.pg_down:g} s, `pg_ctl start`'}"
        f" (from the stop to accepting connections) | {t_back - t_restart:.2f} s |",
        f"| recovery: PostgreSQL back to the first 200 | {bl.ms(recovery)} |",
        f"| no 200 in all (last before the restart to first after) | "
        f"{'—' if outage is None else f'{outage:.2f} s'} |",
        f"| `/readyz` during the outage | {bl.counts(rz_status) if rz_down else 'always 200'} |",
        f"| server PID | {'unchanged' if pid_same else 'CHANGED or exited'} ({pid0}) |",
    ]
    return ok, md


# --------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10, help="load per part (default 10)")
    ap.add_argument("--concurrency", type=int, default=8, help="client threads (default 8)")
    ap.add_argument("--only", choices=["kill", "postgres"], help="run one part only")
    ap.add_argument("--pg-port", type=int, default=55432, help="port of the throwaway cluster (default 55432)")
    ap.add_argument("--pg-bin", help="PostgreSQL's bin directory (default: newest /usr/lib/postgresql/*/bin)")
    ap.add_argument("--pg-down", type=float, default=0,
                    help="keep PostgreSQL down this many seconds (stop -m fast, wait, start) "
                         "instead of a plain restart (default 0: pg_ctl restart -m fast)")
    ap.add_argument("--timeout", type=float, default=30, help="per-request timeout in seconds (default 30)")
    args = ap.parse_args()
    if args.pg_port == 5432:
        ap.error("5432 is the machine's PostgreSQL: the throwaway cluster needs another port")
    bl.raise_nofile(4 * args.concurrency + 256)
    cleanup = bl.Cleanup()
    binary = bl.server_bin()
    audit = bl.audit_bin() if args.only != "postgres" else None
    print(f"machine: {bl.machine()}")
    results = []
    if args.only in (None, "kill"):
        results.append(("(a) SIGKILL under load, restart on the same data (SQLite)", *part_kill(args, binary, audit, cleanup)))
    if args.only in (None, "postgres"):
        results.append(("(b) PostgreSQL restarted under load", *part_pg(args, binary, cleanup)))

    print("\n---- Markdown summary ----\n")
    print("### Faults under load (`bench/faults.py`)\n")
    print("\n".join(bl.header_lines(binary)))
    print(f"- load: `client_credentials` grants, {args.concurrency} threads, {args.seconds:g} s per part; "
          f"client and server on the same machine\n")
    for title, ok, md in results:
        print(f"{title}: {'passed' if ok else 'FAILED'}\n")
        print("| what | result |")
        print("|---|---|")
        print("\n".join(md))
        print()
    return 0 if all(ok for _, ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
