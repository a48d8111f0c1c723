"""agentledger against DuckDB and Polars on agentledger's own jobs.

Usage (see bench/run, which builds the release binary and the Python
environment first):

    python bench/compare.py --bin target/release/agentledger \
        [--sizes 2000000,20000000] [--reps 3] [--work DIR] [--write BENCHMARKS.md]

For each size it generates clean sample events with `agentledger sample
--no-bad-lines` (cached in --work), then times whole processes, in
alternation, --reps times each:

- ingest: `agentledger ingest` into a fresh lake (prices and plans loaded
  first, untimed), against DuckDB and Polars (bench/peers.py, 2 threads)
  converting the same NDJSON to date-partitioned Parquet, and DataFusion
  (the engine agentledger is built on) doing the same bare conversion
  without `attributes`: the floor of that conversion on agentledger's own
  stack;
- metrics: `agentledger metrics --by tenant_id,week` from a cold process,
  against DuckDB and Polars computing the same figures from the lake's
  Parquet; every peer's figures are checked against agentledger's;
- analyst queries: bench/analyst.py on the same lake, nine ad-hoc queries
  over events, model_calls, tool_calls and runs with `agentledger sql`
  against DuckDB on the same Parquet files, answers checked equal
  (--no-analyst skips them).

and once per run:

- `agentledger sql "select 1"` (20 times, on the largest lake);
- small files: the first 1,000,000 events of the smallest size ingested as
  1,000 files of 1,000 events one ingest after another, against one ingest
  of the same events; metrics timed on both lakes.

Wall time, CPU time (user and system) and peak RSS come from GNU time.
System time is shown apart because it is what moves most between machines
and sittings: on the bench's VMs, writing into memory the guest had not
touched lately cost several times the kernel time of recycled memory
(BENCHMARKS.md, 2026-12-04). Results print as Markdown and, with --write,
replace the section between the bench markers of the file.
"""

import argparse
import datetime
import json
import os
import pathlib
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from typing import NamedTuple

import reshape

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS = HERE / "peers.py"
ANALYST = HERE / "analyst.py"
EVENTS_PER_RUN = 8.451  # what `agentledger sample` produces on average
BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"


class Timing(NamedTuple):
    """One whole process under GNU time."""
    seconds: float
    rss_mb: float
    user: float
    system: float


def timed(cmd, env=None, stdout=subprocess.DEVNULL):
    """Runs cmd under GNU time: wall seconds, peak RSS, user and system CPU seconds."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as t:
        full = ["/usr/bin/time", "-f", "%e %M %U %S", "-o", t.name, *map(str, cmd)]
        proc = subprocess.run(full, env=env, stdout=stdout, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            sys.exit(f"failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{proc.stderr}")
        secs, rss_kb, user, system = t.read().split()[-4:]
        return Timing(float(secs), int(rss_kb) / 1024, float(user), float(system))


def summarize(runs):
    """A tool's repetitions of one job: medians and peak, as results.json keeps them."""
    return {
        "seconds": stats([r.seconds for r in runs]),
        "rss_mb": max(r.rss_mb for r in runs),
        "cpu_seconds": stats([r.user + r.system for r in runs]),
        "system_seconds": stats([r.system for r in runs]),
    }


def run(cmd, **kw):
    return subprocess.run(list(map(str, cmd)), check=True, **kw)


def stats(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def sample(binary, work, events):
    """Clean sample events of about `events` lines (cached)."""
    out = work / f"data-{events}"
    if not (out / "events.ndjson").exists():
        runs = max(1, round(events / EVENTS_PER_RUN))
        run([binary, "sample", "--out", out, "--runs", runs, "--seed", "1", "--no-bad-lines"],
            stdout=subprocess.DEVNULL)
    return out


def refresh_seconds(lake):
    """Seconds between the ingest commit and the run-parts refresh commit
    that follows it (agentledger ingest does both)."""
    commits = [json.loads(p.read_text()) for p in sorted((pathlib.Path(lake) / "_log").glob("*.json"))]
    stamp = lambda c: datetime.datetime.fromisoformat(c["committed_at"].replace("Z", "+00:00"))
    for i, c in enumerate(commits):
        if c["kind"] == "ingest":
            runs = [r for r in commits[i + 1:] if r["kind"] == "runs"]
            return (stamp(runs[-1]) - stamp(c)).total_seconds() if runs else 0.0
    return 0.0


def fresh_lake(binary, lake, data):
    shutil.rmtree(lake, ignore_errors=True)
    run([binary, "--lake", lake, "load", "prices", data / "model_prices.csv"], stdout=subprocess.DEVNULL)
    run([binary, "--lake", lake, "load", "plans", data / "customer_plans.csv"], stdout=subprocess.DEVNULL)


def count_lines(path):
    with open(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 24), b""))


def reshaped(data):
    """The events of `data` as other producers write them (cached; see
    bench/reshape.py)."""
    out = data.with_name(data.name + "-reshaped")
    if not (out / "events.ndjson").exists():
        reshape.reshape(data, out)
    return out


def bench_size(args, binary, python, work, events):
    data = sample(binary, work, events)
    if args.shape == "reshaped":
        data = reshaped(data)
    ndjson = data / "events.ndjson"
    lines = count_lines(ndjson)
    mb = ndjson.stat().st_size / 1e6
    lake = work / (f"lake-{events}" if args.shape == "sample" else f"lake-{events}-{args.shape}")
    peer_out = work / f"peer-out-{events}"
    result = {"events": lines, "input_mb": mb, "ingest": {}, "metrics": {}}

    # Ingest, in alternation. DataFusion converts only: the floor of a bare
    # conversion on agentledger's own stack (see peers.py).
    samples = {"agentledger": [], "duckdb": [], "polars": [], "datafusion": []}
    refresh = []
    for _ in range(args.reps):
        fresh_lake(binary, lake, data)
        with tempfile.NamedTemporaryFile("w+", suffix=".json") as out:
            s = timed([binary, "--lake", lake, "ingest", "--format", "json", ndjson], stdout=out)
            out.seek(0)
            summary = json.load(out)
        if summary["stored"] != lines:
            sys.exit(f"agentledger stored {summary['stored']} of {lines} events")
        samples["agentledger"].append(s)
        refresh.append(refresh_seconds(lake))
        for peer in ("duckdb", "polars", "datafusion"):
            shutil.rmtree(peer_out, ignore_errors=True)
            samples[peer].append(timed([python, PEERS, "convert", peer, ndjson, peer_out]))
    shutil.rmtree(peer_out, ignore_errors=True)
    for tool, runs in samples.items():
        result["ingest"][tool] = summarize(runs)
    result["ingest_refresh_seconds"] = stats(refresh)

    # Metrics on the lake the last ingest left, in alternation.
    ours_csv = work / f"metrics-{events}-agentledger.csv"
    samples = {"agentledger": [], "duckdb": [], "polars": []}
    for _ in range(args.reps):
        with open(ours_csv, "w") as out:
            samples["agentledger"].append(timed(
                [binary, "--lake", lake, "metrics", "--by", "tenant_id,week", "--format", "csv"],
                stdout=out))
        for peer in ("duckdb", "polars"):
            theirs = work / f"metrics-{events}-{peer}.csv"
            samples[peer].append(timed([python, PEERS, "metrics", peer, lake, "--out", theirs]))
    checks = {}
    for peer in ("duckdb", "polars"):
        theirs = work / f"metrics-{events}-{peer}.csv"
        proc = subprocess.run([python, PEERS, "check", ours_csv, theirs], capture_output=True, text=True)
        checks[peer] = proc.returncode == 0
        if proc.returncode != 0:
            print(proc.stdout, proc.stderr, file=sys.stderr)
    for tool, runs in samples.items():
        result["metrics"][tool] = summarize(runs)
    result["metrics_agree"] = checks
    return result, lake


def bench_analyst(args, binary, python, lake):
    """bench/analyst.py on the lake the last ingest left: analysts' queries
    against DuckDB's, answers checked equal."""
    with tempfile.NamedTemporaryFile("r", suffix=".json") as out:
        run([python, ANALYST, "--bin", binary, "--lake", lake, "--reps", args.reps, "--json", out.name],
            stdout=subprocess.DEVNULL)
        return json.load(out)["queries"]


def bench_select1(binary, lake, n=20):
    times = [timed([binary, "--lake", lake, "sql", "select 1"]).seconds for _ in range(n)]
    return stats(times)


def bench_small_files(args, binary, work, events):
    """1,000 ingests of 1,000 events against one ingest of the same events."""
    data = sample(binary, work, events)
    parts = work / "small-files"
    if not (parts / "0999.ndjson").exists():
        shutil.rmtree(parts, ignore_errors=True)
        parts.mkdir(parents=True)
        with open(data / "events.ndjson", "rb") as src:
            for i in range(1000):
                chunk = [src.readline() for _ in range(1000)]
                (parts / f"{i:04d}.ndjson").write_bytes(b"".join(chunk))
    one = work / "lake-small-one"
    many = work / "lake-small-many"
    fresh_lake(binary, one, data)
    fresh_lake(binary, many, data)
    run([binary, "--lake", one, "ingest", parts], stdout=subprocess.DEVNULL)
    started = datetime.datetime.now()
    for i in range(1000):
        run([binary, "--lake", many, "ingest", parts / f"{i:04d}.ndjson"], stdout=subprocess.DEVNULL)
    many_secs = (datetime.datetime.now() - started).total_seconds()
    metrics = [binary, "metrics", "--by", "tenant_id,week", "--format", "csv"]
    samples = {"one": [], "many": []}
    outputs = {}
    for _ in range(args.reps):
        for name, lake in (("one", one), ("many", many)):
            with tempfile.NamedTemporaryFile("w+") as out:
                samples[name].append(timed([binary, "--lake", lake, *metrics[1:]], stdout=out).seconds)
                out.seek(0)
                outputs[name] = out.read()
    files = {
        name: sum(1 for _ in (lake / "events").rglob("*.parquet"))
        for name, lake in (("one", one), ("many", many))
    }
    return {
        "ingests_seconds": many_secs,
        "metrics_one": stats(samples["one"]),
        "metrics_many": stats(samples["many"]),
        "event_files": files,
        "same_figures": outputs["one"] == outputs["many"],
    }


def versions(binary, python):
    peers = subprocess.run(
        [python, "-c", "import datafusion, duckdb, polars; "
                       "print(duckdb.__version__, polars.__version__, datafusion.__version__)"],
        capture_output=True, text=True, check=True).stdout.split()
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    cpu = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "agentledger": commit,
        "duckdb": peers[0],
        "polars": peers[1],
        "datafusion": peers[2],
        "python": platform.python_version(),
        "machine": f"{os.cpu_count()} cores ({cpu}), "
                   f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, {platform.system()} {platform.release()}",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def cpu_cell(m):
    """The CPU (user + system) and system cells of a tool's row."""
    return f"{m['cpu_seconds']['median']:.2f} | {m['system_seconds']['median']:.2f}"


def markdown(meta, sizes, select1, small, command):
    out = [BEGIN, "", f"Command: `{command}`", "",
           f"Run {meta['date']} at commit {meta['agentledger']} (release build); "
           f"DuckDB {meta['duckdb']}, Polars {meta['polars']}, DataFusion {meta['datafusion']} "
           f"(Python {meta['python']}, 2 threads each); "
           f"machine: {meta['machine']}.", "",
           "Times are wall-clock seconds of whole processes (median, min–max over the repetitions); "
           "CPU is the median of user + system seconds, system the median of system seconds alone; "
           "RSS is the peak over the repetitions. Ratio = agentledger's median / the peer's median.", ""]
    for r in sizes:
        out.append(f"### {r['events']:,} events ({r['input_mb']:.0f} MB of NDJSON)")
        out.append("")
        for job, label in (("ingest", "NDJSON to date-partitioned Parquet"),
                           ("metrics", "tenant × week metrics from Parquet")):
            out.append(f"{job} — {label}")
            out.append("")
            out.append("| tool | median s | min–max s | events/s | MB/s | CPU s | system s | peak RSS MB | agentledger ÷ tool |")
            out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
            ours = r[job]["agentledger"]["seconds"]["median"]
            for tool, m in r[job].items():
                s = m["seconds"]
                out.append(
                    f"| {tool} | {s['median']:.2f} | {s['min']:.2f}–{s['max']:.2f} | "
                    f"{r['events'] / s['median']:,.0f} | {r['input_mb'] / s['median']:.0f} | "
                    f"{cpu_cell(m)} | {m['rss_mb']:.0f} | {ours / s['median']:.2f} |")
            out.append("")
            if job == "ingest":
                total = r["ingest"]["agentledger"]["seconds"]["median"]
                part = r["ingest_refresh_seconds"]["median"]
                duck = r["ingest"]["duckdb"]["seconds"]["median"]
                if part > 0:
                    out.append(
                        f"agentledger's ingest includes keeping `runs` up to date: the run parts of "
                        f"the new events are computed while they are written and committed with them, "
                        f"and a refresh merging parts after the commit took {part:.2f} s of the "
                        f"{total:.2f} s median ({(total - part) / duck:.2f}× DuckDB without it).")
                else:
                    out.append(
                        "agentledger's ingest includes keeping `runs` up to date: the run parts of "
                        "the new events are computed while they are written and committed with them, "
                        "one row per run, so no refresh was needed after the commit.")
                out.append("")
        agree = ", ".join(f"{p}: {'same figures' if ok else 'DIFFERENT'}" for p, ok in r["metrics_agree"].items())
        out.append(f"Metrics checked against agentledger's — {agree}.")
        out.append("")
        if r.get("analyst"):
            out.append("analyst queries — `agentledger sql` against DuckDB on the same Parquet files "
                       "(bench/analyst.py; answers checked equal)")
            out.append("")
            out.append("| query | rows | agentledger s | DuckDB s | agentledger ÷ DuckDB | agentledger RSS MB | DuckDB RSS MB |")
            out.append("|---|---:|---:|---:|---:|---:|---:|")
            for name, e in r["analyst"].items():
                out.append(
                    f"| {name} | {e['rows']} | {e['agentledger']['seconds']:.2f} | {e['duckdb']['seconds']:.2f} | "
                    f"{e['ratio']:.2f} | {e['agentledger']['rss_mb']:.0f} | {e['duckdb']['rss_mb']:.0f} |")
            out.append("")
    if select1:
        out.append(f"`agentledger sql \"select 1\"` on the {sizes[-1]['events']:,}-event lake: "
                   f"median {select1['median'] * 1000:.0f} ms (min {select1['min'] * 1000:.0f}, "
                   f"max {select1['max'] * 1000:.0f}) over 20 processes.")
        out.append("")
    if small:
        ratio = small["metrics_many"]["median"] / small["metrics_one"]["median"]
        out.append(
            f"Small files: 1,000 ingests of 1,000 events took {small['ingests_seconds']:.0f} s in all and "
            f"left {small['event_files']['many']:,} event files (one ingest: {small['event_files']['one']:,}). "
            f"Metrics: {small['metrics_many']['median']:.2f} s after the 1,000 ingests against "
            f"{small['metrics_one']['median']:.2f} s after one ingest ({ratio:.2f}×); "
            f"figures {'identical' if small['same_figures'] else 'DIFFERENT'}.")
        out.append("")
    out.append(END)
    return "\n".join(out)


def main():
    p = argparse.ArgumentParser(
        prog="bench/run",
        description="agentledger against DuckDB and Polars: ingest, tenant x week metrics, "
                    "sql \"select 1\" and the small-files case (see BENCHMARKS.md).")
    p.add_argument("--bin", required=True, help="the agentledger binary (bench/run passes the release build)")
    p.add_argument("--sizes", default="2000000,20000000",
                   help="comma-separated event counts to generate and time (default: %(default)s)")
    p.add_argument("--reps", type=int, default=3, help="repetitions per tool and job (default: %(default)s)")
    p.add_argument("--work", default=os.path.expanduser("~/.cache/agentledger/bench"),
                   help="folder for generated data, lakes and results.json (default: %(default)s)")
    p.add_argument("--python", default=sys.executable, help="the Python with DuckDB and Polars")
    p.add_argument("--shape", choices=["sample", "reshaped"], default="sample",
                   help="the events as `agentledger sample` writes them, or reshaped as other "
                        "producers would (bench/reshape.py: key order, white space, offsets, "
                        "unknown fields, nested attributes, money as numbers)")
    p.add_argument("--no-small-files", action="store_true",
                   help="skip 1,000 ingests of 1,000 events (about 30 minutes)")
    p.add_argument("--no-analyst", action="store_true",
                   help="skip the analyst queries against DuckDB (bench/analyst.py)")
    p.add_argument("--write", help="Markdown file whose bench section is replaced")
    args = p.parse_args()
    binary = pathlib.Path(args.bin).resolve()
    work = pathlib.Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")]

    results = []
    lake = None
    for events in sizes:
        r, lake = bench_size(args, binary, args.python, work, events)
        if not args.no_analyst:
            r["analyst"] = bench_analyst(args, binary, args.python, lake)
        results.append(r)
        print(json.dumps(r, indent=2), flush=True)
    select1 = bench_select1(binary, lake) if lake else None
    small = None if args.no_small_files else bench_small_files(args, binary, work, min(sizes))
    if small:
        print(json.dumps(small, indent=2), flush=True)
    meta = versions(binary, args.python)
    command = os.environ.get("BENCH_COMMAND", "bench/compare.py " + " ".join(sys.argv[1:]))
    text = markdown(meta, results, select1, small, command)
    print(text)
    (work / "results.json").write_text(json.dumps(
        {"meta": meta, "sizes": results, "select1": select1, "small_files": small}, indent=2))
    if args.write:
        path = pathlib.Path(args.write)
        doc = path.read_text()
        if BEGIN in doc and END in doc:
            doc = doc[:doc.index(BEGIN)] + text + doc[doc.index(END) + len(END):]
        else:
            doc = doc.rstrip() + "\n\n" + text + "\n"
        path.write_text(doc)


if __name__ == "__main__":
    main()
