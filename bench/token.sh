#!/usr/bin/env bash
# Token endpoint throughput and latency: client_credentials grants (ES256 JWT access tokens)
# and discovery, against a release build of the demo on SQLite, driven by wrk on the same
# machine. Usage: bench/token.sh [seconds] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-15}
conns=${2:-16}
command -v wrk >/dev/null || { echo "install wrk (apt-get install wrk)"; exit 1; }
cargo build --release -q -p identity-server
dir=$(mktemp -d)
port=18080
IDENTITY_LOG=warn ./target/release/identity-server demo --listen 127.0.0.1:$port --data-dir "$dir" >"$dir/log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/.well-known/openid-configuration" >/dev/null && break; sleep 0.1; done
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "== client_credentials grants (${secs}s, $conns connections, 1 wrk thread) =="
wrk -t1 -c"$conns" -d"${secs}s" --latency -s bench/client_credentials.lua "http://127.0.0.1:$port/token" | grep -E "Requests/sec|p50_ms|Non-2xx|Socket errors" 
echo "== discovery (${secs}s, $conns connections) =="
wrk -t1 -c"$conns" -d"${secs}s" --latency "http://127.0.0.1:$port/.well-known/openid-configuration" | grep -E "Requests/sec|99%|Non-2xx"
echo "server RSS after load: $(ps -o rss= -p $pid) KiB"
