#!/usr/bin/env python3
"""Analysts' ad-hoc SQL over a lake: agentledger against DuckDB.

The queries an analyst runs over `events`, `model_calls`, `tool_calls` and
`runs` (group-bys by tenant, model, tool and day; a filter on one tenant or
one run; a top-N; a join of runs to model calls), each written twice: once
against agentledger's tables and views (`agentledger sql`), once as a DuckDB
user would write it over the same Parquet files (LAKE/events/**/*.parquet,
with no agentledger code: `model_calls` and `tool_calls` are the events of
that type, `runs` is built from `run_started` and `run_finished` as SPEC
section 3 defines it). Each run is a whole process, as a user runs it; the
two tools alternate; the answers are compared row by row (numbers as exact
decimals) and a difference stops the benchmark.

    python bench/analyst.py --bin target/release/agentledger --lake LAKE \\
        [--reps 3] [--only NAME,...] [--json FILE]

Prints a Markdown table: median seconds of each tool, the ratio, and peak
RSS. The lake should be quiet and fully committed (DuckDB globs every file
it finds, committed or not): the lake `bench/run` leaves after its last
ingest is. `python bench/analyst.py query NAME LAKE` runs DuckDB's side of
one query and prints its CSV (what the benchmark times).

Run with the project's venv (scripts/python-env): DuckDB.
"""

import argparse
import csv
import io
import json
import statistics
import subprocess
import sys
import tempfile
from decimal import Decimal, InvalidOperation
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402
import peers  # noqa: E402

# The parameters of the filtered queries, found in the lake: the tenant with
# the most events, its run with the most events, and the lake's first week.
PARAMS_SQL = {
    "tenant": "SELECT tenant_id FROM events GROUP BY tenant_id ORDER BY count(*) DESC, tenant_id LIMIT 1",
    "run": "SELECT run_id FROM events WHERE tenant_id = '{tenant}' GROUP BY run_id ORDER BY count(*) DESC, run_id LIMIT 1",
    "first_day": "SELECT CAST(min(date) AS VARCHAR) FROM events",
}

# name -> (agentledger SQL, DuckDB SQL). DuckDB's side reads `ev`, the
# events files with their `date` partition column; `{tenant}`, `{run}` and
# `{first_day}` are filled in from the lake.
QUERIES = {
    "events_by_tenant_day": (
        "SELECT tenant_id, date, count(*) AS events FROM events GROUP BY tenant_id, date ORDER BY tenant_id, date",
        "SELECT tenant_id, date, count(*) AS events FROM ev GROUP BY tenant_id, date ORDER BY tenant_id, date",
    ),
    "tokens_by_tenant_month": (
        "SELECT tenant_id, to_char(date, '%Y-%m') AS month, count(*) AS calls, sum(input_tokens) AS input_tokens, "
        "sum(output_tokens) AS output_tokens FROM model_calls GROUP BY 1, 2 ORDER BY 1, 2",
        "SELECT tenant_id, strftime(date, '%Y-%m') AS month, count(*) AS calls, sum(input_tokens) AS input_tokens, "
        "sum(output_tokens) AS output_tokens FROM ev WHERE event_type = 'model_call' GROUP BY 1, 2 ORDER BY 1, 2",
    ),
    "latency_by_model": (
        "SELECT model, count(*) AS calls, sum(latency_ms) AS latency_ms, max(latency_ms) AS max_latency_ms, "
        "sum(CASE WHEN cache_hit THEN 1 ELSE 0 END) AS cache_hits FROM model_calls GROUP BY model ORDER BY model",
        "SELECT model, count(*) AS calls, sum(latency_ms) AS latency_ms, max(latency_ms) AS max_latency_ms, "
        "sum(CASE WHEN cache_hit THEN 1 ELSE 0 END) AS cache_hits FROM ev WHERE event_type = 'model_call' "
        "GROUP BY model ORDER BY model",
    ),
    "tool_errors_by_tool_status": (
        "SELECT tool, status, count(*) AS calls, sum(latency_ms) AS latency_ms FROM tool_calls "
        "GROUP BY tool, status ORDER BY tool, status",
        "SELECT tool, status, count(*) AS calls, sum(latency_ms) AS latency_ms FROM ev WHERE event_type = 'tool_call' "
        "GROUP BY tool, status ORDER BY tool, status",
    ),
    "one_tenant_busiest_runs": (
        "SELECT run_id, count(*) AS events FROM events WHERE tenant_id = '{tenant}' "
        "GROUP BY run_id ORDER BY events DESC, run_id LIMIT 20",
        "SELECT run_id, count(*) AS events FROM ev WHERE tenant_id = '{tenant}' "
        "GROUP BY run_id ORDER BY events DESC, run_id LIMIT 20",
    ),
    "one_run_events": (
        "SELECT event_type, count(*) AS events FROM events WHERE tenant_id = '{tenant}' AND run_id = '{run}' "
        "GROUP BY event_type ORDER BY event_type",
        "SELECT event_type, count(*) AS events FROM ev WHERE tenant_id = '{tenant}' AND run_id = '{run}' "
        "GROUP BY event_type ORDER BY event_type",
    ),
    "first_week_by_tenant": (
        "SELECT tenant_id, event_type, count(*) AS events FROM events "
        "WHERE date BETWEEN DATE '{first_day}' AND DATE '{first_day}' + INTERVAL '6 days' "
        "GROUP BY tenant_id, event_type ORDER BY tenant_id, event_type",
        "SELECT tenant_id, event_type, count(*) AS events FROM ev "
        "WHERE date BETWEEN DATE '{first_day}' AND DATE '{first_day}' + INTERVAL '6 days' "
        "GROUP BY tenant_id, event_type ORDER BY tenant_id, event_type",
    ),
    "runs_by_workflow_outcome": (
        "SELECT workflow, outcome, count(*) AS runs FROM runs GROUP BY workflow, outcome "
        "ORDER BY workflow, outcome NULLS FIRST",
        "SELECT workflow, outcome, count(*) AS runs FROM runs GROUP BY workflow, outcome "
        "ORDER BY workflow, outcome NULLS FIRST",
    ),
    "top_runs_by_tokens_join": (
        "SELECT r.tenant_id, r.run_id, r.workflow, sum(m.input_tokens + m.output_tokens) AS tokens "
        "FROM runs r JOIN model_calls m ON m.tenant_id = r.tenant_id AND m.run_id = r.run_id "
        "GROUP BY r.tenant_id, r.run_id, r.workflow ORDER BY tokens DESC, r.tenant_id, r.run_id LIMIT 25",
        "SELECT r.tenant_id, r.run_id, r.workflow, sum(m.input_tokens + m.output_tokens) AS tokens "
        "FROM runs r JOIN (SELECT * FROM ev WHERE event_type = 'model_call') m "
        "ON m.tenant_id = r.tenant_id AND m.run_id = r.run_id "
        "GROUP BY r.tenant_id, r.run_id, r.workflow ORDER BY tokens DESC, r.tenant_id, r.run_id LIMIT 25",
    ),
}

# `runs` for DuckDB, as SPEC section 3 defines the columns the queries read:
# every (tenant_id, run_id) with an event; workflow from the earliest
# run_started by (ts, event_id), 'unknown' where none; outcome from the
# latest run_finished by (ts, event_id), NULL while open.
DUCKDB_RUNS = """
CREATE TEMP VIEW runs AS
WITH started AS (
    SELECT tenant_id, run_id, arg_min(workflow, (ts, event_id)) AS workflow
    FROM ev WHERE event_type = 'run_started' GROUP BY tenant_id, run_id
), finished AS (
    SELECT tenant_id, run_id, arg_max(outcome, (ts, event_id)) AS outcome
    FROM ev WHERE event_type = 'run_finished' GROUP BY tenant_id, run_id
), keys AS (
    SELECT DISTINCT tenant_id, run_id FROM ev
)
SELECT k.tenant_id, k.run_id, coalesce(s.workflow, 'unknown') AS workflow, f.outcome
FROM keys k
LEFT JOIN started s ON s.tenant_id = k.tenant_id AND s.run_id = k.run_id
LEFT JOIN finished f ON f.tenant_id = k.tenant_id AND f.run_id = k.run_id
"""


def duckdb_session(lake):
    con = peers.duckdb_connect()
    con.execute(f"CREATE TEMP VIEW ev AS SELECT * FROM {peers.duckdb_events(lake)}")
    con.execute(DUCKDB_RUNS)
    return con


def duckdb_query(name, lake, params):
    """DuckDB's side of one query: its CSV on stdout."""
    con = duckdb_session(lake)
    cur = con.execute(QUERIES[name][1].format(**params))
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow([d[0] for d in cur.description])
    for row in cur.fetchall():
        out.writerow(["" if v is None else v for v in row])


def timed(cmd):
    """compare.timed, keeping what the command printed: (seconds, peak RSS
    MB, stdout)."""
    with tempfile.TemporaryFile("w+") as out:
        t = compare.timed(cmd, stdout=out)
        out.seek(0)
        return t.seconds, t.rss_mb, out.read()


def ours_value(binary, lake, sql):
    out = subprocess.run(
        [binary, "--lake", lake, "sql", sql, "--format", "csv"], check=True, capture_output=True, text=True
    ).stdout
    rows = list(csv.reader(io.StringIO(out)))
    return rows[1][0]


def same_cell(a, b):
    if a == b:
        return True
    try:
        return Decimal(a) == Decimal(b)
    except InvalidOperation:
        return False


def differences(ours, theirs):
    a = list(csv.reader(io.StringIO(ours)))
    b = list(csv.reader(io.StringIO(theirs)))
    if len(a) != len(b):
        return [f"{len(a) - 1} rows against {len(b) - 1}"]
    found = []
    for i, (x, y) in enumerate(zip(a[1:], b[1:]), start=1):
        if len(x) != len(y) or not all(same_cell(p, q) for p, q in zip(x, y)):
            found.append(f"row {i}: {x} against {y}")
    return found[:5]


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "query":
        q = argparse.ArgumentParser(prog="analyst.py query")
        q.add_argument("cmd")
        q.add_argument("name", choices=sorted(QUERIES))
        q.add_argument("lake")
        q.add_argument("--params", default="{}", help="JSON of the query parameters")
        a = q.parse_args()
        duckdb_query(a.name, a.lake, json.loads(a.params))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bin", required=True)
    p.add_argument("--lake", required=True)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--only", help="comma-separated query names")
    p.add_argument("--json")
    args = p.parse_args()
    names = args.only.split(",") if args.only else list(QUERIES)
    params = {}
    for key, sql in PARAMS_SQL.items():
        params[key] = ours_value(args.bin, args.lake, sql.format(**params))
    print(f"parameters: {params}", file=sys.stderr)
    results = {"lake": args.lake, "params": params, "queries": {}}
    for name in names:
        ours_sql = QUERIES[name][0].format(**params)
        ours_cmd = [args.bin, "--lake", args.lake, "sql", ours_sql, "--format", "csv"]
        theirs_cmd = [sys.executable, __file__, "query", name, args.lake, "--params", json.dumps(params)]
        runs = {"agentledger": [], "duckdb": []}
        outputs = {}
        for _ in range(args.reps):
            for tool, cmd in (("agentledger", ours_cmd), ("duckdb", theirs_cmd)):
                secs, rss, out = timed(cmd)
                runs[tool].append((secs, rss))
                outputs[tool] = out
        diff = differences(outputs["agentledger"], outputs["duckdb"])
        if diff:
            sys.exit(f"{name}: the answers differ:\n  " + "\n  ".join(diff))
        rows = len(outputs["agentledger"].splitlines()) - 1
        entry = {
            tool: {"seconds": statistics.median(s for s, _ in r), "rss_mb": max(m for _, m in r)}
            for tool, r in runs.items()
        }
        entry["rows"] = rows
        entry["ratio"] = entry["agentledger"]["seconds"] / entry["duckdb"]["seconds"]
        results["queries"][name] = entry
        print(f"{name}: {entry}", file=sys.stderr)
    print(f"\nmedians of {args.reps} whole processes, alternating; answers equal\n")
    print("| query | rows | agentledger s | DuckDB s | ratio | agentledger RSS MB | DuckDB RSS MB |")
    print("|---|---|---|---|---|---|---|")
    for name, e in results["queries"].items():
        print(
            f"| {name} | {e['rows']} | {e['agentledger']['seconds']:.2f} | {e['duckdb']['seconds']:.2f} "
            f"| {e['ratio']:.2f}x | {e['agentledger']['rss_mb']:.0f} | {e['duckdb']['rss_mb']:.0f} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
