#!/usr/bin/env python3
"""The peer jobs agentledger's benchmark measures itself against.

Each job is what a competent DuckDB or Polars user would write to do the same
work as agentledger without it. A benchmark driver runs every job as a
separate process, so this script does exactly one job and exits:

    peers.py convert duckdb|polars|datafusion EVENTS.ndjson OUTDIR
        NDJSON events (SPEC section 1) to Parquet, Hive-partitioned by the UTC
        date of `ts` (OUTDIR/date=YYYY-MM-DD/*.parquet, zstd). OUTDIR should
        not exist yet. Prints {"rows": N} as one JSON line. `datafusion` is
        the engine agentledger itself is built on (its Python package, with
        arrow-rs's JSON reader and Parquet writer): the bare conversion on
        agentledger's own stack, and it leaves `attributes` out (arrow-rs
        reads an object only into a struct of known fields, not as text),
        so it does less than the other two.

    peers.py metrics duckdb|polars LAKE [--out FILE]
        `agentledger metrics --by tenant_id,week --format csv`, computed from
        the Parquet files of an agentledger lake with no agentledger code:
        LAKE/events/**/*.parquet and the newest version=N of
        LAKE/model_prices/ and LAKE/customer_plans/. Writes the same CSV to
        stdout or FILE.

    peers.py check OURS.csv THEIRS.csv
        Compares agentledger's metrics CSV with a peer's: the same rows, keys
        and counts equal, money equal as exact decimals, rates within 1e-9
        (an empty cell is null and equals only an empty cell). Prints every
        difference; exits 1 on any.

Every engine runs with 2 threads. Each engine is imported only inside its own
job, so a job never pays for the other engine's import.

What `convert` does not do, that `agentledger ingest` does: validation and
quarantine of bad lines, duplicate `event_id` detection, defaults for
optional fields, keeping unknown top-level fields inside `attributes`, and
provenance columns. A line that is not JSON or has a wrong type makes the
peers stop with an error, and out-of-range values are stored as they are: run
them on clean input.

`metrics` reads every events file it finds, including any that a lake holds
but has not committed yet (agentledger reads only committed files); for a
benchmark on a quiet lake the two are the same.

Money is exact throughout: Decimal(38, 12) sums, and every division of money
(a cost per success, a prorated monthly fee) is done on integer units of
1e-12 USD and rounded half to even: DuckDB's DECIMAL / INTEGER is a DOUBLE,
and Polars does not document how its Decimal division rounds.

Run with the project's venv: Python 3.11, duckdb, polars, datafusion.
"""

import argparse
import csv
import json
import os
import re
import sys
from decimal import Decimal
from pathlib import Path

THREADS = 2

# --------------------------------------------------------------------------
# The NDJSON event fields (SPEC section 1), in agentledger's column order
# (lake/src/schema.rs), with the type each is read as. `cost_usd` is read as
# text because it may be a JSON number or a decimal string, then cast to an
# exact decimal; `ts` is RFC 3339 with `Z` or an offset and is stored as a UTC
# timestamp; `attributes` is an object, stored as JSON text.
EVENT_FIELDS = [
    ("event_id", "text"),
    ("event_type", "text"),
    ("ts", "timestamp"),
    ("tenant_id", "text"),
    ("run_id", "text"),
    ("attributes", "json"),
    ("workflow", "text"),
    ("agent_version", "text"),
    ("prompt_version", "text"),
    ("model", "text"),
    ("provider", "text"),
    ("input_tokens", "int"),
    ("output_tokens", "int"),
    ("cached_input_tokens", "int"),
    ("reasoning_tokens", "int"),
    ("cost_usd", "money"),
    ("latency_ms", "int"),
    ("status", "text"),
    ("cache_hit", "bool"),
    ("tool", "text"),
    ("access", "text"),
    ("idempotency_key", "text"),
    ("rule", "text"),
    ("decision", "text"),
    ("approver", "text"),
    ("kind", "text"),
    ("actor", "text"),
    ("reason", "text"),
    ("note", "text"),
    ("outcome", "text"),
    ("cap_hit", "text"),
]

# The columns of `agentledger metrics --by tenant_id,week --format csv`.
KEY_COLUMNS = ["tenant_id", "week"]
METRIC_COLUMNS = [
    "runs", "successes", "success_rate", "cost_usd", "cost_per_success_usd",
    "override_rate", "cap_hit_rate", "model_calls", "input_tokens",
    "cached_input_tokens", "output_tokens", "cache_hits", "unpriced_model_calls",
    "tool_calls", "tool_errors", "tool_error_rate", "policy_blocks",
    "policy_block_rate", "approvals_requested", "approvals_rejected",
    "bad_run_reports", "revenue_usd", "margin_usd", "gross_margin",
]
OUTPUT_COLUMNS = KEY_COLUMNS + METRIC_COLUMNS
# Text columns that name a group (any `--by` key), compared as text by `check`.
TEXT_KEYS = {"tenant_id", "workflow", "agent_version", "date", "week", "month"}


def is_money(column):
    return column.endswith("_usd")


def is_rate(column):
    return column.endswith("_rate") or column == "gross_margin"


# --------------------------------------------------------------------------
# The lake's layout (SPEC section 4, docs/lake.md): events are Hive-partitioned
# by date; every `agentledger load` of a reference table writes a new
# LAKE/<table>/version=N/ folder and the highest N is the table in force.
# Anything else in the lake (_log/, quarantine/, ...) is not read.

def events_glob(lake):
    return str(Path(lake) / "events" / "**" / "*.parquet")


def reference_glob(lake, table):
    """The Parquet files of the newest version of a reference table, or None
    when the table was never loaded."""
    versions = []
    root = Path(lake) / table
    if root.is_dir():
        for folder in root.iterdir():
            found = re.fullmatch(r"version=(\d+)", folder.name)
            if found and folder.is_dir() and any(folder.glob("*.parquet")):
                versions.append((int(found.group(1)), folder))
    if not versions:
        return None
    return str(max(versions)[1] / "*.parquet")


# --------------------------------------------------------------------------
# DuckDB

DUCKDB_TYPES = {
    "text": "VARCHAR",
    "int": "BIGINT",
    "bool": "BOOLEAN",
    "timestamp": "TIMESTAMPTZ",
    "money": "VARCHAR",
    "json": "JSON",
}


def sql_text(value):
    """A SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def duckdb_connect():
    import duckdb

    con = duckdb.connect(config={"threads": THREADS})
    # Dates and ISO weeks of TIMESTAMPTZ values are taken in UTC.
    con.execute("SET TimeZone = 'UTC'")
    return con


def duckdb_convert(events, outdir):
    con = duckdb_connect()
    columns = "{" + ", ".join(
        f"{sql_text(name)}: {sql_text(DUCKDB_TYPES[kind])}" for name, kind in EVENT_FIELDS
    ) + "}"
    (rows,) = con.execute(
        f"""
        COPY (
            SELECT
                * REPLACE (CAST(cost_usd AS DECIMAL(38, 12)) AS cost_usd),
                CAST(timezone('UTC', ts) AS DATE) AS date
            FROM read_ndjson({sql_text(events)}, columns = {columns})
        ) TO {sql_text(outdir)} (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (date))
        """
    ).fetchone()
    return rows


# Exact money division for DuckDB, whose DECIMAL / INTEGER is a DOUBLE:
# x (DECIMAL(38, 12), >= 0) / d (a count) as integer units of 1e-12, rounded
# half to even, back to DECIMAL(38, 12); NULL when d = 0.
DUCKDB_MACROS = """
CREATE MACRO money_units(x) AS CAST(x * 1000000000000 AS HUGEINT);
CREATE MACRO units_money(u) AS
    CAST(CAST(u AS DECIMAL(38, 0)) * CAST('0.000000000001' AS DECIMAL(13, 12)) AS DECIMAL(38, 12));
CREATE MACRO div_half_even(n, d) AS
    n // d + CASE WHEN 2 * (n % d) > d OR (2 * (n % d) = d AND (n // d) % 2 = 1) THEN 1 ELSE 0 END;
CREATE MACRO div_money(x, d) AS
    CASE WHEN d = 0 THEN NULL ELSE units_money(div_half_even(money_units(x), d)) END;
"""

# The reference tables as agentledger stores them (lake/src/schema.rs), for a
# table that was never loaded.
DUCKDB_EMPTY_REFERENCE = {
    "model_prices": "model VARCHAR, provider VARCHAR, effective_from DATE, "
    "input_usd_per_mtok DECIMAL(38, 12), cached_input_usd_per_mtok DECIMAL(38, 12), "
    "output_usd_per_mtok DECIMAL(38, 12)",
    "customer_plans": "tenant_id VARCHAR, effective_from DATE, "
    "price_per_success_usd DECIMAL(38, 12), monthly_fee_usd DECIMAL(38, 12)",
}

# agentledger's transforms/sql/{model_calls,runs}.sql and
# queries/sql/{metrics,revenue,margin}.sql for tenant x week, cut down to the
# columns this output needs.
DUCKDB_METRICS_SQL = """
WITH
-- Each price row is in force from its effective_from until the model's next one.
prices AS (
    SELECT
        model,
        effective_from,
        LEAD(effective_from) OVER (PARTITION BY model ORDER BY effective_from) AS effective_until,
        CAST(input_usd_per_mtok AS DECIMAL(38, 6)) AS input_price,
        CAST(COALESCE(cached_input_usd_per_mtok, input_usd_per_mtok) AS DECIMAL(38, 6)) AS cached_input_price,
        CAST(output_usd_per_mtok AS DECIMAL(38, 6)) AS output_price
    FROM model_prices
),
-- SPEC 2: a call costs its own cost_usd, else its tokens at the price in force
-- on its UTC date (prices have at most 6 fractional digits, so the cost is
-- exact at 12), else 0 and it is unpriced.
model_calls AS (
    SELECT
        c.tenant_id,
        c.run_id,
        c.input_tokens,
        c.cached_input_tokens,
        c.output_tokens,
        c.cache_hit,
        c.cost_usd IS NULL AND p.model IS NULL AS unpriced,
        CASE
            WHEN c.cost_usd IS NOT NULL THEN c.cost_usd
            WHEN p.model IS NOT NULL THEN CAST(
                (
                    CAST(c.input_tokens - c.cached_input_tokens AS DECIMAL(20, 0)) * p.input_price
                    + CAST(c.cached_input_tokens AS DECIMAL(20, 0)) * p.cached_input_price
                    + CAST(c.output_tokens AS DECIMAL(20, 0)) * p.output_price
                ) * CAST('0.000001' AS DECIMAL(7, 6))
                AS DECIMAL(38, 12))
            ELSE CAST(0 AS DECIMAL(38, 12))
        END AS cost_usd
    FROM events c
    LEFT JOIN prices p
        ON p.model = c.model
        AND c.date >= p.effective_from
        AND (p.effective_until IS NULL OR c.date < p.effective_until)
    WHERE c.event_type = 'model_call'
),
model AS (
    SELECT
        tenant_id,
        run_id,
        COUNT(*) AS model_calls,
        SUM(input_tokens) AS input_tokens,
        SUM(cached_input_tokens) AS cached_input_tokens,
        SUM(output_tokens) AS output_tokens,
        COUNT(*) FILTER (WHERE cache_hit) AS cache_hits,
        COUNT(*) FILTER (WHERE unpriced) AS unpriced_model_calls,
        SUM(cost_usd) AS model_cost_usd
    FROM model_calls
    GROUP BY tenant_id, run_id
),
-- A run's other counts, over all of its events whatever their ts.
counts AS (
    SELECT
        tenant_id,
        run_id,
        COUNT(*) FILTER (WHERE event_type = 'tool_call') AS tool_calls,
        COUNT(*) FILTER (WHERE event_type = 'tool_call' AND status IN ('error', 'timeout')) AS tool_errors,
        SUM(cost_usd) FILTER (WHERE event_type = 'tool_call') AS tool_cost_usd,
        COUNT(*) FILTER (WHERE event_type = 'policy_block') AS policy_blocks,
        COUNT(*) FILTER (WHERE event_type = 'approval' AND decision = 'requested') AS approvals_requested,
        COUNT(*) FILTER (WHERE event_type = 'approval' AND decision = 'rejected') AS approvals_rejected,
        COUNT(*) FILTER (WHERE event_type = 'human_override') AS human_overrides,
        COUNT(*) FILTER (WHERE event_type = 'feedback' AND kind = 'bad_run_report') AS bad_run_reports
    FROM events
    GROUP BY tenant_id, run_id
),
-- A run is finished by its latest run_finished by ts (ties: greatest event_id).
finishes AS (
    SELECT tenant_id, run_id, ts AS finished_at, outcome, cap_hit
    FROM events
    WHERE event_type = 'run_finished'
    QUALIFY ROW_NUMBER() OVER (PARTITION BY tenant_id, run_id ORDER BY ts DESC, event_id DESC) = 1
),
-- Finished runs only: metrics count nothing else.
runs AS (
    SELECT
        f.tenant_id,
        f.run_id,
        CAST(f.finished_at AS DATE) AS date,
        CAST(date_trunc('week', CAST(f.finished_at AS DATE)) AS DATE) AS week,
        c.human_overrides > 0 AS overridden,
        f.outcome = 'success' AND c.human_overrides = 0 AS succeeded,
        f.cap_hit IS NOT NULL AS capped,
        CAST(COALESCE(m.model_cost_usd, 0) + COALESCE(c.tool_cost_usd, 0) AS DECIMAL(38, 12)) AS cost_usd,
        COALESCE(m.model_calls, 0) AS model_calls,
        COALESCE(m.input_tokens, 0) AS input_tokens,
        COALESCE(m.cached_input_tokens, 0) AS cached_input_tokens,
        COALESCE(m.output_tokens, 0) AS output_tokens,
        COALESCE(m.cache_hits, 0) AS cache_hits,
        COALESCE(m.unpriced_model_calls, 0) AS unpriced_model_calls,
        c.tool_calls,
        c.tool_errors,
        c.policy_blocks,
        c.approvals_requested,
        c.approvals_rejected,
        c.bad_run_reports
    FROM finishes f
    JOIN counts c ON c.tenant_id = f.tenant_id AND c.run_id = f.run_id
    LEFT JOIN model m ON m.tenant_id = f.tenant_id AND m.run_id = f.run_id
),
metrics AS (
    SELECT
        tenant_id,
        week,
        COUNT(*) AS runs,
        COUNT(*) FILTER (WHERE succeeded) AS successes,
        COUNT(*) FILTER (WHERE overridden) AS overridden_runs,
        COUNT(*) FILTER (WHERE capped) AS cap_hit_runs,
        CAST(SUM(cost_usd) AS DECIMAL(38, 12)) AS cost_usd,
        SUM(model_calls) AS model_calls,
        SUM(input_tokens) AS input_tokens,
        SUM(cached_input_tokens) AS cached_input_tokens,
        SUM(output_tokens) AS output_tokens,
        SUM(cache_hits) AS cache_hits,
        SUM(unpriced_model_calls) AS unpriced_model_calls,
        SUM(tool_calls) AS tool_calls,
        SUM(tool_errors) AS tool_errors,
        SUM(policy_blocks) AS policy_blocks,
        SUM(approvals_requested) AS approvals_requested,
        SUM(approvals_rejected) AS approvals_rejected,
        SUM(bad_run_reports) AS bad_run_reports
    FROM runs
    GROUP BY tenant_id, week
),
-- Each plan row is in force from its effective_from until the tenant's next one.
plans AS (
    SELECT
        tenant_id,
        effective_from,
        LEAD(effective_from) OVER (PARTITION BY tenant_id ORDER BY effective_from) AS effective_until,
        price_per_success_usd,
        monthly_fee_usd
    FROM customer_plans
),
-- Revenue per success: the price in force on each succeeded run's date.
success_revenue AS (
    SELECT r.tenant_id, r.week, SUM(p.price_per_success_usd) AS success_revenue_usd
    FROM runs r
    JOIN plans p
        ON p.tenant_id = r.tenant_id
        AND r.date >= p.effective_from
        AND (p.effective_until IS NULL OR r.date < p.effective_until)
    WHERE r.succeeded
    GROUP BY r.tenant_id, r.week
),
-- Monthly fees: each of the week's seven days earns the fee in force on it
-- divided by the days of its month; the days under one plan row within one
-- month are one term, fee x days / days_in_month, rounded half to even.
days AS (
    SELECT m.tenant_id, m.week, m.week + CAST(i AS INTEGER) AS day
    FROM metrics m, range(7) AS offsets(i)
),
fee_terms AS (
    SELECT
        d.tenant_id,
        d.week,
        p.monthly_fee_usd,
        COUNT(*) AS days,
        day(last_day(MIN(d.day))) AS days_in_month
    FROM days d
    JOIN plans p
        ON p.tenant_id = d.tenant_id
        AND d.day >= p.effective_from
        AND (p.effective_until IS NULL OR d.day < p.effective_until)
    GROUP BY d.tenant_id, d.week, p.effective_from, p.monthly_fee_usd, date_trunc('month', d.day)
),
fees AS (
    SELECT tenant_id, week, SUM(div_money(monthly_fee_usd * days, days_in_month)) AS fee_revenue_usd
    FROM fee_terms
    GROUP BY tenant_id, week
),
margin AS (
    SELECT
        m.*,
        CAST(COALESCE(s.success_revenue_usd, 0) + COALESCE(f.fee_revenue_usd, 0) AS DECIMAL(38, 12)) AS revenue_usd
    FROM metrics m
    LEFT JOIN success_revenue s ON s.tenant_id = m.tenant_id AND s.week = m.week
    LEFT JOIN fees f ON f.tenant_id = m.tenant_id AND f.week = m.week
)
SELECT
    tenant_id,
    week,
    runs,
    successes,
    CAST(successes AS DOUBLE) / runs AS success_rate,
    cost_usd,
    div_money(cost_usd, successes) AS cost_per_success_usd,
    CAST(overridden_runs AS DOUBLE) / runs AS override_rate,
    CAST(cap_hit_runs AS DOUBLE) / runs AS cap_hit_rate,
    model_calls,
    input_tokens,
    cached_input_tokens,
    output_tokens,
    cache_hits,
    unpriced_model_calls,
    tool_calls,
    tool_errors,
    CAST(tool_errors AS DOUBLE) / NULLIF(tool_calls, 0) AS tool_error_rate,
    policy_blocks,
    CAST(policy_blocks AS DOUBLE) / NULLIF(tool_calls + policy_blocks, 0) AS policy_block_rate,
    approvals_requested,
    approvals_rejected,
    bad_run_reports,
    revenue_usd,
    CAST(revenue_usd - cost_usd AS DECIMAL(38, 12)) AS margin_usd,
    CASE
        WHEN revenue_usd = 0 THEN NULL
        ELSE CAST(revenue_usd - cost_usd AS DOUBLE) / CAST(revenue_usd AS DOUBLE)
    END AS gross_margin
FROM margin
ORDER BY tenant_id, week
"""


def duckdb_events(lake):
    """The lake's events as DuckDB reads them: every events file, with the
    `date` partition column as a DATE."""
    return (f"read_parquet({sql_text(events_glob(lake))}, "
            "hive_partitioning = true, hive_types = {'date': DATE})")


def duckdb_metrics(lake):
    con = duckdb_connect()
    con.execute(DUCKDB_MACROS)
    con.execute(f"CREATE VIEW events AS SELECT * FROM {duckdb_events(lake)}")
    for table, columns in DUCKDB_EMPTY_REFERENCE.items():
        files = reference_glob(lake, table)
        if files is None:
            con.execute(f"CREATE TABLE {table} ({columns})")
        else:
            con.execute(
                f"CREATE VIEW {table} AS "
                f"SELECT * FROM read_parquet({sql_text(files)}, hive_partitioning = false)"
            )
    result = con.execute(DUCKDB_METRICS_SQL)
    names = [column[0] for column in result.description]
    assert names == OUTPUT_COLUMNS, names
    return result.fetchall()


# --------------------------------------------------------------------------
# Polars

def import_polars():
    # Polars sizes its thread pool once, at import.
    os.environ["POLARS_MAX_THREADS"] = str(THREADS)
    import polars as pl

    return pl


def polars_convert(events, outdir):
    pl = import_polars()
    money = pl.Decimal(38, 12)
    # Every field is read with an explicit type; `cost_usd` and `ts` as text,
    # converted below; `attributes` (an object) as its JSON text.
    read_as = {
        "text": pl.String,
        "int": pl.Int64,
        "bool": pl.Boolean,
        "timestamp": pl.String,
        "money": pl.String,
        "json": pl.String,
    }
    schema = {name: read_as[kind] for name, kind in EVENT_FIELDS}
    (
        pl.scan_ndjson(events, schema=schema)
        .with_columns(
            pl.col("ts").str.to_datetime(
                "%Y-%m-%dT%H:%M:%S%.f%#z", time_unit="us", time_zone="UTC"
            ),
            pl.col("cost_usd").cast(money),
        )
        .with_columns(date=pl.col("ts").dt.date())
        .sink_parquet(
            pl.PartitionBy(outdir, key="date", include_key=False),
            compression="zstd",
            mkdir=True,
        )
    )
    # The sink does not report what it wrote: count it from the files' footers.
    written = pl.scan_parquet(str(Path(outdir) / "**" / "*.parquet"), hive_partitioning=True)
    return written.select(pl.len()).collect().item()


# --------------------------------------------------------------------------
# DataFusion: only `convert`, as the floor of a conversion on agentledger's own
# stack (agentledger's metrics are DataFusion already).

DATAFUSION_TYPES = {
    "text": "VARCHAR",
    "int": "BIGINT",
    "bool": "BOOLEAN",
    # RFC 3339 text with `Z` or an offset, read as the UTC instant.
    "timestamp": "TIMESTAMP",
    # A JSON number or a decimal string, read from its digits.
    "money": "DECIMAL(38, 12)",
}


def datafusion_convert(events, outdir):
    from datafusion import SessionConfig, SessionContext

    ctx = SessionContext(SessionConfig().with_target_partitions(THREADS))
    # `attributes` is left out: arrow-rs's JSON reader takes an object only
    # into a struct of known fields, and unknown fields are skipped.
    columns = ", ".join(
        f"{name} {DATAFUSION_TYPES[kind]}" for name, kind in EVENT_FIELDS if kind != "json"
    )
    ctx.sql(f"CREATE EXTERNAL TABLE events ({columns}) STORED AS JSON LOCATION {sql_text(events)}").collect()
    (batch,) = ctx.sql(
        f"""
        COPY (SELECT *, CAST(ts AS DATE) AS date FROM events)
        TO {sql_text(str(outdir).rstrip("/") + "/")} STORED AS PARQUET PARTITIONED BY (date)
        OPTIONS ('format.compression' 'zstd(1)')
        """
    ).collect()
    return batch.column(0)[0].as_py()


def polars_metrics(lake):
    pl = import_polars()
    money = pl.Decimal(38, 12)
    run = ["tenant_id", "run_id"]
    group = ["tenant_id", "week"]

    def div_money(x, d):
        """x / d for money x >= 0 and a count d, exact: integer units of
        1e-12, rounded half to even; null when d = 0."""
        units = (x * 10**12).cast(pl.Int128)
        quotient, remainder = units // d, units % d
        round_up = (2 * remainder > d) | ((2 * remainder == d) & (quotient % 2 == 1))
        return pl.when(d > 0).then(
            (quotient + round_up.cast(pl.Int128)).cast(money) / 10**12
        )

    def reference(table, schema):
        files = reference_glob(lake, table)
        if files is None:
            return pl.LazyFrame(schema=schema)
        return pl.scan_parquet(files, hive_partitioning=False)

    events = pl.scan_parquet(events_glob(lake), hive_partitioning=True)
    prices = reference(
        "model_prices",
        {
            "model": pl.String, "provider": pl.String, "effective_from": pl.Date,
            "input_usd_per_mtok": money, "cached_input_usd_per_mtok": money,
            "output_usd_per_mtok": money,
        },
    )
    plans = reference(
        "customer_plans",
        {
            "tenant_id": pl.String, "effective_from": pl.Date,
            "price_per_success_usd": money, "monthly_fee_usd": money,
        },
    )

    def is_type(name):
        return pl.col("event_type") == name

    # SPEC 2: a call costs its own cost_usd, else its tokens at the price row
    # in force on its UTC date (the latest effective_from on or before it: a
    # backward as-of join per model), else 0 and it is unpriced.
    price_rows = prices.select(
        "model",
        "effective_from",
        pl.col("input_usd_per_mtok").alias("input_price"),
        pl.coalesce("cached_input_usd_per_mtok", "input_usd_per_mtok").alias("cached_input_price"),
        pl.col("output_usd_per_mtok").alias("output_price"),
    ).sort("effective_from")
    calls = (
        events.filter(is_type("model_call"))
        .select(
            *run, "date", "model", "input_tokens", "cached_input_tokens",
            "output_tokens", "cache_hit", "cost_usd",
        )
        .sort("date")
        .join_asof(
            price_rows, left_on="date", right_on="effective_from", by="model",
            strategy="backward", check_sortedness=False,
        )
    )
    catalog_cost = (
        (pl.col("input_tokens") - pl.col("cached_input_tokens")) * pl.col("input_price")
        + pl.col("cached_input_tokens") * pl.col("cached_input_price")
        + pl.col("output_tokens") * pl.col("output_price")
    ) / 1_000_000  # exact: prices have at most 6 fractional digits
    model = calls.group_by(run).agg(
        pl.len().alias("model_calls"),
        pl.col("input_tokens").sum(),
        pl.col("cached_input_tokens").sum(),
        pl.col("output_tokens").sum(),
        pl.col("cache_hit").sum().alias("cache_hits"),
        (pl.col("cost_usd").is_null() & pl.col("input_price").is_null())
        .sum()
        .alias("unpriced_model_calls"),
        pl.when(pl.col("cost_usd").is_not_null())
        .then(pl.col("cost_usd"))
        .when(pl.col("input_price").is_not_null())
        .then(catalog_cost.cast(money))
        .otherwise(pl.lit(0).cast(money))
        .sum()
        .alias("model_cost_usd"),
    )

    # A run's other counts, over all of its events whatever their ts.
    tool_call = is_type("tool_call")
    counts = events.group_by(run).agg(
        tool_call.sum().alias("tool_calls"),
        (tool_call & pl.col("status").is_in(["error", "timeout"])).sum().alias("tool_errors"),
        pl.col("cost_usd").filter(tool_call).sum().alias("tool_cost_usd"),
        is_type("policy_block").sum().alias("policy_blocks"),
        (is_type("approval") & (pl.col("decision") == "requested")).sum().alias("approvals_requested"),
        (is_type("approval") & (pl.col("decision") == "rejected")).sum().alias("approvals_rejected"),
        is_type("human_override").sum().alias("human_overrides"),
        (is_type("feedback") & (pl.col("kind") == "bad_run_report")).sum().alias("bad_run_reports"),
    )

    # A run is finished by its latest run_finished by ts (ties: greatest
    # event_id); only finished runs count.
    def latest(column):
        return pl.col(column).sort_by("ts", "event_id").last()

    finishes = events.filter(is_type("run_finished")).group_by(run).agg(
        pl.col("ts").max().alias("finished_at"), latest("outcome"), latest("cap_hit")
    )
    runs = (
        finishes.join(counts, on=run, how="left")
        .join(model, on=run, how="left")
        .with_columns(
            pl.col(
                "model_calls", "input_tokens", "cached_input_tokens", "output_tokens",
                "cache_hits", "unpriced_model_calls",
            ).fill_null(0),
            pl.col("model_cost_usd", "tool_cost_usd").fill_null(pl.lit(0).cast(money)),
            pl.col("finished_at").dt.date().alias("date"),
        )
        .with_columns(
            pl.col("date").dt.truncate("1w").alias("week"),  # the ISO week's Monday
            (pl.col("human_overrides") > 0).alias("overridden"),
            ((pl.col("outcome") == "success") & (pl.col("human_overrides") == 0)).alias("succeeded"),
            (pl.col("model_cost_usd") + pl.col("tool_cost_usd")).alias("cost_usd"),
        )
    )
    summed = [
        "model_calls", "input_tokens", "cached_input_tokens", "output_tokens", "cache_hits",
        "unpriced_model_calls", "tool_calls", "tool_errors", "policy_blocks",
        "approvals_requested", "approvals_rejected", "bad_run_reports",
    ]
    metrics = runs.group_by(group).agg(
        pl.len().cast(pl.Int64).alias("runs"),
        pl.col("succeeded").sum().cast(pl.Int64).alias("successes"),
        pl.col("overridden").sum().alias("overridden_runs"),
        pl.col("cap_hit").is_not_null().sum().alias("cap_hit_runs"),
        pl.col("cost_usd").sum(),
        *[pl.col(name).sum().cast(pl.Int64) for name in summed],
    )

    # The plan in force on a day: the tenant's latest effective_from on or
    # before it (a backward as-of join per tenant).
    plan_rows = plans.select(
        "tenant_id", "effective_from", "price_per_success_usd", "monthly_fee_usd"
    ).sort("effective_from")

    def plan_on(frame, day):
        return frame.sort(day).join_asof(
            plan_rows, left_on=day, right_on="effective_from", by="tenant_id",
            strategy="backward", check_sortedness=False,
        )

    # Revenue per success: the price in force on each succeeded run's date.
    success_revenue = (
        plan_on(runs.filter("succeeded").select(*group, "date"), "date")
        .group_by(group)
        .agg(pl.col("price_per_success_usd").sum().alias("success_revenue_usd"))
    )
    # Monthly fees: each of the week's seven days earns the fee in force on it
    # divided by the days of its month; the days under one plan row within one
    # month are one term, fee x days / days_in_month, rounded half to even.
    days = metrics.select(
        *group,
        pl.date_ranges("week", pl.col("week") + pl.duration(days=6)).alias("day"),
    ).explode("day")
    fees = (
        plan_on(days, "day")
        .filter(pl.col("effective_from").is_not_null())
        .group_by(*group, "effective_from", pl.col("day").dt.month_start().alias("month"))
        .agg(
            pl.col("monthly_fee_usd").first(),
            pl.len().cast(pl.Int64).alias("days"),
            pl.col("day").dt.days_in_month().first().cast(pl.Int64).alias("days_in_month"),
        )
        .group_by(group)
        .agg(
            div_money(pl.col("monthly_fee_usd") * pl.col("days"), pl.col("days_in_month"))
            .sum()
            .alias("fee_revenue_usd")
        )
    )

    zero = pl.lit(0).cast(money)

    def ratio(part, whole):
        """part / whole as a fraction; null when whole = 0."""
        return pl.when(whole > 0).then(part / whole)

    result = (
        metrics.join(success_revenue, on=group, how="left")
        .join(fees, on=group, how="left")
        .with_columns(
            (
                pl.col("success_revenue_usd").fill_null(zero)
                + pl.col("fee_revenue_usd").fill_null(zero)
            ).alias("revenue_usd")
        )
        .with_columns((pl.col("revenue_usd") - pl.col("cost_usd")).alias("margin_usd"))
        .select(
            *group,
            "runs",
            "successes",
            (pl.col("successes") / pl.col("runs")).alias("success_rate"),
            "cost_usd",
            div_money(pl.col("cost_usd"), pl.col("successes")).alias("cost_per_success_usd"),
            (pl.col("overridden_runs") / pl.col("runs")).alias("override_rate"),
            (pl.col("cap_hit_runs") / pl.col("runs")).alias("cap_hit_rate"),
            "model_calls",
            "input_tokens",
            "cached_input_tokens",
            "output_tokens",
            "cache_hits",
            "unpriced_model_calls",
            "tool_calls",
            "tool_errors",
            ratio(pl.col("tool_errors"), pl.col("tool_calls")).alias("tool_error_rate"),
            "policy_blocks",
            ratio(
                pl.col("policy_blocks"), pl.col("tool_calls") + pl.col("policy_blocks")
            ).alias("policy_block_rate"),
            "approvals_requested",
            "approvals_rejected",
            "bad_run_reports",
            "revenue_usd",
            "margin_usd",
            pl.when(pl.col("revenue_usd") != 0)
            .then(pl.col("margin_usd").cast(pl.Float64) / pl.col("revenue_usd").cast(pl.Float64))
            .alias("gross_margin"),
        )
        .sort(group)
        .collect()
    )
    assert result.columns == OUTPUT_COLUMNS, result.columns
    return list(result.iter_rows())


# --------------------------------------------------------------------------
# Output and comparison

def cell(column, value):
    """A value as agentledger's CSV writes it: empty for null, money with 12
    fractional digits, rates as the shortest float text, dates ISO."""
    if value is None:
        return ""
    if is_money(column):
        return f"{Decimal(value):.12f}"
    if is_rate(column):
        return repr(float(value))
    return str(value)


def write_csv(rows, out):
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(OUTPUT_COLUMNS)
    for row in rows:
        writer.writerow([cell(column, value) for column, value in zip(OUTPUT_COLUMNS, row)])


def read_csv(path):
    with open(path, newline="") as file:
        reader = csv.DictReader(file)
        return reader.fieldnames or [], list(reader)


def same_value(column, ours, theirs):
    if ours == "" or theirs == "":
        return ours == theirs
    if is_money(column):
        return Decimal(ours) == Decimal(theirs)
    if is_rate(column):
        return abs(float(ours) - float(theirs)) <= 1e-9
    if column in TEXT_KEYS:
        return ours == theirs
    return int(ours) == int(theirs)


def check(ours_path, theirs_path):
    """Print every difference between two metrics CSVs; 0 when none."""
    our_columns, ours = read_csv(ours_path)
    their_columns, theirs = read_csv(theirs_path)
    differences = []
    if our_columns != their_columns:
        differences.append(f"columns differ:\n  ours   {our_columns}\n  theirs {their_columns}")
    keys = [column for column in our_columns if column in TEXT_KEYS]
    compared = [column for column in our_columns if column in their_columns and column not in keys]

    def by_key(rows, name):
        table = {}
        for row in rows:
            key = tuple(row.get(column, "") for column in keys)
            if key in table:
                differences.append(f"{name}: duplicate row {key}")
            table[key] = row
        return table

    our_rows, their_rows = by_key(ours, "ours"), by_key(theirs, "theirs")
    for key in sorted(our_rows.keys() - their_rows.keys()):
        differences.append(f"{key}: only in ours")
    for key in sorted(their_rows.keys() - our_rows.keys()):
        differences.append(f"{key}: only in theirs")
    for key in sorted(our_rows.keys() & their_rows.keys()):
        for column in compared:
            a, b = our_rows[key][column], their_rows[key][column]
            try:
                same = same_value(column, a, b)
            except (ArithmeticError, ValueError):
                same = False
            if not same:
                differences.append(f"{key} {column}: ours {a!r} theirs {b!r}")
    for line in differences:
        print(line)
    if differences:
        print(f"{len(differences)} differences")
        return 1
    print(f"same: {len(our_rows)} rows, {len(compared)} metric columns")
    return 0


# --------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    jobs = parser.add_subparsers(dest="job", required=True)
    convert = jobs.add_parser("convert", help="NDJSON events to date-partitioned Parquet")
    convert.add_argument("engine", choices=["duckdb", "polars", "datafusion"])
    convert.add_argument("events")
    convert.add_argument("outdir")
    metrics = jobs.add_parser("metrics", help="tenant x week metrics from a lake's Parquet")
    metrics.add_argument("engine", choices=["duckdb", "polars"])
    metrics.add_argument("lake")
    metrics.add_argument("--out", help="CSV file to write (default: stdout)")
    compare = jobs.add_parser("check", help="compare agentledger's metrics CSV with a peer's")
    compare.add_argument("ours")
    compare.add_argument("theirs")
    args = parser.parse_args()

    if args.job == "convert":
        job = {"duckdb": duckdb_convert, "polars": polars_convert, "datafusion": datafusion_convert}[
            args.engine
        ]
        rows = job(args.events, args.outdir)
        print(json.dumps({"rows": rows}))
        return 0
    if args.job == "metrics":
        job = duckdb_metrics if args.engine == "duckdb" else polars_metrics
        rows = job(args.lake)
        if args.out:
            with open(args.out, "w", newline="") as out:
                write_csv(rows, out)
        else:
            write_csv(rows, sys.stdout)
        return 0
    return check(args.ours, args.theirs)


if __name__ == "__main__":
    sys.exit(main())
