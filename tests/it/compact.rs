use crate::common::{Env, data_files, sample};

/// The sample's events in four ingests of their own, then compacted: every
/// partition is one file, and every answer is what it was.
#[test]
fn compact_rewrites_small_files_and_changes_no_answer() {
    let env = Env::new();
    env.ok(&["load", "prices", &sample("model_prices.csv")]);
    env.ok(&["load", "plans", &sample("customer_plans.csv")]);
    for file in env.split_sample(4) {
        env.ingest(&[&file]);
    }
    let metrics = |env: &Env| env.ok(&["metrics", "--by", "tenant_id,week", "--format", "csv"]);
    let totals = "SELECT count(*), sum(cost_usd), count(DISTINCT event_id) FROM events";
    let before = (metrics(&env), env.query(totals));
    let files_before = data_files(&env.lake(), "events").len();

    let summary = env.json_with_env(
        ("AGENTLEDGER_RETAIN_GRACE_SECS", "0"),
        &["compact", "--min-files", "2", "--format", "json"],
    );
    assert!(summary["version"].is_u64(), "{summary}");
    assert_eq!(summary["files_before"], files_before);
    let after_files = data_files(&env.lake(), "events");
    assert_eq!(summary["files_after"], after_files.len(), "{summary}");
    assert!(
        after_files.len() < files_before,
        "{files_before} -> {after_files:?}"
    );
    // One file per partition now (the grace period was 0, so the old
    // files are gone from storage too).
    let mut dates: Vec<&str> = after_files
        .iter()
        .map(|f| f.split('/').find(|p| p.starts_with("date=")).unwrap())
        .collect();
    let n = dates.len();
    dates.dedup();
    assert_eq!(dates.len(), n, "{after_files:?}");

    assert_eq!((metrics(&env), env.query(totals)), before);
    let again = env.ok(&["compact", "--min-files", "2"]);
    assert!(again.contains("nothing to compact"), "{again}");
    // Later ingests see the compacted files: the same events are duplicates.
    let summary = env.ingest(&[&std::path::PathBuf::from(sample("events.ndjson"))]);
    assert_eq!(summary["stored"], 0, "{summary}");
}

#[test]
fn compact_refuses_a_lake_that_does_not_exist_and_a_minimum_below_two() {
    let env = Env::new();
    let err = env.fails(&["compact"]);
    assert!(err.contains("no lake at"), "{err}");
    env.ok(&["load", "prices", &sample("model_prices.csv")]);
    let err = env.fails(&["compact", "--min-files", "1"]);
    assert!(err.contains("--min-files"), "{err}");
}
