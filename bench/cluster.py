#!/usr/bin/env python3
"""agentledger on a Ballista cluster against agentledger in one process.

Starts a scheduler and executors from the binary on loopback
(`agentledger cluster ...`), then times whole commands, each as a user runs
it: in the process (`--engine embedded`), and on each cluster shape given.
Every answer is compared byte for byte with the embedded one; a difference
stops the benchmark.

    python bench/cluster.py --bin target/release/agentledger --lake LAKE \\
        [--reps 3] [--shapes 1x2,2x1] [--json FILE]

A shape EXECUTORSxTASKS is that many executors running that many tasks at
once each: on a 2-core machine 1x2 and 2x1 use the same cores, one process
or two. Prints a Markdown table of median seconds per command and shape,
and what the cluster adds to the embedded time.
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = {
    # The 20M-event metrics, as the weekly report's table has them.
    "metrics_tenant_week": ["metrics", "--by", "tenant_id,week", "--format", "csv"],
    # A heavy ad-hoc query: cost by model, workflow and day over all events.
    "cost_by_model_workflow_day": [
        "sql",
        "--format",
        "csv",
        "SELECT m.model, r.workflow, m.date, count(*) AS calls, sum(m.cost_usd) AS cost_usd "
        "FROM model_calls m JOIN runs r USING (tenant_id, run_id) "
        "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
    ],
    # What a query pays for the cluster itself: planning, dispatch, results.
    "one_row": ["sql", "--format", "csv", "SELECT count(*) FROM customer_plans"],
}


def free_port(pair=False):
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not pair:
            return port
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue


def wait_port(port, timeout=60):
    start = time.time()
    while time.time() - start < timeout:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    sys.exit(f"nothing listens on {port}")


class Cluster:
    def __init__(self, binary, lake, executors, tasks, work):
        self.port = free_port()
        env = dict(os.environ, AGENTLEDGER_LAKE=lake)
        self.procs = [
            subprocess.Popen(
                [binary, "cluster", "scheduler", "--bind", f"127.0.0.1:{self.port}"],
                env=env,
                stderr=subprocess.DEVNULL,
            )
        ]
        wait_port(self.port)
        for i in range(executors):
            data = free_port(pair=True)
            self.procs.append(
                subprocess.Popen(
                    [
                        binary,
                        "cluster",
                        "executor",
                        "--scheduler",
                        f"ballista://127.0.0.1:{self.port}",
                        "--bind",
                        f"127.0.0.1:{data}",
                        "--concurrency",
                        str(tasks),
                        "--work-dir",
                        str(Path(work) / f"executor-{i}"),
                    ],
                    env=env,
                    stderr=subprocess.DEVNULL,
                )
            )
            wait_port(data + 1)
        time.sleep(2)

    def engine(self):
        return f"ballista://127.0.0.1:{self.port}"

    def stop(self):
        for p in self.procs:
            p.kill()
            p.wait()


def timed(binary, lake, engine, args):
    env = dict(os.environ, AGENTLEDGER_LAKE=lake, AGENTLEDGER_ENGINE=engine)
    start = time.perf_counter()
    out = subprocess.run([binary, *args], env=env, capture_output=True)
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"{args} on {engine}: {out.stderr.decode()}")
    return seconds, out.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--lake", required=True)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--shapes", default="1x2,2x1")
    ap.add_argument("--json")
    a = ap.parse_args()
    shapes = [tuple(int(n) for n in s.split("x")) for s in a.shapes.split(",")]
    work = tempfile.mkdtemp(prefix="agentledger-cluster-bench-")
    results = {name: {} for name in COMMANDS}
    expected = {}
    try:
        for name, args in COMMANDS.items():
            times = []
            for _ in range(a.reps):
                seconds, out = timed(a.bin, a.lake, "embedded", args)
                times.append(seconds)
                expected[name] = out
            results[name]["embedded"] = statistics.median(times)
        for executors, tasks in shapes:
            label = f"{executors}x{tasks}"
            cluster = Cluster(a.bin, a.lake, executors, tasks, work)
            try:
                for name, args in COMMANDS.items():
                    times = []
                    for _ in range(a.reps):
                        seconds, out = timed(a.bin, a.lake, cluster.engine(), args)
                        if out != expected[name]:
                            sys.exit(f"{name} on {label}: the answer differs from the embedded one")
                        times.append(seconds)
                    results[name][label] = statistics.median(times)
            finally:
                cluster.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    labels = ["embedded"] + [f"{e}x{t}" for e, t in shapes]
    print("| command | " + " | ".join(labels) + " | cluster overhead |")
    print("|---|" + "---:|" * len(labels) + "---|")
    for name, row in results.items():
        base = row["embedded"]
        over = ", ".join(f"{label} +{row[label] - base:.2f} s" for label in labels[1:])
        print(f"| {name} | " + " | ".join(f"{row[l]:.2f}" for l in labels) + f" | {over} |")
    print("\nanswers: every cluster answer equal to the embedded one, byte for byte")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
