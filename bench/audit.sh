#!/usr/bin/env bash
# Audit log benchmarks: appends (group commit vs one transaction per event), proof times
# and the auditor's verification, at ENTRIES entries (default 1,000,000), in one run.
# Usage: bench/audit.sh [entries]
set -euo pipefail
cd "$(dirname "$0")/.."
entries=${1:-1000000}
port=18081
dir=$(mktemp -d)
kek=$(openssl rand -hex 32)
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
cargo build --release -q -p identity-server -p identity-audit
cargo bench -q -p identity-core --bench audit -- "$entries" "$dir" "localhost:$port/audit" "$kek"
# Serve that log and verify it end to end with the auditor's tool over HTTP.
printf '%s' "$kek" > "$dir/demo-kek.hex"
IDENTITY_LOG=warn ./target/release/identity-server demo --listen 127.0.0.1:$port --data-dir "$dir" >"$dir/log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/audit/checkpoint" >/dev/null && break; sleep 0.2; done
sleep 3
key=$(curl -s "http://127.0.0.1:$port/audit/key")
echo "== identity-audit verify over HTTP =="
/usr/bin/time -f "wall %e s, max RSS %M KiB" ./target/release/identity-audit --url "http://127.0.0.1:$port" --key "$key" \
  --client-id demo-auditor --client-key seeds/keys/demo-auditor.pem verify
