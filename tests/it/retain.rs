//! `agentledger retain`: old partitions out, atomically, with a dry run.

use crate::common::{Env, data_files, sample};

#[test]
fn retain_lists_then_removes_old_partitions_and_keeps_the_rest() {
    let env = Env::new();
    env.ok(&["load", "prices", &sample("model_prices.csv")]);
    env.ok(&["ingest", &sample("events.ndjson")]);
    let today = chrono::Utc::now().date_naive();
    // Keep the sample's last week or so, whatever today is.
    let keep_from = chrono::NaiveDate::from_ymd_opt(2026, 10, 27).unwrap();
    let days = (today - keep_from).num_days().to_string();
    let before = env.scalar("SELECT count(*) FROM events");
    let kept = env.scalar("SELECT count(*) FROM events WHERE date >= DATE '2026-10-27'");
    let files_before = data_files(&env.lake(), "events").len();

    let dry = env.ok(&["retain", "--days", &days, "--dry-run"]);
    assert!(dry.contains("would delete events/date=2026-10-05"), "{dry}");
    assert!(!dry.contains("date=2026-10-27"), "{dry}");
    assert!(dry.contains("dry run, nothing changed"), "{dry}");
    assert_eq!(env.scalar("SELECT count(*) FROM events"), before);
    assert_eq!(data_files(&env.lake(), "events").len(), files_before);

    let summary = env.json_with_env(
        ("AGENTLEDGER_RETAIN_GRACE_SECS", "0"),
        &["retain", "--days", &days, "--format", "json"],
    );
    let removed_rows: u64 = summary["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["table"] == "events")
        .map(|p| p["rows"].as_u64().unwrap())
        .sum();
    assert_eq!(
        removed_rows,
        before.parse::<u64>().unwrap() - kept.parse::<u64>().unwrap()
    );
    assert_eq!(env.scalar("SELECT count(*) FROM events"), kept);
    assert_eq!(env.scalar("SELECT min(date) FROM events"), "2026-10-27");
    // The files are gone from storage; the quarantine (dated by ingest: today) stays.
    assert!(summary["files_deleted"].as_u64().unwrap() > 0);
    assert!(
        data_files(&env.lake(), "events")
            .iter()
            .all(|f| f.as_str() >= "events/date=2026-10-27")
    );
    assert_ne!(env.scalar("SELECT count(*) FROM quarantine"), "0");
    // Reference tables are untouched.
    assert_eq!(env.scalar("SELECT count(*) FROM model_prices"), "4");
    // Again: nothing more to do.
    let again = env.ok(&["retain", "--days", &days]);
    assert!(again.starts_with("0 partitions"), "{again}");
}

#[test]
fn removed_files_wait_out_the_grace_period_for_running_queries() {
    let env = Env::new();
    env.ok(&["ingest", &sample("events.ndjson")]);
    let files_before = data_files(&env.lake(), "events").len();
    // Default grace (an hour): readers stop seeing the data now, the files stay.
    env.ok(&["retain", "--days", "0"]);
    assert_eq!(env.scalar("SELECT count(*) FROM events"), "0");
    assert_eq!(data_files(&env.lake(), "events").len(), files_before);
    // A later ingest does not mistake them for orphans.
    let f = env.write(
        "late.ndjson",
        r#"{"event_id":"late","event_type":"run_finished","ts":"2026-11-20T10:00:00Z","tenant_id":"acme","run_id":"r","outcome":"success"}
"#,
    );
    env.ingest(&[&f]);
    assert_eq!(data_files(&env.lake(), "events").len(), files_before + 1);
    // Once due, the next retain deletes them.
    env.ok_with_env(
        ("AGENTLEDGER_RETAIN_GRACE_SECS", "0"),
        &["retain", "--days", "3650"],
    );
    assert_eq!(data_files(&env.lake(), "events").len(), 1);
}
