//! The Delta Lake logs other engines read (`<table>/_delta_log/`) stay in
//! step with the commits, also when a write was killed between its commit
//! and its Delta write and running it again finds nothing left to commit.

use crate::common::{Env, committed_files, delta_files};

use agentledger_lake::delta::{DELTA_LOG_DIR, TABLES};

fn assert_in_step(env: &Env, after: &str) {
    for table in TABLES {
        assert_eq!(
            delta_files(&env.lake(), table),
            committed_files(&env.lake(), table),
            "{after}: the Delta log of {table}"
        );
    }
}

/// Removes the newest Delta version of `events`: as if the process that
/// committed had been killed before writing it.
fn lose_newest_delta_version(env: &Env) {
    let dir = env.lake().join("events").join(DELTA_LOG_DIR);
    let newest = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    std::fs::remove_file(newest).unwrap();
    assert_ne!(
        delta_files(&env.lake(), "events"),
        committed_files(&env.lake(), "events"),
        "the Delta log is behind"
    );
}

#[test]
fn a_rerun_that_commits_nothing_still_brings_the_delta_logs_up_to_date() {
    let env = Env::new();
    let parts = env.split_sample(4);
    for part in &parts {
        env.ingest(&[part]);
    }
    assert_in_step(&env, "ingests");

    lose_newest_delta_version(&env);
    let again = env.ingest(&[&parts[3]]);
    assert!(again["version"].is_null(), "nothing new: {again}");
    assert_in_step(&env, "an ingest with nothing new");

    let compact = |env: &Env| {
        env.json_with_env(
            ("AGENTLEDGER_RETAIN_GRACE_SECS", "0"),
            &["compact", "--min-files", "2", "--format", "json"],
        )
    };
    assert!(compact(&env)["version"].is_u64());
    lose_newest_delta_version(&env);
    assert!(compact(&env)["version"].is_null(), "nothing to compact");
    assert_in_step(&env, "a compaction with nothing to do");

    let retain = |env: &Env| {
        let keep_from = chrono::NaiveDate::from_ymd_opt(2026, 10, 20).unwrap();
        let days = (chrono::Utc::now().date_naive() - keep_from).num_days();
        env.json_with_env(
            ("AGENTLEDGER_RETAIN_GRACE_SECS", "0"),
            &["retain", "--days", &days.to_string(), "--format", "json"],
        )
    };
    assert!(retain(&env)["version"].is_u64());
    lose_newest_delta_version(&env);
    assert!(retain(&env)["version"].is_null(), "nothing to remove");
    assert_in_step(&env, "a retention with nothing to do");
}
