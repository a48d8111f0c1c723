"""DuckDB and Polars read agentledger's lake directly and agree with it.

Usage: check_lake.py AGENTLEDGER_BINARY

Builds a lake from the bundled sample with the binary, then reads the
Parquet files with DuckDB and with Polars (no agentledger code involved) and
checks that row counts, per-date counts and exact cost sums equal what
`agentledger sql` reports. Exits non-zero on any difference.
"""

import json
import pathlib
import subprocess
import sys
import tempfile
from decimal import Decimal

import duckdb
import polars as pl


def agentledger(binary, lake, *args):
    out = subprocess.run(
        [binary, "--lake", str(lake), *args], check=True, capture_output=True, text=True
    )
    return out.stdout


def sql(binary, lake, query):
    return json.loads(agentledger(binary, lake, "sql", "--format", "json", query))


def main():
    binary = sys.argv[1]
    root = pathlib.Path(__file__).resolve().parents[2]
    failures = 0
    passes = 0

    def check(name, ours, theirs):
        nonlocal failures, passes
        if ours == theirs:
            passes += 1
            print(f"ok    {name}: {ours}")
        else:
            failures += 1
            print(f"FAIL  {name}: agentledger {ours!r} != {theirs!r}")

    with tempfile.TemporaryDirectory() as tmp:
        lake = pathlib.Path(tmp) / "lake"
        sample = root / "sample-data"
        agentledger(binary, lake, "load", "prices", str(sample / "model_prices.csv"))
        agentledger(binary, lake, "load", "prices", str(sample / "model_prices.csv"))
        agentledger(binary, lake, "load", "plans", str(sample / "customer_plans.csv"))
        agentledger(binary, lake, "ingest", str(sample / "events.ndjson"))

        ours = sql(
            binary,
            lake,
            "SELECT count(*) AS n, CAST(sum(cost_usd) AS VARCHAR) AS cost, "
            "count(DISTINCT event_id) AS ids FROM events",
        )[0]
        ours_by_date = {
            r["d"]: r["n"]
            for r in sql(
                binary,
                lake,
                "SELECT CAST(date AS VARCHAR) AS d, count(*) AS n FROM events GROUP BY 1",
            )
        }
        ours_model = sql(
            binary,
            lake,
            "SELECT count(*) AS n, CAST(sum(input_tokens) AS VARCHAR) AS tokens, "
            "CAST(sum(event_cost_usd) AS VARCHAR) AS cost, "
            "CAST(sum(cost_usd) AS VARCHAR) AS priced, "
            "sum(CASE WHEN cost_source = 'unpriced' THEN 1 ELSE 0 END) AS unpriced FROM model_calls",
        )[0]
        ours_quarantine = sql(binary, lake, "SELECT count(*) AS n FROM quarantine")[0]["n"]
        ours_prices = sql(binary, lake, "SELECT count(*) AS n FROM model_prices")[0]["n"]

        events_glob = str(lake / "events" / "*" / "*.parquet")
        prices_glob = str(lake / "model_prices" / "*" / "*.parquet")

        # DuckDB
        con = duckdb.connect()
        n, cost, ids = con.execute(
            f"SELECT count(*), sum(cost_usd), count(DISTINCT event_id) "
            f"FROM read_parquet('{events_glob}', hive_partitioning = true)"
        ).fetchone()
        check("duckdb events rows", ours["n"], n)
        check("duckdb distinct event ids", ours["ids"], ids)
        check("duckdb events cost sum", Decimal(ours["cost"]), Decimal(cost))
        by_date = dict(
            con.execute(
                f"SELECT CAST(date AS VARCHAR), count(*) FROM read_parquet('{events_glob}', "
                "hive_partitioning = true) GROUP BY 1"
            ).fetchall()
        )
        check("duckdb rows per date partition", ours_by_date, by_date)
        n, tokens, cost = con.execute(
            f"SELECT count(*), sum(input_tokens), sum(cost_usd) FROM read_parquet('{events_glob}', "
            "hive_partitioning = true) WHERE event_type = 'model_call'"
        ).fetchone()
        check("duckdb model_call rows", ours_model["n"], n)
        check("duckdb model_call input tokens", int(ours_model["tokens"]), int(tokens))
        check("duckdb model_call cost sum", Decimal(ours_model["cost"]), Decimal(cost))
        (q,) = con.execute(
            f"SELECT count(*) FROM read_parquet('{lake / 'quarantine' / '*' / '*.parquet'}')"
        ).fetchone()
        check("duckdb quarantine rows", ours_quarantine, q)
        # SPEC 2 pricing, computed independently by DuckDB from the stored
        # events and the price table in force: the event's own cost, else the
        # row with the latest effective_from on or before the call's UTC
        # date, else unpriced (0). Exact decimals throughout.
        priced, unpriced = con.execute(
            f"""
            WITH current AS (
                SELECT * FROM read_parquet('{prices_glob}', hive_partitioning = true)
                WHERE version = (SELECT max(version) FROM read_parquet('{prices_glob}', hive_partitioning = true))
            ),
            calls AS (
                SELECT * FROM read_parquet('{events_glob}', hive_partitioning = true)
                WHERE event_type = 'model_call'
            ),
            matched AS (
                SELECT c.event_id, c.cost_usd, c.input_tokens, c.cached_input_tokens, c.output_tokens,
                       p.input_usd_per_mtok AS i,
                       coalesce(p.cached_input_usd_per_mtok, p.input_usd_per_mtok) AS ci,
                       p.output_usd_per_mtok AS o,
                       row_number() OVER (PARTITION BY c.event_id ORDER BY p.effective_from DESC) AS pick
                FROM calls c
                LEFT JOIN current p ON p.model = c.model AND p.effective_from <= CAST(c.date AS DATE)
            )
            SELECT
                CAST(sum(CASE
                    WHEN cost_usd IS NOT NULL THEN cost_usd
                    WHEN i IS NOT NULL THEN CAST(
                        ((input_tokens - cached_input_tokens) * i + cached_input_tokens * ci + output_tokens * o)
                        * CAST('0.000001' AS DECIMAL(7, 6)) AS DECIMAL(38, 12))
                    ELSE CAST(0 AS DECIMAL(38, 12)) END) AS VARCHAR),
                count(*) FILTER (WHERE cost_usd IS NULL AND i IS NULL)
            FROM matched WHERE pick = 1
            """
        ).fetchone()
        check("duckdb priced model_call cost (SPEC 2)", Decimal(ours_model["priced"]), Decimal(priced))
        check("duckdb unpriced model_calls", int(ours_model["unpriced"]), int(unpriced))
        (p,) = con.execute(
            f"SELECT count(*) FROM read_parquet('{prices_glob}', hive_partitioning = true) "
            f"WHERE version = (SELECT max(version) FROM read_parquet('{prices_glob}', "
            "hive_partitioning = true))"
        ).fetchone()
        check("duckdb current model_prices rows", ours_prices, p)

        # Polars
        frame = pl.scan_parquet(str(lake / "events" / "**" / "*.parquet"), hive_partitioning=True)
        got = frame.select(
            pl.len().alias("n"),
            pl.col("cost_usd").sum().alias("cost"),
            pl.col("event_id").n_unique().alias("ids"),
        ).collect()
        check("polars events rows", ours["n"], got["n"][0])
        check("polars distinct event ids", ours["ids"], got["ids"][0])
        check("polars events cost sum", Decimal(ours["cost"]), Decimal(str(got["cost"][0])))
        per_date = (
            frame.group_by(pl.col("date").cast(pl.Utf8).alias("d")).agg(pl.len().alias("n")).collect()
        )
        check(
            "polars rows per date partition",
            ours_by_date,
            {d: n for d, n in zip(per_date["d"], per_date["n"])},
        )
        models = (
            frame.filter(pl.col("event_type") == "model_call")
            .select(pl.len().alias("n"), pl.col("cost_usd").sum().alias("cost"))
            .collect()
        )
        check("polars model_call rows", ours_model["n"], models["n"][0])
        check(
            "polars model_call cost sum",
            Decimal(ours_model["cost"]),
            Decimal(str(models["cost"][0])),
        )

    print(f"{passes} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
