"""Delta Lake readers see exactly the rows agentledger committed.

Usage: check_delta.py AGENTLEDGER_BINARY

Builds a lake from the bundled sample with the binary through every kind of
write (reference loads, several ingests, an ingest killed mid-way and the
file such a kill leaves behind, a compaction, a retention, a second price
load, an ingest after the retention and one with nothing new), then reads every table through its Delta
log with the `deltalake` package, Polars' `scan_delta` and DuckDB's
`delta_scan` (the extension comes from PyPI and is loaded from its file:
nothing is downloaded), and checks that row counts, per-date counts,
filtered counts (which Delta readers answer with the log's statistics) and
exact decimal sums equal `agentledger sql` on the same lake. A plain glob
over `events/` must not (it sees the killed ingest's and the replaced
files), or the check would prove nothing. Exits non-zero on any difference.
"""

import datetime
import json
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
from decimal import Decimal

import duckdb
import duckdb_extension_delta
import polars as pl
import pyarrow.compute as pc
from deltalake import DeltaTable

TABLES = {
    # table: (decimal column to sum, filters as (column, op, value))
    "events": (
        "cost_usd",
        [
            ("tenant_id", "=", "acme"),
            ("event_type", "=", "model_call"),
            ("input_tokens", ">", 1000),
            ("line", "<", 200),
            ("date", "=", datetime.date(2026, 10, 27)),
        ],
    ),
    "quarantine": (None, [("reason", "=", "invalid_json")]),
    "run_parts": ("model_cost_usd", [("tenant_id", "=", "acme")]),
    "model_prices": ("input_usd_per_mtok", [("model", "=", "gpt-4.1")]),
    "customer_plans": ("monthly_fee_usd", []),
    "workflow_policies": ("max_cost_usd_per_run", [("tenant_id", "=", "*")]),
}


def agentledger(binary, lake, *args, check=True):
    out = subprocess.run(
        [binary, "--lake", str(lake), *args], check=check, capture_output=True, text=True
    )
    return out.stdout


def sql(binary, lake, query):
    return json.loads(agentledger(binary, lake, "sql", "--format", "json", query))


def sql_literal(value):
    if isinstance(value, str):
        return f"'{value}'"
    if isinstance(value, datetime.date):
        return f"DATE '{value.isoformat()}'"
    return str(value)


def where(filters):
    return " AND ".join(f"{c} {op} {sql_literal(v)}" for c, op, v in filters)


def decimal(value):
    return None if value is None else Decimal(str(value))


def duckdb_with_delta():
    """A DuckDB connection with the delta extension from the PyPI package."""
    version = duckdb.__version__
    extension = (
        pathlib.Path(duckdb_extension_delta.__file__).parent
        / "extensions"
        / f"v{version}"
        / "delta.duckdb_extension"
    )
    if not extension.exists():
        sys.exit(f"no delta extension for DuckDB {version} at {extension}: pin matching versions")
    con = duckdb.connect()
    con.execute(f"LOAD '{extension}'")
    return con


def ours(binary, lake, table, money, filters):
    """What agentledger says about a table: rows, the exact sum, filtered rows."""
    facts = {"rows": sql(binary, lake, f"SELECT count(*) AS n FROM {table}")[0]["n"]}
    if money:
        s = sql(binary, lake, f"SELECT CAST(sum({money}) AS VARCHAR) AS s FROM {table}")[0]["s"]
        facts["sum"] = decimal(s)
    for f in filters:
        facts[f] = sql(binary, lake, f"SELECT count(*) AS n FROM {table} WHERE {where([f])}")[0]["n"]
    if table == "events":
        rows = sql(binary, lake, "SELECT CAST(date AS VARCHAR) AS d, count(*) AS n FROM events GROUP BY 1")
        facts["per date"] = {r["d"]: r["n"] for r in rows}
        facts["ids"] = sql(binary, lake, "SELECT count(DISTINCT event_id) AS n FROM events")[0]["n"]
    return facts


def with_deltalake(path, table, money, filters):
    dt = DeltaTable(str(path))
    data = dt.to_pyarrow_table()
    facts = {"rows": data.num_rows}
    if money:
        facts["sum"] = decimal(pc.sum(data[money]).as_py())
    dataset = dt.to_pyarrow_dataset()
    ops = {"=": lambda a, b: a == b, ">": lambda a, b: a > b, "<": lambda a, b: a < b}
    for f in filters:
        column, op, value = f
        # Through the dataset, whose fragments carry the log's partition
        # values and statistics: wrong statistics would drop rows here.
        facts[f] = dataset.count_rows(filter=ops[op](pc.field(column), value))
    if table == "events":
        dates = data["date"].cast("string")
        counts = pc.value_counts(dates)
        facts["per date"] = {c["values"].as_py(): c["counts"].as_py() for c in counts}
        facts["ids"] = pc.count_distinct(data["event_id"]).as_py()
    return facts


def with_polars(path, table, money, filters):
    frame = pl.scan_delta(str(path))
    facts = {"rows": frame.select(pl.len()).collect().item()}
    if money:
        facts["sum"] = decimal(frame.select(pl.col(money).sum()).collect().item())
    ops = {"=": lambda a, b: a == b, ">": lambda a, b: a > b, "<": lambda a, b: a < b}
    for f in filters:
        column, op, value = f
        facts[f] = frame.filter(ops[op](pl.col(column), value)).select(pl.len()).collect().item()
    if table == "events":
        per_date = frame.group_by(pl.col("date").cast(pl.Utf8).alias("d")).agg(pl.len()).collect()
        facts["per date"] = dict(zip(per_date["d"], per_date["len"]))
        facts["ids"] = frame.select(pl.col("event_id").n_unique()).collect().item()
    return facts


def with_duckdb(con, path, table, money, filters):
    scan = f"delta_scan('{path}')"
    facts = {"rows": con.execute(f"SELECT count(*) FROM {scan}").fetchone()[0]}
    if money:
        facts["sum"] = decimal(con.execute(f"SELECT sum({money}) FROM {scan}").fetchone()[0])
    for f in filters:
        facts[f] = con.execute(f"SELECT count(*) FROM {scan} WHERE {where([f])}").fetchone()[0]
    if table == "events":
        rows = con.execute(f"SELECT CAST(date AS VARCHAR), count(*) FROM {scan} GROUP BY 1").fetchall()
        facts["per date"] = dict(rows)
        facts["ids"] = con.execute(f"SELECT count(DISTINCT event_id) FROM {scan}").fetchone()[0]
    return facts


def sample_parts(sample, out, parts):
    """The sample's lines dealt round-robin into `parts` files, so that every
    part touches every date partition (compaction then has work to do)."""
    lines = (sample / "events.ndjson").read_text().splitlines()
    paths = []
    for i in range(parts):
        path = out / f"part-{i}.ndjson"
        path.write_text("\n".join(lines[i::parts]) + "\n")
        paths.append(path)
    return paths


def large_input(sample, out, copies):
    """The sample's events again and again with new ids: an ingest of it
    takes long enough to be killed mid-way."""
    lines = []
    for line in (sample / "events.ndjson").read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and isinstance(event.get("event_id"), str):
            lines.append(event)
    path = out / "large.ndjson"
    with path.open("w") as f:
        for copy in range(copies):
            for event in lines:
                f.write(json.dumps({**event, "event_id": f"{event['event_id']}-copy{copy}"}) + "\n")
    return path


def main():
    binary = sys.argv[1]
    root = pathlib.Path(__file__).resolve().parents[2]
    sample = root / "sample-data"
    failures = 0
    passes = 0

    def check(name, expected, got):
        nonlocal failures, passes
        if expected == got:
            passes += 1
            print(f"ok    {name}: {got if not isinstance(got, dict) else f'{len(got)} keys'}")
        else:
            failures += 1
            print(f"FAIL  {name}: agentledger {expected!r} != {got!r}")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        lake = tmp / "lake"
        parts = sample_parts(sample, tmp, 3)

        agentledger(binary, lake, "load", "prices", str(sample / "model_prices.csv"))
        agentledger(binary, lake, "load", "plans", str(sample / "customer_plans.csv"))
        agentledger(binary, lake, "load", "policies", str(sample / "workflow_policies.csv"))
        for part in parts:
            agentledger(binary, lake, "ingest", str(part))

        # An ingest killed mid-way, and the kind of file such a kill leaves:
        # a whole Parquet file no commit names (here a copy of a committed
        # one, so a glob would count its rows twice).
        big = large_input(sample, tmp, 30)
        child = subprocess.Popen(
            [binary, "--lake", str(lake), "ingest", str(big)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.5)
        child.kill()
        child.wait()
        print(f"info  large ingest {'finished' if child.returncode == 0 else 'killed'}")
        committed = sorted((lake / "events").glob("date=2026-10-27/*.parquet"))
        shutil.copy(committed[0], committed[0].parent / "part-killed-0001.parquet")

        agentledger(binary, lake, "compact", "--min-files", "2")
        keep_from = datetime.date(2026, 10, 20)
        days = (datetime.datetime.now(datetime.timezone.utc).date() - keep_from).days
        agentledger(binary, lake, "retain", "--days", str(days))
        agentledger(binary, lake, "load", "prices", str(sample / "model_prices.csv"))
        # Part 0 again: its events dated before the cutoff are new again.
        agentledger(binary, lake, "ingest", str(parts[0]))
        # And once more: nothing new, no commit.
        agentledger(binary, lake, "ingest", str(parts[0]))

        con = duckdb_with_delta()
        for table, (money, filters) in TABLES.items():
            expected = ours(binary, lake, table, money, filters)
            path = lake / table
            for reader, facts in (
                ("deltalake", with_deltalake(path, table, money, filters)),
                ("polars", with_polars(path, table, money, filters)),
                ("duckdb", with_duckdb(con, path, table, money, filters)),
            ):
                for key, value in expected.items():
                    check(f"{reader} {table} {key if isinstance(key, str) else where([key])}", value, facts[key])

        # The Delta logs say which lake version they reflect.
        version = len(list((lake / "_log").glob("*.json")))
        for table in TABLES:
            dt = DeltaTable(str(lake / table))
            info = dt.history(1)[0]
            check(f"{table} reflects a lake version", True, 1 <= info["agentledgerVersion"] <= version)

        # Without the Delta log, a glob sees more than was committed.
        glob = lake / "events" / "*" / "*.parquet"
        try:
            (n,) = con.execute(
                f"SELECT count(*) FROM read_parquet('{glob}', hive_partitioning = true)"
            ).fetchone()
        except duckdb.Error:
            n = "unreadable"
        committed_rows = sql(binary, lake, "SELECT count(*) AS n FROM events")[0]["n"]
        check("a plain glob over events/ differs from the committed rows", True, n != committed_rows)

        # A table with no file yet is an empty Delta table, not an error.
        empty = tmp / "empty"
        agentledger(binary, empty, "load", "plans", str(sample / "customer_plans.csv"))
        for table in ("events", "quarantine", "model_prices", "run_parts", "workflow_policies"):
            path = empty / table
            check(f"deltalake empty {table}", 0, DeltaTable(str(path)).to_pyarrow_table().num_rows)
            check(f"polars empty {table}", 0, pl.scan_delta(str(path)).select(pl.len()).collect().item())
            check(
                f"duckdb empty {table}",
                0,
                con.execute(f"SELECT count(*) FROM delta_scan('{path}')").fetchone()[0],
            )

    print(f"{passes} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
