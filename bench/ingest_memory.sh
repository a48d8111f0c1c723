#!/usr/bin/env bash
# Ingest peak memory against input size: generates clean sample events of
# several sizes, ingests each into a fresh lake, and prints input size, events,
# wall time, events/s, MB/s and peak RSS (from GNU time).
#
# Usage: bench/ingest_memory.sh [RUNS...]    (default: 4000 160000)
# Uses target/release/agentledger if built (cargo build --release), else debug.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-$HOME/.cache/agentledger/target}"
bin="$target/release/agentledger"
[ -x "$bin" ] || bin="$target/debug/agentledger"
[ -x "$bin" ] || { echo "build agentledger first (cargo build --release)" >&2; exit 1; }
work="${BENCH_DIR:-$(mktemp -d)}"
runs_list=("$@")
[ ${#runs_list[@]} -gt 0 ] || runs_list=(4000 160000)
echo "binary: $bin"
printf '| runs | input MB | events | seconds | events/s | MB/s | peak RSS MB |\n|---:|---:|---:|---:|---:|---:|---:|\n'
for runs in "${runs_list[@]}"; do
  data="$work/sample-$runs"
  [ -f "$data/events.ndjson" ] || "$bin" sample --out "$data" --runs "$runs" --seed 1 --no-bad-lines >/dev/null
  rm -rf "$work/lake-$runs"
  /usr/bin/time -f '%M %e' -o "$work/time-$runs" \
    "$bin" --lake "$work/lake-$runs" ingest --format json "$data/events.ndjson" > "$work/summary-$runs.json"
  read -r rss_kb secs < "$work/time-$runs"
  bytes=$(stat -c %s "$data/events.ndjson")
  events=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['stored'])" "$work/summary-$runs.json")
  python3 - "$runs" "$bytes" "$events" "$secs" "$rss_kb" <<'PY'
import sys
runs, size, events, secs, rss = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
mb = size / 1e6
print(f"| {runs} | {mb:.0f} | {events} | {secs:.1f} | {events / secs:,.0f} | {mb / secs:.1f} | {rss / 1024:.0f} |")
PY
done
