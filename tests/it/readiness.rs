//! `agentledger readiness`, `load policies` and `timeline --format html`
//! end to end: exit codes for pipelines, bad policy files refused with
//! their line and reason, JSON named as SPEC section 8, and the weekly
//! report's readiness section with its timeline pages.

use serde_json::Value;

use crate::common::{Env, sample_lake};

const POLICIES: &str = "tenant_id,workflow,effective_from,allowed_tools,forbidden_tools,approval_required_tools,max_tool_calls_per_run,max_cost_usd_per_run\n";

/// Two runs of `support`: r1 keeps to the policy; r2, when `bad` is set,
/// writes to `refund` without an approval.
fn events(bad: bool) -> String {
    let mut lines = vec![
        r#"{"event_id":"s1","event_type":"run_started","ts":"2026-03-03T10:00:00Z","tenant_id":"t1","run_id":"r1","workflow":"support","agent_version":"v1","prompt_version":"p1"}"#,
        r#"{"event_id":"m1","event_type":"model_call","ts":"2026-03-03T10:00:30Z","tenant_id":"t1","run_id":"r1","model":"m","provider":"p","input_tokens":10,"output_tokens":5,"cost_usd":"0.25"}"#,
        r#"{"event_id":"a1","event_type":"approval","ts":"2026-03-03T10:00:40Z","tenant_id":"t1","run_id":"r1","decision":"approved","tool":"refund","approver":"ops"}"#,
        r#"{"event_id":"t1","event_type":"tool_call","ts":"2026-03-03T10:01:00Z","tenant_id":"t1","run_id":"r1","tool":"refund","access":"write","status":"ok","idempotency_key":"k1","cost_usd":"0.25"}"#,
        r#"{"event_id":"f1","event_type":"run_finished","ts":"2026-03-03T10:02:00Z","tenant_id":"t1","run_id":"r1","outcome":"success"}"#,
    ];
    if bad {
        lines.extend([
            r#"{"event_id":"s2","event_type":"run_started","ts":"2026-03-03T11:00:00Z","tenant_id":"t1","run_id":"r 2","workflow":"support","agent_version":"v1","prompt_version":"p1"}"#,
            r#"{"event_id":"t2","event_type":"tool_call","ts":"2026-03-03T11:01:00Z","tenant_id":"t1","run_id":"r 2","tool":"refund","access":"write","status":"ok","idempotency_key":"k2","cost_usd":"0.75"}"#,
            r#"{"event_id":"a2","event_type":"approval","ts":"2026-03-03T11:01:30Z","tenant_id":"t1","run_id":"r 2","decision":"approved","tool":"refund","approver":"late-ops"}"#,
            r#"{"event_id":"o2","event_type":"human_override","ts":"2026-03-03T12:00:00Z","tenant_id":"t1","run_id":"r 2","kind":"rollback","actor":"sup","reason":"refund undone"}"#,
            r#"{"event_id":"f2","event_type":"run_finished","ts":"2026-03-03T11:02:00Z","tenant_id":"t1","run_id":"r 2","outcome":"success"}"#,
        ]);
    }
    lines.join("\n") + "\n"
}

fn lake_with(bad: bool) -> Env {
    let env = Env::new();
    let policies = env.write(
        "policies.csv",
        &format!("{POLICIES}*,support,2026-03-01,kb|refund,shell,refund,3,1.00\n"),
    );
    env.ok(&["load", "policies", policies.to_str().unwrap()]);
    let events = env.write("events.ndjson", &events(bad));
    env.ok(&["ingest", events.to_str().unwrap()]);
    env
}

fn code(env: &Env, args: &[&str]) -> i32 {
    env.run(args).status.code().unwrap()
}

#[test]
fn fail_on_fail_exits_0_when_ready_1_when_a_group_fails_2_when_it_cannot_judge() {
    let ready = lake_with(false);
    assert_eq!(
        code(&ready, &["readiness", "--by", "workflow", "--fail-on-fail"]),
        0
    );
    let not_ready = lake_with(true);
    assert_eq!(
        code(
            &not_ready,
            &["readiness", "--by", "workflow", "--fail-on-fail"]
        ),
        1
    );
    // Without the flag the verdict is printed, not the exit status.
    assert_eq!(code(&not_ready, &["readiness", "--by", "workflow"]), 0);
    // Split by tenant and run date, still one group fails.
    assert_eq!(
        code(
            &not_ready,
            &["readiness", "--by", "tenant_id,date", "--fail-on-fail"]
        ),
        1
    );
    // A period with no finished run: nothing to judge is an error, not a pass.
    let out = not_ready.run(&["readiness", "--from", "2026-04-01", "--fail-on-fail"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no finished runs"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    let out = not_ready.run(&["readiness", "--from", "2026-03-05", "--to", "2026-03-01"]);
    assert_eq!(out.status.code(), Some(2));
    let missing = Env::new();
    assert_eq!(code(&missing, &["readiness", "--fail-on-fail"]), 2);
}

#[test]
fn json_is_named_as_spec_section_8_and_lists_the_offending_runs() {
    let env = lake_with(true);
    let out = env.ok(&["readiness", "--by", "workflow", "--format", "json"]);
    let groups: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(groups.len(), 1);
    let g = &groups[0];
    for name in [
        "workflow",
        "runs",
        "tool_calls_over_limit_runs",
        "unlisted_tool_calls",
        "forbidden_tool_calls",
        "writes",
        "writes_with_idempotency_key",
        "ungated_writes",
        "replayable_run_rate",
        "cost_cap_breaches",
        "cost_per_success_usd",
        "success_rate",
        "override_rate",
        "tool_error_rate",
        "policy_block_rate",
        "bad_run_reports",
        "writes_gated",
        "runs_replayable",
        "cost_bounded",
        "ready",
        "offending_runs",
    ] {
        assert!(g.get(name).is_some(), "{name} missing: {g}");
    }
    assert_eq!(g["workflow"], "support");
    assert_eq!(g["runs"], 2);
    assert_eq!(g["writes"], 2);
    assert_eq!(g["writes_with_idempotency_key"], 2);
    assert_eq!(g["ungated_writes"], 1);
    assert_eq!(g["forbidden_tool_calls"], 0);
    assert_eq!(g["replayable_run_rate"], 1.0);
    assert_eq!(g["cost_cap_breaches"], 0);
    // Money is decimal text: 1.25 USD over the one success (r 2 was rolled back).
    assert_eq!(g["cost_per_success_usd"], "1.250000000000");
    assert_eq!(g["override_rate"], 0.5);
    assert_eq!(g["writes_gated"], false);
    assert_eq!(g["runs_replayable"], true);
    assert_eq!(g["cost_bounded"], true);
    assert_eq!(g["ready"], false);
    assert_eq!(g["writes_gated_failing_runs"], 1);
    let offending = g["offending_runs"].as_object().unwrap();
    assert_eq!(offending.keys().collect::<Vec<_>>(), ["writes_gated"]);
    let run = &offending["writes_gated"][0];
    assert_eq!(run["tenant_id"], "t1");
    assert_eq!(run["run_id"], "r 2");
    assert_eq!(run["tool"], "refund");
    assert_eq!(run["cost_usd"], "0.750000000000");

    // The table names the run and the command that explains it.
    let table = env.ok(&["readiness", "--by", "workflow"]);
    assert!(
        table.contains("NOT READY workflow=support")
            && table.contains("writes_gated fails: 1 run breaks it")
            && table.contains("agentledger timeline --tenant t1 --run 'r 2'"),
        "{table}"
    );
    // CSV: one row per group, the runs in their own column.
    let csv = env.ok(&["readiness", "--by", "workflow", "--format", "csv"]);
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header[0], "workflow");
    assert!(header.contains(&"ready".to_string()) && header.last().unwrap() == "offending_runs");
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 1);
    assert!(
        rows[0][header.len() - 1].contains("writes_gated t1/r 2"),
        "{csv}"
    );
}

#[test]
fn the_worst_runs_are_listed_up_to_the_limit_and_all_are_counted() {
    let env = Env::new();
    let policies = env.write(
        "policies.csv",
        &format!("{POLICIES}*,w,2026-03-01,,,,,0.10\n"),
    );
    env.ok(&["load", "policies", policies.to_str().unwrap()]);
    let mut lines = Vec::new();
    for i in 0..25 {
        let run = format!("r{i:02}");
        lines.push(format!(r#"{{"event_id":"s{i}","event_type":"run_started","ts":"2026-03-03T10:00:00Z","tenant_id":"t","run_id":"{run}","workflow":"w","agent_version":"v","prompt_version":"p"}}"#));
        lines.push(format!(r#"{{"event_id":"t{i}","event_type":"tool_call","ts":"2026-03-03T10:01:00Z","tenant_id":"t","run_id":"{run}","tool":"x","access":"read","status":"ok","cost_usd":"0.{:02}"}}"#, 11 + i));
        lines.push(format!(r#"{{"event_id":"f{i}","event_type":"run_finished","ts":"2026-03-03T10:02:00Z","tenant_id":"t","run_id":"{run}","outcome":"success"}}"#));
    }
    let events = env.write("e.ndjson", &(lines.join("\n") + "\n"));
    env.ok(&["ingest", events.to_str().unwrap()]);
    let out = env.ok(&["readiness", "--format", "json", "--limit", "3"]);
    let g = &serde_json::from_str::<Vec<Value>>(&out).unwrap()[0];
    assert_eq!(g["cost_cap_breaches"], 25);
    assert_eq!(g["cost_bounded_failing_runs"], 25);
    let listed: Vec<&str> = g["offending_runs"]["cost_bounded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    // Worst first: the largest excess over the cap.
    assert_eq!(listed, ["r24", "r23", "r22"]);
    let table = env.ok(&["readiness", "--limit", "3"]);
    assert!(
        table.contains("cost_bounded fails: 25 runs break it, the worst 3:"),
        "{table}"
    );
    assert_eq!(table.matches("agentledger timeline").count(), 3, "{table}");
}

#[test]
fn a_bad_policy_file_is_refused_whole_with_its_line_and_reason() {
    let env = Env::new();
    let good = env.write(
        "p1.csv",
        &format!("{POLICIES}*,support,2026-03-01,kb,,,3,1.00\n"),
    );
    let out = env.ok(&["load", "policies", good.to_str().unwrap()]);
    assert!(
        out.contains("loaded 1 rows into workflow_policies"),
        "{out}"
    );
    for (body, expect) in [
        (
            "*,support,2026-03-01,kb,,,3,1.00\nacme,support,2026-03-01,kb,,,3,-2\n",
            "line 3: max_cost_usd_per_run '-2' is negative",
        ),
        (
            "*,support,2026-03-01,kb,,,3,1.00\n*,support,2026-03-01,kb,,,4,1.00\n",
            "line 3: a second row for tenant '*' and workflow 'support'",
        ),
        (
            "*,support,2026-03-01,kb,,,3,0.0000000000001\n",
            "line 2: max_cost_usd_per_run '0.0000000000001' has 13 fractional digits",
        ),
        (
            "*,support,2026-03-01,kb,,,three,1.00\n",
            "line 2: max_tool_calls_per_run 'three' is not a whole number",
        ),
        (
            "acme corp,support,2026-03-01,,,,,\n",
            "line 2: tenant_id 'acme corp'",
        ),
        (
            "*,support,2026-03-01,kb,kb,,,\n",
            "line 2: tool 'kb' is in both",
        ),
        (
            "*,support,2026-3-1,,,,,\n",
            "line 2: effective_from '2026-3-1' is not a date",
        ),
    ] {
        let bad = env.write("p2.csv", &format!("{POLICIES}{body}"));
        let err = env.fails(&["load", "policies", bad.to_str().unwrap()]);
        assert!(err.contains("p2.csv") && err.contains(expect), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        // The table in force stays as it was.
        assert_eq!(env.scalar("SELECT count(*) FROM workflow_policies"), "1");
        assert_eq!(
            env.scalar("SELECT max_cost_usd_per_run FROM workflow_policies"),
            "1.000000000000"
        );
    }
    let header = env.write("p3.csv", "tenant_id,workflow,effective_from\n");
    let err = env.fails(&["load", "policies", header.to_str().unwrap()]);
    assert!(
        err.contains("line 1") && err.contains("header must be exactly"),
        "{err}"
    );
}

#[test]
fn a_timeline_page_shows_the_policy_the_breach_and_the_late_approval() {
    let env = lake_with(true);
    let page_path = env.path("r2.html");
    env.ok(&[
        "timeline",
        "--tenant",
        "t1",
        "--run",
        "r 2",
        "--format",
        "html",
        "--out",
        page_path.to_str().unwrap(),
    ]);
    let page = std::fs::read_to_string(&page_path).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "self-contained"
    );
    assert!(page.contains("workflow_policies row for every tenant (*), effective from 2026-03-01"));
    assert!(page.contains("write to refund without an approval at or before it"));
    assert!(
        page.contains(
            "approved by late-ops at 2026-03-03T11:01:30.000000Z (after: does not gate it"
        )
    );
    assert!(page.contains("run rollback by sup"));
    assert!(page.contains("writes_gated: <span class=\"fail\">FAIL</span>"));
    // Events in order, each with its cost and the running total.
    let t2 = page.find("<code>t2</code>").unwrap();
    let a2 = page.find("<code>a2</code>").unwrap();
    assert!(t2 < a2);
    assert!(page.contains("0.750000000000"));
    // To stdout without --out; the rows formats are as they were.
    let stdout = env.ok(&[
        "timeline", "--tenant", "t1", "--run", "r1", "--format", "html",
    ]);
    assert!(
        stdout.contains("No breach of the policy in this run."),
        "{stdout}"
    );
    let json: Vec<Value> = serde_json::from_str(&env.ok(&[
        "timeline", "--tenant", "t1", "--run", "r1", "--format", "json",
    ]))
    .unwrap();
    assert_eq!(json.len(), 5);
    assert_eq!(json[4]["running_cost_usd"], "0.500000000000");
    let err = env.fails(&[
        "timeline", "--tenant", "t1", "--run", "nope", "--format", "html",
    ]);
    assert!(err.contains("no events for run `nope`"), "{err}");
}

#[test]
fn the_weekly_report_has_a_readiness_section_with_timeline_pages() {
    let env = sample_lake();
    let out = env.path("report");
    env.ok(&[
        "report",
        "--week",
        "2026-W43",
        "--out",
        out.to_str().unwrap(),
    ]);
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<h2 id=\"readiness\">Production readiness</h2>"));
    // support_reply keeps to its policy; data_cleanup does not.
    assert!(
        html.contains("support_reply: <span class=\"pass\">READY</span>"),
        "support_reply"
    );
    assert!(
        html.contains("data_cleanup: <span class=\"fail\">NOT READY</span>"),
        "data_cleanup"
    );
    // Every offending run links to its page, written next to the report.
    let links: Vec<&str> = html
        .split("<a href=\"")
        .skip(1)
        .map(|s| &s[..s.find('"').unwrap()])
        .collect();
    assert!(!links.is_empty());
    for link in &links {
        assert!(
            link.starts_with("timeline-") && link.ends_with(".html"),
            "{link}"
        );
        let page = std::fs::read_to_string(out.join(link)).unwrap();
        assert!(page.contains("<h2>Policy in force</h2>"), "{link}");
        assert!(page.contains("class=\"fail\""), "{link} marks a failure");
    }
    assert!(html.contains("agentledger timeline --tenant "));
    // The readiness verdicts agree with `agentledger readiness`.
    let groups: Vec<Value> = serde_json::from_str(&env.ok(&[
        "readiness",
        "--by",
        "workflow",
        "--from",
        "2026-10-19",
        "--to",
        "2026-10-26",
        "--format",
        "json",
    ]))
    .unwrap();
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let listed = summary["readiness"].as_array().unwrap();
    assert_eq!(listed.len(), groups.len());
    for g in &groups {
        let s = listed
            .iter()
            .find(|s| s["workflow"] == g["workflow"])
            .unwrap();
        for key in [
            "runs",
            "writes_gated",
            "runs_replayable",
            "cost_bounded",
            "ready",
        ] {
            assert_eq!(s[key], g[key], "{key} of {}", g["workflow"]);
        }
    }
    // A negative account that also fails readiness says so in its alert.
    let tenants: Vec<Value> = serde_json::from_str(&env.ok(&[
        "readiness",
        "--by",
        "tenant_id",
        "--from",
        "2026-10-19",
        "--to",
        "2026-10-26",
        "--format",
        "json",
    ]))
    .unwrap();
    let alerts: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(out.join("alerts.json")).unwrap()).unwrap();
    assert!(!alerts.is_empty());
    for a in &alerts {
        let t = tenants
            .iter()
            .find(|t| t["tenant_id"] == a["tenant_id"])
            .unwrap();
        assert_eq!(a["ready"], t["ready"], "{a}");
        let failed: Vec<&str> = ["writes_gated", "runs_replayable", "cost_bounded"]
            .into_iter()
            .filter(|c| t[*c] == false)
            .collect();
        assert_eq!(a["readiness_failed"], serde_json::json!(failed), "{a}");
        if !failed.is_empty() {
            assert!(html.contains(&format!(
                "{} also fails readiness this week",
                a["tenant_id"].as_str().unwrap()
            )));
        }
    }
    assert!(alerts.iter().any(|a| a["ready"] == false));
}

#[test]
fn the_sample_exercises_every_readiness_measure() {
    let env = sample_lake();
    let all: Vec<Value> =
        serde_json::from_str(&env.ok(&["readiness", "--format", "json"])).unwrap();
    let g = &all[0];
    for measure in [
        "tool_calls_over_limit_runs",
        "unlisted_tool_calls",
        "forbidden_tool_calls",
        "writes",
        "ungated_writes",
        "cost_cap_breaches",
        "runs_without_cost_cap",
        "bad_run_reports",
    ] {
        assert!(g[measure].as_i64().unwrap() > 0, "{measure}: {g}");
    }
    assert!(g["writes_with_idempotency_key"].as_i64() < g["writes"].as_i64());
    let replayable = g["replayable_run_rate"].as_f64().unwrap();
    assert!(replayable > 0.0 && replayable < 1.0, "{g}");
    // A tenant's own row overrides '*', and a cap changes mid-period.
    assert_eq!(
        env.scalar("SELECT count(DISTINCT policy_tenant_id) FROM readiness_runs WHERE workflow = 'invoice_triage'"),
        "2"
    );
    assert_eq!(
        env.scalar("SELECT count(DISTINCT max_cost_usd_per_run) FROM readiness_runs WHERE workflow = 'data_cleanup' AND tenant_id = 'globex'"),
        "2"
    );
    // Some workflow keeps to its policy; the others do not.
    let by_workflow: Vec<Value> =
        serde_json::from_str(&env.ok(&["readiness", "--by", "workflow", "--format", "json"]))
            .unwrap();
    let ready: Vec<&str> = by_workflow
        .iter()
        .filter(|w| w["ready"] == true)
        .map(|w| w["workflow"].as_str().unwrap())
        .collect();
    assert_eq!(ready, ["support_reply"]);
    for condition in ["writes_gated", "runs_replayable", "cost_bounded"] {
        assert!(
            by_workflow.iter().any(|w| w[condition] == false),
            "no workflow fails {condition}"
        );
    }
}
