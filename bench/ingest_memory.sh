#!/usr/bin/env bash
# Ingest peak memory against input size: generates clean sample events of
# several sizes, ingests each into a fresh lake, then ingests the same file
# again (every line a duplicate: the exact-resolution path), and prints input
# size, events, wall time, events/s, MB/s and peak RSS (from GNU time).
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
printf '| ingest | input MB | lines | stored | seconds | lines/s | MB/s | peak RSS MB |\n|---|---:|---:|---:|---:|---:|---:|---:|\n'
for runs in "${runs_list[@]}"; do
  data="$work/sample-$runs"
  [ -f "$data/events.ndjson" ] || "$bin" sample --out "$data" --runs "$runs" --seed 1 --no-bad-lines >/dev/null
  rm -rf "$work/lake-$runs"
  for pass in first again; do
    /usr/bin/time -f '%M %e' -o "$work/time-$runs" \
      "$bin" --lake "$work/lake-$runs" ingest --format json "$data/events.ndjson" > "$work/summary-$runs.json"
    read -r rss_kb secs < "$work/time-$runs"
    bytes=$(stat -c %s "$data/events.ndjson")
    python3 - "$runs runs, $pass" "$bytes" "$work/summary-$runs.json" "$secs" "$rss_kb" <<'PY'
import json, sys
name, size, summary, secs, rss = sys.argv[1], int(sys.argv[2]), json.load(open(sys.argv[3])), float(sys.argv[4]), int(sys.argv[5])
mb = size / 1e6
print(f"| {name} | {mb:.0f} | {summary['read']} | {summary['stored']} | {secs:.1f} | {summary['read'] / secs:,.0f} | {mb / secs:.1f} | {rss / 1024:.0f} |")
PY
  done
done
