//! Definition versions: run parts record the definitions that made them,
//! and a binary with other definitions (here: the test-only salt) does not
//! use them, recomputes their runs from the events, and rebuilds them at its
//! next refresh; `agentledger rebuild` rebuilds them whatever they are.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::common::{Env, sample_lake};

/// A binary "with other definitions" (`transforms::definitions`).
const OTHER: (&str, &str) = ("AGENTLEDGER_DEFINITIONS_SALT", "upgrade-test");

/// Every commit record, oldest first.
fn log(env: &Env) -> Vec<Value> {
    let mut records: Vec<_> = std::fs::read_dir(env.lake().join("_log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    records.sort();
    records
        .iter()
        .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
        .collect()
}

/// The run_parts files the log names and has not removed.
fn live_parts(log: &[Value]) -> BTreeSet<String> {
    let removed: BTreeSet<&str> = log
        .iter()
        .flat_map(|c| c["removes"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect();
    log.iter()
        .flat_map(|c| c["files"].as_array().unwrap())
        .filter(|f| f["table"] == "run_parts")
        .map(|f| f["path"].as_str().unwrap().to_string())
        .filter(|p| !removed.contains(p.as_str()))
        .collect()
}

/// The definitions recorded by every commit that wrote run parts.
fn parts_definitions(log: &[Value]) -> Vec<Option<String>> {
    log.iter()
        .filter(|c| {
            c["files"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["table"] == "run_parts")
        })
        .map(|c| {
            c["summary"]["run_parts"]["definitions"]
                .as_str()
                .map(String::from)
        })
        .collect()
}

#[test]
fn other_definitions_recompute_the_runs_and_rebuild_the_parts() {
    let env = sample_lake();
    let metrics_args = ["metrics", "--by", "tenant_id,week", "--format", "json"];
    let metrics = env.ok(&metrics_args);
    let before = log(&env);
    let ours = parts_definitions(&before);
    assert!(!ours.is_empty(), "the sample's ingest wrote run parts");
    let defs = ours[0].clone().expect("parts record their definitions");
    assert!(
        ours.iter().all(|d| d.as_deref() == Some(defs.as_str())),
        "{ours:?}"
    );
    let parts = live_parts(&before);
    assert!(!parts.is_empty());

    // With the parts out of the way, this binary cannot answer (it reads
    // them); one of other definitions does not read them at all: it
    // computes every run from the events, to the same figures.
    let stored = env.lake().join("run_parts");
    let aside = env.path("run_parts.aside");
    std::fs::rename(&stored, &aside).unwrap();
    env.fails(&metrics_args);
    assert_eq!(env.ok_with_env(OTHER, &metrics_args), metrics);
    std::fs::rename(&aside, &stored).unwrap();

    // Its next refresh (after an ingest of an open run, which no metric
    // counts) rebuilds every part with its definitions, removing the old.
    let stray = env.write(
        "stray.ndjson",
        r#"{"event_id":"stray-1","event_type":"tool_call","ts":"2026-10-05T10:00:00Z","tenant_id":"zeta","run_id":"open-1","tool":"search","access":"read","status":"ok","latency_ms":20,"cost_usd":0.5}"#,
    );
    let ingested = env.json_with_env(
        OTHER,
        &["ingest", "--format", "json", stray.to_str().unwrap()],
    );
    assert_eq!(ingested["stored"], 1, "{ingested}");
    let after = log(&env);
    let rebuild = after.last().unwrap();
    assert_eq!(rebuild["kind"], "runs", "{rebuild}");
    let cover = &rebuild["summary"]["run_parts"];
    assert_eq!(cover["full"], true, "{rebuild}");
    let other = cover["definitions"].as_str().unwrap().to_string();
    assert_ne!(other, defs);
    let removes: BTreeSet<String> = rebuild["removes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    assert!(removes.is_superset(&parts), "{removes:?} {parts:?}");
    let new = parts_definitions(&after[before.len()..]);
    assert!(
        new.len() >= 2 && new.iter().all(|d| d.as_deref() == Some(other.as_str())),
        "the ingest's own parts and the rebuild's: {new:?}"
    );
    assert_eq!(env.ok_with_env(OTHER, &metrics_args), metrics);
    // This binary now finds those parts stale in turn: the same figures.
    assert_eq!(env.ok(&metrics_args), metrics);

    // `rebuild` rebuilds with this binary's definitions, and again when
    // they are current.
    let summary: Value = serde_json::from_str(&env.ok(&["rebuild", "--format", "json"])).unwrap();
    assert_eq!(summary["definitions"], defs.as_str(), "{summary}");
    assert_eq!(summary["full"], true, "{summary}");
    assert!(summary["removed_files"].as_u64().unwrap() >= 1, "{summary}");
    let version = summary["version"].as_u64().unwrap();
    let rebuilt = log(&env);
    // The run parts' commit, then the key index's.
    assert_eq!(rebuilt.len() as u64, version + 1);
    assert_eq!(
        rebuilt[version as usize - 1]["summary"]["run_parts"]["definitions"],
        defs.as_str()
    );
    assert_eq!(rebuilt.last().unwrap()["summary"]["index"]["full"], true);
    assert!(live_parts(&rebuilt).is_disjoint(&live_parts(&after)));
    assert_eq!(env.ok(&metrics_args), metrics);
    let text = env.ok(&["rebuild"]);
    assert!(
        text.starts_with("rebuilt run parts from ") && text.contains(&defs),
        "{text}"
    );
    assert!(
        log(&env).len() as u64 > version + 1,
        "a forced rebuild commits"
    );
    assert_eq!(env.ok(&metrics_args), metrics);
}

#[test]
fn rebuild_on_an_empty_lake_does_nothing_and_needs_a_lake() {
    let env = Env::new();
    let err = env.fails(&["rebuild"]);
    assert!(err.contains("no lake at"), "{err}");
    env.ok(&[
        "load",
        "plans",
        &crate::common::sample("customer_plans.csv"),
    ]);
    let text = env.ok(&["rebuild"]);
    assert!(text.starts_with("nothing to rebuild"), "{text}");
}
