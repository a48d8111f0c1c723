//! Checkpoints: a lake whose log is summarized every few commits answers as
//! one that is not, and opening it reads no record before the checkpoint.

use crate::common::{Env, sample};

const EVERY_TWO: (&str, &str) = ("AGENTLEDGER_CHECKPOINT_INTERVAL", "2");

/// Loads prices, ingests the sample in parts, compacts and rebuilds, with
/// `var` set for every command; returns the metrics and row counts.
fn history(env: &Env, var: (&str, &str)) -> (String, String) {
    env.ok_with_env(var, &["load", "prices", &sample("model_prices.csv")]);
    env.ok_with_env(var, &["load", "plans", &sample("customer_plans.csv")]);
    for part in env.split_sample(5) {
        env.ok_with_env(var, &["ingest", part.to_str().unwrap()]);
    }
    env.ok_with_env(var, &["compact", "--min-files", "2"]);
    env.ok_with_env(var, &["rebuild"]);
    let metrics = env.ok_with_env(var, &["metrics", "--by", "tenant_id", "--format", "json"]);
    let counts = env.ok_with_env(
        var,
        &[
            "sql",
            "--format",
            "json",
            "SELECT (SELECT count(*) FROM events) AS events, (SELECT count(*) FROM quarantine) AS quarantine, (SELECT sum(cost_usd) FROM events) AS cost",
        ],
    );
    (metrics, counts)
}

#[test]
fn a_checkpointed_lake_answers_as_one_without_checkpoints() {
    let plain = Env::new();
    let expected = history(&plain, ("AGENTLEDGER_CHECKPOINT_INTERVAL", "1000000"));
    assert!(!plain.lake().join("_checkpoints").exists());

    let env = Env::new();
    assert_eq!(history(&env, EVERY_TWO), expected);
    let hint: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(env.lake().join("_checkpoints/_last.json")).unwrap(),
    )
    .unwrap();
    let version = hint["version"].as_u64().unwrap();
    assert!(version >= 8 && version.is_multiple_of(2), "{hint}");
    assert!(env.lake().join(hint["path"].as_str().unwrap()).exists());

    // No record up to the checkpoint is read any more: with the first one
    // gone, every answer is the same.
    std::fs::remove_file(env.lake().join("_log/00000000000000000001.json")).unwrap();
    let metrics = env.ok(&["metrics", "--by", "tenant_id", "--format", "json"]);
    assert_eq!(metrics, expected.0);
    // And a new ingest goes on from there.
    env.ok_with_env(EVERY_TWO, &["ingest", &sample("events.ndjson")]);
    assert_eq!(
        env.ok(&["metrics", "--by", "tenant_id", "--format", "json"]),
        expected.0,
        "re-ingesting the same events stores nothing new"
    );
}
