"""Shared helpers for the Python benchmarks in bench/ (load.py, flood.py, faults.py).

Standard library only (Python 3.11). Not a benchmark by itself: it starts and stops
`identity-server demo`, drives the token endpoint and the hosted login pages over plain
HTTP/1.1 (http.client, one keep-alive connection per simulated client), samples the
server's resident memory from /proc, and formats the results.

Binaries: by default the scripts build and use the release binaries
(`cargo build --release -q -p identity-server -p identity-audit`, as bench/token.sh does).
Set IDENTITY_BIN (and AUDIT_BIN for faults.py) to use other binaries instead, e.g. a debug
build: `IDENTITY_BIN=target/debug/identity-server AUDIT_BIN=target/debug/identity-audit`.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import math
import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

sys.stdout.reconfigure(line_buffering=True)

CLIENT_ID = "demo-eservice"
CLIENT_SECRET = "demo-eservice-secret"
REDIRECT_URI = "http://localhost:8081/callback"
USERNAME = "demo"
PASSWORD = "Lion-Rock-Harbour-2020"
AUDITOR_ID = "demo-auditor"
# The demo auditor authenticates with private_key_jwt and DPoP-bound tokens; its key is
# published with the demo data.
AUDITOR_KEY = str(Path(__file__).resolve().parent.parent / "seeds/keys/demo-auditor.pem")

BASIC = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
FORM = "application/x-www-form-urlencoded"


# --------------------------------------------------------------------------- binaries


_built = False


def _build_release() -> None:
    global _built
    if not _built:
        print("building release binaries (cargo build --release -q -p identity-server "
              "-p identity-audit) ...", file=sys.stderr, flush=True)
        subprocess.run(
            ["cargo", "build", "--release", "-q", "-p", "identity-server", "-p", "identity-audit"],
            cwd=ROOT, check=True)
        _built = True


def server_bin() -> str:
    """IDENTITY_BIN if set, else the release build (built first)."""
    if os.environ.get("IDENTITY_BIN"):
        return os.environ["IDENTITY_BIN"]
    _build_release()
    return str(ROOT / "target/release/identity-server")


def audit_bin() -> str:
    """AUDIT_BIN if set, else the release build (built first)."""
    if os.environ.get("AUDIT_BIN"):
        return os.environ["AUDIT_BIN"]
    _build_release()
    return str(ROOT / "target/release/identity-audit")


def build_kind(path: str) -> str:
    p = str(path)
    if "/release/" in p:
        return "release"
    if "/debug/" in p:
        return "debug"
    return p


# --------------------------------------------------------------------------- machine


def machine() -> str:
    cores = len(os.sched_getaffinity(0))
    model = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem = f", {int(line.split()[1]) / 1048576:.0f} GiB"
                break
    except OSError:
        pass
    return f"{cores} cores ({model}){mem}, Linux {os.uname().release}, Python {sys.version.split()[0]}"


def commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, capture_output=True, text=True).stdout.strip()
        return head + (" + uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def command_line() -> str:
    """The command as it was run, with the binary overrides that were in effect."""
    env = [f"{k}={shlex.quote(os.environ[k])}" for k in ("IDENTITY_BIN", "AUDIT_BIN")
           if os.environ.get(k)]
    script = os.path.relpath(os.path.abspath(sys.argv[0]), ROOT)
    return " ".join(env + ["python3", script] + [shlex.quote(a) for a in sys.argv[1:]])


def header_lines(binary: str) -> list[str]:
    return [
        f"- machine: {machine()}",
        f"- server binary: {binary} ({build_kind(binary)} build), commit {commit()}",
        f"- date: {time.strftime('%Y-%m-%d %H:%M %Z')}",
        f"- command: `{command_line()}`",
    ]


def raise_nofile(wanted: int) -> int:
    """Raises the soft RLIMIT_NOFILE towards `wanted` (up to the hard limit, or higher when
    running as root). Returns the new soft limit."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    try:
        if os.geteuid() == 0 and hard != resource.RLIM_INFINITY and hard < wanted:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    except (ValueError, OSError):
        return soft


# --------------------------------------------------------------------------- statistics


def pct(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100) of `values`; None when empty."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1))
    return s[k]


def ms(v: float | None) -> str:
    return "—" if v is None else f"{v * 1000:.1f} ms"


def mib(kib: int | None) -> str:
    return "—" if kib is None else f"{kib / 1024:.1f} MiB"


def counts(c: Counter) -> str:
    if not c:
        return "none"
    return ", ".join(f"{k}: {v}" for k, v in sorted(c.items(), key=lambda kv: str(kv[0])))


def is_unexpected_5xx(status) -> bool:
    return isinstance(status, int) and status >= 500 and status != 503


# --------------------------------------------------------------------------- memory


def proc_status(pid: int, field: str) -> int | None:
    """A `kB` field of /proc/PID/status (VmRSS, VmHWM) in KiB; None when the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


class RssSampler(threading.Thread):
    """Samples VmRSS of a process every `interval` seconds: a list of (monotonic time, KiB)."""

    def __init__(self, pid: int, interval: float = 1.0):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, int]] = []
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            v = proc_status(self.pid, "VmRSS")
            if v is not None:
                self.samples.append((time.monotonic(), v))
            self._halt.wait(self.interval)

    def stop(self):
        self._halt.set()
        self.join()

    def between(self, t0: float, t1: float) -> list[tuple[float, int]]:
        return [(t, v) for t, v in self.samples if t0 <= t <= t1]

    def start_mid_end(self, t0: float, t1: float) -> tuple[int | None, int | None, int | None, int | None]:
        """RSS at the first, middle and last sample within [t0, t1], and the maximum."""
        s = self.between(t0, t1)
        if not s:
            return None, None, None, None
        return s[0][1], s[len(s) // 2][1], s[-1][1], max(v for _, v in s)


# --------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`identity-server demo` in a data directory, on 127.0.0.1:port."""

    def __init__(self, binary: str, data_dir: str, port: int, env: dict | None = None):
        self.binary, self.data_dir, self.port = binary, data_dir, port
        # /metrics has its own listener (metrics_listen), never the public port.
        self.metrics_port = free_port()
        METRICS_PORTS[port] = self.metrics_port
        self.env = dict(os.environ, IDENTITY_LOG=os.environ.get("IDENTITY_LOG", "warn"),
                        IDENTITY_METRICS_LISTEN=f"127.0.0.1:{self.metrics_port}", **(env or {}))
        self.log_path = os.path.join(data_dir, "server.log")
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def start(self, timeout: float = 120.0) -> "Server":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [self.binary, "demo", "--listen", f"127.0.0.1:{self.port}", "--data-dir", self.data_dir],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        log.close()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Waits for the discovery document; returns the seconds it took."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"identity-server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                st, _, _ = get("127.0.0.1", self.port, "/.well-known/openid-configuration", timeout=2)
                if st == 200:
                    return time.monotonic() - t0
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"identity-server did not become ready in {timeout} s:\n{self.log_tail()}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        if self.alive():
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc:
            self.proc.wait()

    def stop(self):
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill9()

    def log_text(self) -> str:
        try:
            return open(self.log_path, errors="replace").read()
        except OSError:
            return ""

    def log_tail(self, n: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])


def parse_url(url: str) -> tuple[str, int]:
    u = urllib.parse.urlsplit(url)
    if u.scheme != "http":
        raise SystemExit("--url must be http://host:port (the scripts speak plain HTTP)")
    return u.hostname, u.port or 80


# --------------------------------------------------------------------------- HTTP


def get(host: str, port: int, path: str, headers: dict | None = None, timeout: float = 10):
    """One GET on a fresh connection: (status, headers dict lower-cased, body bytes)."""
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body
    finally:
        c.close()


class Conn:
    """One keep-alive HTTP/1.1 connection that reconnects after an error."""

    def __init__(self, host: str, port: int, timeout: float = 30, source: str | None = None):
        self.host, self.port, self.timeout = host, port, timeout
        self.source = (source, 0) if source else None
        self.c: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: str | None = None, headers: dict | None = None):
        """Returns (status, headers lower-cased, body bytes); raises OSError/HTTPException after
        closing the connection, so the next call reconnects."""
        if self.c is None:
            self.c = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout,
                                                source_address=self.source)
        try:
            self.c.request(method, path, body=body, headers=headers or {})
            r = self.c.getresponse()
            data = r.read()
            hdrs = {}
            cookies = []
            for k, v in r.getheaders():
                k = k.lower()
                if k == "set-cookie":
                    cookies.append(v)
                else:
                    hdrs[k] = v
            hdrs["set-cookie"] = cookies
            if r.will_close:
                self.close()
            return r.status, hdrs, data
        except BaseException:
            self.close()
            raise

    def close(self):
        if self.c is not None:
            try:
                self.c.close()
            except Exception:
                pass
            self.c = None


def error_kind(e: BaseException) -> str:
    if isinstance(e, (socket.timeout, TimeoutError)):
        return "timeout"
    if isinstance(e, ConnectionRefusedError):
        return "refused"
    if isinstance(e, (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected)):
        return "reset"
    return type(e).__name__


def client_credentials(conn: Conn):
    """One client_credentials grant: (status, headers, body, seconds)."""
    t0 = time.monotonic()
    st, h, b = conn.request("POST", "/token", body="grant_type=client_credentials",
                            headers={"Authorization": BASIC, "Content-Type": FORM})
    return st, h, b, time.monotonic() - t0


# --------------------------------------------------------------------------- login flow


_HIDDEN = {}


def hidden(html: str, name: str) -> str:
    rx = _HIDDEN.get(name) or _HIDDEN.setdefault(name, re.compile(r'name="%s" value="([^"]*)"' % re.escape(name)))
    m = rx.search(html)
    if not m:
        raise ValueError(f"no {name} in the page")
    return m.group(1)


def form_action(html: str) -> str:
    """The password form's action on a login page, else the first form's (as tests/e2e/util.rs)."""
    at = html.find('id="password-form"')
    start = html.rfind('action="', 0, at) if at >= 0 else html.find('action="')
    if start < 0:
        raise ValueError("no form in the page")
    start += 8
    return html[start:html.index('"', start)]


def pkce() -> tuple[str, str]:
    verifier = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorize_path(challenge: str) -> str:
    return "/authorize?" + urllib.parse.urlencode({
        "client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI, "response_type": "code",
        "scope": "openid profile email", "state": secrets.token_urlsafe(8),
        "nonce": secrets.token_urlsafe(8), "code_challenge": challenge,
        "code_challenge_method": "S256"})


class LoginResult:
    """How one login went. outcome: "ok" (the code arrived), or the status of the first
    unexpected answer (an int), or an error kind ("reset", "timeout", ...).

    steps: (step name, status or error kind, seconds) of every request made.
    refusal: (step, status, seconds, retry_after) of the answer that ended the login when it
    was a 503 or 429."""

    __slots__ = ("outcome", "seconds", "steps", "refusal", "retry_after")

    def __init__(self):
        self.outcome = None
        self.seconds = 0.0
        self.steps: list[tuple[str, object, float]] = []
        self.refusal: tuple[str, int, float] | None = None
        self.retry_after: str | None = None


class Browser:
    """A browser without JavaScript: its own connection and cookie jar, no automatic
    redirects. Cookies are kept by name (paths ignored; harmless for these pages)."""

    def __init__(self, host: str, port: int, timeout: float = 60, source: str | None = None):
        self.conn = Conn(host, port, timeout, source)
        self.jar: dict[str, str] = {}

    def _headers(self, extra: dict | None = None) -> dict:
        h = dict(extra or {})
        if self.jar:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.jar.items())
        return h

    def _keep(self, h: dict):
        for c in h.get("set-cookie", []):
            name, _, value = c.split(";", 1)[0].partition("=")
            self.jar[name.strip()] = value.strip()

    def do(self, res: LoginResult, step: str, method: str, path: str, form: dict | None = None):
        extra = {"Content-Type": FORM} if form is not None else {}
        body = urllib.parse.urlencode(form) if form is not None else None
        t0 = time.monotonic()
        try:
            st, h, b = self.conn.request(method, path, body=body, headers=self._headers(extra))
        except (OSError, http.client.HTTPException) as e:
            res.steps.append((step, error_kind(e), time.monotonic() - t0))
            raise
        dt = time.monotonic() - t0
        res.steps.append((step, st, dt))
        self._keep(h)
        return st, h, b, dt

    def close(self):
        self.conn.close()


def _path_of(location: str) -> str:
    u = urllib.parse.urlsplit(location)
    return u.path + ("?" + u.query if u.query else "")


def login(host: str, port: int, timeout: float = 60, before_post=None,
          username: str = USERNAME, password: str = PASSWORD, source: str | None = None) -> LoginResult:
    """One password login through the hosted pages, with a fresh browser, up to the
    authorization code: GET /authorize (PKCE) -> 303 to the login page -> GET it -> POST the
    password form -> consent page (if asked) -> POST allow -> 303 to the redirect URI with a
    code. `before_post`, if given, is called just before the password is posted (flood.py
    uses it to line all threads up on the hashing pool). `source`: a local address to
    connect from (e.g. 127.0.0.7, to look like another client to the per-address throttle)."""
    res = LoginResult()
    b = Browser(host, port, timeout, source)
    t0 = time.monotonic()
    posted = False

    def stop(status, step, dt, h):
        res.outcome = status
        if status in (503, 429):
            res.refusal = (step, status, dt)
            res.retry_after = h.get("retry-after")

    try:
        _, challenge = pkce()
        st, h, _, dt = b.do(res, "authorize", "GET", authorize_path(challenge))
        if st != 303:
            return stop(st, "authorize", dt, h) or res
        st, h, body, dt = b.do(res, "login page", "GET", _path_of(h["location"]))
        if st != 200:
            return stop(st, "login page", dt, h) or res
        html = body.decode("utf-8", "replace")
        if before_post is not None:
            posted = True
            before_post()
        st, h, body, dt = b.do(res, "password", "POST", form_action(html), {
            "csrf": hidden(html, "csrf"), "username": username, "password": password})
        if st != 303:
            return stop(st, "password", dt, h) or res
        nxt = h["location"]
        for _ in range(10):
            if nxt.startswith(REDIRECT_URI):
                q = urllib.parse.parse_qs(urllib.parse.urlsplit(nxt).query)
                res.outcome = "ok" if "code" in q else "no code: " + ",".join(q.get("error", ["?"]))
                return res
            st, h, body, dt = b.do(res, "consent page", "GET", _path_of(nxt))
            if st == 303:
                nxt = h["location"]
                continue
            if st != 200:
                return stop(st, "consent page", dt, h) or res
            html = body.decode("utf-8", "replace")
            st, h, body, dt = b.do(res, "consent", "POST", form_action(html), {
                "csrf": hidden(html, "csrf"), "decision": "allow"})
            if st != 303:
                return stop(st, "consent", dt, h) or res
            nxt = h["location"]
        res.outcome = "redirect loop"
        return res
    except (OSError, http.client.HTTPException) as e:
        res.outcome = error_kind(e)
        return res
    except (ValueError, KeyError) as e:
        res.outcome = f"bad page: {e}"
        return res
    finally:
        if before_post is not None and not posted:
            before_post()
        res.seconds = time.monotonic() - t0
        b.close()


# --------------------------------------------------------------------------- /metrics


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


# The metrics listener of each server this process started, by its public port; a server
# started elsewhere (--url) is taken to have the default, 9464.
METRICS_PORTS: dict = {}


def metrics(host: str, port: int) -> dict:
    """The /metrics of the server on public `port` (read from its metrics_listen) as
    {(name, frozenset(labels.items())): value}; {} if unreachable."""
    try:
        st, _, body = get(host, METRICS_PORTS.get(port, 9464), "/metrics", timeout=10)
    except OSError:
        return {}
    if st != 200:
        return {}
    out = {}
    for line in body.decode("utf-8", "replace").splitlines():
        m = _SAMPLE.match(line)
        if m and not line.startswith("#"):
            labels = frozenset(_LABEL.findall(m.group(2) or ""))
            try:
                out[(m.group(1), labels)] = float(m.group(3))
            except ValueError:
                pass
    return out


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        # The command name may hold spaces: the fields after its closing parenthesis.
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def hashing_cpu_seconds(host: str, port: int) -> float | None:
    """The server's identity_hashing_cpu_seconds_total (CPU its Argon2 threads spent hashing)."""
    return metrics(host, port).get(("identity_hashing_cpu_seconds_total", frozenset()))


def route_histogram(before: dict, after: dict, route: str) -> list[tuple[float, float]]:
    """The request-duration histogram of one route between two scrapes: [(le, cumulative count)]."""
    rows = []
    for (name, labels), v in after.items():
        d = dict(labels)
        if name == "identity_http_request_duration_seconds_bucket" and d.get("route") == route:
            le = float("inf") if d["le"] == "+Inf" else float(d["le"])
            rows.append((le, v - before.get((name, labels), 0.0)))
    return sorted(rows)


def histogram_pct(h: list[tuple[float, float]], p: float) -> str:
    """The bucket bound under which p % of the requests finished, as "≤ X ms"."""
    if not h or h[-1][1] <= 0:
        return "—"
    want = p / 100 * h[-1][1]
    for le, c in h:
        if c >= want:
            return "> 2.5 s" if le == float("inf") else f"≤ {le * 1000:g} ms"
    return "—"


def route_statuses(before: dict, after: dict, route: str) -> Counter:
    """Requests of one route by status between two scrapes (from identity_http_requests_total)."""
    c = Counter()
    for (name, labels), v in after.items():
        d = dict(labels)
        if name.startswith("identity_http_requests") and d.get("route") == route and "status" in d:
            n = v - before.get((name, labels), 0.0)
            if n:
                c[d["status"]] += int(n)
    return c


# --------------------------------------------------------------------------- citizens


def seed_citizens(binary: str, data_dir: str, n: int, env: dict | None = None,
                  prefix: str = "bench") -> list[tuple[str, str]]:
    """Adds n citizens (bench-0000, ...) to a running demo server's data with
    `identity-server --config ADMIN seed FILE` (the demo's key file and data directory; pass
    IDENTITY_DATABASE_URL in env for PostgreSQL). Existing ones are left as they are. With
    n <= 1, adds nobody and returns the demo citizen. Returns (username, password) pairs."""
    if n <= 1:
        return [(USERNAME, PASSWORD)]
    users = [(f"{prefix}-{i:04d}", f"Lion-Rock-Harbour-{i:04d}-Bench") for i in range(n)]
    cfg = os.path.join(data_dir, "bench-admin.toml")
    with open(cfg, "w") as f:
        f.write(f'kek_file = "{os.path.join(data_dir, "demo-kek.hex")}"\ndata_dir = "{data_dir}"\n')
    seed = os.path.join(data_dir, "bench-citizens.toml")
    with open(seed, "w") as f:
        for u, pw in users:
            f.write(f'[[citizens]]\nusername = "{u}"\npassword = "{pw}"\n'
                    f'name_en = "BENCH {u}"\nname_zh = "測試"\n\n')
    t0 = time.monotonic()
    out = subprocess.run([binary, "--config", cfg, "seed", seed], capture_output=True, text=True,
                         env=dict(os.environ, IDENTITY_LOG="warn", **(env or {})))
    if out.returncode != 0:
        raise RuntimeError(f"seeding {n} citizens failed: {out.stderr.strip()}")
    print(f"seeded {n} citizens in {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)
    return users


def loopback_sources(n: int) -> list[str | None]:
    """n distinct loopback source addresses (127.0.0.2, ...), or [None] for the default."""
    if n <= 1:
        return [None]
    return [f"127.{(i + 2) >> 16 & 255}.{(i + 2) >> 8 & 255}.{(i + 2) & 255}" for i in range(n)]


# --------------------------------------------------------------------------- cleanup


class Cleanup:
    """Runs registered callbacks (last first) once, on normal exit, SIGINT or SIGTERM."""

    def __init__(self):
        self.fns = []
        self.done = False
        import atexit
        atexit.register(self.run)
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, self._signal)

    def _signal(self, signum, frame):
        self.run()
        os._exit(128 + signum)

    def add(self, fn):
        self.fns.append(fn)

    def run(self):
        if self.done:
            return
        self.done = True
        for fn in reversed(self.fns):
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - cleanup must go on
                print(f"cleanup: {e}", file=sys.stderr)


def temp_dir(cleanup: Cleanup, prefix: str) -> str:
    import shutil
    d = tempfile.mkdtemp(prefix=prefix)
    keep = os.environ.get("BENCH_KEEP_TMP")
    cleanup.add(lambda: print(f"kept {d}", file=sys.stderr) if keep else shutil.rmtree(d, ignore_errors=True))
    return d


def server_with_citizens(args, cleanup: Cleanup, users_n: int, prefix: str):
    """The server a load script drives, and its citizens: the one at --url (with --pid and,
    for more than one citizen, --data-dir), or a demo server started on a temporary data
    directory (stopped by `cleanup`). Returns (binary, host, port, pid, users)."""
    if args.url:
        host, port = parse_url(args.url)
        pid, data_dir = args.pid, args.data_dir
        binary = server_bin() if users_n > 1 else "(external server)"
    else:
        binary = server_bin()
        data_dir = temp_dir(cleanup, prefix)
        srv = Server(binary, data_dir, free_port())
        cleanup.add(srv.stop)
        srv.start()
        host, port, pid = "127.0.0.1", srv.port, srv.pid
    users = seed_citizens(binary, data_dir, users_n) if users_n > 1 else seed_citizens(binary, "", 1)
    return binary, host, port, pid, users
