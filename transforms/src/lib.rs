//! A DataFusion session over the lake: every table queryable by name.
//!
//! [`open_session`] reads the lake's commit log once and registers each
//! stored table as a [`LakeTable`] over exactly the files of that snapshot,
//! so a query never sees half of an ingest that is committing beside it.
//! Derived tables are SQL views whose text lives in `sql/*.sql`, embedded
//! here and readable by analysts.

pub mod definitions;
pub mod engine;
pub mod join_guard;
pub mod memory;
pub mod parts;
pub mod passthrough;
pub mod range_lookup;
pub mod runs;
pub mod scope;
mod table;
mod to_char;
pub mod udf;

use std::sync::Arc;

use agentledger_lake::Lake;
use agentledger_lake::log::{FileEntry, Snapshot};
use agentledger_lake::schema::{
    CUSTOMER_PLANS, EVENTS, MODEL_PRICES, QUARANTINE, RUN_PARTS, WORKFLOW_POLICIES,
};
use datafusion::datasource::{ViewTable, provider_as_source};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder, ScalarUDF};
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};

pub use definitions::definitions;
pub use scope::Scope;
pub use table::{LakeTable, LakeTableParts};

/// Result with this crate's error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors while opening or querying the lake.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The lake could not be read.
    #[error(transparent)]
    Lake(#[from] agentledger_lake::Error),
    /// DataFusion failed to plan or run a query.
    #[error("{0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    /// A statement that would change data was refused.
    #[error(
        "refused: agentledger sql is read-only and this statement would create, change or delete data ({0}); use agentledger ingest / load to change the lake"
    )]
    ReadOnly(String),
    /// A setting (an environment variable) has a value that cannot be used.
    #[error("{0}")]
    Setting(String),
}

/// `model_calls.sql`: each model call with its cost.
pub const MODEL_CALLS_SQL: &str = include_str!("../sql/model_calls.sql");

/// `tool_calls.sql`: the tool-call events.
pub const TOOL_CALLS_SQL: &str = include_str!("../sql/tool_calls.sql");

/// Views derived from the events, by name: `(name, SQL)`.
pub const VIEWS: &[(&str, &str)] = &[
    ("model_calls", MODEL_CALLS_SQL),
    ("tool_calls", TOOL_CALLS_SQL),
];

/// `run_parts.sql`: per-run partial sums of a set of events.
pub const RUN_PARTS_SQL: &str = include_str!("../sql/run_parts.sql");

/// `merge_parts.sql`: one part per run, merged from `run_parts`.
pub const MERGE_PARTS_SQL: &str = include_str!("../sql/merge_parts.sql");

/// `touched_parts.sql`: the parts of the runs that parts newer than the
/// base touch.
pub const TOUCHED_PARTS_SQL: &str = include_str!("../sql/touched_parts.sql");

/// `merge_on_read.sql`: `merge_parts.sql`'s result, regrouping only the
/// runs that parts newer than the base touch.
pub const MERGE_ON_READ_SQL: &str = include_str!("../sql/merge_on_read.sql");

/// `runs.sql`: one row per run, from the merged parts.
pub const RUNS_SQL: &str = include_str!("../sql/runs.sql");

/// The stored tables every session registers.
pub const STORED_TABLES: &[&str] = &[
    EVENTS,
    QUARANTINE,
    MODEL_PRICES,
    CUSTOMER_PLANS,
    WORKFLOW_POLICIES,
];

/// Opens a session over the lake's current snapshot.
pub async fn open_session(lake: &Lake) -> Result<SessionContext> {
    let snapshot = Snapshot::load(lake).await?;
    session_at(lake, &snapshot).await
}

/// Opens a session over a given snapshot.
///
/// `run_parts` is the stored parts that are current plus, for events no
/// current part covers yet (a new ingest, a price load not yet followed by a
/// rebuild, parts made with other [`definitions`]), the same sums computed
/// from those events on the fly; `runs` merges them. See [`runs`] for how the stored parts are kept up to date.
pub async fn session_at(lake: &Lake, snapshot: &Snapshot) -> Result<SessionContext> {
    session_scoped(lake, snapshot, &Scope::everything(), Strings::Utf8).await
}

/// How a session's stored tables type their string columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strings {
    /// Arrow's `Utf8`: for sessions whose batches Rust code reads.
    Utf8,
    /// Arrow's `Utf8View` ([`LakeTable::with_string_views`]): faster scans
    /// and group-bys, for sessions whose results go straight to people
    /// (`agentledger sql`, the SQL server). The values are the same.
    Views,
}

/// [`session_at`] as `scope` sees it: every stored table with a
/// `tenant_id` column, and so every view, limited to the scope's tenants,
/// and the quarantine left out unless the scope sees it.
pub async fn session_scoped(
    lake: &Lake,
    snapshot: &Snapshot,
    scope: &Scope,
    strings: Strings,
) -> Result<SessionContext> {
    let remote = engine::remote();
    let ctx = base_session(lake, remote)?;
    // A remote engine reads strings as `Utf8`: Ballista turns string views
    // off (Arrow Flight cannot carry their frames). The values are the same.
    let strings = if remote.is_some() {
        Strings::Utf8
    } else {
        strings
    };
    let store_url = store_url(lake)?;
    for table in STORED_TABLES {
        if *table == QUARANTINE && !scope.sees_quarantine() {
            continue;
        }
        let provider = LakeTable::new(lake, snapshot, table, store_url.clone()).with_scope(scope);
        let provider = match strings {
            Strings::Utf8 => provider,
            Strings::Views => provider.with_string_views(),
        };
        ctx.register_table(*table, Arc::new(provider))?;
    }
    register_views(&ctx).await?;

    let coverage = snapshot.run_coverage(definitions());
    let scan = |files: &[&FileEntry], name: &str| -> Result<LogicalPlan> {
        let stored =
            LakeTable::with_files(lake, RUN_PARTS, files, store_url.clone()).with_scope(scope);
        Ok(LogicalPlanBuilder::scan(name, provider_as_source(Arc::new(stored)), None)?.build()?)
    };
    // The parts of events no current part covers, computed on the fly.
    let pending = if coverage.uncovered_events.is_empty() {
        None
    } else {
        let files: Vec<&FileEntry> = coverage.uncovered_events.iter().map(|(_, f)| *f).collect();
        let (_, pending) = run_parts_of_bucket(lake, snapshot, &files, None, scope).await?;
        Some(pending.into_unoptimized_plan())
    };
    let with_pending = |plan: LogicalPlan| -> Result<LogicalPlan> {
        Ok(match &pending {
            Some(p) => LogicalPlanBuilder::from(plan).union(p.clone())?.build()?,
            None => plan,
        })
    };
    let all_parts = with_pending(scan(&coverage.parts, RUN_PARTS)?)?;
    register_view(&ctx, RUN_PARTS, all_parts.clone(), None)?;
    let merged = if coverage.unique {
        // Parts written with one row per run need no merging.
        ctx.sql("SELECT * FROM run_parts").await?
    } else if !coverage.base_parts.is_empty() && pending.is_none() {
        // Merge on read: only the runs that parts newer than the base
        // touch are regrouped. Not with parts computed on the fly: the
        // views would compute them once per read of `newer_parts` (three),
        // which costs more than regrouping the stored parts.
        register_view(
            &ctx,
            "base_parts",
            scan(&coverage.base_parts, "base_parts")?,
            None,
        )?;
        let newer = with_pending(scan(&coverage.newer_parts, "newer_parts")?)?;
        register_view(&ctx, "newer_parts", newer, None)?;
        let touched = ctx.sql(TOUCHED_PARTS_SQL).await?.into_unoptimized_plan();
        // merge_parts.sql reads `run_parts`: planned over the touched parts,
        // then the view of every part is put back.
        ctx.deregister_table(RUN_PARTS)?;
        register_view(&ctx, RUN_PARTS, touched, None)?;
        let merged_touched = ctx.sql(MERGE_PARTS_SQL).await?.into_unoptimized_plan();
        ctx.deregister_table(RUN_PARTS)?;
        register_view(&ctx, RUN_PARTS, all_parts, None)?;
        register_view(&ctx, "merged_touched", merged_touched, None)?;
        let merged = ctx.sql(MERGE_ON_READ_SQL).await?;
        // The plan holds the views it read; their names need not stay.
        for name in ["base_parts", "newer_parts", "merged_touched"] {
            ctx.deregister_table(name)?;
        }
        merged
    } else {
        ctx.sql(MERGE_PARTS_SQL).await?
    };
    register_view(&ctx, "merged_parts", merged.into_unoptimized_plan(), None)?;
    let runs = ctx.sql(RUNS_SQL).await?.into_unoptimized_plan();
    register_view(&ctx, "runs", runs, Some(RUNS_SQL))?;
    Ok(ctx)
}

/// A session with agentledger's settings and functions and the lake's
/// object store, but no tables. It runs under the process's memory budget
/// ([`memory::budget`]): operators that can spill do so to disk when they
/// reach their share, and a query that cannot fit fails with
/// `ResourcesExhausted` ([`memory::exhausted_message`] says it for people;
/// [`join_guard`] keeps nested-loop joins from panicking instead).
///
/// With a `remote` engine, the session plans here and executes there.
fn base_session(lake: &Lake, remote: Option<&Arc<dyn engine::Remote>>) -> Result<SessionContext> {
    // DATAFUSION_* variables (target partitions, batch size...) apply.
    let mut config = SessionConfig::from_env()?.with_information_schema(true);
    let parquet = &mut config.options_mut().execution.parquet;
    parquet.pushdown_filters = true;
    parquet.reorder_filters = true;
    let budget = memory::budget().map_err(Error::Setting)?;
    budget.tune(&mut config);
    let runtime = budget.runtime_env().map_err(Error::Setting)?;
    let mut state = with_rules(
        SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features(),
    )
    .build();
    if let Some(remote) = remote {
        if lake.store_url().scheme() == "memory" {
            return Err(Error::Setting(format!(
                "the lake {} is in this process's memory, which the engine {} cannot read; use a lake on disk or in object storage",
                lake.display(),
                remote.describe()
            )));
        }
        state = remote.upgrade(state)?;
    }
    let ctx = SessionContext::new_with_state(state);
    for function in functions() {
        ctx.register_udf(function.as_ref().clone());
    }
    ctx.register_object_store(lake.store_url(), Arc::clone(lake.store()));
    Ok(ctx)
}

/// agentledger's own SQL functions: `div_money`, `run_bucket`, and
/// `to_char` in place of DataFusion's own, with the same answers (see the
/// module). A session registers them after DataFusion's, so that ours win;
/// an engine in another process must know them too.
pub fn functions() -> Vec<Arc<ScalarUDF>> {
    vec![
        Arc::new(udf::DivMoney::udf()),
        Arc::new(udf::RunBucket::udf()),
        Arc::new(to_char::ToCharRuns::udf()),
    ]
}

/// agentledger's optimizer rules added to a session being built: every
/// engine that plans agentledger's queries uses them.
pub fn with_rules(builder: SessionStateBuilder) -> SessionStateBuilder {
    builder
        .with_physical_optimizer_rule(Arc::new(join_guard::GuardNestedLoopJoins))
        // Queries over model_calls that read no cost skip the price join.
        .with_optimizer_rule(Arc::new(range_lookup::DropUnreadRangeLookup))
}

async fn register_views(ctx: &SessionContext) -> Result<()> {
    for (name, sql) in VIEWS {
        let plan = ctx.sql(sql).await?.into_unoptimized_plan();
        register_view(ctx, name, plan, Some(sql))?;
    }
    Ok(())
}

fn register_view(
    ctx: &SessionContext,
    name: &str,
    plan: LogicalPlan,
    sql: Option<&str>,
) -> Result<()> {
    let view = ViewTable::new(plan, sql.map(str::to_string));
    ctx.register_table(name, Arc::new(view))?;
    Ok(())
}

/// One slice of the runs: those whose `run_bucket` of `count` is `index`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bucket {
    pub index: u64,
    pub count: u64,
}

impl Bucket {
    fn filter(self) -> String {
        format!(
            "WHERE run_bucket(tenant_id, run_id, {}) = {}",
            self.count, self.index
        )
    }
}

/// The lake's object store as DataFusion names it.
fn store_url(lake: &Lake) -> Result<ObjectStoreUrl> {
    Ok(ObjectStoreUrl::parse(lake.store_url().as_str())?)
}

/// `run_parts.sql` over exactly the events in `files`, priced with the
/// snapshot's model prices: a session of its own, and the query.
pub(crate) async fn run_parts_over(
    lake: &Lake,
    snapshot: &Snapshot,
    files: &[&FileEntry],
) -> Result<(SessionContext, DataFrame)> {
    run_parts_of_bucket(lake, snapshot, files, None, &Scope::everything()).await
}

/// [`run_parts_over`] the events of `files` whose run is in `bucket`, if
/// given, and in `scope`.
pub(crate) async fn run_parts_of_bucket(
    lake: &Lake,
    snapshot: &Snapshot,
    files: &[&FileEntry],
    bucket: Option<Bucket>,
    scope: &Scope,
) -> Result<(SessionContext, DataFrame)> {
    let ctx = base_session(lake, None)?;
    let store_url = store_url(lake)?;
    let events = LakeTable::with_files(lake, EVENTS, files, store_url.clone()).with_scope(scope);
    match bucket {
        None => {
            ctx.register_table(EVENTS, Arc::new(events))?;
        }
        Some(bucket) => {
            ctx.register_table("bucket_events", Arc::new(events))?;
            let sql = format!("SELECT * FROM bucket_events {}", bucket.filter());
            let plan = ctx.sql(&sql).await?.into_unoptimized_plan();
            register_view(&ctx, EVENTS, plan, None)?;
        }
    }
    let prices = LakeTable::new(lake, snapshot, MODEL_PRICES, store_url);
    ctx.register_table(MODEL_PRICES, Arc::new(prices))?;
    register_views(&ctx).await?;
    let df = ctx.sql(RUN_PARTS_SQL).await?;
    Ok((ctx, df))
}

/// The parts of one bucket of runs merged into one row per run: the parts
/// in `parts` together with those computed from the events in `events`.
pub(crate) async fn merged_parts_of_bucket(
    lake: &Lake,
    snapshot: &Snapshot,
    parts: &[&FileEntry],
    events: &[&FileEntry],
    bucket: Bucket,
) -> Result<(SessionContext, DataFrame)> {
    let (ctx, new_parts) =
        run_parts_of_bucket(lake, snapshot, events, Some(bucket), &Scope::everything()).await?;
    let store_url = store_url(lake)?;
    let stored = LakeTable::with_files(lake, RUN_PARTS, parts, store_url);
    ctx.register_table("stored_parts", Arc::new(stored))?;
    let sql = format!("SELECT * FROM stored_parts {}", bucket.filter());
    let plan = LogicalPlanBuilder::from(ctx.sql(&sql).await?.into_unoptimized_plan())
        .union(new_parts.into_unoptimized_plan())?
        .build()?;
    register_view(&ctx, RUN_PARTS, plan, None)?;
    let df = ctx.sql(MERGE_PARTS_SQL).await?;
    Ok((ctx, df))
}

/// Plans `sql` as a read-only query: DDL, DML (INSERT, UPDATE, DELETE,
/// COPY) and other statements are refused.
pub async fn query(ctx: &SessionContext, sql: &str) -> Result<DataFrame> {
    let options = datafusion::execution::context::SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    match ctx.sql_with_options(sql, options).await {
        Ok(df) => Ok(df),
        Err(e) => {
            let text = e.to_string();
            if text.contains("not supported")
                && (text.contains("DDL") || text.contains("DML") || text.contains("Statement"))
            {
                Err(Error::ReadOnly(
                    text.trim_start_matches("Error during planning: ")
                        .to_string(),
                ))
            } else {
                Err(e.into())
            }
        }
    }
}
