//! One run's evidence as a self-contained HTML page: `agentledger timeline
//! --format html`, and the pages the weekly report links its offending
//! runs to.
//!
//! Everything on the page is read from the lake with the definitions in
//! `queries/sql/`: the events in order with their cost and running total
//! (`timeline.sql`), the policy in force (`run_policies.sql`), each tool
//! call's checks (`tool_call_checks.sql`) and the run's verdicts
//! (`readiness_runs.sql`). The page only lays them out: a breach is marked
//! where those files say there is one, and approvals and overrides are set
//! beside the writes they concern.

use std::collections::HashMap;

use datafusion::prelude::SessionContext;
use serde_json::{Value, json};

use crate::export::{Error, Result};
use crate::rows::{Cell, Row, money_display, money_text, to_rows};

async fn rows_of(ctx: &SessionContext, view: &str, tenant: &str, run: &str) -> Result<Vec<Row>> {
    let df = agentledger_queries::run_rows(ctx, view, tenant, run)
        .await
        .map_err(query_error)?;
    to_rows(view, &df.collect().await?)
}

fn query_error(e: agentledger_queries::Error) -> Error {
    match e {
        agentledger_queries::Error::DataFusion(e) => Error::DataFusion(e),
        other => Error::Io(std::io::Error::other(other.to_string())),
    }
}

fn list(text: &str) -> String {
    if text.is_empty() {
        "none".into()
    } else {
        text.split('|').collect::<Vec<_>>().join(", ")
    }
}

fn opt_money(v: Option<i128>) -> String {
    v.map_or_else(|| "none".into(), |m| format!("{} USD", money_text(m)))
}

/// The page of run `run` of tenant `tenant`, or `None` when the lake holds
/// no event of it.
pub async fn timeline_html(
    ctx: &SessionContext,
    tenant: &str,
    run: &str,
) -> Result<Option<String>> {
    let events = to_rows(
        "timeline",
        &agentledger_queries::timeline(ctx, tenant, run)
            .await
            .map_err(query_error)?
            .collect()
            .await?,
    )?;
    if events.is_empty() {
        return Ok(None);
    }
    let policy = rows_of(ctx, "run_policies", tenant, run).await?;
    let policy = policy.first();
    let mut checks: HashMap<String, Row> = HashMap::new();
    for r in rows_of(ctx, "tool_call_checks", tenant, run).await? {
        checks.insert(r.text("event_id")?, r);
    }
    let verdict = rows_of(ctx, "readiness_runs", tenant, run).await?;
    let verdict = verdict.first();
    let run_facts = rows_of(ctx, "runs", tenant, run).await?;
    let facts = run_facts.first();
    // Approvals and overrides, to set beside the writes.
    let mut approvals: Vec<(String, String, String, String, String)> = Vec::new();
    let mut overrides: Vec<String> = Vec::new();
    for e in rows_of(ctx, "events", tenant, run).await? {
        match e.text("event_type")?.as_str() {
            "approval" => approvals.push((
                e.text("tool")?,
                e.text("decision")?,
                e.text("approver")?,
                e.text("event_id")?,
                ts_of(&e, "ts")?,
            )),
            "human_override" => overrides.push(format!(
                "{} by {} at {}{}",
                e.text("kind")?,
                non_empty(&e.text("actor")?, "someone"),
                ts_of(&e, "ts")?,
                Some(e.text("reason")?)
                    .filter(|r| !r.is_empty())
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            )),
            _ => {}
        }
    }

    let cap = match policy {
        Some(p) => p.money("max_cost_usd_per_run")?,
        None => None,
    };
    let cap_breached = match verdict {
        Some(v) => v.flag("cost_cap_breach")?,
        None => false,
    };
    let mut cap_marked = false;
    let mut breaches = Vec::new();
    let mut rows = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let id = e.text("event_id")?;
        let mut marks: Vec<String> = Vec::new();
        let mut controls: Vec<Value> = Vec::new();
        if let Some(c) = checks.get(&id) {
            let tool = c.text("tool")?;
            if c.flag("forbidden")? {
                marks.push(format!("forbidden tool {tool} executed"));
            }
            if c.flag("unlisted")? {
                marks.push(format!("{tool} is not in allowed_tools"));
            }
            if c.flag("ungated")? {
                marks.push(format!(
                    "write to {tool} without an approval at or before it"
                ));
            }
            let is_write = c.flag("is_write")?;
            if is_write && !c.flag("write_with_idempotency_key")? {
                marks.push("write without an idempotency key".into());
            }
            if is_write {
                let write_ts = ts_of(e, "ts")?;
                for (a_tool, decision, approver, a_id, a_ts) in &approvals {
                    if *a_tool == tool {
                        let when = if *a_ts <= write_ts {
                            "before"
                        } else {
                            "after: does not gate it"
                        };
                        controls.push(json!({"kind": "approval", "text": format!(
                            "{decision} by {} at {a_ts} ({when}; event {a_id})",
                            non_empty(approver, "unknown approver"))}));
                    }
                }
                if c.flag("needs_approval")? && controls.is_empty() {
                    controls.push(json!({"kind": "missing", "text": format!("no approval for {tool} in this run")}));
                }
                for o in &overrides {
                    controls.push(json!({"kind": "override", "text": format!("run {o}")}));
                }
            }
        }
        if e.text("event_type")? == "policy_block" {
            controls.push(json!({"kind": "approval", "text": "blocked by policy: the control working, not a breach"}));
        }
        let running = e.money("running_cost_usd")?;
        if cap_breached
            && !cap_marked
            && let (Some(r), Some(c)) = (running, cap)
            && r > c
        {
            cap_marked = true;
            marks.push(format!(
                "running cost {} USD passes max_cost_usd_per_run {} USD here",
                money_text(r),
                money_text(c)
            ));
        }
        for m in &marks {
            breaches.push(json!({"n": i + 1, "event_id": id, "text": m}));
        }
        rows.push(json!({
            "n": i + 1,
            "ts": ts_of(e, "ts")?,
            "event_id": id,
            "event_type": e.text("event_type")?,
            "detail": e.text("detail")?,
            "cost": e.money("cost_usd")?.map(money_text).unwrap_or_default(),
            "cost_source": e.text("cost_source")?,
            "running": running.map(money_text).unwrap_or_default(),
            "marks": marks,
            "controls": controls,
        }));
    }

    let mut run_marks = Vec::new();
    let mut verdicts: Vec<Value> = Vec::new();
    if let Some(v) = verdict {
        if v.flag("over_tool_call_limit")? {
            let limit = match policy {
                Some(p) => p.int("max_tool_calls_per_run")?,
                None => 0,
            };
            run_marks.push(format!(
                "{} tool calls, more than max_tool_calls_per_run {limit}",
                v.int("tool_calls")?,
            ));
        }
        let gap = v.text("replay_gap")?;
        if !gap.is_empty() {
            run_marks.push(format!("not replayable: {gap}"));
        }
        if v.flag("breaks_cost_bounded")? && !cap_breached {
            run_marks.push(if v.flag("has_policy")? {
                "cost not bounded: the policy sets no max_cost_usd_per_run".into()
            } else {
                "cost not bounded: no policy in force".into()
            });
        }
        for c in crate::readiness::CONDITIONS {
            let broken = v.flag(&format!("breaks_{c}"))?;
            verdicts.push(json!({"name": c, "pass": !broken}));
        }
    }

    let policy_ctx = match policy {
        Some(p) if p.flag("has_policy")? => {
            let tenant_row = p.text("policy_tenant_id")?;
            Some(json!({
                "row": if tenant_row == "*" { "every tenant (*)".to_string() } else { format!("tenant {tenant_row}") },
                "effective_from": p.text("policy_effective_from")?,
                "allowed": list(&p.text("allowed_tools")?),
                "forbidden": list(&p.text("forbidden_tools")?),
                "approval": list(&p.text("approval_required_tools")?),
                "max_calls": match p.cell("max_tool_calls_per_run")? { Cell::Int(n) => n.to_string(), _ => "none".into() },
                "max_cost": opt_money(p.money("max_cost_usd_per_run")?),
            }))
        }
        _ => None,
    };
    let (mut workflow, mut agent_version, mut outcome, mut total, mut tool_calls) =
        (String::new(), String::new(), String::new(), None, 0);
    if let Some(f) = facts {
        workflow = f.text("workflow")?;
        agent_version = f.text("agent_version")?;
        outcome = non_empty(&f.text("outcome")?, "open (no run_finished yet)");
        total = f.money("cost_usd")?;
        tool_calls = f.int("tool_calls")?;
    }
    let start_date = match policy {
        Some(p) => p.text("start_date")?,
        None => String::new(),
    };
    let ctx_json = json!({
        "tenant_id": tenant,
        "run_id": run,
        "workflow": workflow,
        "agent_version": agent_version,
        "outcome": outcome,
        "start_date": start_date,
        "total": total.map(money_text).unwrap_or_default(),
        "total_display": total.map(money_display).unwrap_or_default(),
        "tool_calls": tool_calls,
        "policy": policy_ctx,
        "verdicts": verdicts,
        "finished": verdict.is_some(),
        "breaches": breaches,
        "run_marks": run_marks,
        "events": rows,
        "generated_at": chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
    });
    let mut env = minijinja::Environment::new();
    let template_error = |e: minijinja::Error| {
        Error::Io(std::io::Error::other(format!(
            "cannot render the timeline page: {e}"
        )))
    };
    env.add_template("timeline.html", include_str!("../templates/timeline.html"))
        .map_err(template_error)?;
    let page = env
        .get_template("timeline.html")
        .and_then(|t| t.render(ctx_json))
        .map_err(template_error)?;
    Ok(Some(page))
}

fn non_empty(text: &str, otherwise: &str) -> String {
    if text.is_empty() {
        otherwise.to_string()
    } else {
        text.to_string()
    }
}

/// A timestamp column as RFC 3339 UTC (rows hold them as text).
fn ts_of(row: &Row, name: &str) -> Result<String> {
    row.text(name)
}

/// The file name of a run's page in a report folder: the tenant and run
/// with anything but `A-Z a-z 0-9 . _ -` replaced, and a hash of the pair
/// when anything was, so two runs never share a page.
pub fn page_name(tenant: &str, run: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let (t, r) = (clean(tenant), clean(run));
    if t == tenant && r == run && !r.starts_with('.') {
        format!("timeline-{t}-{r}.html")
    } else {
        let hash = xxhash_rust::xxh3::xxh3_64(format!("{tenant}\u{0}{run}").as_bytes());
        format!("timeline-{t}-{r}-{hash:016x}.html")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_names_are_safe_and_distinct() {
        assert_eq!(
            page_name("acme", "run-000123"),
            "timeline-acme-run-000123.html"
        );
        let a = page_name("acme", "r/1");
        let b = page_name("acme", "r_1");
        assert!(
            a.starts_with("timeline-acme-r_1-") && a.ends_with(".html"),
            "{a}"
        );
        assert_ne!(a, b);
        assert!(!page_name("t", "../x").contains('/'));
    }
}
