#!/usr/bin/env bash
# Start-up time and idle resident memory of the release build on SQLite: the time from exec
# to the first 200 from /readyz, for the demo on a fresh data directory (migrations, keys,
# demo data) and on existing data, and for the production command (`serve`, migrated
# database); then the resident set size of `serve` after 5 s idle. (The demo hashes its
# citizen's password at every start, so its idle memory holds one Argon2 buffer more.)
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

# One start of the demo on data directory $1 (or, with $1 = serve, of the production
# command on $dir/serve): sets pid, and ms to the milliseconds until ready.
start_once() {
  local t0 t1
  t0=$(date +%s%N)
  if [ "$1" = serve ]; then
    IDENTITY_LOG=warn IDENTITY_KEK=$kek IDENTITY_DATA_DIR="$dir/serve" IDENTITY_LISTEN=127.0.0.1:$port \
      IDENTITY_PUBLIC_URL=http://localhost:$port "$bin" serve >>"$dir/log" 2>&1 &
  else
    IDENTITY_LOG=warn "$bin" demo --listen 127.0.0.1:$port --data-dir "$1" >>"$dir/log" 2>&1 &
  fi
  pid=$!
  until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.005; done
  t1=$(date +%s%N)
  ms=$(((t1 - t0) / 1000000))
}

stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

kek=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
mkdir -p "$dir/serve"
IDENTITY_LOG=warn IDENTITY_KEK=$kek IDENTITY_DATA_DIR="$dir/serve" "$bin" migrate >>"$dir/log" 2>&1

fresh=(); again=(); serve=()
for i in $(seq "$runs"); do
  start_once "$dir/data$i"; fresh+=("$ms"); stop
  start_once "$dir/data$i"; again+=("$ms"); stop
  start_once serve; serve+=("$ms"); stop
done
start_once "$dir/idle"
sleep 5
demo_rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
stop
start_once serve
sleep 5
rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
stop
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "command: bench/startup.sh $runs"
echo
echo "| what | median | all runs (ms) |"
echo "|---|---|---|"
echo "| demo, start to ready, fresh data directory (migrations, keys, demo data) | $(printf '%s\n' "${fresh[@]}" | median) ms | ${fresh[*]} |"
echo "| demo, start to ready, existing data | $(printf '%s\n' "${again[@]}" | median) ms | ${again[*]} |"
echo "| \`serve\`, start to ready, migrated database | $(printf '%s\n' "${serve[@]}" | median) ms | ${serve[*]} |"
echo "| \`serve\`, resident memory after 5 s idle | $((rss / 1024)) MiB | |"
echo "| demo, resident memory after 5 s idle (its start hashed a password) | $((demo_rss / 1024)) MiB | |"
