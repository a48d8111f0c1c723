"""A lake with a long history against one with the same rows in few commits.

An hourly pipeline commits about 9,000 times a year. This builds a lake from
N ingests of one small file each (N commits of events, plus their run parts
and index runs), and a second lake from the same lines in 10 ingests, then
times, on each: `sql "select 1"`, `metrics --by tenant_id,week`, and an
ingest that stores nothing (every line already stored). Both lakes are then
compacted (as a daily pipeline does) and timed again. Prints a Markdown
table; --json writes the figures too.

With --s3, both lakes (before compaction, copied as they are, byte for byte)
are also uploaded to a local S3 server (moto, started by scripts/s3-server on
loopback) and `select 1` and `metrics` are timed against them there: the
reads a command makes to open a lake are requests on S3, where their number
matters most. Run it with the project's Python (scripts/python-env), which
has boto3.

Usage: python bench/history.py --bin target/release/agentledger [--commits N]
           [--work DIR] [--reps 5] [--s3] [--json FILE]
"""

import argparse
import json
import os
import pathlib
import shutil
import socket
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    """moto on loopback, for as long as the `with` block."""

    def __enter__(self):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [str(ROOT / "scripts/s3-server"), str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    sys.exit("the S3 server did not start")
                time.sleep(0.2)
        self.env = dict(
            os.environ,
            AWS_ENDPOINT_URL=f"http://127.0.0.1:{self.port}",
            AWS_ALLOW_HTTP="true",
            AWS_ACCESS_KEY_ID="test",
            AWS_SECRET_ACCESS_KEY="test",
            AWS_REGION="us-east-1",
        )
        import boto3

        self.client = boto3.client(
            "s3",
            endpoint_url=self.env["AWS_ENDPOINT_URL"],
            aws_access_key_id="test",
            aws_secret_access_key="test",
            region_name="us-east-1",
        )
        self.client.create_bucket(Bucket="bench")
        return self

    def upload(self, lake, prefix):
        """Every file of the local lake under s3://bench/PREFIX/."""
        n = 0
        for path in sorted(lake.rglob("*")):
            if path.is_file():
                key = f"{prefix}/{path.relative_to(lake).as_posix()}"
                self.client.put_object(Bucket="bench", Key=key, Body=path.read_bytes())
                n += 1
        return f"s3://bench/{prefix}", n

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(timeout=30)


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
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="time the lakes a previous run built (it left them uncompacted only if stopped before compacting)",
    )
    ap.add_argument("--s3", action="store_true", help="also time the lakes on a local S3 server")
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
        if args.reuse:
            results[name] = {"log_records": len(list((lake / "_log").glob("*.json")))}
            lakes[name] = lake
            continue
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
    keys = [
        "first_10_ingests_s",
        "last_10_ingests_s",
        "select_1_s",
        "metrics_s",
        "noop_ingest_s",
    ]
    if args.s3:
        with S3Server() as s3:
            for name, lake in lakes.items():
                url, n = s3.upload(lake, name.replace(" ", "-"))
                r = results[name]
                r["s3_objects"] = n
                r["select_1_s_s3"] = median_time(
                    args.bin, url, args.reps, "sql", "select 1", env=s3.env
                )
                r["metrics_s_s3"] = median_time(
                    args.bin, url, args.reps, "metrics", "--by", "tenant_id,week", "--format", "csv",
                    env=s3.env,
                )
                print(f"on S3 {name}: {n} objects", file=sys.stderr)
        keys += ["select_1_s_s3", "metrics_s_s3"]
    for lake in lakes.values():
        run(args.bin, lake, "compact")
    measure("_compacted")

    names = list(lakes)
    if args.reuse:
        print(f"\nthe lakes built before (log records below); medians of {args.reps}\n")
    else:
        print(f"\n{args.commits} one-file ingests ({len(lines)} lines) against the same lines in 10 ingests; medians of {args.reps}\n")
    print("| | " + " | ".join(names) + " | ratio |")
    print("|---|" + "---|" * (len(names) + 1))
    for key in keys + ["select_1_s_compacted", "metrics_s_compacted", "noop_ingest_s_compacted"]:
        a, b = (results[n].get(key) for n in names)
        if a is None or b is None:
            continue
        print(f"| {key} | {a:.3f} | {b:.3f} | {a / b:.2f}x |")
    print(f"| log records | {results[names[0]]['log_records']} | {results[names[1]]['log_records']} | |")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
