"""A lake with a long history against one with the same rows in few commits.

An hourly pipeline commits about 9,000 times a year. This builds a lake from
N ingests of one small file each (N commits of events, plus their run parts
and index runs), and a second lake from the same lines in 10 ingests, then
times, on each: `sql "select 1"`, `metrics --by tenant_id,week`, and an
ingest that stores nothing (every line already stored). Both lakes are then
compacted (as a daily pipeline does) and timed again. Prints a Markdown
table; --json writes the figures too.

Usage: python bench/history.py --bin target/release/agentledger [--commits N]
           [--work DIR] [--reps 5] [--lake-url s3://bucket/prefix]
"""

import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import time


def run(binary, lake, *args, env=None):
    started = time.perf_counter()
    out = subprocess.run(
        [binary, "--lake", str(lake), *args],
        capture_output=True,
        text=True,
        env=env,
    )
    elapsed = time.perf_counter() - started
    if out.returncode != 0:
        sys.exit(f"agentledger {' '.join(args)} failed: {out.stderr}")
    return elapsed, out.stdout


def median_time(binary, lake, reps, *args, env=None):
    return statistics.median(run(binary, lake, *args, env=env)[0] for _ in range(reps))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--commits", type=int, default=10_000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--work", default=os.path.expanduser("~/.cache/agentledger/bench/history"))
    ap.add_argument("--json")
    args = ap.parse_args()
    work = pathlib.Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)

    sample = work / "sample"
    if not (sample / "events.ndjson").exists():
        subprocess.run(
            [args.bin, "sample", "--out", str(sample), "--runs", "3000", "--seed", "11"],
            check=True,
            capture_output=True,
        )
    lines = (sample / "events.ndjson").read_text().splitlines()
    per = max(1, len(lines) // args.commits)
    pieces = [lines[i * per : (i + 1) * per] for i in range(args.commits)]
    pieces[-1].extend(lines[args.commits * per :])
    inputs = work / f"pieces-{args.commits}"
    if not inputs.exists():
        inputs.mkdir()
        for i, piece in enumerate(pieces):
            (inputs / f"{i:06}.ndjson").write_text("\n".join(piece) + "\n")
    files = sorted(inputs.iterdir())
    few = work / "few"
    if not few.exists():
        few.mkdir()
        chunk = -(-len(files) // 10)
        for i in range(10):
            text = "".join(f.read_text() for f in files[i * chunk : (i + 1) * chunk])
            (few / f"{i:02}.ndjson").write_text(text)

    results = {"commits": args.commits, "events_lines": len(lines)}
    lakes = {}
    for name, sources in [("long history", files), ("10 commits", sorted(few.iterdir()))]:
        lake = work / ("lake-" + name.replace(" ", "-"))
        shutil.rmtree(lake, ignore_errors=True)
        run(args.bin, lake, "load", "prices", str(sample / "model_prices.csv"))
        run(args.bin, lake, "load", "plans", str(sample / "customer_plans.csv"))
        started = time.perf_counter()
        times = []
        for f in sources:
            times.append(run(args.bin, lake, "ingest", str(f))[0])
        results[name] = {
            "build_s": time.perf_counter() - started,
            "first_10_ingests_s": statistics.median(times[:10]),
            "last_10_ingests_s": statistics.median(times[-10:]),
            "log_records": len(list((lake / "_log").glob("*.json"))),
        }
        lakes[name] = lake
        print(f"built {name}: {results[name]}", file=sys.stderr)

    def measure(tag):
        for name, lake in lakes.items():
            r = results[name]
            r[f"select_1_s{tag}"] = median_time(args.bin, lake, args.reps, "sql", "select 1")
            r[f"metrics_s{tag}"] = median_time(
                args.bin, lake, args.reps, "metrics", "--by", "tenant_id,week", "--format", "csv"
            )
            r[f"noop_ingest_s{tag}"] = median_time(
                args.bin, lake, args.reps, "ingest", str(files[len(files) // 2])
            )

    measure("")
    for lake in lakes.values():
        run(args.bin, lake, "compact")
    measure("_compacted")

    names = list(lakes)
    print(f"\n{args.commits} one-file ingests ({len(lines)} lines) against the same lines in 10 ingests; medians of {args.reps}\n")
    print("| | " + " | ".join(names) + " | ratio |")
    print("|---|" + "---|" * (len(names) + 1))
    for key in [
        "first_10_ingests_s",
        "last_10_ingests_s",
        "select_1_s",
        "metrics_s",
        "noop_ingest_s",
        "select_1_s_compacted",
        "metrics_s_compacted",
        "noop_ingest_s_compacted",
    ]:
        a, b = (results[n][key] for n in names)
        print(f"| {key} | {a:.3f} | {b:.3f} | {a / b:.2f}x |")
    print(f"| log records | {results[names[0]]['log_records']} | {results[names[1]]['log_records']} | |")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
