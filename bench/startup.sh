#!/usr/bin/env bash
# Start-up time and idle resident memory of the release build on SQLite: the time from exec
# to the first 200 from /readyz, for a fresh data directory (migrations, keys, demo data)
# and for a restart on existing data; then the resident set size after 5 s idle.
# Usage: bench/startup.sh [runs]   (IDENTITY_BIN overrides the binary)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
bin=${IDENTITY_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release -q -p identity-server
  bin=./target/release/identity-server
fi
port=18180
dir=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$dir"' EXIT

# One start on data directory $1: sets pid, and ms to the milliseconds until ready.
start_once() {
  local t0 t1
  t0=$(date +%s%N)
  IDENTITY_LOG=warn "$bin" demo --listen 127.0.0.1:$port --data-dir "$1" >>"$dir/log" 2>&1 &
  pid=$!
  until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.005; done
  t1=$(date +%s%N)
  ms=$(((t1 - t0) / 1000000))
}

stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

fresh=(); again=()
for i in $(seq "$runs"); do
  start_once "$dir/data$i"; fresh+=("$ms"); stop
  start_once "$dir/data$i"; again+=("$ms"); stop
done
start_once "$dir/idle"
sleep 5
rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
stop
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "command: bench/startup.sh $runs"
echo
echo "| what | median | all runs (ms) |"
echo "|---|---|---|"
echo "| start to ready, fresh data directory (migrations, keys, demo data) | $(printf '%s\n' "${fresh[@]}" | median) ms | ${fresh[*]} |"
echo "| start to ready, existing data | $(printf '%s\n' "${again[@]}" | median) ms | ${again[*]} |"
echo "| resident memory after 5 s idle | $((rss / 1024)) MiB | |"
