//! The one Arrow schema of every stored table.
//!
//! Writers, readers and tests all take their schema from here. Money is
//! `Decimal128(38, 12)`, timestamps are UTC microseconds. The Hive partition
//! column `date` is not stored inside the files (DuckDB, Polars and Spark
//! take it from the directory name); [`partition_field`] describes it for
//! readers that add it back.

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Decimal precision of every money column.
pub const MONEY_PRECISION: u8 = 38;
/// Decimal scale (fractional digits) of every money column.
pub const MONEY_SCALE: i8 = 12;

/// Table holding every stored event.
pub const EVENTS: &str = "events";
/// Table holding every quarantined line.
pub const QUARANTINE: &str = "quarantine";
/// Reference table of model prices.
pub const MODEL_PRICES: &str = "model_prices";
/// Reference table of customer plans.
pub const CUSTOMER_PLANS: &str = "customer_plans";
/// Reference table of workflow policies (SPEC section 8).
pub const WORKFLOW_POLICIES: &str = "workflow_policies";
/// Derived table of per-run partial sums (`run_parts.sql`), kept up to date
/// as events arrive so that `runs` reads runs, not every event.
pub const RUN_PARTS: &str = "run_parts";

/// Key index of `events` (sorted key files, [`crate::keyfile`]): each
/// stored event's id hash, content hash and date. Not a table readers see.
pub const EVENT_INDEX: &str = "event_index";
/// Key index of `quarantine`: each quarantined line's key and date.
pub const QUARANTINE_INDEX: &str = "quarantine_index";

/// The index table of a table that has one.
pub fn index_of(table: &str) -> Option<&'static str> {
    match table {
        EVENTS => Some(EVENT_INDEX),
        QUARANTINE => Some(QUARANTINE_INDEX),
        _ => None,
    }
}

/// The Arrow type of money.
pub fn money() -> DataType {
    DataType::Decimal128(MONEY_PRECISION, MONEY_SCALE)
}

/// The Arrow type of timestamps: microseconds, UTC.
pub fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The Hive partition column shared by the partitioned tables.
pub fn partition_field() -> Field {
    Field::new("date", DataType::Date32, false)
}

fn text(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true)
}

fn int(name: &str) -> Field {
    Field::new(name, DataType::Int64, true)
}

/// Columns of `events`, in file order. Fields of one event type are null on
/// the others; names shared by several types (`tool`, `status`, `kind`, ...)
/// share a column.
pub static EVENTS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new("ts", timestamp(), false),
        Field::new("tenant_id", DataType::Utf8, false),
        Field::new("run_id", DataType::Utf8, false),
        text("attributes"),
        // run_started
        text("workflow"),
        text("agent_version"),
        text("prompt_version"),
        // model_call
        text("model"),
        text("provider"),
        int("input_tokens"),
        int("output_tokens"),
        int("cached_input_tokens"),
        int("reasoning_tokens"),
        Field::new("cost_usd", money(), true),
        int("latency_ms"),
        text("status"),
        Field::new("cache_hit", DataType::Boolean, true),
        // tool_call, policy_block, approval
        text("tool"),
        text("access"),
        text("idempotency_key"),
        text("rule"),
        text("decision"),
        text("approver"),
        // human_override, feedback
        text("kind"),
        text("actor"),
        text("reason"),
        text("note"),
        // run_finished
        text("outcome"),
        text("cap_hit"),
        // provenance
        Field::new("source", DataType::Utf8, false),
        Field::new("line", DataType::Int64, false),
        Field::new("ingest_id", DataType::Utf8, false),
        Field::new("ingested_at", timestamp(), false),
        Field::new("content_hash", DataType::Int64, false),
    ]))
});

/// Columns of `quarantine`: one row per line that was not stored as an event.
/// Partitioned by the UTC date of the ingest (a bad line may have no valid
/// `ts`).
pub static QUARANTINE_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("ingest_id", DataType::Utf8, false),
        Field::new("ingested_at", timestamp(), false),
        Field::new("source", DataType::Utf8, false),
        Field::new("line", DataType::Int64, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("message", DataType::Utf8, false),
        text("event_id"),
        Field::new("raw_line", DataType::Utf8, false),
    ]))
});

/// Columns of `model_prices` (SPEC section 2).
pub static MODEL_PRICES_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("model", DataType::Utf8, false),
        text("provider"),
        Field::new("effective_from", DataType::Date32, false),
        Field::new("input_usd_per_mtok", money(), false),
        Field::new("cached_input_usd_per_mtok", money(), true),
        Field::new("output_usd_per_mtok", money(), false),
    ]))
});

/// Columns of `customer_plans` (SPEC section 2).
pub static CUSTOMER_PLANS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("tenant_id", DataType::Utf8, false),
        Field::new("effective_from", DataType::Date32, false),
        Field::new("price_per_success_usd", money(), false),
        Field::new("monthly_fee_usd", money(), false),
    ]))
});

/// Columns of `workflow_policies` (SPEC section 8). `tenant_id` is a
/// tenant or `*` (every tenant). The three tool lists are stored as the
/// file has them, `|`-separated (entries trimmed, empty ones dropped), and
/// NULL where the file leaves the list empty; the two maxima are NULL where
/// the file leaves them empty.
pub static WORKFLOW_POLICIES_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("tenant_id", DataType::Utf8, false),
        Field::new("workflow", DataType::Utf8, false),
        Field::new("effective_from", DataType::Date32, false),
        text("allowed_tools"),
        text("forbidden_tools"),
        text("approval_required_tools"),
        int("max_tool_calls_per_run"),
        Field::new("max_cost_usd_per_run", money(), true),
    ]))
});

/// Columns of `run_parts`: the output of `transforms/sql/run_parts.sql`, one
/// row per run and part of the lake (a test there checks the two agree).
pub static RUN_PARTS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let ts = |name: &str| Field::new(name, timestamp(), true);
    let dec = |name: &str| Field::new(name, money(), true);
    let mut fields = vec![
        Field::new("tenant_id", DataType::Utf8, false),
        Field::new("run_id", DataType::Utf8, false),
        ts("started_at"),
        text("started_event_id"),
        text("workflow"),
        text("agent_version"),
        ts("finished_at"),
        text("finished_event_id"),
        text("outcome"),
        text("cap_hit"),
        int("run_finished_events"),
        dec("model_cost_usd"),
        dec("tool_cost_usd"),
    ];
    fields.extend(
        [
            "model_calls",
            "input_tokens",
            "cached_input_tokens",
            "output_tokens",
            "reasoning_tokens",
            "cache_hits",
            "model_errors",
            "unpriced_model_calls",
            "tool_calls",
            "tool_errors",
            "policy_blocks",
            "approvals_requested",
            "approvals_approved",
            "approvals_rejected",
            "human_overrides",
            "bad_run_reports",
            "events",
        ]
        .map(int),
    );
    fields.extend([ts("first_event_at"), ts("last_event_at")]);
    Arc::new(Schema::new(fields))
});

/// The file schema of a stored table by name.
pub fn table_schema(table: &str) -> Option<SchemaRef> {
    match table {
        EVENTS => Some(Arc::clone(&EVENTS_SCHEMA)),
        QUARANTINE => Some(Arc::clone(&QUARANTINE_SCHEMA)),
        MODEL_PRICES => Some(Arc::clone(&MODEL_PRICES_SCHEMA)),
        CUSTOMER_PLANS => Some(Arc::clone(&CUSTOMER_PLANS_SCHEMA)),
        WORKFLOW_POLICIES => Some(Arc::clone(&WORKFLOW_POLICIES_SCHEMA)),
        RUN_PARTS => Some(Arc::clone(&RUN_PARTS_SCHEMA)),
        _ => None,
    }
}

/// Whether a table is Hive-partitioned by `date`.
pub fn is_partitioned(table: &str) -> bool {
    matches!(table, EVENTS | QUARANTINE)
}
