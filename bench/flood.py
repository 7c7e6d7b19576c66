#!/usr/bin/env python3
"""A flood of password logins at once, with the server's peak memory watched.

LOGINS threads (default 1,000) each do one password login through the hosted pages with a
fresh browser (GET /authorize with PKCE, the login page, POST the password, consent, up to
the redirect carrying the code), all released together by a barrier. With --sync-post the
threads meet at a second barrier after loading the login page, so every password arrives
at the hashing pool at the same moment.

The server's Argon2 pool holds `hash_workers` running plus `hash_queue` waiting hashes and
answers 503 with Retry-After beyond that; the login throttle answers 429 (per account, and
per source address). By default each thread logs in as its own citizen (LOGINS citizens are
seeded first with `identity-server seed`) from one of SOURCES loopback addresses
(127.0.0.2, ...), as a crowd of citizens would; `--users 1 --sources 1` sends every login
to the demo citizen from 127.0.0.1 instead, which mostly exercises the per-account throttle.

Reports the server's RSS before, at its peak during the flood (sampled every 20 ms, and
VmHWM, the kernel's high-water mark), and after; how many logins got the code (OK), 503,
429 or something else; how long the refusals took (the refusing request alone, and from
the release of the barrier); and ends with a Markdown summary for BENCHMARKS.md. Exits 1
on a 5xx other than 503, a transport error, or a peak RSS above --rss-limit (300 MiB).

By default it builds the release binaries and starts its own `identity-server demo` on
SQLite in a temporary directory (IDENTITY_BIN overrides the binary); with --url and --pid it
floods a server that is already running (then --users above 1 needs --data-dir, the demo
server's data directory, to seed citizens into).

Command:

    python3 bench/flood.py --logins 1000
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import Counter

sys.dont_write_bytecode = True  # no bench/__pycache__ from importing benchlib
import benchlib as bl  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--logins", type=int, default=1000, help="concurrent logins (default 1000)")
    ap.add_argument("--users", type=int, help="distinct citizens (default: one per login; 1: the demo citizen)")
    ap.add_argument("--sources", type=int, default=100,
                    help="distinct loopback source addresses (default 100; 1: 127.0.0.1 only)")
    ap.add_argument("--sync-post", action="store_true",
                    help="also line the threads up just before posting the password")
    ap.add_argument("--rss-limit", type=float, default=300, help="aim for the peak RSS in MiB (default 300)")
    ap.add_argument("--timeout", type=float, default=120, help="per-request timeout in seconds (default 120)")
    ap.add_argument("--url", help="flood this running server (http://host:port) instead of starting one")
    ap.add_argument("--pid", type=int, help="with --url: the server's PID, for its RSS")
    ap.add_argument("--data-dir", help="with --url and --users > 1: the demo server's data directory")
    args = ap.parse_args()
    n = args.logins
    users_n = n if args.users is None else args.users
    if args.url and not args.pid:
        ap.error("--url needs --pid (the server's process, to sample its memory)")
    if args.url and users_n > 1 and not args.data_dir:
        ap.error("--url with --users > 1 needs --data-dir (or use --users 1)")

    nofile = bl.raise_nofile(2 * n + 512)
    threading.stack_size(512 * 1024)
    cleanup = bl.Cleanup()
    binary, host, port, pid, users = bl.server_with_citizens(args, cleanup, users_n, "identity-flood-")
    if host not in ("127.0.0.1", "localhost") and args.sources > 1:
        print("not on loopback: using one source address", file=sys.stderr)
        args.sources = 1
    sources = bl.loopback_sources(args.sources)
    print(f"machine: {bl.machine()}")
    print(f"server: http://{host}:{port} pid {pid}; open-file limit {nofile}")
    print(f"{n} logins, {len(users)} citizen(s), {len(sources)} source address(es)"
          f"{', passwords posted together' if args.sync_post else ''}")

    # A few logins first, so the flood meets a warm server (pages, pools, first hashes).
    for i in range(3):
        u, pw = users[i % len(users)]
        w = bl.login(host, port, 30, username=u, password=pw, source=sources[0])
        if w.outcome != "ok":
            print(f"warm-up login failed: {w.outcome} {w.steps}", file=sys.stderr)
            return 1
    time.sleep(1)
    rss_before = bl.proc_status(pid, "VmRSS")
    hwm_before = bl.proc_status(pid, "VmHWM")

    start = threading.Barrier(n + 1, timeout=300)
    post = threading.Barrier(n, timeout=300) if args.sync_post else None
    results: list = [None] * n
    released = {}

    def before_post():
        try:
            post.wait()
        except threading.BrokenBarrierError:
            pass

    def body(i):
        u, pw = users[i % len(users)]
        src = sources[i % len(sources)]
        start.wait()
        results[i] = bl.login(host, port, args.timeout, before_post if post else None,
                              username=u, password=pw, source=src)

    m_before = bl.metrics(host, port)
    sampler = bl.RssSampler(pid, 0.02)
    sampler.start()
    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    start.wait()
    released["t"] = t0
    for t in threads:
        t.join()
    t1 = time.monotonic()
    time.sleep(0.5)
    sampler.stop()
    hwm_after = bl.proc_status(pid, "VmHWM")
    peak_sampled = max((v for _, v in sampler.between(t0, t1 + 0.5)), default=None)
    m_after = bl.metrics(host, port)
    login_route = "/interaction/{id}/login"
    srv_hist = bl.route_histogram(m_before, m_after, login_route)
    srv_status = bl.route_statuses(m_before, m_after, login_route)
    time.sleep(5)
    rss_after = bl.proc_status(pid, "VmRSS")

    outcome = Counter(r.outcome for r in results)
    ok = [r for r in results if r.outcome == "ok"]
    refused = [r for r in results if r.outcome in (503, 429)]
    ref_own = [r.refusal[2] for r in refused]
    ref_503 = [r.refusal[2] for r in refused if r.outcome == 503]
    ref_429 = [r.refusal[2] for r in refused if r.outcome == 429]
    ref_total = [r.seconds for r in refused]
    ref_step = Counter(f"{r.refusal[0]} {r.outcome}" for r in refused)
    with_ra = sum(1 for r in refused if r.retry_after is not None)
    ok_lat = [r.seconds for r in ok]
    http_st = Counter(s[1] for r in results for s in r.steps)
    u5 = sum(v for k, v in http_st.items() if bl.is_unexpected_5xx(k))
    errs = sum(v for k, v in http_st.items() if not isinstance(k, int))
    other = sum(v for k, v in outcome.items() if k not in ("ok", 503, 429))
    peak = max(x for x in (peak_sampled, hwm_after) if x is not None)
    hwm_note = "" if args.url else " (its lifetime high-water mark)"

    print(f"\nflood: {n} logins in {t1 - t0:.1f} s")
    print(f"OK (code received): {len(ok)}; 503: {outcome.get(503, 0)}; 429: {outcome.get(429, 0)}; other: {other}")
    print(f"outcomes: {bl.counts(outcome)}")
    print(f"refusals by step: {bl.counts(ref_step)}; with Retry-After: {with_ra} of {len(refused)}")
    print(f"refusal latency, the refusing request alone: p50 {bl.ms(bl.pct(ref_own, 50))}, "
          f"p99 {bl.ms(bl.pct(ref_own, 99))}, max {bl.ms(max(ref_own) if ref_own else None)}"
          f" (503: p50 {bl.ms(bl.pct(ref_503, 50))} p99 {bl.ms(bl.pct(ref_503, 99))}; "
          f"429: p50 {bl.ms(bl.pct(ref_429, 50))} p99 {bl.ms(bl.pct(ref_429, 99))})")
    print(f"refusal latency from the barrier's release: p50 {bl.ms(bl.pct(ref_total, 50))}, "
          f"p99 {bl.ms(bl.pct(ref_total, 99))}")
    print(f"OK logins, whole flow from the release: p50 {bl.ms(bl.pct(ok_lat, 50))}, "
          f"p99 {bl.ms(bl.pct(ok_lat, 99))}, max {bl.ms(max(ok_lat) if ok_lat else None)}")
    print(f"server's own view of the password POST ({login_route}, /metrics buckets, all outcomes "
          f"{bl.counts(srv_status)}): p50 {bl.histogram_pct(srv_hist, 50)}, p99 {bl.histogram_pct(srv_hist, 99)}")
    print(f"HTTP answers by status: {bl.counts(http_st)}; 5xx other than 503: {u5}; transport errors: {errs}")
    print(f"server RSS: before {bl.mib(rss_before)}, peak sampled {bl.mib(peak_sampled)}, "
          f"VmHWM {bl.mib(hwm_before)} before -> {bl.mib(hwm_after)} after{hwm_note}, "
          f"5 s after the flood {bl.mib(rss_after)}")
    over = peak / 1024 > args.rss_limit
    print(f"peak RSS {bl.mib(peak)}: {'ABOVE' if over else 'within'} the {args.rss_limit:g} MiB aim")
    if other:
        for r in [r for r in results if r.outcome not in ("ok", 503, 429)][:5]:
            print(f"  e.g. {r.outcome}: {r.steps}")

    print("\n---- Markdown summary ----\n")
    print(f"### {n:,} concurrent password logins (`bench/flood.py`)\n")
    print("\n".join(bl.header_lines(binary)))
    print(f"- {n:,} threads, one login each with a fresh browser, released by one barrier"
          f"{' (and a second one before the password POST)' if args.sync_post else ''}; "
          f"{len(users):,} citizen(s), {len(sources)} loopback source address(es); "
          f"client on the same machine (Python threads)\n")
    print("| what | result |")
    print("|---|---|")
    print(f"| OK (code received) / 503 / 429 / other | {len(ok)} / {outcome.get(503, 0)} / "
          f"{outcome.get(429, 0)} / {other} |")
    print(f"| refusals with `Retry-After` | {with_ra} of {len(refused)} |")
    print(f"| refusal latency, the refusing request (p50 / p99) | {bl.ms(bl.pct(ref_own, 50))} / "
          f"{bl.ms(bl.pct(ref_own, 99))} |")
    print(f"| refusal latency from the release (p50 / p99) | {bl.ms(bl.pct(ref_total, 50))} / "
          f"{bl.ms(bl.pct(ref_total, 99))} |")
    print(f"| OK login, whole flow from the release (p50 / p99) | {bl.ms(bl.pct(ok_lat, 50))} / "
          f"{bl.ms(bl.pct(ok_lat, 99))} |")
    print(f"| password POST inside the server, all outcomes (p50 / p99, `/metrics` buckets) | "
          f"{bl.histogram_pct(srv_hist, 50)} / {bl.histogram_pct(srv_hist, 99)} |")
    print(f"| flood duration (release to last answer) | {t1 - t0:.1f} s |")
    print(f"| 5xx other than 503 / transport errors | {u5} / {errs} |")
    print(f"| server RSS before / peak / 5 s after | {bl.mib(rss_before)} / {bl.mib(peak)} / {bl.mib(rss_after)} |")
    return 1 if (u5 or errs or over) else 0


if __name__ == "__main__":
    sys.exit(main())
