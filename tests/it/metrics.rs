//! `agentledger metrics`, `gate` and `timeline` end to end, on the bundled
//! sample and on small hand-made lakes.

use serde_json::Value;

use crate::common::{Env, sample, sample_lake};

/// Decimal text with 12 fractional digits as units of 10^-12.
fn units(v: &Value) -> i128 {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("money as text, got {v}"));
    let (int, frac) = s.split_once('.').expect("12 fractional digits");
    assert_eq!(frac.len(), 12, "{s}");
    let neg = int.starts_with('-');
    let magnitude = int.trim_start_matches('-').parse::<i128>().unwrap() * 1_000_000_000_000
        + frac.parse::<i128>().unwrap();
    if neg { -magnitude } else { magnitude }
}

const METRIC_NAMES: &[&str] = &[
    "runs",
    "successes",
    "success_rate",
    "cost_usd",
    "cost_per_success_usd",
    "override_rate",
    "cap_hit_rate",
    "model_calls",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "cache_hits",
    "unpriced_model_calls",
    "tool_calls",
    "tool_errors",
    "tool_error_rate",
    "policy_blocks",
    "policy_block_rate",
    "approvals_requested",
    "approvals_rejected",
    "bad_run_reports",
];

#[test]
fn metrics_json_is_named_as_the_spec_and_adds_up_to_the_runs_table() {
    let env = sample_lake();
    let out = env.run(&["metrics", "--by", "tenant_id,week", "--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning:") && stderr.contains("unpriced"),
        "the sample has an unpriced model, so money comes with a warning: {stderr}"
    );
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(rows.len() > 5, "{rows:?}");
    let mut names: Vec<&str> = vec!["tenant_id", "week"];
    names.extend(METRIC_NAMES);
    names.extend(["revenue_usd", "margin_usd", "gross_margin"]);
    let (mut runs, mut cost, mut negative) = (0, 0i128, 0);
    for row in &rows {
        let obj = row.as_object().unwrap();
        assert_eq!(
            obj.keys().map(String::as_str).collect::<Vec<_>>().len(),
            names.len()
        );
        for name in &names {
            assert!(obj.contains_key(*name), "{name} missing from {row}");
        }
        let week = obj["week"].as_str().unwrap();
        let monday = chrono::NaiveDate::parse_from_str(week, "%Y-%m-%d").unwrap();
        assert_eq!(
            chrono::Datelike::weekday(&monday),
            chrono::Weekday::Mon,
            "{week}"
        );
        // margin = revenue - cost exactly; gross margin = margin / revenue.
        let (revenue, c, margin) = (
            units(&obj["revenue_usd"]),
            units(&obj["cost_usd"]),
            units(&obj["margin_usd"]),
        );
        assert_eq!(margin, revenue - c, "{row}");
        if revenue == 0 {
            assert!(obj["gross_margin"].is_null());
        } else {
            let g = obj["gross_margin"].as_f64().unwrap();
            assert!((g - margin as f64 / revenue as f64).abs() < 1e-9, "{row}");
        }
        negative += i32::from(margin < 0);
        runs += obj["runs"].as_i64().unwrap();
        cost += c;
        assert!(obj["success_rate"].as_f64().unwrap() <= 1.0);
    }
    assert!(
        negative > 0,
        "the sample has tenants losing money in some weeks"
    );
    let finished = env.scalar("SELECT count(*) FROM runs WHERE finished");
    assert_eq!(runs.to_string(), finished);
    let total = env.scalar("SELECT sum(cost_usd) FROM runs WHERE finished");
    assert_eq!(units(&Value::String(total)), cost);
}

#[test]
fn metrics_are_the_same_on_every_run_and_for_any_number_of_partitions() {
    let env = sample_lake();
    let args = [
        "metrics",
        "--by",
        "tenant_id,workflow,agent_version,week",
        "--format",
        "csv",
    ];
    let first = env.ok(&args);
    assert_eq!(env.ok(&args), first);
    for partitions in ["1", "3", "16"] {
        let out = env
            .command()
            .args(args)
            .env("DATAFUSION_EXECUTION_TARGET_PARTITIONS", partitions)
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            first,
            "{partitions} partitions"
        );
    }
    // CSV money is decimal text.
    let header = first.lines().next().unwrap();
    assert!(
        header.starts_with("tenant_id,workflow,agent_version,week,runs,successes"),
        "{header}"
    );
    assert!(
        !header.contains("revenue_usd"),
        "no revenue without tenant and period alone"
    );
}

#[test]
fn the_table_notes_open_runs_and_open_lists_them() {
    let env = sample_lake();
    let open = env.scalar("SELECT count(*) FROM runs WHERE NOT finished");
    assert_ne!(open, "0", "the sample has open runs");
    let table = env.ok(&["metrics", "--by", "tenant_id"]);
    assert!(
        table.contains(&format!("{open} open run")),
        "the table notes the open runs: {table}"
    );
    let rows: Vec<Value> = serde_json::from_str(&env.ok(&[
        "metrics",
        "--open",
        "--by",
        "tenant_id,week",
        "--format",
        "json",
    ]))
    .unwrap();
    let listed: i64 = rows.iter().map(|r| r["open_runs"].as_i64().unwrap()).sum();
    assert_eq!(listed.to_string(), open);
    assert!(
        rows.iter().all(|r| r.get("week").is_none()),
        "an open run has no week"
    );
}

#[test]
fn bad_arguments_are_refused_with_the_reason() {
    let env = sample_lake();
    let err = env.fails(&["metrics", "--by", "tenant,week"]);
    assert!(err.contains("unknown key `tenant`"), "{err}");
    let err = env.fails(&["metrics", "--from", "2026-10-10", "--to", "2026-10-10"]);
    assert!(err.contains("is not before"), "{err}");
    let err = env.fails(&["metrics", "--from", "10/10/2026"]);
    assert!(err.contains("--from"), "{err}");
    let missing = Env::new();
    assert!(missing.fails(&["metrics"]).contains("no lake at"));
}

fn runs(env: &Env, version: &str, total: usize, successes: usize) {
    let mut lines = String::new();
    for i in 0..total {
        let outcome = if i < successes { "success" } else { "failure" };
        lines.push_str(&format!(
            "{{\"event_id\":\"{version}-{i}-s\",\"event_type\":\"run_started\",\"ts\":\"2026-03-02T09:00:00Z\",\"tenant_id\":\"t\",\"run_id\":\"{version}-{i}\",\"workflow\":\"w\",\"agent_version\":\"{version}\"}}\n\
             {{\"event_id\":\"{version}-{i}-f\",\"event_type\":\"run_finished\",\"ts\":\"2026-03-02T10:00:00Z\",\"tenant_id\":\"t\",\"run_id\":\"{version}-{i}\",\"outcome\":\"{outcome}\"}}\n"
        ));
    }
    let file = env.write(&format!("{version}.ndjson"), &lines);
    env.ingest(&[&file]);
}

#[test]
fn gate_exits_0_on_pass_1_on_fail_2_on_error() {
    let env = Env::new();
    runs(&env, "v1", 50, 45);
    runs(&env, "v2", 50, 40);
    let code = |args: &[&str]| env.run(args).status.code();
    assert_eq!(
        code(&["gate", "--baseline", "v1", "--candidate", "v2"]),
        Some(1)
    );
    assert_eq!(
        code(&[
            "gate",
            "--baseline",
            "v1",
            "--candidate",
            "v2",
            "--threshold",
            "10"
        ]),
        Some(0)
    );
    assert_eq!(
        code(&["gate", "--baseline", "v2", "--candidate", "v1"]),
        Some(0)
    );
    let out = env.run(&["gate", "--baseline", "v1", "--candidate", "v9"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`v9` has no finished runs"));
    let out = env.run(&[
        "gate",
        "--baseline",
        "v1",
        "--candidate",
        "v2",
        "--from",
        "2026-04-01",
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "no runs in the period is an error, not a pass"
    );

    let text = env.run(&["gate", "--baseline", "v1", "--candidate", "v2"]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains("45/50") && text.contains("40/50") && text.contains("FAIL"),
        "{text}"
    );
    assert!(text.contains("10.00 points"), "{text}");

    let json: Value = serde_json::from_str(&env.ok(&[
        "gate",
        "--baseline",
        "v1",
        "--candidate",
        "v2",
        "--threshold",
        "10",
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(json["verdict"], "pass");
    assert_eq!(json["baseline"]["runs"], 50);
    assert_eq!(json["candidate"]["successes"], 40);
    let (low, high) = (
        json["drop_ci_low_pp"].as_f64().unwrap(),
        json["drop_ci_high_pp"].as_f64().unwrap(),
    );
    assert!(
        low < 10.0 && 10.0 < high && low < 0.0,
        "a 10-point drop on 50 runs each is within noise: {json}"
    );
}

#[test]
fn timeline_lists_a_runs_events_in_order_with_a_running_cost() {
    let env = sample_lake();
    let run = env.query(
        "SELECT tenant_id, run_id, CAST(cost_usd AS VARCHAR) AS cost, events FROM runs \
         WHERE finished AND model_calls > 2 AND tool_calls > 0 ORDER BY tenant_id, run_id LIMIT 1",
    );
    let (tenant, run_id) = (
        run[0]["tenant_id"].as_str().unwrap(),
        run[0]["run_id"].as_str().unwrap(),
    );
    let rows: Vec<Value> = serde_json::from_str(&env.ok(&[
        "timeline", "--tenant", tenant, "--run", run_id, "--format", "json",
    ]))
    .unwrap();
    assert_eq!(rows.len() as i64, run[0]["events"].as_i64().unwrap());
    let mut running = 0i128;
    let mut last = (String::new(), String::new());
    for row in &rows {
        let key = (
            row["ts"].as_str().unwrap().to_string(),
            row["event_id"].as_str().unwrap().to_string(),
        );
        assert!(
            key.0 > last.0 || (key.0 == last.0 && key.1.as_bytes() > last.1.as_bytes()),
            "order: {rows:?}"
        );
        last = key;
        if !row["cost_usd"].is_null() {
            running += units(&row["cost_usd"]);
        }
        assert_eq!(units(&row["running_cost_usd"]), running);
    }
    assert_eq!(running, units(&run[0]["cost"]));
    let err = env.fails(&["timeline", "--tenant", tenant, "--run", "no-such-run"]);
    assert!(err.contains("no events for run `no-such-run`"), "{err}");
}

/// A large lake's steady state in miniature: a base of one row per run,
/// then ingests of late events for its runs and of new runs. Sessions merge
/// only the runs the newer parts touch (merge on read), and every figure
/// equals the one computed from every event.
#[test]
fn runs_merged_on_read_equal_runs_computed_from_every_event() {
    let env = Env::new();
    let big = ("AGENTLEDGER_MERGE_ALWAYS_ROWS", "0");
    env.ok(&["load", "prices", &sample("model_prices.csv")]);
    env.ok(&["load", "plans", &sample("customer_plans.csv")]);
    let events = env.generated_sample(400, 23);
    let text = std::fs::read_to_string(&events).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let cut = lines.len() * 3 / 5;
    let first = env.write("first.ndjson", &(lines[..cut].join("\n") + "\n"));
    env.ok_with_env(big, &["ingest", first.to_str().unwrap()]);
    env.ok_with_env(big, &["rebuild"]);
    for (i, chunk) in lines[cut..].chunks(lines.len() / 10).enumerate() {
        let f = env.write(&format!("late-{i}.ndjson"), &(chunk.join("\n") + "\n"));
        env.ok_with_env(big, &["ingest", f.to_str().unwrap()]);
    }
    let plan = env.ok(&["sql", "EXPLAIN SELECT count(*) FROM runs"]);
    assert!(plan.contains("RightAnti"), "sessions merge on read: {plan}");
    let from_events = ("AGENTLEDGER_DEFINITIONS_SALT", "every-part-stale");
    let runs = "SELECT * FROM runs ORDER BY tenant_id, run_id";
    let ours = env.ok(&["sql", "--format", "csv", runs]);
    assert!(ours.lines().count() > 300, "{ours}");
    assert_eq!(
        ours,
        env.ok_with_env(from_events, &["sql", "--format", "csv", runs])
    );
    let metrics = ["metrics", "--by", "tenant_id,week", "--format", "csv"];
    assert_eq!(env.ok(&metrics), env.ok_with_env(from_events, &metrics));
}
