//! The figures of one week's margin report, read from the lake with the
//! definitions in `queries/sql/`.

use std::collections::{BTreeMap, HashMap};

use agentledger_queries::{Key, MetricsQuery};
use chrono::{Datelike, Duration, NaiveDate, Weekday};
use datafusion::prelude::SessionContext;
use serde::Serialize;

use crate::export::{Error, Result};
use crate::readiness::{CONDITIONS, Group, readiness};
use crate::rows::{Row, to_rows};

/// An ISO week, by its Monday.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IsoWeek {
    monday: NaiveDate,
}

impl IsoWeek {
    /// Parses `YYYY-Www` (for example `2026-W43`).
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let bad = || format!("'{text}' is not an ISO week like 2026-W43");
        let (year, week) = text.split_once("-W").ok_or_else(bad)?;
        if year.len() != 4 || week.len() != 2 {
            return Err(bad());
        }
        let year: i32 = year.parse().map_err(|_| bad())?;
        let week: u32 = week.parse().map_err(|_| bad())?;
        let monday = NaiveDate::from_isoywd_opt(year, week, Weekday::Mon)
            .ok_or_else(|| format!("{year} has no ISO week {week}"))?;
        Ok(Self { monday })
    }

    /// The week holding `day`.
    pub fn of(day: NaiveDate) -> Self {
        let back = i64::from(day.weekday().num_days_from_monday());
        Self {
            monday: day - Duration::days(back),
        }
    }

    /// The last week that has ended by `today`: the one before today's.
    pub fn last_complete(today: NaiveDate) -> Self {
        Self::of(today).minus(1)
    }

    /// `n` weeks earlier.
    pub fn minus(self, n: i64) -> Self {
        Self {
            monday: self.monday - Duration::weeks(n),
        }
    }

    /// The Monday.
    pub fn monday(self) -> NaiveDate {
        self.monday
    }

    /// The Sunday.
    pub fn sunday(self) -> NaiveDate {
        self.monday + Duration::days(6)
    }

    /// `YYYY-Www`.
    pub fn label(self) -> String {
        let iso = self.monday.iso_week();
        format!("{}-W{:02}", iso.year(), iso.week())
    }
}

impl std::fmt::Display for IsoWeek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label())
    }
}

/// One week's totals over every tenant, as `weekly_totals.sql` defines them
/// (all zero, and no cost per success, for a week it has no row for).
/// Money amounts below are in units of 10^-12 USD.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    /// Tenants listed that week.
    pub tenants: u64,
    /// Finished runs.
    pub runs: i64,
    /// Succeeded runs.
    pub successes: i64,
    /// Sum of run costs.
    pub cost: i128,
    /// Revenue (success prices and prorated fees).
    pub revenue: i128,
    /// revenue − cost.
    pub margin: i128,
    /// cost / successes, half to even at 12 digits.
    pub cost_per_success: Option<i128>,
    /// Tenants with a negative margin.
    pub negative_accounts: u64,
    /// Unpriced model calls of the week's runs.
    pub unpriced_model_calls: i64,
}

impl Totals {
    /// successes / runs.
    pub fn success_rate(&self) -> Option<f64> {
        (self.runs > 0).then(|| self.successes as f64 / self.runs as f64)
    }

    /// margin / revenue.
    pub fn gross_margin(&self) -> Option<f64> {
        (self.revenue != 0).then(|| self.margin as f64 / self.revenue as f64)
    }
}

/// One tenant's week.
#[derive(Debug, Clone)]
pub struct Account {
    /// The tenant.
    pub tenant_id: String,
    /// Finished runs in the week.
    pub runs: i64,
    /// Succeeded runs.
    pub successes: i64,
    /// Cost of the runs.
    pub cost: i128,
    /// cost / successes.
    pub cost_per_success: Option<i128>,
    /// Revenue.
    pub revenue: i128,
    /// revenue − cost.
    pub margin: i128,
    /// margin / revenue.
    pub gross_margin: Option<f64>,
    /// Unpriced calls of the week's runs.
    pub unpriced_model_calls: i64,
    /// Margin the week before, when the tenant was listed then.
    pub previous_margin: Option<i128>,
    /// Weeks in a row, ending with this one, with a negative margin.
    pub consecutive_negative_weeks: u32,
    /// Cost by workflow, largest first (ties: smallest name).
    pub workflows: Vec<(String, i128)>,
    /// Cost by model, largest first (ties: smallest name).
    pub models: Vec<(String, i128)>,
    /// The SPEC section 8 conditions the tenant's finished runs of the
    /// week fail (empty when they pass, or without finished runs).
    pub readiness_failed: Vec<String>,
}

impl Account {
    /// A negative account: margin below zero.
    pub fn is_negative(&self) -> bool {
        self.margin < 0
    }
}

/// One week of the 8-week trend, over all tenants.
#[derive(Debug, Clone)]
pub struct TrendPoint {
    /// The week.
    pub week: IsoWeek,
    /// Finished runs.
    pub runs: i64,
    /// Sum of costs.
    pub cost: i128,
    /// Cost per success.
    pub cost_per_success: Option<i128>,
    /// Rates (fractions); `None` where undefined.
    pub success_rate: Option<f64>,
    /// Overridden runs / runs.
    pub override_rate: Option<f64>,
    /// Policy blocks / (tool calls + blocks).
    pub policy_block_rate: Option<f64>,
    /// Tool errors / tool calls.
    pub tool_error_rate: Option<f64>,
}

/// Everything the report shows.
#[derive(Debug, Clone)]
pub struct WeeklyFigures {
    /// The week reported.
    pub week: IsoWeek,
    /// Every tenant listed this week, by margin (lowest first), then name.
    pub accounts: Vec<Account>,
    /// This week's totals.
    pub totals: Totals,
    /// The week before's totals.
    pub previous: Totals,
    /// The last 8 weeks, oldest first (weeks without runs included).
    pub trend: Vec<TrendPoint>,
    /// This week's cost by model: (model, calls, cost, unpriced calls).
    pub cost_by_model: Vec<(String, i64, i128, i64)>,
    /// This week's cost by workflow: (workflow, runs, cost).
    pub cost_by_workflow: Vec<(String, i64, i128)>,
    /// Unpriced model calls anywhere in the lake.
    pub unpriced_model_calls_lake: u64,
    /// Open runs anywhere in the lake.
    pub open_runs: u64,
    /// SPEC section 8 readiness of this week's finished runs by workflow,
    /// with the worst offending runs of each failed condition.
    pub readiness: Vec<Group>,
    /// The same for the week before (measures only), to compare with.
    pub readiness_before: Vec<Group>,
    /// A timeline page for each offending run listed in `readiness`.
    pub timeline_pages: Vec<TimelinePage>,
}

/// One run's timeline page, written next to the report.
#[derive(Debug, Clone)]
pub struct TimelinePage {
    /// The run's tenant.
    pub tenant_id: String,
    /// The run.
    pub run_id: String,
    /// The file name in the report folder.
    pub name: String,
    /// The page.
    pub html: String,
}

/// Offending runs the report lists per workflow and failed condition.
pub const REPORT_OFFENDERS: u64 = 3;

/// The rows of `sql`, a query of the view `view` (the name errors give).
async fn rows(ctx: &SessionContext, view: &str, sql: &str) -> Result<Vec<Row>> {
    let batches = ctx.sql(sql).await?.collect().await?;
    to_rows(view, &batches)
}

async fn metric_rows(ctx: &SessionContext, query: &MetricsQuery) -> Result<Vec<Row>> {
    let batches = agentledger_queries::metrics(ctx, query)
        .await
        .map_err(query_error)?
        .collect()
        .await?;
    let keys: Vec<&str> = query.keys.iter().map(|k| k.name()).collect();
    to_rows(&format!("metrics by {}", keys.join(",")), &batches)
}

fn query_error(e: agentledger_queries::Error) -> Error {
    match e {
        agentledger_queries::Error::DataFusion(e) => Error::DataFusion(e),
        other => Error::Io(std::io::Error::other(other.to_string())),
    }
}

/// A count from SQL as `u64`; a negative number (which a `COUNT` or a sum of
/// 0s and 1s cannot be) is 0.
fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Sorts (name, cost) largest cost first, ties to the smallest name.
fn by_cost_desc(items: &mut [(String, i128)]) {
    items.sort_by(|a, b| {
        b.1.cmp(&a.1)
            .then_with(|| a.0.as_bytes().cmp(b.0.as_bytes()))
    });
}

/// Reads the figures of `week` from the session.
pub async fn figures(ctx: &SessionContext, week: IsoWeek) -> Result<WeeklyFigures> {
    let monday = week.monday();
    // Every tenant-week row: this week, last week, and the streaks.
    let all = rows(ctx, "weekly_accounts", "SELECT * FROM weekly_accounts").await?;
    let mut by_week: BTreeMap<String, Vec<&Row>> = BTreeMap::new();
    let mut margins: HashMap<(String, String), Option<i128>> = HashMap::new();
    for row in &all {
        let w = row.text("week")?;
        margins.insert(
            (row.text("tenant_id")?, w.clone()),
            row.money("margin_usd")?,
        );
        by_week.entry(w).or_default().push(row);
    }
    let negative = |tenant: &str, w: &str| {
        margins
            .get(&(tenant.to_string(), w.to_string()))
            .is_some_and(|m| m.unwrap_or(0) < 0)
    };
    let key = |w: IsoWeek| w.monday().format("%Y-%m-%d").to_string();
    // The totals of this week and the week before, from `weekly_totals`.
    let total_rows = rows(
        ctx,
        "weekly_totals",
        &format!(
            "SELECT * FROM weekly_totals WHERE week IN (DATE '{}', DATE '{monday}')",
            week.minus(1).monday()
        ),
    )
    .await?;
    let mut totals_by_week: HashMap<String, Totals> = HashMap::new();
    for row in &total_rows {
        totals_by_week.entry(row.text("week")?).or_insert(Totals {
            tenants: count(row.int("tenants")?),
            runs: row.int("runs")?,
            successes: row.int("successes")?,
            cost: row.money("cost_usd")?.unwrap_or(0),
            revenue: row.money("revenue_usd")?.unwrap_or(0),
            margin: row.money("margin_usd")?.unwrap_or(0),
            cost_per_success: row.money("cost_per_success_usd")?,
            negative_accounts: count(row.int("negative_accounts")?),
            unpriced_model_calls: row.int("unpriced_model_calls")?,
        });
    }
    // A week without rows in `weekly_accounts` has none here.
    let mut totals_of = |w: IsoWeek| totals_by_week.remove(&key(w)).unwrap_or_default();
    let totals = totals_of(week);
    let previous = totals_of(week.minus(1));

    // Cost drivers of this week.
    let week_filter = format!("WHERE week = DATE '{monday}'");
    let model_rows = rows(
        ctx,
        "cost_by_model",
        &format!("SELECT tenant_id, model, model_calls, unpriced_model_calls, cost_usd FROM cost_by_model {week_filter}"),
    )
    .await?;
    let workflow_rows = metric_rows(
        ctx,
        &MetricsQuery::new(
            vec![Key::TenantId, Key::Workflow],
            Some(monday),
            Some(monday + Duration::days(7)),
        ),
    )
    .await?;
    let mut tenant_models: HashMap<String, Vec<(String, i128)>> = HashMap::new();
    let mut models: BTreeMap<String, (i64, i128, i64)> = BTreeMap::new();
    for row in &model_rows {
        let (model, cost) = (row.text("model")?, row.money("cost_usd")?.unwrap_or(0));
        tenant_models
            .entry(row.text("tenant_id")?)
            .or_default()
            .push((model.clone(), cost));
        let entry = models.entry(model).or_default();
        entry.0 += row.int("model_calls")?;
        entry.1 += cost;
        entry.2 += row.int("unpriced_model_calls")?;
    }
    let mut tenant_workflows: HashMap<String, Vec<(String, i128)>> = HashMap::new();
    let mut workflows: BTreeMap<String, (i64, i128)> = BTreeMap::new();
    for row in &workflow_rows {
        let (workflow, cost) = (row.text("workflow")?, row.money("cost_usd")?.unwrap_or(0));
        tenant_workflows
            .entry(row.text("tenant_id")?)
            .or_default()
            .push((workflow.clone(), cost));
        let entry = workflows.entry(workflow).or_default();
        entry.0 += row.int("runs")?;
        entry.1 += cost;
    }

    let previous_key = key(week.minus(1));
    let mut accounts: Vec<Account> = by_week
        .get(&key(week))
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|row| {
            let tenant = row.text("tenant_id")?;
            let previous_margin = margins
                .get(&(tenant.clone(), previous_key.clone()))
                .copied()
                .flatten();
            let mut streak = 0;
            let mut w = week;
            while negative(&tenant, &key(w)) {
                streak += 1;
                w = w.minus(1);
            }
            let mut workflows = tenant_workflows.remove(&tenant).unwrap_or_default();
            by_cost_desc(&mut workflows);
            let mut models = tenant_models.remove(&tenant).unwrap_or_default();
            by_cost_desc(&mut models);
            Ok(Account {
                runs: row.int("runs")?,
                successes: row.int("successes")?,
                cost: row.money("cost_usd")?.unwrap_or(0),
                cost_per_success: row.money("cost_per_success_usd")?,
                revenue: row.money("revenue_usd")?.unwrap_or(0),
                margin: row.money("margin_usd")?.unwrap_or(0),
                gross_margin: row.float("gross_margin")?,
                unpriced_model_calls: row.int("unpriced_model_calls")?,
                previous_margin,
                consecutive_negative_weeks: streak,
                workflows,
                models,
                readiness_failed: Vec::new(),
                tenant_id: tenant,
            })
        })
        .collect::<Result<_>>()?;
    accounts.sort_by(|a, b| {
        a.margin
            .cmp(&b.margin)
            .then_with(|| a.tenant_id.as_bytes().cmp(b.tenant_id.as_bytes()))
    });

    // The 8-week trend over all tenants.
    let first = week.minus(7);
    let trend_rows = metric_rows(
        ctx,
        &MetricsQuery::new(
            vec![Key::Week],
            Some(first.monday()),
            Some(monday + Duration::days(7)),
        ),
    )
    .await?;
    let mut trend_by_week: HashMap<String, &Row> = HashMap::new();
    for row in &trend_rows {
        trend_by_week.entry(row.text("week")?).or_insert(row);
    }
    let trend = (0..8)
        .map(|i| {
            let w = first.minus(-i);
            let point = TrendPoint {
                week: w,
                runs: 0,
                cost: 0,
                cost_per_success: None,
                success_rate: None,
                override_rate: None,
                policy_block_rate: None,
                tool_error_rate: None,
            };
            // A week without finished runs has no row: zeros and no rates.
            let Some(row) = trend_by_week.get(&key(w)) else {
                return Ok(point);
            };
            Ok(TrendPoint {
                runs: row.int("runs")?,
                cost: row.money("cost_usd")?.unwrap_or(0),
                cost_per_success: row.money("cost_per_success_usd")?,
                success_rate: row.float("success_rate")?,
                override_rate: row.float("override_rate")?,
                policy_block_rate: row.float("policy_block_rate")?,
                tool_error_rate: row.float("tool_error_rate")?,
                ..point
            })
        })
        .collect::<Result<_>>()?;

    let mut cost_by_model: Vec<(String, i64, i128, i64)> = models
        .into_iter()
        .map(|(m, (calls, cost, unpriced))| (m, calls, cost, unpriced))
        .collect();
    cost_by_model.sort_by(|a, b| {
        b.2.cmp(&a.2)
            .then_with(|| a.0.as_bytes().cmp(b.0.as_bytes()))
    });
    let mut cost_by_workflow: Vec<(String, i64, i128)> = workflows
        .into_iter()
        .map(|(w, (runs, cost))| (w, runs, cost))
        .collect();
    cost_by_workflow.sort_by(|a, b| {
        b.2.cmp(&a.2)
            .then_with(|| a.0.as_bytes().cmp(b.0.as_bytes()))
    });

    let caveats = agentledger_queries::caveats(ctx)
        .await
        .map_err(query_error)?;

    // Readiness (SPEC section 8) last: it registers its own `metrics` view.
    let next_monday = monday + Duration::days(7);
    let by = |keys: Vec<Key>, from: NaiveDate, to: NaiveDate| {
        MetricsQuery::new(keys, Some(from), Some(to))
    };
    let this_week = readiness(
        ctx,
        &by(vec![Key::Workflow], monday, next_monday),
        REPORT_OFFENDERS,
    )
    .await?;
    let before = readiness(
        ctx,
        &by(vec![Key::Workflow], week.minus(1).monday(), monday),
        0,
    )
    .await?;
    for tenant in readiness(ctx, &by(vec![Key::TenantId], monday, next_monday), 0).await? {
        if let Some(a) = accounts
            .iter_mut()
            .find(|a| a.tenant_id == tenant.key("tenant_id"))
        {
            a.readiness_failed = CONDITIONS
                .iter()
                .filter(|c| !tenant.passes(c))
                .map(|c| c.to_string())
                .collect();
        }
    }
    let mut timeline_pages: Vec<TimelinePage> = Vec::new();
    for offender in this_week
        .iter()
        .flat_map(|g| g.failures.iter().flat_map(|f| f.runs.iter()))
    {
        if timeline_pages
            .iter()
            .any(|p| p.tenant_id == offender.tenant_id && p.run_id == offender.run_id)
        {
            continue;
        }
        if let Some(html) =
            crate::timeline::timeline_html(ctx, &offender.tenant_id, &offender.run_id).await?
        {
            timeline_pages.push(TimelinePage {
                name: crate::timeline::page_name(&offender.tenant_id, &offender.run_id),
                tenant_id: offender.tenant_id.clone(),
                run_id: offender.run_id.clone(),
                html,
            });
        }
    }

    Ok(WeeklyFigures {
        week,
        accounts,
        totals,
        previous,
        trend,
        cost_by_model,
        cost_by_workflow,
        unpriced_model_calls_lake: caveats.unpriced_model_calls,
        open_runs: caveats.open_runs,
        readiness: this_week,
        readiness_before: before,
        timeline_pages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `weekly_totals` as one row for the week of 2 March 2026, with its
    /// margin column named `margin`.
    fn weekly_totals_view(margin: &str) -> String {
        format!(
            "CREATE OR REPLACE VIEW weekly_totals AS SELECT DATE '2026-03-02' AS week, \
             CAST(2 AS BIGINT) AS tenants, CAST(1 AS BIGINT) AS runs, \
             CAST(0 AS BIGINT) AS successes, CAST(1 AS DECIMAL(38, 12)) AS cost_usd, \
             CAST(0 AS DECIMAL(38, 12)) AS revenue_usd, CAST(-1 AS DECIMAL(38, 12)) AS {margin}, \
             CAST(NULL AS DECIMAL(38, 12)) AS cost_per_success_usd, \
             CAST(0 AS BIGINT) AS unpriced_model_calls, CAST(1 AS BIGINT) AS negative_accounts"
        )
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_renamed_column_fails_the_figures_naming_the_column_and_the_query() {
        let lake = agentledger_lake::Lake::open("memory://weekly-renamed-column").unwrap();
        let ctx = agentledger_queries::open_session(&lake).await.unwrap();
        let week = IsoWeek::parse("2026-W10").unwrap();
        ctx.sql(&weekly_totals_view("margin"))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let e = figures(&ctx, week).await.unwrap_err().to_string();
        assert!(
            e.starts_with("query weekly_totals has no column margin_usd (its columns: week,"),
            "{e}"
        );
        // With the column named as the code reads it, the week reads, and
        // the NULL cost per success stays `None`.
        ctx.sql(&weekly_totals_view("margin_usd"))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let f = figures(&ctx, week).await.unwrap();
        assert_eq!((f.totals.tenants, f.totals.runs), (2, 1));
        assert_eq!(f.totals.margin, -1_000_000_000_000);
        assert_eq!(f.totals.cost_per_success, None);
        assert_eq!(f.totals.negative_accounts, 1);
        assert_eq!(f.previous.runs, 0);
    }

    #[test]
    fn iso_weeks_parse_print_and_step() {
        let w = IsoWeek::parse("2026-W14").unwrap();
        assert_eq!(w.monday().to_string(), "2026-03-30");
        assert_eq!(w.sunday().to_string(), "2026-04-05");
        assert_eq!(w.label(), "2026-W14");
        assert_eq!(w.minus(1).label(), "2026-W13");
        // Week 1 of 2027 starts in 2026; week 53 exists in 2026.
        assert_eq!(
            IsoWeek::parse("2027-W01").unwrap().monday().to_string(),
            "2027-01-04"
        );
        assert_eq!(
            IsoWeek::parse("2026-W53").unwrap().monday().to_string(),
            "2026-12-28"
        );
        assert!(
            IsoWeek::parse("2025-W53")
                .unwrap_err()
                .contains("no ISO week 53")
        );
        assert!(IsoWeek::parse("2026-43").is_err());
        assert!(IsoWeek::parse("2026-W4").is_err());
        let thursday = NaiveDate::from_ymd_opt(2026, 11, 26).unwrap();
        assert_eq!(IsoWeek::last_complete(thursday).label(), "2026-W47");
        let monday = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
        assert_eq!(IsoWeek::last_complete(monday).label(), "2026-W47");
    }
}
