"""Many SQL clients on `agentledger serve --pg` while an ingest commits.

A lake is made from the sample generator (`--runs`, release binary), then
`--clients` psycopg connections (half analysts, half tenant users of one
tenant each) run a mix of queries for `--seconds`, while another thread
ingests a batch of new events every `--ingest-every` seconds. Printed:
queries answered, errors, throughput, and p50/p95/p99 latency in all and per
query.

Every answer is checked against some committed snapshot: each ingest batch
adds exactly 3 events and 1 model call for tenant `acme`, so a statement
that reads `count(*)` of `events` and of `model_calls` must see
(base + 3i, base_calls + i) for one i between 0 and the number of batches
committed. A count from half a commit, or from two snapshots, fails.

Run it with the project's Python (scripts/python-env), which has psycopg.

Usage: python bench/pg_load.py --bin target/release/agentledger
           [--runs 25000] [--clients 50] [--seconds 60] [--work DIR]
"""

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time

import psycopg

QUERIES = {
    "counts": "SELECT (SELECT count(*) FROM events) AS events, (SELECT count(*) FROM model_calls) AS calls",
    "metrics_of_tenant": "SELECT tenant_id, week, runs, success_rate, cost_usd FROM metrics WHERE tenant_id = %s ORDER BY week",
    "cost_by_model": "SELECT model, count(*) AS calls, sum(cost_usd) AS cost FROM model_calls GROUP BY model ORDER BY cost DESC",
    "worst_margins": "SELECT tenant_id, week, gross_margin FROM margin ORDER BY gross_margin LIMIT 5",
    "tool_errors": "SELECT tool, status, count(*) FROM tool_calls GROUP BY tool, status ORDER BY 3 DESC LIMIT 10",
}


def run(cmd, env, stdin=None):
    p = subprocess.run(cmd, env=env, input=stdin, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{cmd} failed: {p.stderr}")
    return p.stdout


def percentile(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--runs", type=int, default=25000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--ingest-every", type=float, default=2.0,
                    help="seconds between ingest commits; longer than --seconds for none")
    ap.add_argument("--work")
    args = ap.parse_args()

    work = args.work or tempfile.mkdtemp(prefix="pg-load-")
    lake = os.path.join(work, "lake")
    shutil.rmtree(lake, ignore_errors=True)
    env = dict(os.environ, AGENTLEDGER_LAKE=lake)
    sample = os.path.join(work, "sample")
    if not os.path.exists(os.path.join(sample, "events.ndjson")):
        run([args.bin, "sample", "--out", sample, "--runs", str(args.runs)], env)
    for kind, name in [("prices", "model_prices.csv"), ("plans", "customer_plans.csv"), ("policies", "workflow_policies.csv")]:
        run([args.bin, "load", kind, os.path.join(sample, name)], env)
    run([args.bin, "ingest", os.path.join(sample, "events.ndjson")], env)
    tenants = [r["tenant_id"] for r in json.loads(run(
        [args.bin, "sql", "--format", "json", "SELECT DISTINCT tenant_id FROM events ORDER BY 1"], env))]
    users = os.path.join(work, "users.json")
    if os.path.exists(users):
        os.remove(users)
    run([args.bin, "user", "add", "ana", "--role", "analyst", "--users", users, "--password-stdin"], env, "pw-ana\n")
    for t in tenants:
        run([args.bin, "user", "add", f"t-{t}", "--role", "tenant", "--tenant", t, "--users", users, "--password-stdin"],
            env, f"pw-{t}\n")
    base = json.loads(run([args.bin, "sql", "--format", "json", QUERIES["counts"]], env))[0]
    base_acme = json.loads(run([args.bin, "sql", "--format", "json",
                                "SELECT (SELECT count(*) FROM events WHERE tenant_id = 'acme') AS events, "
                                "(SELECT count(*) FROM model_calls WHERE tenant_id = 'acme') AS calls"], env))[0]

    audit = os.path.join(work, "audit.jsonl")
    server = subprocess.Popen([args.bin, "serve", "--pg", "127.0.0.1:0", "--users", users, "--audit-log", audit,
                               "--max-connections", str(args.clients + 8)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    port = None
    while port is None:
        line = server.stderr.readline()
        if not line:
            raise SystemExit("the server did not start")
        m = re.search(r"PostgreSQL server listening on [0-9.]+:([0-9]+)", line)
        if m:
            port = int(m.group(1))
    threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()

    stop = time.time() + args.seconds
    committed = [0]
    lock = threading.Lock()
    results = []  # (query, seconds, ok)
    violations = []

    def ingester():
        i = 0
        while True:
            wake = time.time() + args.ingest_every
            while time.time() < min(wake, stop):
                time.sleep(0.05)
            if time.time() >= stop:
                break
            i += 1
            path = os.path.join(work, f"batch-{i}.ndjson")
            run_id = f"bench-run-{i}"
            ts = "2026-10-20T10:00:00Z"
            with open(path, "w") as f:
                f.write(json.dumps({"event_id": f"bench-{i}-a", "event_type": "run_started", "ts": ts, "tenant_id": "acme",
                                    "run_id": run_id, "workflow": "support_reply", "agent_version": "v1.4.0"}) + "\n")
                f.write(json.dumps({"event_id": f"bench-{i}-b", "event_type": "model_call", "ts": ts, "tenant_id": "acme",
                                    "run_id": run_id, "model": "gpt-4.1-mini", "provider": "openai",
                                    "input_tokens": 1000, "output_tokens": 100}) + "\n")
                f.write(json.dumps({"event_id": f"bench-{i}-c", "event_type": "run_finished", "ts": ts, "tenant_id": "acme",
                                    "run_id": run_id, "outcome": "success"}) + "\n")
            run([args.bin, "ingest", path], env)
            with lock:
                committed[0] = i

    def client(n):
        tenant = None if n % 2 == 0 else tenants[n % len(tenants)]
        user, password = ("ana", "pw-ana") if tenant is None else (f"t-{tenant}", f"pw-{tenant}")
        rng = random.Random(n)
        with psycopg.connect(host="127.0.0.1", port=port, user=user, password=password, dbname="agentledger",
                             autocommit=True) as conn:
            while time.time() < stop:
                name = rng.choice(list(QUERIES))
                params = (tenant or rng.choice(tenants),) if "%s" in QUERIES[name] else None
                t0 = time.perf_counter()
                try:
                    rows = conn.execute(QUERIES[name], params).fetchall()
                    ok = True
                except psycopg.Error as e:
                    ok = False
                    rows = str(e)
                elapsed = time.perf_counter() - t0
                if ok and name == "counts" and tenant in (None, "acme"):
                    ev, calls = rows[0]
                    b = base if tenant is None else base_acme
                    i, rest = divmod(ev - b["events"], 3)
                    with lock:
                        done = committed[0]
                    if rest or calls - b["calls"] != i or not 0 <= i <= done + 1:
                        violations.append((user, ev, calls, done))
                with lock:
                    results.append((name, elapsed, ok, None if ok else rows))

    threads = [threading.Thread(target=ingester)] + [threading.Thread(target=client, args=(n,)) for n in range(args.clients)]
    started = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.time() - started
    server.send_signal(15)
    server.wait(timeout=60)

    errors = [r for r in results if not r[2]]
    print(f"lake: {base['events']} events at start; {committed[0]} ingest commits during the run (3 events each)")
    print(f"clients: {args.clients} ({(args.clients + 1) // 2} analysts, {args.clients // 2} tenant users), {wall:.1f} s")
    print(f"answered: {len(results) - len(errors)}  errors: {len(errors)}  inconsistent counts: {len(violations)}")
    print(f"throughput: {len(results) / wall:.1f} statements/s")
    lat = [r[1] for r in results if r[2]]
    print(f"latency all: p50 {percentile(lat, 50) * 1e3:.0f} ms  p95 {percentile(lat, 95) * 1e3:.0f} ms  "
          f"p99 {percentile(lat, 99) * 1e3:.0f} ms")
    for name in QUERIES:
        lat = [r[1] for r in results if r[0] == name and r[2]]
        print(f"  {name:18} n={len(lat):5}  p50 {percentile(lat, 50) * 1e3:6.0f} ms  p95 {percentile(lat, 95) * 1e3:6.0f} ms")
    for e in errors[:5]:
        print("error:", e[0], e[3])
    for v in violations[:5]:
        print("inconsistent:", v)
    if errors or violations:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
