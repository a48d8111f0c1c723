//! `agentledger report`: the weekly margin report as files in a folder.
//!
//! `report.html` (self-contained: charts inline as PNG, styles inline),
//! the charts as PNG and SVG, `margin.csv`, `alerts.json` and
//! `summary.json`. Every file is written under a temporary name and renamed
//! into place, so a reader never sees half a file and a re-run replaces the
//! report whole.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Serialize;
use serde_json::json;

use crate::charts::{self, Chart};
use crate::export::escape_csv_formula;
use crate::readiness::{CONDITIONS, Group};
use crate::rows::{money_display, money_text};
use crate::timeline::page_name;
use crate::weekly::{Account, IsoWeek, Totals, WeeklyFigures};

/// What can fail while writing the report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Reading the figures failed.
    #[error(transparent)]
    Query(#[from] crate::export::Error),
    /// Drawing a chart failed.
    #[error(transparent)]
    Chart(#[from] charts::ChartError),
    /// Writing a file failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The template failed to render.
    #[error("cannot render report.html: {0}")]
    Template(#[from] minijinja::Error),
}

/// One alert: a negative account, as written to `alerts.json` and sent to
/// the webhook (SPEC section 6).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Alert {
    /// The tenant.
    pub tenant_id: String,
    /// The Monday, `YYYY-MM-DD`.
    pub week: String,
    /// `YYYY-Www`.
    pub iso_week: String,
    /// Decimal text.
    pub revenue_usd: String,
    /// Decimal text.
    pub cost_usd: String,
    /// Decimal text (negative).
    pub margin_usd: String,
    /// margin / revenue; null when revenue is 0.
    pub gross_margin: Option<f64>,
    /// Finished runs.
    pub runs: i64,
    /// Succeeded runs.
    pub successes: i64,
    /// Decimal text; null without successes.
    pub cost_per_success_usd: Option<String>,
    /// Weeks in a row, ending with this one, with a negative margin.
    pub consecutive_negative_weeks: u32,
    /// Workflow with the largest cost (ties: smallest name).
    pub top_cost_workflow: Option<String>,
    /// Model with the largest cost (ties: smallest name).
    pub top_cost_model: Option<String>,
    /// Whether the tenant's finished runs of the week pass SPEC section 8's
    /// checklist; null without finished runs.
    pub ready: Option<bool>,
    /// The checklist's conditions they fail (empty when ready).
    pub readiness_failed: Vec<String>,
}

impl Alert {
    /// A one-line message for people (the webhook's `text`).
    pub fn text(&self) -> String {
        let streak = if self.consecutive_negative_weeks > 1 {
            format!(
                ", negative {} weeks in a row",
                self.consecutive_negative_weeks
            )
        } else {
            String::new()
        };
        let readiness = if self.readiness_failed.is_empty() {
            String::new()
        } else {
            format!(
                " It also fails readiness ({}): see agentledger readiness --by tenant_id,workflow --from {} --to {}.",
                self.readiness_failed.join(", "),
                self.week,
                chrono::NaiveDate::parse_from_str(&self.week, "%Y-%m-%d")
                    .map(|d| (d + chrono::Duration::days(7)).to_string())
                    .unwrap_or_default()
            )
        };
        format!(
            ":warning: agentledger: {} had a negative margin in {}: {} USD (revenue {} USD, cost {} USD, {} runs{streak}). Top cost: workflow {}, model {}.{readiness}",
            self.tenant_id,
            self.iso_week,
            short_money(&self.margin_usd),
            short_money(&self.revenue_usd),
            short_money(&self.cost_usd),
            self.runs,
            self.top_cost_workflow.as_deref().unwrap_or("none"),
            self.top_cost_model.as_deref().unwrap_or("none"),
        )
    }
}

fn short_money(text: &str) -> String {
    parse_units(text).map_or_else(|| text.to_string(), money_display)
}

fn parse_units(text: &str) -> Option<i128> {
    let (int, frac) = text.split_once('.')?;
    let neg = int.starts_with('-');
    let v = int.trim_start_matches('-').parse::<i128>().ok()? * 1_000_000_000_000
        + frac.parse::<i128>().ok()?;
    Some(if neg { -v } else { v })
}

/// The alerts of a week: one per negative account, lowest margin first.
pub fn alerts(f: &WeeklyFigures) -> Vec<Alert> {
    f.accounts
        .iter()
        .filter(|a| a.is_negative())
        .map(|a| alert(f.week, a))
        .collect()
}

fn alert(week: IsoWeek, a: &Account) -> Alert {
    Alert {
        tenant_id: a.tenant_id.clone(),
        week: week.monday().to_string(),
        iso_week: week.label(),
        revenue_usd: money_text(a.revenue),
        cost_usd: money_text(a.cost),
        margin_usd: money_text(a.margin),
        gross_margin: a.gross_margin,
        runs: a.runs,
        successes: a.successes,
        cost_per_success_usd: a.cost_per_success.map(money_text),
        consecutive_negative_weeks: a.consecutive_negative_weeks,
        top_cost_workflow: a.workflows.first().map(|w| w.0.clone()),
        top_cost_model: a.models.first().map(|m| m.0.clone()),
        ready: (a.runs > 0).then_some(a.readiness_failed.is_empty()),
        readiness_failed: a.readiness_failed.clone(),
    }
}

/// What was written.
#[derive(Debug, Clone, Serialize)]
pub struct ReportFiles {
    /// The folder.
    pub dir: PathBuf,
    /// `report.html`.
    pub html: PathBuf,
    /// Every file written, by name.
    pub files: Vec<String>,
    /// The negative accounts.
    pub alerts: Vec<Alert>,
}

/// Writes `path` atomically: a temporary file in the same folder, renamed.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    let io = |source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension(format!(
        "{}.tmp-{}",
        path.extension().and_then(|e| e.to_str()).unwrap_or(""),
        std::process::id()
    ));
    {
        let mut file = std::fs::File::create(&tmp).map_err(io)?;
        file.write_all(bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "—".into(), |x| format!("{:.1}%", x * 100.0))
}

fn signed_money(units: i128) -> String {
    if units > 0 {
        format!("+{}", money_display(units))
    } else {
        money_display(units)
    }
}

fn share(part: i128, whole: i128) -> String {
    if whole == 0 {
        "—".into()
    } else {
        format!("{:.1}%", part as f64 * 100.0 / whole as f64)
    }
}

fn totals_rows(now: &Totals, before: &Totals) -> Vec<serde_json::Value> {
    let money_row = |name: &str, a: i128, b: i128| {
        json!({"name": name, "now": money_display(a), "before": money_display(b),
               "change": signed_money(a - b), "class": ""})
    };
    let int_row = |name: &str, a: i64, b: i64| json!({"name": name, "now": a, "before": b, "change": format!("{:+}", a - b), "class": ""});
    let rate_row = |name: &str, a: Option<f64>, b: Option<f64>| {
        let change = match (a, b) {
            (Some(a), Some(b)) => format!("{:+.1} pts", (a - b) * 100.0),
            _ => "—".into(),
        };
        json!({"name": name, "now": pct(a), "before": pct(b), "change": change, "class": ""})
    };
    let opt_money = |v: Option<i128>| v.map_or_else(|| "—".into(), money_display);
    vec![
        int_row("Finished runs", now.runs, before.runs),
        int_row("Successful runs", now.successes, before.successes),
        rate_row("Success rate", now.success_rate(), before.success_rate()),
        money_row("Revenue (USD)", now.revenue, before.revenue),
        money_row("Cost (USD)", now.cost, before.cost),
        money_row("Margin (USD)", now.margin, before.margin),
        rate_row("Gross margin", now.gross_margin(), before.gross_margin()),
        json!({"name": "Cost per success (USD)", "now": opt_money(now.cost_per_success),
               "before": opt_money(before.cost_per_success),
               "change": match (now.cost_per_success, before.cost_per_success) {
                   (Some(a), Some(b)) => signed_money(a - b), _ => "—".into() },
               "class": ""}),
        int_row("Tenants", now.tenants as i64, before.tenants as i64),
        int_row(
            "Negative accounts",
            now.negative_accounts as i64,
            before.negative_accounts as i64,
        ),
    ]
}

/// How a readiness measure is shown.
#[derive(Clone, Copy)]
enum Shown {
    Count,
    Rate,
    Money,
}

/// The measures of SPEC section 8 as the report lists them.
const READINESS_MEASURES: &[(&str, &str, Shown)] = &[
    ("Finished runs", "runs", Shown::Count),
    (
        "Runs over max tool calls",
        "tool_calls_over_limit_runs",
        Shown::Count,
    ),
    ("Unlisted tool calls", "unlisted_tool_calls", Shown::Count),
    ("Forbidden tool calls", "forbidden_tool_calls", Shown::Count),
    ("Writes", "writes", Shown::Count),
    (
        "Writes with an idempotency key",
        "writes_with_idempotency_key",
        Shown::Count,
    ),
    ("Ungated writes", "ungated_writes", Shown::Count),
    ("Replayable runs", "replayable_run_rate", Shown::Rate),
    (
        "Runs over their cost cap",
        "cost_cap_breaches",
        Shown::Count,
    ),
    (
        "Runs without a cost cap",
        "runs_without_cost_cap",
        Shown::Count,
    ),
    (
        "Cost per success (USD)",
        "cost_per_success_usd",
        Shown::Money,
    ),
    ("Success rate", "success_rate", Shown::Rate),
    ("Override rate", "override_rate", Shown::Rate),
    ("Tool error rate", "tool_error_rate", Shown::Rate),
    ("Policy block rate", "policy_block_rate", Shown::Rate),
    ("Bad run reports", "bad_run_reports", Shown::Count),
];

fn measure_row(
    name: &str,
    column: &str,
    shown: Shown,
    now: &Group,
    before: Option<&Group>,
) -> Result<serde_json::Value, ReportError> {
    let (now_text, before_text, change) = match shown {
        Shown::Count => {
            let a = now.row.int(column)?;
            let b = before.map(|g| g.row.int(column)).transpose()?;
            (
                a.to_string(),
                b.map_or_else(|| "—".into(), |b| b.to_string()),
                b.map_or_else(|| "—".into(), |b| format!("{:+}", a - b)),
            )
        }
        Shown::Rate => {
            let a = now.row.float(column)?;
            let b = before.map(|g| g.row.float(column)).transpose()?.flatten();
            let change = match (a, b) {
                (Some(a), Some(b)) => format!("{:+.1} pts", (a - b) * 100.0),
                _ => "—".into(),
            };
            (pct(a), pct(b), change)
        }
        Shown::Money => {
            let a = now.row.money(column)?;
            let b = before.map(|g| g.row.money(column)).transpose()?.flatten();
            let show = |v: Option<i128>| v.map_or_else(|| "—".into(), money_display);
            let change = match (a, b) {
                (Some(a), Some(b)) => signed_money(a - b),
                _ => "—".into(),
            };
            (show(a), show(b), change)
        }
    };
    Ok(
        json!({"name": name, "column": column, "now": now_text, "before": before_text, "change": change}),
    )
}

/// The evidence for a condition's verdict, from the group's measures.
fn condition_evidence(g: &Group, condition: &str) -> Result<String, ReportError> {
    let r = &g.row;
    let plural = |n: i64| if n == 1 { "" } else { "s" };
    Ok(match condition {
        "writes_gated" => {
            let forbidden = r.int("forbidden_tool_calls")?;
            let ungated = r.int("ungated_writes")?;
            format!(
                "{forbidden} forbidden tool call{} executed, {ungated} ungated write{}, {} of {} writes with an idempotency key",
                plural(forbidden),
                plural(ungated),
                r.int("writes_with_idempotency_key")?,
                r.int("writes")?
            )
        }
        "runs_replayable" => {
            let (runs, failing) = (r.int("runs")?, r.int("runs_replayable_failing_runs")?);
            format!(
                "{} of {runs} runs replayable ({failing} not)",
                runs - failing
            )
        }
        _ => {
            let breaches = r.int("cost_cap_breaches")?;
            let uncapped = r.int("runs_without_cost_cap")?;
            format!(
                "{breaches} run{} over the cost cap, {uncapped} run{} without a cap",
                plural(breaches),
                plural(uncapped)
            )
        }
    })
}

fn readiness_ctx(f: &WeeklyFigures) -> Result<Vec<serde_json::Value>, ReportError> {
    f.readiness
        .iter()
        .map(|g| {
            let workflow = g.key("workflow");
            let before = f.readiness_before.iter().find(|b| b.key("workflow") == workflow);
            let conditions: Vec<serde_json::Value> = CONDITIONS
                .iter()
                .map(|c| {
                    Ok(json!({"name": c, "pass": g.passes(c),
                           "failing_runs": g.row.int(&format!("{c}_failing_runs"))?,
                           "before": before.map(|b| if b.passes(c) { "pass" } else { "FAIL" }).unwrap_or("—"),
                           "evidence": condition_evidence(g, c)?}))
                })
                .collect::<Result<_, ReportError>>()?;
            let measures: Vec<serde_json::Value> = READINESS_MEASURES
                .iter()
                .map(|(name, column, shown)| measure_row(name, column, *shown, g, before))
                .collect::<Result<_, ReportError>>()?;
            let offenders: Vec<serde_json::Value> = g
                .failures
                .iter()
                .flat_map(|fail| {
                    fail.runs.iter().map(move |o| {
                        let page = page_name(&o.tenant_id, &o.run_id);
                        let linked = f.timeline_pages.iter().any(|p| p.name == page);
                        json!({"condition": fail.condition, "tenant_id": o.tenant_id,
                               "run_id": o.run_id, "evidence": o.evidence(),
                               "command": o.timeline_command(),
                               "page": if linked { Some(page) } else { None }})
                    })
                })
                .collect();
            let unlisted: i64 = g
                .failures
                .iter()
                .map(|fail| fail.failing_runs - fail.runs.len() as i64)
                .sum();
            Ok(json!({
                "workflow": workflow,
                "id": format!("readiness-{}", workflow.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect::<String>()),
                "ready": g.ready(),
                "was_ready": before.map(Group::ready),
                "conditions": conditions,
                "measures": measures,
                "offenders": offenders,
                "more": unlisted,
            }))
        })
        .collect()
}

fn html(f: &WeeklyFigures, charts: &[Chart], generated_at: &str) -> Result<String, ReportError> {
    let mut env = minijinja::Environment::new();
    env.add_template("report.html", include_str!("../templates/report.html"))?;
    let opt_money = |v: Option<i128>| v.map_or_else(|| "—".into(), money_display);
    let t = &f.totals;
    let p = &f.previous;
    let cards = vec![
        json!({"label": "Margin", "value": format!("{} USD", money_display(t.margin)),
               "delta": format!("{} vs {}", signed_money(t.margin - p.margin), f.week.minus(1))}),
        json!({"label": "Revenue", "value": format!("{} USD", money_display(t.revenue)),
               "delta": format!("{} vs {}", signed_money(t.revenue - p.revenue), f.week.minus(1))}),
        json!({"label": "Cost", "value": format!("{} USD", money_display(t.cost)),
               "delta": format!("{} vs {}", signed_money(t.cost - p.cost), f.week.minus(1))}),
        json!({"label": "Cost per success", "value": format!("{} USD", opt_money(t.cost_per_success)),
               "delta": format!("was {} USD", opt_money(p.cost_per_success))}),
        json!({"label": "Success rate", "value": pct(t.success_rate()),
               "delta": format!("was {}", pct(p.success_rate()))}),
        json!({"label": "Negative accounts", "value": t.negative_accounts,
               "delta": format!("was {}", p.negative_accounts)}),
    ];
    let negatives: Vec<serde_json::Value> = f
        .accounts
        .iter()
        .filter(|a| a.is_negative())
        .map(|a| {
            let mut drivers = Vec::new();
            for (kind, list) in [("workflow", &a.workflows), ("model", &a.models)] {
                for (name, cost) in list.iter().take(5) {
                    drivers.push(
                        json!({"kind": kind, "name": name, "cost": money_display(*cost),
                                        "share": share(*cost, a.cost)}),
                    );
                }
            }
            json!({
                "tenant_id": a.tenant_id, "margin": money_display(a.margin),
                "revenue": money_display(a.revenue), "cost": money_display(a.cost),
                "runs": a.runs, "successes": a.successes,
                "cost_per_success": opt_money(a.cost_per_success).to_string()
                    + if a.cost_per_success.is_some() { " USD" } else { "" },
                "streak": a.consecutive_negative_weeks,
                "top_workflow": a.workflows.first().map_or("none", |w| w.0.as_str()),
                "top_model": a.models.first().map_or("none", |m| m.0.as_str()),
                "drivers": drivers,
                "readiness_failed": a.readiness_failed,
            })
        })
        .collect();
    let accounts: Vec<serde_json::Value> = f
        .accounts
        .iter()
        .map(|a| {
            json!({
                "tenant_id": a.tenant_id, "runs": a.runs, "successes": a.successes,
                "revenue": money_display(a.revenue), "cost": money_display(a.cost),
                "margin": money_display(a.margin), "gross_margin": pct(a.gross_margin),
                "negative": a.is_negative(),
                "previous_margin": opt_money(a.previous_margin),
                "change": a.previous_margin.map_or_else(|| "new".into(), |p| signed_money(a.margin - p)),
            })
        })
        .collect();
    let charts_ctx: Vec<serde_json::Value> = charts
        .iter()
        .map(|c| {
            let bytes = std::fs::read(&c.png).map_err(|source| ReportError::Io {
                path: c.png.clone(),
                source,
            })?;
            Ok(json!({"name": c.name, "title": c.title, "alt": c.alt,
                      "png_base64": base64::engine::general_purpose::STANDARD.encode(bytes)}))
        })
        .collect::<Result<_, ReportError>>()?;
    let trend: Vec<serde_json::Value> = f
        .trend
        .iter()
        .map(|p| {
            json!({"week": p.week.label(), "runs": p.runs, "cost": money_display(p.cost),
                   "cost_per_success": opt_money(p.cost_per_success),
                   "success_rate": pct(p.success_rate), "override_rate": pct(p.override_rate),
                   "policy_block_rate": pct(p.policy_block_rate), "tool_error_rate": pct(p.tool_error_rate)})
        })
        .collect();
    let model_total: i128 = f.cost_by_model.iter().map(|m| m.2).sum();
    let models: Vec<serde_json::Value> = f
        .cost_by_model
        .iter()
        .map(|(name, calls, cost, unpriced)| {
            json!({"name": name, "calls": calls, "unpriced": unpriced,
                   "cost": money_display(*cost), "share": share(*cost, model_total)})
        })
        .collect();
    let workflow_total: i128 = f.cost_by_workflow.iter().map(|w| w.2).sum();
    let workflows: Vec<serde_json::Value> = f
        .cost_by_workflow
        .iter()
        .map(|(name, runs, cost)| {
            json!({"name": name, "runs": runs, "cost": money_display(*cost),
                   "share": share(*cost, workflow_total)})
        })
        .collect();
    let unpriced = (f.unpriced_model_calls_lake > 0).then(
        || json!({"week": f.totals.unpriced_model_calls, "lake": f.unpriced_model_calls_lake}),
    );
    let ctx = json!({
        "week": {"label": f.week.label(), "monday": f.week.monday().to_string(),
                 "sunday": f.week.sunday().to_string()},
        "previous_label": f.week.minus(1).label(),
        "generated_at": generated_at,
        "unpriced": unpriced,
        "open_runs": f.open_runs,
        "cards": cards,
        "totals": totals_rows(t, p),
        "negatives": negatives,
        "accounts": accounts,
        "charts": charts_ctx,
        "chart_width": charts::WIDTH,
        "chart_height": charts::HEIGHT,
        "trend": trend,
        "models": models,
        "workflows": workflows,
        "readiness": readiness_ctx(f)?,
        "ready_workflows": f.readiness.iter().filter(|g| g.ready()).count(),
        "next_monday": (f.week.monday() + chrono::Duration::days(7)).to_string(),
    });
    Ok(env.get_template("report.html")?.render(ctx)?)
}

fn margin_csv(f: &WeeklyFigures) -> Vec<u8> {
    let mut out = csv::Writer::from_writer(Vec::new());
    let header = [
        "tenant_id",
        "week",
        "iso_week",
        "runs",
        "successes",
        "revenue_usd",
        "cost_usd",
        "margin_usd",
        "gross_margin",
        "cost_per_success_usd",
        "negative",
        "consecutive_negative_weeks",
        "previous_margin_usd",
        "unpriced_model_calls",
    ];
    // Writing to a Vec cannot fail.
    let _ = out.write_record(header);
    let mut by_name: Vec<&Account> = f.accounts.iter().collect();
    by_name.sort_by(|a, b| a.tenant_id.as_bytes().cmp(b.tenant_id.as_bytes()));
    for a in by_name {
        let record = [
            escape_csv_formula(&a.tenant_id).into_owned(),
            f.week.monday().to_string(),
            f.week.label(),
            a.runs.to_string(),
            a.successes.to_string(),
            money_text(a.revenue),
            money_text(a.cost),
            money_text(a.margin),
            a.gross_margin.map(|g| g.to_string()).unwrap_or_default(),
            a.cost_per_success.map(money_text).unwrap_or_default(),
            a.is_negative().to_string(),
            a.consecutive_negative_weeks.to_string(),
            a.previous_margin.map(money_text).unwrap_or_default(),
            a.unpriced_model_calls.to_string(),
        ];
        let _ = out.write_record(&record);
    }
    out.into_inner().unwrap_or_default()
}

fn summary_json(
    f: &WeeklyFigures,
    alerts: &[Alert],
    generated_at: &str,
) -> Result<serde_json::Value, ReportError> {
    let totals = |t: &Totals, w: IsoWeek| {
        json!({
            "week": w.monday().to_string(),
            "iso_week": w.label(),
            "tenants": t.tenants,
            "runs": t.runs,
            "successes": t.successes,
            "success_rate": t.success_rate(),
            "revenue_usd": money_text(t.revenue),
            "cost_usd": money_text(t.cost),
            "margin_usd": money_text(t.margin),
            "gross_margin": t.gross_margin(),
            "cost_per_success_usd": t.cost_per_success.map(money_text),
            "negative_accounts": t.negative_accounts,
            "unpriced_model_calls": t.unpriced_model_calls,
        })
    };
    let mut s = totals(&f.totals, f.week);
    s["previous_week"] = totals(&f.previous, f.week.minus(1));
    s["negative_tenants"] = json!(alerts.iter().map(|a| &a.tenant_id).collect::<Vec<_>>());
    s["readiness"] = json!(
        f.readiness
            .iter()
            .map(|g| {
                let mut o = serde_json::Map::new();
                o.insert("workflow".into(), json!(g.key("workflow")));
                o.insert("runs".into(), json!(g.row.int("runs")?));
                for c in CONDITIONS {
                    o.insert(c.into(), json!(g.passes(c)));
                }
                o.insert("ready".into(), json!(g.ready()));
                Ok(serde_json::Value::Object(o))
            })
            .collect::<Result<Vec<_>, ReportError>>()?
    );
    s["unpriced_model_calls_in_lake"] = json!(f.unpriced_model_calls_lake);
    s["open_runs_in_lake"] = json!(f.open_runs);
    s["generated_at"] = json!(generated_at);
    Ok(s)
}

/// Removes temporary files a killed earlier run left in `dir` (our own
/// `name.ext.tmp-PID` and `name.tmp-PID.ext` patterns only).
fn remove_partial_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let ours = name.rsplit_once(".tmp-").is_some_and(|(_, rest)| {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            digits > 0 && (digits == rest.len() || rest.as_bytes()[digits] == b'.')
        });
        if ours {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Writes the report of `figures` into `dir` (created if missing).
pub fn write_report(dir: &Path, figures: &WeeklyFigures) -> Result<ReportFiles, ReportError> {
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    remove_partial_files(dir);
    let generated_at = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string();
    let charts = charts::draw_all(dir, figures)?;
    let alerts = alerts(figures);
    let mut files: Vec<String> = charts
        .iter()
        .flat_map(|c| [format!("{}.png", c.name), format!("{}.svg", c.name)])
        .collect();
    write_atomic(&dir.join("margin.csv"), &margin_csv(figures))?;
    let alerts_json = serde_json::to_vec_pretty(&alerts).expect("alerts serialize");
    write_atomic(&dir.join("alerts.json"), &alerts_json)?;
    let summary = serde_json::to_vec_pretty(&summary_json(figures, &alerts, &generated_at)?)
        .expect("summary serializes");
    write_atomic(&dir.join("summary.json"), &summary)?;
    for p in &figures.timeline_pages {
        write_atomic(&dir.join(&p.name), p.html.as_bytes())?;
        files.push(p.name.clone());
    }
    let page = html(figures, &charts, &generated_at)?;
    let html_path = dir.join("report.html");
    write_atomic(&html_path, page.as_bytes())?;
    files.extend(["margin.csv", "alerts.json", "summary.json", "report.html"].map(String::from));
    Ok(ReportFiles {
        dir: dir.to_path_buf(),
        html: html_path,
        files,
        alerts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_text_is_one_line_for_people() {
        let a = Alert {
            tenant_id: "acme".into(),
            week: "2026-10-19".into(),
            iso_week: "2026-W43".into(),
            revenue_usd: "10.000000000000".into(),
            cost_usd: "12.345000000000".into(),
            margin_usd: "-2.345000000000".into(),
            gross_margin: Some(-0.2345),
            runs: 4,
            successes: 3,
            cost_per_success_usd: Some("4.115000000000".into()),
            consecutive_negative_weeks: 3,
            top_cost_workflow: Some("triage".into()),
            top_cost_model: None,
            ready: Some(false),
            readiness_failed: vec!["writes_gated".into(), "cost_bounded".into()],
        };
        let text = a.text();
        assert!(
            text.contains("acme") && text.contains("2026-W43") && text.contains("-2.35 USD"),
            "{text}"
        );
        assert!(
            text.contains("3 weeks in a row") && text.contains("model none"),
            "{text}"
        );
        assert!(
            text.contains("also fails readiness (writes_gated, cost_bounded)")
                && text.contains("--from 2026-10-19 --to 2026-10-26"),
            "{text}"
        );
        assert!(!text.contains('\n'));
    }
}
