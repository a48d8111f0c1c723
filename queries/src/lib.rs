//! The metric definitions of SPEC section 3, as SQL files analysts can read.
//!
//! Each file in `sql/` is a complete query that runs as written (grouped by
//! tenant and ISO week where it groups at all). The commands reuse the same
//! text: lines that end in a marker comment (`-- @keys`, `-- @filter`,
//! `-- @period`, ...) are rewritten for the keys and period asked for, and
//! nothing else changes. The code holds no SQL of its own for a period:
//! `revenue.sql`'s three `@period` lines are replaced by those of
//! `period_date.sql`, `period_month.sql` or `period_range.sql`, found by
//! their marker (in the range's, `--from`/`--to` take the place of the dates
//! it is written for). [`open_session`] registers `metrics`, `revenue`,
//! `margin`, the weekly report's `weekly_accounts`, `weekly_totals` and
//! `cost_by_model`, and the readiness views of SPEC section 8
//! (`run_policies`, `tool_call_checks`, `readiness_runs`, `readiness`,
//! `readiness_offenders`) as views, so `agentledger sql` sees them by name
//! too.

pub mod gate;

use std::fmt::Write as _;
use std::sync::Arc;

use agentledger_lake::Lake;
use chrono::NaiveDate;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Decimal128Type, Int64Type};
use datafusion::datasource::ViewTable;
use datafusion::prelude::{DataFrame, SessionContext};

pub use agentledger_transforms::parts::PartsObserver;
pub use agentledger_transforms::runs::{
    RefreshOptions, RefreshSummary, refresh_runs, refresh_runs_with,
};
pub use agentledger_transforms::{Error, Scope, Strings};

/// Result with the session's error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `metrics.sql`: the SPEC §3 metrics of groups of finished runs.
pub const METRICS_SQL: &str = include_str!("../sql/metrics.sql");
/// `revenue.sql`: revenue of a tenant over a period.
pub const REVENUE_SQL: &str = include_str!("../sql/revenue.sql");
/// `period_date.sql`: the UTC date as the period of `revenue.sql`.
pub const PERIOD_DATE_SQL: &str = include_str!("../sql/period_date.sql");
/// `period_month.sql`: the calendar month as the period of `revenue.sql`.
pub const PERIOD_MONTH_SQL: &str = include_str!("../sql/period_month.sql");
/// `period_range.sql`: the `[--from, --to)` range as the period of `revenue.sql`.
pub const PERIOD_RANGE_SQL: &str = include_str!("../sql/period_range.sql");
/// The range `period_range.sql` is written for, which the command's
/// `--from` and `--to` replace.
const PERIOD_RANGE_AS_WRITTEN: (&str, &str) = ("DATE '2026-10-19'", "DATE '2026-10-26'");
/// `margin.sql`: metrics with revenue, margin and gross margin.
pub const MARGIN_SQL: &str = include_str!("../sql/margin.sql");
/// `open_runs.sql`: runs without a `run_finished`, and their cost so far.
pub const OPEN_RUNS_SQL: &str = include_str!("../sql/open_runs.sql");
/// `gate.sql`: runs and successes per agent version.
pub const GATE_SQL: &str = include_str!("../sql/gate.sql");
/// `timeline.sql`: one run's events in order with a running cost.
pub const TIMELINE_SQL: &str = include_str!("../sql/timeline.sql");

/// `run_policies.sql`: each run with the workflow policy in force for it.
pub const RUN_POLICIES_SQL: &str = include_str!("../sql/run_policies.sql");
/// `tool_call_checks.sql`: each tool call checked against its run's policy.
pub const TOOL_CALL_CHECKS_SQL: &str = include_str!("../sql/tool_call_checks.sql");
/// `readiness_runs.sql`: what SPEC section 8 checks of each finished run.
pub const READINESS_RUNS_SQL: &str = include_str!("../sql/readiness_runs.sql");
/// `readiness.sql`: the SPEC section 8 measures and verdicts of groups of runs.
pub const READINESS_SQL: &str = include_str!("../sql/readiness.sql");
/// `readiness_offenders.sql`: the runs that break each failed condition.
pub const READINESS_OFFENDERS_SQL: &str = include_str!("../sql/readiness_offenders.sql");

/// `cost_by_model.sql`: cost per tenant, week and model.
pub const COST_BY_MODEL_SQL: &str = include_str!("../sql/cost_by_model.sql");
/// `weekly_accounts.sql`: every tenant's week, runs or not, with margin.
pub const WEEKLY_ACCOUNTS_SQL: &str = include_str!("../sql/weekly_accounts.sql");
/// `weekly_totals.sql`: the weekly report's totals, summed from `weekly_accounts`.
pub const WEEKLY_TOTALS_SQL: &str = include_str!("../sql/weekly_totals.sql");

/// Every definition by file name, for documentation and tests.
pub const FILES: &[(&str, &str)] = &[
    ("cost_by_model.sql", COST_BY_MODEL_SQL),
    ("weekly_accounts.sql", WEEKLY_ACCOUNTS_SQL),
    ("weekly_totals.sql", WEEKLY_TOTALS_SQL),
    ("metrics.sql", METRICS_SQL),
    ("revenue.sql", REVENUE_SQL),
    ("period_date.sql", PERIOD_DATE_SQL),
    ("period_month.sql", PERIOD_MONTH_SQL),
    ("period_range.sql", PERIOD_RANGE_SQL),
    ("margin.sql", MARGIN_SQL),
    ("open_runs.sql", OPEN_RUNS_SQL),
    ("gate.sql", GATE_SQL),
    ("timeline.sql", TIMELINE_SQL),
    ("run_policies.sql", RUN_POLICIES_SQL),
    ("tool_call_checks.sql", TOOL_CALL_CHECKS_SQL),
    ("readiness_runs.sql", READINESS_RUNS_SQL),
    ("readiness.sql", READINESS_SQL),
    ("readiness_offenders.sql", READINESS_OFFENDERS_SQL),
];

/// The number of offending runs `readiness_offenders.sql` lists per group
/// and condition as written (its `@limit` line).
pub const OFFENDERS_AS_WRITTEN: u64 = 10;

/// Opens a session over the lake with every table and view: the stored
/// tables, `model_calls`, `tool_calls`, `runs`, and `metrics`, `revenue`,
/// `margin`, `weekly_accounts`, `cost_by_model` as written (tenant by ISO
/// week), and `weekly_totals` (by ISO week).
pub async fn open_session(lake: &Lake) -> Result<SessionContext> {
    let snapshot = agentledger_lake::log::Snapshot::load(lake).await?;
    open_session_scoped(lake, &snapshot, &Scope::everything(), Strings::Utf8).await
}

/// [`open_session`] for a person's ad-hoc SQL (`agentledger sql`): the
/// stored tables' string columns are Arrow string views
/// ([`Strings::Views`]), which scan and group faster; results print the
/// same.
pub async fn open_analyst_session(lake: &Lake) -> Result<SessionContext> {
    let snapshot = agentledger_lake::log::Snapshot::load(lake).await?;
    open_session_scoped(lake, &snapshot, &Scope::everything(), Strings::Views).await
}

/// [`open_session`] over `snapshot` as `scope` sees it: every view is
/// planned over the scope's rows ([`agentledger_transforms::scope`]).
pub async fn open_session_scoped(
    lake: &Lake,
    snapshot: &agentledger_lake::log::Snapshot,
    scope: &Scope,
    strings: Strings,
) -> Result<SessionContext> {
    let ctx = agentledger_transforms::session_scoped(lake, snapshot, scope, strings).await?;
    let weekly = MetricsQuery::new(vec![Key::TenantId, Key::Week], None, None);
    register_view(&ctx, "metrics", &weekly.metrics_sql()).await?;
    register_view(&ctx, "revenue", &weekly.revenue_sql().unwrap_or_default()).await?;
    register_view(&ctx, "margin", &weekly.margin_sql().unwrap_or_default()).await?;
    register_view(&ctx, "weekly_accounts", WEEKLY_ACCOUNTS_SQL).await?;
    register_view(&ctx, "weekly_totals", WEEKLY_TOTALS_SQL).await?;
    register_view(&ctx, "cost_by_model", COST_BY_MODEL_SQL).await?;
    register_view(&ctx, "run_policies", RUN_POLICIES_SQL).await?;
    register_view(&ctx, "tool_call_checks", TOOL_CALL_CHECKS_SQL).await?;
    register_view(&ctx, "readiness_runs", READINESS_RUNS_SQL).await?;
    register_view(&ctx, "readiness", READINESS_SQL).await?;
    register_view(&ctx, "readiness_offenders", READINESS_OFFENDERS_SQL).await?;
    Ok(ctx)
}

async fn register_view(ctx: &SessionContext, name: &str, sql: &str) -> Result<()> {
    let plan = ctx.sql(sql).await?.into_unoptimized_plan();
    ctx.deregister_table(name)?;
    ctx.register_table(name, Arc::new(ViewTable::new(plan, Some(sql.to_string()))))?;
    Ok(())
}

/// A grouping key of `agentledger metrics --by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// The customer account.
    TenantId,
    /// From the run's earliest `run_started`.
    Workflow,
    /// From the run's earliest `run_started`.
    AgentVersion,
    /// UTC date of `finished_at`.
    Date,
    /// Monday of the ISO week of `date`.
    Week,
    /// `YYYY-MM` of `date`.
    Month,
}

impl Key {
    /// Every key, in SPEC order.
    pub const ALL: [Key; 6] = [
        Key::TenantId,
        Key::Workflow,
        Key::AgentVersion,
        Key::Date,
        Key::Week,
        Key::Month,
    ];

    /// The column name.
    pub fn name(self) -> &'static str {
        match self {
            Key::TenantId => "tenant_id",
            Key::Workflow => "workflow",
            Key::AgentVersion => "agent_version",
            Key::Date => "date",
            Key::Week => "week",
            Key::Month => "month",
        }
    }

    /// Date, week or month: a key that an open run does not have.
    pub fn is_period(self) -> bool {
        matches!(self, Key::Date | Key::Week | Key::Month)
    }
}

/// Parses `--by`: a comma list of distinct keys.
pub fn parse_keys(text: &str) -> std::result::Result<Vec<Key>, String> {
    let mut keys = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let key = Key::ALL
            .into_iter()
            .find(|k| k.name() == part)
            .ok_or_else(|| {
                format!(
                    "unknown key `{part}`: choose from {}",
                    Key::ALL.map(Key::name).join(",")
                )
            })?;
        if keys.contains(&key) {
            return Err(format!("key `{part}` is given twice"));
        }
        keys.push(key);
    }
    Ok(keys)
}

/// What `agentledger metrics` asks: keys and an optional `[from, to)` cut
/// on the run's date.
#[derive(Debug, Clone)]
pub struct MetricsQuery {
    /// Grouping keys, in output order.
    pub keys: Vec<Key>,
    /// First date included.
    pub from: Option<NaiveDate>,
    /// First date excluded.
    pub to: Option<NaiveDate>,
}

/// The period revenue is computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeriodKind {
    Key(Key),
    Range(NaiveDate, NaiveDate),
}

impl MetricsQuery {
    /// A query for these keys and dates.
    pub fn new(keys: Vec<Key>, from: Option<NaiveDate>, to: Option<NaiveDate>) -> Self {
        Self { keys, from, to }
    }

    /// The period of revenue and margin, when SPEC §5 says they appear:
    /// keys `tenant_id` and one of date, week, month; or `tenant_id` alone
    /// with both `--from` and `--to`.
    fn period(&self) -> Option<PeriodKind> {
        if !self.keys.contains(&Key::TenantId) {
            return None;
        }
        let others: Vec<Key> = self
            .keys
            .iter()
            .copied()
            .filter(|k| *k != Key::TenantId)
            .collect();
        match (others.as_slice(), self.from, self.to) {
            ([p], _, _) if p.is_period() => Some(PeriodKind::Key(*p)),
            ([], Some(from), Some(to)) => Some(PeriodKind::Range(from, to)),
            _ => None,
        }
    }

    /// Whether revenue, margin and gross margin are part of the answer.
    pub fn has_revenue(&self) -> bool {
        self.period().is_some()
    }

    fn run_date_filter(&self, column: &str) -> String {
        let mut cond = String::new();
        if let Some(from) = self.from {
            let _ = write!(cond, " AND {column} >= DATE '{from}'");
        }
        if let Some(to) = self.to {
            let _ = write!(cond, " AND {column} < DATE '{to}'");
        }
        cond
    }

    /// `metrics.sql` for these keys and dates.
    pub fn metrics_sql(&self) -> String {
        let keys = join_keys(&self.keys, "");
        let filter = self.run_date_filter("date");
        render(METRICS_SQL, |marker, code| match marker {
            "keys" => keyed_line(code, "tenant_id, week", &keys),
            "filter" => Some(format!("{code}{filter}")),
            _ => Some(code.to_string()),
        })
    }

    /// `revenue.sql` for the period, when revenue applies: its `@period`
    /// lines are those of the period's file (`revenue.sql` itself for the
    /// ISO week).
    pub fn revenue_sql(&self) -> Option<String> {
        let mut lines = match self.period()? {
            PeriodKind::Key(Key::Date) => marked_lines(PERIOD_DATE_SQL, "period"),
            PeriodKind::Key(Key::Month) => marked_lines(PERIOD_MONTH_SQL, "period"),
            PeriodKind::Key(_) => marked_lines(REVENUE_SQL, "period"),
            PeriodKind::Range(from, to) => marked_lines(PERIOD_RANGE_SQL, "period")
                .into_iter()
                .map(|line| {
                    line.replace(PERIOD_RANGE_AS_WRITTEN.0, &format!("DATE '{from}'"))
                        .replace(PERIOD_RANGE_AS_WRITTEN.1, &format!("DATE '{to}'"))
                })
                .collect(),
        }
        .into_iter();
        let filter = self.run_date_filter("date");
        Some(render(REVENUE_SQL, |marker, code| {
            let indent = &code[..code.len() - code.trim_start().len()];
            match marker {
                // A file without its three lines is caught by the tests.
                "period" => Some(format!("{indent}{}", lines.next().unwrap_or_default())),
                // --from/--to cut every period's days to [from, to).
                "from" => Some(match self.from {
                    Some(from) => {
                        format!("{indent}greatest(period_start, DATE '{from}') AS period_start,")
                    }
                    None => code.to_string(),
                }),
                "to" => Some(match self.to {
                    Some(to) => format!("{indent}least(period_end, DATE '{to}') AS period_end"),
                    None => code.to_string(),
                }),
                "filter" => Some(format!("{code}{filter}")),
                _ => Some(code.to_string()),
            }
        }))
    }

    /// `margin.sql` for the period, when revenue applies. It reads the views
    /// `metrics` and `revenue`, which [`metrics`] registers for this query.
    pub fn margin_sql(&self) -> Option<String> {
        let period = self.period()?;
        let join = match period {
            PeriodKind::Key(k) => format!(
                "JOIN revenue r ON r.tenant_id = m.tenant_id AND r.period = m.{}",
                k.name()
            ),
            PeriodKind::Range(..) => "JOIN revenue r ON r.tenant_id = m.tenant_id".to_string(),
        };
        let order = join_keys(&self.keys, "m.");
        Some(render(MARGIN_SQL, |marker, code| match marker {
            "join" => Some(join.clone()),
            "order" => Some(format!("ORDER BY {order}")),
            _ => Some(code.to_string()),
        }))
    }

    /// `open_runs.sql` for the keys that apply to open runs (date, week and
    /// month do not: an open run has no finish date). `--from`/`--to` cut
    /// on the date of the run's latest event.
    pub fn open_runs_sql(&self) -> String {
        let keys: Vec<Key> = self
            .keys
            .iter()
            .copied()
            .filter(|k| !k.is_period())
            .collect();
        let keys = join_keys(&keys, "");
        let filter = self.run_date_filter("CAST(last_event_at AS DATE)");
        render(OPEN_RUNS_SQL, |marker, code| match marker {
            "keys" => keyed_line(code, "tenant_id", &keys),
            "filter" => Some(format!("{code}{filter}")),
            _ => Some(code.to_string()),
        })
    }

    /// `readiness.sql` for these keys and dates. It reads the `metrics`
    /// view for the same keys and dates, which [`readiness`] registers.
    pub fn readiness_sql(&self) -> String {
        let keys = join_keys(&self.keys, "");
        let g_keys = join_keys(&self.keys, "g.");
        let join = if self.keys.is_empty() {
            "CROSS JOIN metrics m".to_string()
        } else {
            let on: Vec<String> = self
                .keys
                .iter()
                .map(|k| format!("m.{0} = g.{0}", k.name()))
                .collect();
            format!("JOIN metrics m ON {}", on.join(" AND "))
        };
        let filter = self.run_date_filter("date");
        render(READINESS_SQL, |marker, code| match marker {
            "keys" => keyed_line(code, "tenant_id, week", &keys),
            "gkeys" => keyed_line(code, "g.tenant_id, g.week", &g_keys),
            "join" => Some(join.clone()),
            "filter" => Some(format!("{code}{filter}")),
            _ => Some(code.to_string()),
        })
    }

    /// `readiness_offenders.sql` for these keys and dates, listing at most
    /// `limit` runs per group and condition.
    pub fn readiness_offenders_sql(&self, limit: u64) -> String {
        let keys = join_keys(&self.keys, "");
        let partition = if keys.is_empty() {
            "condition".to_string()
        } else {
            format!("condition, {keys}")
        };
        let filter = self.run_date_filter("date");
        render(READINESS_OFFENDERS_SQL, |marker, code| match marker {
            "partition" => Some(code.replacen("condition, tenant_id, week", &partition, 1)),
            "order" => Some(code.replacen("condition, tenant_id, week", &partition, 1)),
            "limit" => Some(code.replacen(
                &format!("<= {OFFENDERS_AS_WRITTEN}"),
                &format!("<= {limit}"),
                1,
            )),
            "filter" => Some(format!("{code}{filter}")),
            _ => Some(code.to_string()),
        })
    }

    /// `gate.sql` with these dates.
    pub fn gate_sql(&self) -> String {
        let filter = self.run_date_filter("date");
        render(GATE_SQL, |marker, code| match marker {
            "filter" => Some(format!("{code}{filter}")),
            _ => Some(code.to_string()),
        })
    }
}

/// Plans the metrics of `query` on `ctx`: rows of `metrics.sql`, joined
/// with revenue and margin when they apply. Registers the `metrics` and
/// `revenue` views of this query on `ctx`.
pub async fn metrics(ctx: &SessionContext, query: &MetricsQuery) -> Result<DataFrame> {
    let metrics_sql = query.metrics_sql();
    match (query.revenue_sql(), query.margin_sql()) {
        (Some(revenue), Some(margin)) => {
            register_view(ctx, "metrics", &metrics_sql).await?;
            register_view(ctx, "revenue", &revenue).await?;
            Ok(ctx.sql(&margin).await?)
        }
        _ => Ok(ctx.sql(&metrics_sql).await?),
    }
}

/// Plans the readiness measures and verdicts of `query` on `ctx`
/// (`readiness.sql`). Registers the `metrics` view of this query on `ctx`,
/// whose SPEC section 3 measures the readiness rows carry.
pub async fn readiness(ctx: &SessionContext, query: &MetricsQuery) -> Result<DataFrame> {
    register_view(ctx, "metrics", &query.metrics_sql()).await?;
    Ok(ctx.sql(&query.readiness_sql()).await?)
}

/// Plans the offending runs of `query`'s groups, at most `limit` per group
/// and failed condition (`readiness_offenders.sql`).
pub async fn readiness_offenders(
    ctx: &SessionContext,
    query: &MetricsQuery,
    limit: u64,
) -> Result<DataFrame> {
    Ok(ctx.sql(&query.readiness_offenders_sql(limit)).await?)
}

/// Plans one run's row of `view` (`run_policies`, `readiness_runs`) or
/// its rows (`tool_call_checks`).
pub async fn run_rows(
    ctx: &SessionContext,
    view: &str,
    tenant_id: &str,
    run_id: &str,
) -> Result<DataFrame> {
    use datafusion::prelude::{col, lit};
    Ok(ctx.table(view).await?.filter(
        col("tenant_id")
            .eq(lit(tenant_id))
            .and(col("run_id").eq(lit(run_id))),
    )?)
}

/// The columns of `runs` that `metrics.sql`, `revenue.sql` and
/// [`caveats`] read.
const METRICS_RUN_COLUMNS: &[&str] = &[
    "tenant_id",
    "workflow",
    "agent_version",
    "finished",
    "cap_hit",
    "overridden",
    "succeeded",
    "date",
    "week",
    "month",
    "cost_usd",
    "model_calls",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "cache_hits",
    "unpriced_model_calls",
    "tool_calls",
    "tool_errors",
    "policy_blocks",
    "approvals_requested",
    "approvals_rejected",
    "bad_run_reports",
];

/// Reads `runs` once into memory (the columns [`metrics`] and [`caveats`]
/// use) and puts that in its place on `ctx`: the metrics, their revenue and
/// the caveats then scan it instead of merging the run parts four or five
/// times. Only for a session that asks nothing else of `runs`. The rows
/// count against the memory limit; when they would take more than a quarter
/// of it, `runs` is left as it is (each query merges the parts again, spilling
/// where it must).
///
/// Not on a remote engine (`--engine`): rows held in this process cannot
/// travel to it in a plan, and it merges the parts on its own executors.
pub async fn cache_runs_for_metrics(ctx: &SessionContext) -> Result<()> {
    if agentledger_transforms::engine::remote().is_some() {
        return Ok(());
    }
    let runs = ctx
        .table("runs")
        .await?
        .select_columns(METRICS_RUN_COLUMNS)?;
    let consumer = "cached runs (agentledger metrics)";
    if let Some(cached) = agentledger_transforms::memory::cache_counted(runs, consumer).await? {
        ctx.deregister_table("runs")?;
        ctx.register_table("runs", cached)?;
    }
    Ok(())
}

/// Plans the open runs of `query`.
pub async fn open_runs(ctx: &SessionContext, query: &MetricsQuery) -> Result<DataFrame> {
    Ok(ctx.sql(&query.open_runs_sql()).await?)
}

/// Plans one run's timeline.
pub async fn timeline(ctx: &SessionContext, tenant_id: &str, run_id: &str) -> Result<DataFrame> {
    let sql = render(TIMELINE_SQL, |marker, code| match marker {
        "run" => {
            let indent = &code[..code.len() - code.trim_start().len()];
            Some(format!(
                "{indent}WHERE e.tenant_id = {} AND e.run_id = {}",
                sql_string(tenant_id),
                sql_string(run_id)
            ))
        }
        _ => Some(code.to_string()),
    });
    Ok(ctx.sql(&sql).await?)
}

/// Lake-wide counts that every money-reporting command mentions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caveats {
    /// Model calls with no `cost_usd` and no price in force: counted at 0.
    pub unpriced_model_calls: u64,
    /// Runs without a `run_finished`, kept out of every metric.
    pub open_runs: u64,
    /// What the open runs have cost so far, in units of 10^-12 USD.
    pub open_cost: i128,
}

/// Counts unpriced calls and open runs over the whole lake.
pub async fn caveats(ctx: &SessionContext) -> Result<Caveats> {
    let batches = ctx
        .sql(
            // One pass over `runs`: every model call belongs to a run, so
            // the runs' unpriced counts add up to the lake's.
            "SELECT \
               COALESCE(SUM(unpriced_model_calls), 0) AS unpriced, \
               COALESCE(SUM(CASE WHEN finished THEN 0 ELSE 1 END), 0) AS open_runs, \
               CAST(COALESCE(SUM(CASE WHEN finished THEN 0 ELSE cost_usd END), 0) AS DECIMAL(38, 12)) AS open_cost \
             FROM runs",
        )
        .await?
        .collect()
        .await?;
    let mut out = Caveats::default();
    if let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) {
        let count = |i: usize| {
            let a = batch.column(i).as_primitive::<Int64Type>();
            if a.is_null(0) {
                0
            } else {
                u64::try_from(a.value(0)).unwrap_or(0)
            }
        };
        out.unpriced_model_calls = count(0);
        out.open_runs = count(1);
        let cost = batch.column(2).as_primitive::<Decimal128Type>();
        out.open_cost = if cost.is_null(0) { 0 } else { cost.value(0) };
    }
    Ok(out)
}

/// Formats 10^-12 units of money as decimal text with 12 digits.
pub fn money_text(units: i128) -> String {
    let sign = if units < 0 { "-" } else { "" };
    let abs = units.unsigned_abs();
    format!(
        "{sign}{}.{:012}",
        abs / 1_000_000_000_000,
        abs % 1_000_000_000_000
    )
}

/// A SQL string literal.
fn sql_string(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn join_keys(keys: &[Key], prefix: &str) -> String {
    keys.iter()
        .map(|k| format!("{prefix}{}", k.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The lines of `sql` marked `-- @marker`, without the comment and the
/// indent, in order.
fn marked_lines(sql: &str, marker: &str) -> Vec<String> {
    let mut out = Vec::new();
    render(sql, |m, code| {
        if m == marker {
            out.push(code.trim_start().to_string());
        }
        None
    });
    out
}

/// A `@keys` line with the default key list replaced; dropped when there are
/// no keys (`GROUP BY`/`ORDER BY` of nothing, or the keys of a select list).
fn keyed_line(code: &str, default: &str, keys: &str) -> Option<String> {
    if keys.is_empty() {
        None
    } else {
        Some(code.replacen(default, keys, 1))
    }
}

/// Rewrites the lines of `sql` that end with a `-- @marker` comment: `f`
/// gets the marker and the line without its comment, and returns the new
/// line, or `None` to drop it. Other lines are kept as they are.
pub fn render(sql: &str, mut f: impl FnMut(&str, &str) -> Option<String>) -> String {
    let mut out = String::with_capacity(sql.len());
    for line in sql.lines() {
        match line.rfind("-- @") {
            Some(at) => {
                let marker = line[at + 4..].trim();
                let code = line[..at].trim_end();
                if let Some(new) = f(marker, code) {
                    out.push_str(&new);
                    out.push('\n');
                }
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> Option<NaiveDate> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn keys_parse_in_order_and_refuse_unknown_or_repeated_names() {
        assert_eq!(
            parse_keys("week, tenant_id").unwrap(),
            vec![Key::Week, Key::TenantId]
        );
        assert!(
            parse_keys("tenant")
                .unwrap_err()
                .contains("unknown key `tenant`")
        );
        assert!(parse_keys("week,week").unwrap_err().contains("twice"));
        assert!(parse_keys("").unwrap().is_empty());
    }

    #[test]
    fn revenue_applies_exactly_where_spec_section_5_says() {
        let q = |keys: &str, from, to| MetricsQuery::new(parse_keys(keys).unwrap(), from, to);
        assert!(q("tenant_id,week", None, None).has_revenue());
        assert!(q("month,tenant_id", None, None).has_revenue());
        assert!(q("tenant_id,date", date("2026-01-01"), None).has_revenue());
        assert!(q("tenant_id", date("2026-01-01"), date("2026-02-01")).has_revenue());
        assert!(!q("tenant_id", date("2026-01-01"), None).has_revenue());
        assert!(!q("tenant_id", None, None).has_revenue());
        assert!(!q("tenant_id,week,month", None, None).has_revenue());
        assert!(!q("tenant_id,workflow,week", None, None).has_revenue());
        assert!(!q("week", None, None).has_revenue());
    }

    #[test]
    fn every_marker_line_of_the_files_is_rewritten_and_nothing_else() {
        let q = MetricsQuery::new(
            vec![Key::Workflow, Key::Month],
            date("2026-03-01"),
            date("2026-04-01"),
        );
        let sql = q.metrics_sql();
        assert!(!sql.contains("-- @"), "{sql}");
        assert_eq!(sql.matches("workflow, month").count(), 4, "{sql}");
        assert!(
            sql.contains(
                "WHERE finished AND date >= DATE '2026-03-01' AND date < DATE '2026-04-01'"
            )
        );
        // The unmarked lines are those of the file.
        let unmarked: Vec<&str> = METRICS_SQL
            .lines()
            .filter(|l| !l.contains("-- @"))
            .collect();
        let kept: Vec<&str> = sql.lines().filter(|l| unmarked.contains(l)).collect();
        assert_eq!(kept, unmarked);
        // No keys: one total row.
        let total = MetricsQuery::new(vec![], None, None).metrics_sql();
        assert!(
            !total.contains("GROUP BY") && !total.contains("ORDER BY"),
            "{total}"
        );
    }

    #[test]
    fn the_files_as_written_are_the_tenant_by_week_queries() {
        let weekly = MetricsQuery::new(vec![Key::TenantId, Key::Week], None, None);
        let strip = |s: &str| {
            s.lines()
                .map(|l| l.split("-- @").next().unwrap().trim_end().to_string())
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(strip(&weekly.metrics_sql()), strip(METRICS_SQL));
        assert_eq!(strip(&weekly.revenue_sql().unwrap()), strip(REVENUE_SQL));
        assert_eq!(strip(&weekly.margin_sql().unwrap()), strip(MARGIN_SQL));
        let by_tenant = MetricsQuery::new(vec![Key::TenantId], None, None);
        assert_eq!(strip(&by_tenant.open_runs_sql()), strip(OPEN_RUNS_SQL));
    }

    #[test]
    fn the_readiness_files_as_written_are_the_tenant_by_week_queries() {
        let strip = |s: &str| {
            s.lines()
                .map(|l| l.split("-- @").next().unwrap().trim_end().to_string())
                .collect::<Vec<_>>()
                .join("\n")
        };
        let weekly = MetricsQuery::new(vec![Key::TenantId, Key::Week], None, None);
        assert_eq!(strip(&weekly.readiness_sql()), strip(READINESS_SQL));
        assert_eq!(
            strip(&weekly.readiness_offenders_sql(OFFENDERS_AS_WRITTEN)),
            strip(READINESS_OFFENDERS_SQL)
        );
    }

    #[test]
    fn readiness_takes_the_keys_period_and_limit_on_its_marked_lines_only() {
        let q = MetricsQuery::new(
            vec![Key::Workflow, Key::Month],
            date("2026-03-01"),
            date("2026-04-01"),
        );
        let sql = q.readiness_sql();
        assert!(!sql.contains("-- @"), "{sql}");
        assert!(sql.contains("JOIN metrics m ON m.workflow = g.workflow AND m.month = g.month"));
        assert_eq!(sql.matches("g.workflow, g.month").count(), 2, "{sql}");
        assert!(sql.contains(
            "WHERE date IS NOT NULL AND date >= DATE '2026-03-01' AND date < DATE '2026-04-01'"
        ));
        let unmarked: Vec<&str> = READINESS_SQL
            .lines()
            .filter(|l| !l.contains("-- @"))
            .collect();
        let kept: Vec<&str> = sql.lines().filter(|l| unmarked.contains(l)).collect();
        assert_eq!(kept, unmarked);
        // No keys: one group over every run, joined with the one metrics row.
        let total = MetricsQuery::new(vec![], None, None).readiness_sql();
        assert!(
            total.contains("CROSS JOIN metrics m") && !total.contains("ORDER BY"),
            "{total}"
        );
        let offenders = q.readiness_offenders_sql(3);
        assert!(!offenders.contains("-- @"), "{offenders}");
        assert_eq!(
            offenders
                .matches("PARTITION BY condition, workflow, month")
                .count(),
            2
        );
        assert!(offenders.contains("WHERE rank <= 3"));
        assert!(offenders.contains("ORDER BY condition, workflow, month, rank"));
        let none = MetricsQuery::new(vec![], None, None).readiness_offenders_sql(1);
        assert_eq!(
            none.matches("PARTITION BY condition\n").count(),
            2,
            "{none}"
        );
    }

    #[test]
    fn every_file_names_its_grain_unit_and_definition() {
        for (name, sql) in FILES {
            for header in ["-- name:", "-- grain:", "-- unit:", "-- definition"] {
                assert!(sql.contains(header), "{name} lacks {header}");
            }
            let stem = name.trim_end_matches(".sql");
            assert!(
                sql.starts_with(&format!("-- name:  {stem}\n")),
                "{name} is not named {stem} on its first line"
            );
        }
        // Every file of sql/ is one of them, so a new file is checked too.
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/sql");
        for entry in std::fs::read_dir(dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".sql") {
                assert!(
                    FILES.iter().any(|(n, _)| *n == name),
                    "sql/{name} is not in FILES"
                );
            }
        }
    }

    #[test]
    fn every_period_of_revenue_comes_from_its_file() {
        let (from, to) = (date("2026-03-02"), date("2026-03-09"));
        let cases = [
            (vec![Key::TenantId, Key::Date], None, None, PERIOD_DATE_SQL),
            (
                vec![Key::TenantId, Key::Month],
                None,
                None,
                PERIOD_MONTH_SQL,
            ),
            (vec![Key::TenantId, Key::Week], None, None, REVENUE_SQL),
            (vec![Key::TenantId, Key::Week], from, to, REVENUE_SQL),
            (vec![Key::TenantId], from, to, PERIOD_RANGE_SQL),
        ];
        let unmarked: Vec<&str> = REVENUE_SQL
            .lines()
            .filter(|l| !l.contains("-- @"))
            .collect();
        for (keys, from, to, file) in cases {
            let sql = MetricsQuery::new(keys.clone(), from, to)
                .revenue_sql()
                .unwrap();
            assert!(!sql.contains("-- @"), "{sql}");
            // Three period lines in each file, and each in the query.
            let lines = marked_lines(file, "period");
            assert_eq!(lines.len(), 3, "{keys:?}");
            assert_eq!(marked_lines(REVENUE_SQL, "period").len(), 3);
            for line in lines {
                let line = match (from, to) {
                    (Some(f), Some(t)) if file == PERIOD_RANGE_SQL => line
                        .replace(PERIOD_RANGE_AS_WRITTEN.0, &format!("DATE '{f}'"))
                        .replace(PERIOD_RANGE_AS_WRITTEN.1, &format!("DATE '{t}'")),
                    _ => line,
                };
                assert!(sql.contains(&line), "{keys:?} lacks {line}:\n{sql}");
            }
            // The rest is revenue.sql as written.
            let kept: Vec<&str> = sql.lines().filter(|l| unmarked.contains(l)).collect();
            assert_eq!(kept, unmarked, "{keys:?}");
            if let (Some(f), Some(t)) = (from, to) {
                assert!(sql.contains(&format!("greatest(period_start, DATE '{f}')")));
                assert!(sql.contains(&format!("least(period_end, DATE '{t}')")));
                assert!(sql.contains(&format!("date >= DATE '{f}' AND date < DATE '{t}'")));
                assert!(!sql.contains("2026-10-"), "{sql}");
            }
        }
        // The range file is written for the range the code replaces.
        let range = marked_lines(PERIOD_RANGE_SQL, "period").join("\n");
        assert!(range.contains(PERIOD_RANGE_AS_WRITTEN.0), "{range}");
        assert!(range.contains(PERIOD_RANGE_AS_WRITTEN.1), "{range}");
    }

    #[test]
    fn strings_are_quoted_for_sql() {
        assert_eq!(sql_string("o'brien"), "'o''brien'");
        assert_eq!(money_text(-1_500_000_000_000), "-1.500000000000");
        assert_eq!(money_text(7), "0.000000000007");
    }
}
