//! `agentledger report` and `agentledger run` end to end: the report's
//! numbers against `metrics`, CSV escaping, webhook retries and no resend,
//! landing bookkeeping, the batch lock and exit codes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::common::{Env, sample, sample_lake};

const WEEK: &str = "2026-W43";
const MONDAY: &str = "2026-10-19";

fn csv_rows(text: &str) -> Vec<std::collections::HashMap<String, String>> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    reader
        .records()
        .map(|r| {
            header
                .iter()
                .cloned()
                .zip(r.unwrap().iter().map(String::from))
                .collect()
        })
        .collect()
}

/// Decimal text with 12 fractional digits (as the report writes money) in
/// units of 10^-12.
fn units(text: &str) -> i128 {
    let (int, frac) = text.split_once('.').unwrap();
    assert_eq!(frac.len(), 12, "{text}");
    let v = int.trim_start_matches('-').parse::<i128>().unwrap() * 1_000_000_000_000
        + frac.parse::<i128>().unwrap();
    if int.starts_with('-') { -v } else { v }
}

#[test]
fn the_reports_numbers_are_the_metrics_numbers() {
    let env = sample_lake();
    let out = env.path("report");
    let stdout = env.ok(&["report", "--week", WEEK, "--out", out.to_str().unwrap()]);
    assert!(
        stdout.contains(&out.join("report.html").display().to_string()),
        "{stdout}"
    );
    for name in [
        "report.html",
        "margin.csv",
        "alerts.json",
        "summary.json",
        "margin_by_tenant.png",
        "margin_by_tenant.svg",
        "cost_per_success_trend.png",
        "cost_per_success_trend.svg",
        "quality_rates_trend.png",
        "quality_rates_trend.svg",
        "cost_by_model.png",
        "cost_by_model.svg",
    ] {
        let meta = std::fs::metadata(out.join(name)).unwrap_or_else(|_| panic!("{name} missing"));
        assert!(meta.len() > 200, "{name} is nearly empty");
    }
    let png = std::fs::read(out.join("margin_by_tenant.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a real PNG");
    let svg = std::fs::read_to_string(out.join("cost_by_model.svg")).unwrap();
    assert!(
        svg.contains("<svg") && svg.contains("Cost (USD)"),
        "axis labelled with its unit"
    );

    // margin.csv against metrics --by tenant_id,week for the same week.
    let margin = csv_rows(&std::fs::read_to_string(out.join("margin.csv")).unwrap());
    let metrics: Vec<Value> = serde_json::from_str(&env.ok(&[
        "metrics",
        "--by",
        "tenant_id,week",
        "--from",
        MONDAY,
        "--to",
        "2026-10-26",
        "--format",
        "json",
    ]))
    .unwrap();
    assert!(!metrics.is_empty());
    for m in &metrics {
        let row = margin
            .iter()
            .find(|r| r["tenant_id"] == m["tenant_id"].as_str().unwrap())
            .unwrap_or_else(|| panic!("{} missing from margin.csv", m["tenant_id"]));
        assert_eq!(row["week"], MONDAY);
        assert_eq!(row["iso_week"], WEEK);
        for (csv_name, metric) in [
            ("revenue_usd", "revenue_usd"),
            ("cost_usd", "cost_usd"),
            ("margin_usd", "margin_usd"),
        ] {
            assert_eq!(
                row[csv_name],
                m[metric].as_str().unwrap(),
                "{csv_name} of {}",
                row["tenant_id"]
            );
        }
        assert_eq!(row["runs"], m["runs"].to_string());
        assert_eq!(row["successes"], m["successes"].to_string());
        assert_eq!(
            row["cost_per_success_usd"],
            m["cost_per_success_usd"].as_str().unwrap_or("")
        );
    }
    // Tenants with a plan in force and no run are listed too; nothing else.
    let plan_only: Vec<_> = margin
        .iter()
        .filter(|r| {
            !metrics
                .iter()
                .any(|m| m["tenant_id"] == r["tenant_id"].as_str())
        })
        .collect();
    for r in &plan_only {
        assert_eq!(r["runs"], "0");
        assert_eq!(r["cost_usd"], "0.000000000000");
    }

    // alerts.json: exactly the negative rows, with SPEC's fields.
    let alerts: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(out.join("alerts.json")).unwrap()).unwrap();
    let negative: Vec<&str> = margin
        .iter()
        .filter(|r| r["margin_usd"].starts_with('-'))
        .map(|r| r["tenant_id"].as_str())
        .collect();
    assert!(!negative.is_empty(), "the sample has negative accounts");
    let mut alerted: Vec<&str> = alerts
        .iter()
        .map(|a| a["tenant_id"].as_str().unwrap())
        .collect();
    alerted.sort_unstable();
    let mut expected = negative.clone();
    expected.sort_unstable();
    assert_eq!(alerted, expected);
    for a in &alerts {
        for field in [
            "tenant_id",
            "week",
            "iso_week",
            "revenue_usd",
            "cost_usd",
            "margin_usd",
            "gross_margin",
            "runs",
            "successes",
            "cost_per_success_usd",
            "consecutive_negative_weeks",
            "top_cost_workflow",
            "top_cost_model",
        ] {
            assert!(a.get(field).is_some(), "{field} missing in {a}");
        }
        assert_eq!(a["week"], MONDAY);
        assert_eq!(a["iso_week"], WEEK);
        assert!(a["margin_usd"].as_str().unwrap().starts_with('-'));
        // The streak, from metrics of the weeks before.
        let tenant = a["tenant_id"].as_str().unwrap();
        let weekly: Vec<Value> = serde_json::from_str(&env.ok(&[
            "metrics",
            "--by",
            "tenant_id,week",
            "--to",
            "2026-10-26",
            "--format",
            "json",
        ]))
        .unwrap();
        let mut streak = 0;
        let mut monday = chrono::NaiveDate::parse_from_str(MONDAY, "%Y-%m-%d").unwrap();
        while weekly.iter().any(|w| {
            w["tenant_id"] == tenant
                && w["week"] == monday.to_string()
                && w["margin_usd"].as_str().unwrap().starts_with('-')
        }) {
            streak += 1;
            monday -= chrono::Duration::days(7);
        }
        assert_eq!(a["consecutive_negative_weeks"], streak, "{a}");
        // The top workflow is the one with the largest cost.
        let workflows: Vec<Value> = serde_json::from_str(&env.ok(&[
            "metrics",
            "--by",
            "tenant_id,workflow",
            "--from",
            MONDAY,
            "--to",
            "2026-10-26",
            "--format",
            "json",
        ]))
        .unwrap();
        let top = workflows
            .iter()
            .filter(|w| w["tenant_id"] == tenant)
            .max_by(|x, y| {
                let c = |v: &Value| v["cost_usd"].as_str().unwrap().parse::<f64>().unwrap();
                c(x).partial_cmp(&c(y)).unwrap()
            })
            .unwrap();
        assert_eq!(a["top_cost_workflow"], top["workflow"], "{a}");
    }

    // summary.json adds up margin.csv.
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let runs: i64 = margin
        .iter()
        .map(|r| r["runs"].parse::<i64>().unwrap())
        .sum();
    assert_eq!(summary["runs"], runs);
    assert_eq!(summary["negative_accounts"], alerts.len());
    assert_eq!(summary["iso_week"], WEEK);
    assert_eq!(summary["tenants"], margin.len());
    let sum = |column: &str| margin.iter().map(|r| units(&r[column])).sum::<i128>();
    for column in ["revenue_usd", "cost_usd", "margin_usd"] {
        assert_eq!(
            units(summary[column].as_str().unwrap()),
            sum(column),
            "{column}"
        );
    }
    // Its totals, this week's and the week before's, are those of `metrics`
    // with no keys over the same week.
    for (totals, from, to) in [
        (&summary, MONDAY, "2026-10-26"),
        (&summary["previous_week"], "2026-10-12", MONDAY),
    ] {
        let all: Vec<Value> = serde_json::from_str(
            &env.ok(&["metrics", "--from", from, "--to", to, "--format", "json"]),
        )
        .unwrap();
        assert_eq!(all.len(), 1, "{all:?}");
        assert_eq!(totals["week"], from);
        for column in ["runs", "successes", "cost_usd", "cost_per_success_usd"] {
            assert_eq!(
                totals[column], all[0][column],
                "{column} of the week of {from}"
            );
        }
        assert!(totals["cost_per_success_usd"].is_string(), "{totals}");
    }

    // The page is self-contained: no external reference at all.
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("src=\"/"));
    assert_eq!(html.matches("data:image/png;base64,").count(), 4);
    assert!(html.contains("Negative accounts") && html.contains("Unpriced model calls"));
}

#[test]
fn csv_cells_a_spreadsheet_would_run_are_escaped_in_margin_csv() {
    let env = Env::new();
    // A tenant id may start with `-`, which a spreadsheet reads as a formula.
    let file = env.write(
        "e.ndjson",
        r#"{"event_id":"1","event_type":"tool_call","ts":"2026-10-20T10:00:00Z","tenant_id":"-cmd","run_id":"r","tool":"t","access":"read","status":"ok","cost_usd":"1"}
{"event_id":"2","event_type":"run_finished","ts":"2026-10-20T11:00:00Z","tenant_id":"-cmd","run_id":"r","outcome":"success"}
"#,
    );
    assert_eq!(env.ingest(&[&file])["stored"], 2);
    let out = env.path("r");
    env.ok(&["report", "--week", WEEK, "--out", out.to_str().unwrap()]);
    let text = std::fs::read_to_string(out.join("margin.csv")).unwrap();
    assert!(text.contains("\n'-cmd,"), "{text}");
    assert!(
        text.contains(",-1.000000000000,"),
        "numbers stay numbers: {text}"
    );
}

/// A webhook on loopback that answers 503 to the first `failures` requests.
struct Hook {
    url: String,
    bodies: Arc<Mutex<Vec<String>>>,
}

fn hook(failures: usize) -> Hook {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook/secret", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&bodies);
    std::thread::spawn(move || {
        let mut count = 0;
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            count += 1;
            let status = if count <= failures {
                "503 Service Unavailable"
            } else {
                "200 OK"
            };
            if count > failures {
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&body).into_owned());
            }
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            );
        }
    });
    Hook { url, bodies }
}

/// `agentledger report` of WEEK into `out`, posting alerts to `url`:
/// success, stdout and stderr.
fn report_to_hook(env: &Env, out: &std::path::Path, url: &str) -> (bool, String, String) {
    let o = env.run(&[
        "report",
        "--week",
        WEEK,
        "--out",
        out.to_str().unwrap(),
        "--webhook",
        url,
    ]);
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn alerts_are_retried_through_failures_and_never_sent_twice() {
    let env = sample_lake();
    let out = env.path("report");
    let h = hook(2);
    let (ok, stdout, stderr) = report_to_hook(&env, &out, &h.url);
    assert!(ok, "{stderr}");
    let alerts: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(out.join("alerts.json")).unwrap()).unwrap();
    let bodies = h.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), alerts.len(), "{stdout}");
    assert!(
        stdout.contains(&format!("{} sent, 0 already sent, 0 failed", alerts.len())),
        "{stdout}"
    );
    for body in &bodies {
        let v: Value = serde_json::from_str(body).unwrap();
        assert!(
            v["text"].as_str().unwrap().contains(WEEK),
            "Slack-compatible text: {v}"
        );
        assert!(
            alerts
                .iter()
                .any(|a| a["tenant_id"] == v["tenant_id"] && a["margin_usd"] == v["margin_usd"])
        );
    }
    // Again: nothing new is sent.
    let (ok, stdout, stderr) = report_to_hook(&env, &out, &h.url);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains(&format!("0 sent, {} already sent", alerts.len())),
        "{stdout}"
    );
    assert_eq!(h.bodies.lock().unwrap().len(), alerts.len());
    // The lake records deliveries without the secret URL.
    let log = std::fs::read_dir(env.lake().join("_log"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect::<String>();
    assert!(log.contains("\"alerts\"") && !log.contains("/hook/secret"));
}

#[test]
fn a_webhook_that_keeps_failing_fails_the_command_and_a_rerun_retries() {
    let env = sample_lake();
    let out = env.path("report");
    // Every attempt of the first run fails (5 per alert, 2 alerts).
    let h = hook(10);
    let (ok, _, err) = report_to_hook(&env, &out, &h.url);
    assert!(!ok);
    assert!(
        err.contains("did not take") && err.contains("HTTP 503"),
        "{err}"
    );
    assert!(h.bodies.lock().unwrap().is_empty());
    // The server is back: a re-run delivers what failed, once.
    let (ok, stdout, err) = report_to_hook(&env, &out, &h.url);
    assert!(ok, "{err}");
    assert!(
        stdout.contains("2 sent, 0 already sent, 0 failed"),
        "{stdout}"
    );
    assert_eq!(h.bodies.lock().unwrap().len(), 2);
}

/// A lake folder with one landing file of the sample and a batch config
/// naming it and the sample's reference files.
pub(crate) fn batch_env() -> (Env, std::path::PathBuf) {
    let env = Env::new();

    let landing = env.path("landing");
    std::fs::create_dir_all(&landing).unwrap();
    std::fs::copy(sample("events.ndjson"), landing.join("a.ndjson")).unwrap();
    let config = env.write(
        "batch.toml",
        &format!(
            "lake = \"lake\"\nlanding = \"landing\"\nprices = \"{}\"\nplans = \"{}\"\npolicies = \"{}\"\nreports = \"reports\"\n",
            sample("model_prices.csv"),
            sample("customer_plans.csv"),
            sample("workflow_policies.csv")
        ),
    );
    (env, config)
}

#[test]
fn the_batch_ingests_each_landing_file_once_and_reports_changes() {
    let (env, config) = batch_env();
    let c = config.to_str().unwrap();
    let out = env.run(&["run", "--config", c, "--week", WEEK, "--log-format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(out.stderr)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for l in &lines {
        assert!(
            l["timestamp"].as_str().is_some_and(|t| t.ends_with('Z'))
                && l["level"].is_string()
                && l["message"].is_string()
                && l["step"].is_string(),
            "{l}"
        );
    }
    let ingest = lines
        .iter()
        .find(|l| l["step"] == "ingest")
        .expect("an ingest line");
    let stored = ingest["stored"].as_u64().unwrap();
    assert!(stored > 1000);
    // The batch keeps the workflow policies loaded like the other tables.
    assert!(
        lines
            .iter()
            .any(|l| l["step"] == "policies" && l["message"] == "loaded"),
        "{lines:?}"
    );
    assert_eq!(env.scalar("SELECT count(*) FROM workflow_policies"), "6");
    let report = env.path("reports").join(WEEK).join("report.html");
    assert!(report.exists());
    assert!(
        lines
            .iter()
            .any(|l| l["report"] == report.display().to_string())
    );

    // Again: nothing new, references unchanged, same report.
    let out = env.run(&["run", "--config", c, "--week", WEEK]);
    let text = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("new=0") && text.contains("already_ingested=1"),
        "{text}"
    );
    assert!(text.contains("unchanged, not reloaded"), "{text}");
    assert!(!text.contains(" ingest "), "nothing re-read: {text}");

    // A new file is ingested; a changed one is reported, not re-read.
    std::fs::write(
        env.path("landing/b.ndjson"),
        r#"{"event_id":"new-1","event_type":"run_finished","ts":"2026-10-21T10:00:00Z","tenant_id":"acme","run_id":"late","outcome":"success"}
"#,
    )
    .unwrap();
    let mut a = std::fs::OpenOptions::new()
        .append(true)
        .open(env.path("landing/a.ndjson"))
        .unwrap();
    writeln!(a, r#"{{"event_id":"sneaky","event_type":"run_finished","ts":"2026-10-21T10:00:00Z","tenant_id":"acme","run_id":"x","outcome":"success"}}"#).unwrap();
    let out = env.run(&["run", "--config", c, "--week", WEEK]);
    let text = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("file changed after it was ingested") && text.contains("a.ndjson"),
        "{text}"
    );
    assert!(
        text.contains("new=1") && text.contains("stored=1"),
        "{text}"
    );
    assert_eq!(
        env.scalar("SELECT count(*) FROM events WHERE event_id = 'sneaky'"),
        "0"
    );
    assert_eq!(
        env.scalar("SELECT count(*) FROM events WHERE event_id = 'new-1'"),
        "1"
    );
}

#[test]
fn the_batch_exits_3_on_alerts_only_when_asked() {
    let (env, config) = batch_env();
    let c = config.to_str().unwrap();
    assert_eq!(
        env.run(&["run", "--config", c, "--week", WEEK])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        env.run(&["run", "--config", c, "--week", WEEK, "--fail-on-alert"])
            .status
            .code(),
        Some(3)
    );
}

/// A second live batch is refused; a batch killed on another node (a
/// lease record naming another host, never renewed) delays the next run only
/// until its lease expires.
#[test]
fn a_second_batch_is_refused_and_a_dead_ones_lease_is_taken_over() {
    let (env, config) = batch_env();
    let c = config.to_str().unwrap();
    // A live holder: another batch, renewing its (short) lease while it waits
    // on a webhook that never answers.
    let dir = env.lake().join("_lock/batch");
    std::fs::create_dir_all(&dir).unwrap();
    let record = |generation: u64, expires_in_ms: i64| {
        let expires = chrono::Utc::now() + chrono::Duration::milliseconds(expires_in_ms);
        serde_json::json!({
            "lease": "batch", "generation": generation, "holder": "other-node-1",
            "host": "other-node", "pid": 1, "purpose": "agentledger run",
            "acquired_at": "2026-11-24T02:00:00Z",
            "expires_at": expires.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        })
        .to_string()
    };
    // A live holder renews: simulate it by writing the next generation
    // while the second batch watches.
    std::fs::write(dir.join(format!("{:020}.json", 1)), record(1, 60_000)).unwrap();
    let renewer = {
        let dir = dir.clone();
        std::thread::spawn(move || {
            for g in 2..=6u64 {
                std::thread::sleep(std::time::Duration::from_millis(300));
                std::fs::write(dir.join(format!("{g:020}.json")), record(g, 60_000)).unwrap();
            }
        })
    };
    let started = std::time::Instant::now();
    let out = env.run(&["run", "--config", c, "--week", WEEK]);
    renewer.join().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("locked by another batch") && err.contains("agentledger run"),
        "{err}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "refused as soon as the renewal was seen, not after the lease"
    );
    assert!(!env.path("reports").exists(), "the second run did nothing");
    // A dead holder on another node: valid for 2 more seconds, never renewed.
    std::fs::write(dir.join(format!("{:020}.json", 7)), record(7, 2000)).unwrap();
    let started = std::time::Instant::now();
    let out = env.run(&["run", "--config", c, "--week", WEEK]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(started.elapsed() >= std::time::Duration::from_millis(1500));
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let last: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(names.last().unwrap())).unwrap())
            .unwrap();
    assert_eq!(last["released"], true, "released: {last}");
    assert!(last["generation"].as_u64().unwrap() > 7, "{last}");
}

#[test]
fn a_bad_config_is_refused_naming_the_key() {
    let env = Env::new();
    let config = env.write("batch.toml", "lake = \"lake\"\nlandng = \"x\"\n");
    let out = env.run(&["run", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("landng") && err.contains("batch.toml"),
        "{err}"
    );
}

#[test]
fn a_batch_killed_at_any_moment_is_finished_by_the_next_run() {
    // The clean result, for comparison.
    let (clean, clean_config) = batch_env();
    clean.ok(&[
        "run",
        "--config",
        clean_config.to_str().unwrap(),
        "--week",
        WEEK,
    ]);
    let events = clean.scalar("SELECT count(*) FROM events");
    let margin =
        std::fs::read_to_string(clean.path("reports").join(WEEK).join("margin.csv")).unwrap();

    for delay_ms in [30, 120, 250, 400, 700, 1000, 1500] {
        let (env, config) = batch_env();
        let c = config.to_str().unwrap();
        let mut child = env
            .command()
            // SIGKILL leaves its leases held: keep them short.
            .env("AGENTLEDGER_LEASE_SECS", "2")
            .args(["run", "--config", c, "--week", WEEK])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        // The next run completes the job; the one after has nothing to do.
        let out = env.run(&["run", "--config", c, "--week", WEEK]);
        assert!(
            out.status.success(),
            "after a kill at {delay_ms} ms: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            env.scalar("SELECT count(*) FROM events"),
            events,
            "kill at {delay_ms} ms"
        );
        assert_eq!(
            std::fs::read_to_string(env.path("reports").join(WEEK).join("margin.csv")).unwrap(),
            margin,
            "kill at {delay_ms} ms"
        );
        let again = env.run(&["run", "--config", c, "--week", WEEK]);
        let text = String::from_utf8(again.stderr).unwrap();
        assert!(text.contains("new=0"), "kill at {delay_ms} ms: {text}");
        let leftovers: Vec<_> = std::fs::read_dir(env.path("reports").join(WEEK))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-"))
            .collect();
        assert!(
            leftovers.is_empty(),
            "half-written files left behind: {leftovers:?}"
        );
    }
}
