#!/usr/bin/env bash
# Two or more builds of identity-server side by side: client_credentials grants per second
# and the server's CPU per grant (from /proc/PID/stat), the builds taking turns for ROUNDS
# rounds on the same machine, medians reported. For telling what a change did to a grant's
# cost on a shared, noisy machine.
#
# Usage: bench/grant_cpu.sh BIN [BIN...]
# Env:   ROUNDS=n (default 5)  SECONDS_PER_RUN=s (default 5)  CONNS=n (default 16)
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: $0 BIN [BIN...]"; exit 1; }
command -v wrk >/dev/null || { echo "install wrk (apt-get install wrk)"; exit 1; }
rounds=${ROUNDS:-5}
secs=${SECONDS_PER_RUN:-5}
conns=${CONNS:-16}
port=18080
tick=$(getconf CLK_TCK)
results=$(mktemp)
trap 'rm -f "$results"' EXIT

one_run() { # bin -> "requests/s microseconds-of-server-CPU-per-grant"
  local dir pid t0 t1 n rps
  dir=$(mktemp -d)
  IDENTITY_LOG=warn "$1" demo --listen 127.0.0.1:$port --data-dir "$dir" >"$dir/log" 2>&1 &
  pid=$!
  for _ in $(seq 150); do
    curl -sf "http://127.0.0.1:$port/.well-known/openid-configuration" >/dev/null && break
    sleep 0.1
  done
  wrk -t1 -c"$conns" -d3s -s bench/client_credentials.lua "http://127.0.0.1:$port/token" >/dev/null
  t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  wrk -t1 -c"$conns" -d"${secs}s" -s bench/client_credentials.lua "http://127.0.0.1:$port/token" >"$dir/wrk"
  t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  n=$(awk '/ requests in /{print $1}' "$dir/wrk")
  rps=$(awk '/^Requests\/sec/{print $2}' "$dir/wrk")
  grep -q "Non-2xx" "$dir/wrk" && { echo "non-2xx answers from $1:" >&2; cat "$dir/wrk" >&2; exit 1; }
  rm -rf "$dir"
  awk -v r="$rps" -v t=$((t1 - t0)) -v n="$n" -v hz="$tick" 'BEGIN { printf "%.0f %.1f\n", r, t * 1e6 / hz / n }'
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "load: wrk 1 thread, $conns connections, ${secs}s per run after 3s warm-up; $rounds rounds, the builds taking turns"
for r in $(seq "$rounds"); do
  for i in $(seq $#); do
    echo "$i $(one_run "${!i}")" >>"$results"
  done
done
echo "| build | grants/s (median, min – max) | server CPU per grant (median) |"
echo "|---|---|---|"
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
for i in $(seq $#); do
  rps=$(awk -v i="$i" '$1 == i { print $2 }' "$results")
  cpu=$(awk -v i="$i" '$1 == i { print $3 }' "$results")
  echo "| ${!i} | $(median <<<"$rps") ($(sort -n <<<"$rps" | head -1) – $(sort -n <<<"$rps" | tail -1)) | $(median <<<"$cpu") µs |"
done
