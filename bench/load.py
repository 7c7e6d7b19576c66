#!/usr/bin/env python3
"""Sustained load on the identity service, with its memory watched.

Two phases, one after the other, each for SECONDS with CONCURRENCY client threads:

  (a) client_credentials grants on /token (client_secret_basic, the demo e-service), each
      thread on its own keep-alive connection;
  (b) password logins through the hosted pages, each one a fresh browser doing the whole
      flow (GET /authorize with PKCE, the login page, POST the password, consent, up to the
      redirect carrying the code). A login counts as OK when the code arrives; logins the
      server refused with 503 (hashing pool full, Retry-After) or 429 (throttling) are
      counted apart. Each thread logs in as its own citizen (seeded first with
      `identity-server seed`); `--users 1` sends every thread to the demo citizen, where
      concurrent logins to one account meet the per-account throttle (429).

The server's resident memory (VmRSS in /proc/PID/status) is sampled every second; each
phase reports its start, middle and end RSS (it should stay flat), requests per second,
p50/p99 latency, and answers by status: 5xx other than 503 must be zero, and 503 (the
deliberate back-pressure) is reported separately. Ends with a Markdown summary for
BENCHMARKS.md. Exits 1 if any 5xx other than 503 or a transport error was seen.

By default it builds the release binaries and starts its own `identity-server demo` on
SQLite in a temporary directory (IDENTITY_BIN overrides the binary); with --url and --pid it
loads a server that is already running instead.

The load generator is Python (threads, http.client) on the same machine: on a small
machine it takes CPU from the server, so the token figures are lower than wrk's
(bench/token.sh).

Command:

    python3 bench/load.py --seconds 30 --concurrency 16
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import Counter

sys.dont_write_bytecode = True  # no bench/__pycache__ from importing benchlib
import benchlib as bl  # noqa: E402


def run_threads(n: int, target, seconds: float):
    """Starts n threads running target(deadline) -> list of results; returns (results,
    t_start, t_end)."""
    out: list[list] = [[] for _ in range(n)]
    barrier = threading.Barrier(n + 1)
    box = {}

    def body(i):
        barrier.wait()
        out[i] = target(box["deadline"])

    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    box["deadline"] = t0 + seconds
    barrier.wait()
    for t in threads:
        t.join()
    t1 = time.monotonic()
    return [r for part in out for r in part], t0, t1


def token_worker(host, port, timeout):
    def work(deadline):
        conn = bl.Conn(host, port, timeout)
        rows = []
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            try:
                st, h, _, dt = bl.client_credentials(conn)
                rows.append((st, dt, "retry-after" in h))
            except (OSError, bl.http.client.HTTPException) as e:
                rows.append((bl.error_kind(e), time.monotonic() - t0, False))
                time.sleep(0.05)
        conn.close()
        return rows
    return work


def login_worker(host, port, timeout, users):
    counter = iter(range(1 << 30))
    lock = threading.Lock()

    def work(deadline):
        with lock:
            u, pw = users[next(counter) % len(users)]
        rows = []
        while time.monotonic() < deadline:
            r = bl.login(host, port, timeout, username=u, password=pw)
            rows.append(r)
            if not (r.outcome == "ok" or isinstance(r.outcome, int)):
                time.sleep(0.05)  # a transport error: do not spin
        return rows
    return work


def rss_line(sampler, t0, t1):
    s, m, e, mx = sampler.start_mid_end(t0, t1)
    return s, m, e, mx


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30, help="length of each phase (default 30)")
    ap.add_argument("--concurrency", type=int, default=16, help="client threads per phase (default 16)")
    ap.add_argument("--login-concurrency", type=int, help="threads for the login phase (default: --concurrency)")
    ap.add_argument("--users", type=int,
                    help="distinct citizens for the login phase, one per thread in turn (default: one per "
                         "login thread, seeded first; 1: every thread logs in as the demo citizen, and "
                         "concurrent logins to one account meet the throttle's 429)")
    ap.add_argument("--data-dir", help="with --url and --users > 1: the demo server's data directory")
    ap.add_argument("--only", choices=["token", "login"], help="run one phase only")
    ap.add_argument("--url", help="load this running server (http://host:port) instead of starting one")
    ap.add_argument("--pid", type=int, help="with --url: the server's PID, for its RSS")
    ap.add_argument("--timeout", type=float, default=60, help="per-request timeout in seconds (default 60)")
    args = ap.parse_args()
    if args.url and not args.pid:
        ap.error("--url needs --pid (the server's process, to sample its memory)")
    lc = args.login_concurrency or args.concurrency
    users_n = (lc if args.users is None else args.users) if args.only != "token" else 1
    if args.url and users_n > 1 and not args.data_dir:
        ap.error("--url with --users > 1 needs --data-dir (or use --users 1)")
    bl.raise_nofile(4 * (args.concurrency + lc) + 256)

    cleanup = bl.Cleanup()
    binary, host, port, pid, users = bl.server_with_citizens(args, cleanup, users_n, "identity-load-")
    print(f"machine: {bl.machine()}")
    print(f"server: http://{host}:{port} pid {pid}, binary {binary}")

    sampler = bl.RssSampler(pid, 1.0)
    sampler.start()
    time.sleep(1.1)
    rss_idle = bl.proc_status(pid, "VmRSS")
    print(f"server RSS before load: {bl.mib(rss_idle)}")
    summary = []
    cpu_note: list[str] = []
    bad = 0

    if args.only in (None, "token"):
        print(f"\n== (a) client_credentials on /token: {args.seconds:g} s, {args.concurrency} threads ==", flush=True)
        rows, t0, t1 = run_threads(args.concurrency, token_worker(host, port, args.timeout), args.seconds)
        dur = t1 - t0
        st = Counter(r[0] for r in rows)
        lat = [r[1] for r in rows]
        ok_lat = [r[1] for r in rows if r[0] == 200]
        n503 = st.get(503, 0)
        n503_ra = sum(1 for r in rows if r[0] == 503 and r[2])
        u5 = sum(v for k, v in st.items() if bl.is_unexpected_5xx(k))
        errs = sum(v for k, v in st.items() if not isinstance(k, int))
        bad += u5 + errs
        s, m, e, mx = rss_line(sampler, t0, t1)
        print(f"requests: {len(rows)} in {dur:.1f} s = {len(rows) / dur:.0f} /s; 200: {st.get(200, 0)} "
              f"({st.get(200, 0) / dur:.0f} /s)")
        print(f"latency (all answers): p50 {bl.ms(bl.pct(lat, 50))}, p99 {bl.ms(bl.pct(lat, 99))}, "
              f"max {bl.ms(max(lat) if lat else None)}")
        print(f"by status: {bl.counts(st)}")
        print(f"5xx other than 503: {u5}; 503: {n503} ({n503_ra} with Retry-After); transport errors: {errs}")
        print(f"server RSS: start {bl.mib(s)}, middle {bl.mib(m)}, end {bl.mib(e)}, max {bl.mib(mx)}")
        summary.append(
            f"| `client_credentials` on `/token`, {args.concurrency} threads, {dur:.0f} s "
            f"| {st.get(200, 0) / dur:,.0f} /s | {bl.ms(bl.pct(ok_lat, 50))} | {bl.ms(bl.pct(ok_lat, 99))} "
            f"| {st.get(200, 0):,} | {n503} | {u5} | {errs} | {bl.mib(s)} / {bl.mib(m)} / {bl.mib(e)} ({bl.mib(mx)}) |")

    if args.only in (None, "login"):
        print(f"\n== (b) password logins through the hosted pages: {args.seconds:g} s, {lc} threads, "
              f"{len(users)} citizen(s) ==", flush=True)
        cpu0, hash0 = bl.process_cpu_seconds(pid), bl.hashing_cpu_seconds(host, port)
        rows, t0, t1 = run_threads(lc, login_worker(host, port, args.timeout, users), args.seconds)
        cpu1, hash1 = bl.process_cpu_seconds(pid), bl.hashing_cpu_seconds(host, port)
        dur = t1 - t0
        outcome = Counter(r.outcome for r in rows)
        ok = [r for r in rows if r.outcome == "ok"]
        ok_lat = [r.seconds for r in ok]
        http_st = Counter(s[1] for r in rows for s in r.steps)
        nreq = sum(http_st.values())
        pw_lat = [s[2] for r in rows for s in r.steps if s[0] == "password" and s[1] == 303]
        refusals = [r for r in rows if r.outcome in (503, 429)]
        ref_lat = [r.refusal[2] for r in refusals]
        ra = sum(1 for r in refusals if r.retry_after is not None)
        u5 = sum(v for k, v in http_st.items() if bl.is_unexpected_5xx(k))
        errs = sum(v for k, v in http_st.items() if not isinstance(k, int))
        other = sum(v for k, v in outcome.items() if k not in ("ok", 503, 429))
        bad += u5 + errs
        s, m, e, mx = rss_line(sampler, t0, t1)
        print(f"logins: {len(rows)} in {dur:.1f} s; OK (code received): {len(ok)} = {len(ok) / dur:.1f} /s; "
              f"refused 503: {outcome.get(503, 0)}, 429: {outcome.get(429, 0)} ({ra} with Retry-After); other: {other}")
        print(f"login outcomes: {bl.counts(outcome)}")
        print(f"OK login, whole flow: p50 {bl.ms(bl.pct(ok_lat, 50))}, p99 {bl.ms(bl.pct(ok_lat, 99))}; "
              f"password POST alone: p50 {bl.ms(bl.pct(pw_lat, 50))}, p99 {bl.ms(bl.pct(pw_lat, 99))}")
        if refusals:
            print(f"refusals (the refusing request alone): p50 {bl.ms(bl.pct(ref_lat, 50))}, "
                  f"p99 {bl.ms(bl.pct(ref_lat, 99))}")
        print(f"HTTP requests: {nreq} ({nreq / dur:.0f} /s), by status: {bl.counts(http_st)}")
        print(f"5xx other than 503: {u5}; transport errors: {errs}")
        print(f"server RSS: start {bl.mib(s)}, middle {bl.mib(m)}, end {bl.mib(e)}, max {bl.mib(mx)}")
        # The server's CPU, whatever the load generator beside it took: logins per second
        # of server CPU is logins per second per core, and the hashing threads' own CPU
        # (the server's metric) against the whole tells the server's share beyond the hash.
        cpu = cpu1 - cpu0
        if ok and cpu > 0:
            per_core = len(ok) / cpu
            print(f"server CPU: {cpu:.1f} s for {len(ok)} logins = {1000 * cpu / len(ok):.1f} ms a login; "
                  f"{per_core:.1f} logins per second per core")
            if hash0 is not None and hash1 is not None:
                share = 1 - (hash1 - hash0) / cpu
                print(f"hashing CPU: {hash1 - hash0:.1f} s; the server's own share beyond the hash: {100 * share:.1f} %")
                cpu_note.append(
                    f"- server CPU per login {1000 * cpu / len(ok):.1f} ms, of which hashing "
                    f"{1000 * (hash1 - hash0) / len(ok):.1f} ms: **{per_core:.1f} logins per second per core**, "
                    f"the server's own share beyond the hash **{100 * share:.1f} %**")
        summary.append(
            f"| password logins (hosted pages, up to the code), {lc} threads, {len(users)} citizen(s), {dur:.0f} s "
            f"| {len(ok) / dur:,.1f} /s | {bl.ms(bl.pct(ok_lat, 50))} | {bl.ms(bl.pct(ok_lat, 99))} "
            f"| {len(ok):,} | {outcome.get(503, 0)} (+{outcome.get(429, 0)} × 429) | {u5} | {errs} "
            f"| {bl.mib(s)} / {bl.mib(m)} / {bl.mib(e)} ({bl.mib(mx)}) |")

    sampler.stop()
    print("\n---- Markdown summary ----\n")
    print("### Sustained load (`bench/load.py`)\n")
    print("\n".join(bl.header_lines(binary)))
    print(f"- server RSS before load: {bl.mib(rss_idle)}; client and server on the same machine\n")
    print("| load | OK rate | p50 (OK) | p99 (OK) | OK | 503 | other 5xx | transport errors | RSS start / middle / end (max) |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(summary))
    print()
    if cpu_note:
        print("\n".join(cpu_note))
        print()
    print("Latency of a login is the whole flow (authorize, login page, password, then consent "
          "page and consent the first time only), one fresh browser per login.")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
