"""The hourly pipeline: a bulk-loaded lake, then an ingest every hour.

A deployment does not load once; it ingests every hour. This builds a lake
of --events events in one bulk ingest, then runs --hours hourly ingests of
about --per-hour events each: events of new runs, and late events of runs
already in the lake (lines held back from the bulk load). After the bulk
load and after every hour it times `metrics --by tenant_id,week` (wall time
and peak RSS, GNU time). Prints a Markdown table; --json writes the figures.

Usage: python bench/hourly.py --bin target/release/agentledger
           [--events 2000000] [--hours 24] [--per-hour 1000] [--work DIR]
"""

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import compare  # noqa: E402
from compare import EVENTS_PER_RUN  # noqa: E402


def timed(cmd):
    """compare.timed's wall seconds and peak RSS MB."""
    t = compare.timed(cmd)
    return t.seconds, t.rss_mb


def sample(binary, out, runs, seed):
    if not (out / "events.ndjson").exists():
        subprocess.run(
            [binary, "sample", "--out", str(out), "--runs", str(runs), "--seed", str(seed), "--no-bad-lines"],
            check=True,
            capture_output=True,
        )
    return out / "events.ndjson"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--hours", type=int, default=24)
    ap.add_argument("--per-hour", type=int, default=1000)
    ap.add_argument("--late-per-hour", type=int, default=200)
    ap.add_argument("--work", default=os.path.expanduser("~/.cache/agentledger/bench/hourly"))
    ap.add_argument("--json")
    args = ap.parse_args()
    work = pathlib.Path(args.work) / str(args.events)
    work.mkdir(parents=True, exist_ok=True)
    binary = args.bin

    bulk_src = sample(binary, work / "bulk-sample", int(args.events / EVENTS_PER_RUN), 101)
    hours_dir = work / f"hours-{args.hours}-{args.per_hour}-{args.late_per_hour}"
    bulk = work / "bulk.ndjson"
    if not hours_dir.exists() or not bulk.exists():
        hours_dir.mkdir(exist_ok=True)
        # Late events: lines held back from the bulk load, evenly spread.
        held_total = args.hours * args.late_per_hour
        with open(bulk_src, "rb") as f:
            count = sum(1 for _ in f)
        step = max(1, count // held_total)
        held = []
        # Streamed: the 20M-event sample is several GB.
        with open(bulk_src) as src, open(bulk, "w") as out:
            for i, line in enumerate(src):
                if i % step == 0 and len(held) < held_total:
                    held.append(line.rstrip("\n"))
                else:
                    out.write(line)
        new_runs = int(args.hours * (args.per_hour - args.late_per_hour) / EVENTS_PER_RUN) + 1
        new_src = sample(binary, work / "new-sample", new_runs, 202)
        new_lines = [
            l.replace('"run_id":"run-', '"run_id":"new-run-') for l in new_src.read_text().splitlines()
        ]
        per = len(new_lines) // args.hours + 1
        for h in range(args.hours):
            chunk = new_lines[h * per : (h + 1) * per] + held[h * args.late_per_hour : (h + 1) * args.late_per_hour]
            (hours_dir / f"{h:02}.ndjson").write_text("\n".join(chunk) + "\n")

    lake = work / "lake"
    shutil.rmtree(lake, ignore_errors=True)
    ref = work / "bulk-sample"
    subprocess.run([binary, "--lake", lake, "load", "prices", ref / "model_prices.csv"], check=True, capture_output=True)
    subprocess.run([binary, "--lake", lake, "load", "plans", ref / "customer_plans.csv"], check=True, capture_output=True)
    metrics = [binary, "--lake", lake, "metrics", "--by", "tenant_id,week", "--format", "csv"]
    rows = []
    secs, rss = timed([binary, "--lake", lake, "ingest", bulk])
    msecs, mrss = timed(metrics)
    rows.append(("bulk", secs, rss, msecs, mrss))
    print(f"bulk: ingest {secs:.2f}s {rss:.0f}MB, metrics {msecs:.2f}s {mrss:.0f}MB", file=sys.stderr)
    for f in sorted(hours_dir.iterdir()):
        secs, rss = timed([binary, "--lake", lake, "ingest", f])
        msecs, mrss = timed(metrics)
        rows.append((f.stem, secs, rss, msecs, mrss))
        print(f"hour {f.stem}: ingest {secs:.2f}s {rss:.0f}MB, metrics {msecs:.2f}s {mrss:.0f}MB", file=sys.stderr)

    base = rows[0][3]
    print(f"\n{args.events:,} events in bulk, then {args.hours} hourly ingests of ~{args.per_hour} events ({args.late_per_hour} of them late events of old runs)\n")
    print("| after | ingest s | ingest RSS MB | metrics s | metrics RSS MB | metrics / after bulk |")
    print("|---|---|---|---|---|---|")
    for name, s, r, ms, mr in rows:
        print(f"| {name} | {s:.2f} | {r:.0f} | {ms:.2f} | {mr:.0f} | {ms / base:.2f}x |")
    hourly = rows[1:]
    if hourly:
        print(
            f"\nhourly ingest: max {max(r[1] for r in hourly):.2f}s; metrics: max {max(r[3] for r in hourly):.2f}s "
            f"({max(r[3] for r in hourly) / base:.2f}x), peak RSS {max(r[4] for r in hourly):.0f} MB"
        )
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
