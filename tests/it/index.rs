//! The key index: an ingest decides duplicates from the index runs, not by
//! reading the stored events, with the same answers (SPEC §1), through
//! retention, compaction, a lost index and files from before the index.

use crate::common::{Env, committed_files, data_files, model_call, sample};

fn counts(s: &serde_json::Value) -> (u64, u64, u64, u64, u64) {
    let n = |k: &str| s[k].as_u64().unwrap_or_else(|| panic!("no {k} in {s}"));
    (
        n("read"),
        n("stored"),
        n("duplicate"),
        n("quarantined"),
        n("quarantined_new"),
    )
}

#[test]
fn an_ingest_decides_duplicates_from_the_index_without_reading_events() {
    let env = Env::new();
    let first = env.ingest(&[std::path::Path::new(&sample("events.ndjson"))]);
    let (read, stored, repeated, quarantined, _) = counts(&first);
    assert!(stored > 1000 && quarantined > 0, "{first}");
    assert!(!data_files(&env.lake(), "event_index").is_empty());
    assert!(!data_files(&env.lake(), "quarantine_index").is_empty());

    // Every stored events and quarantine file made unreadable: an ingest
    // that still answered by reading them would fail.
    for table in ["events", "quarantine"] {
        for f in data_files(&env.lake(), table) {
            std::fs::write(env.lake().join(f), b"not parquet").unwrap();
        }
    }
    let again = env.ingest(&[std::path::Path::new(&sample("events.ndjson"))]);
    assert_eq!(
        counts(&again),
        (read, 0, stored + repeated, quarantined, 0),
        "every event a duplicate, every bad line quarantined before: {again}"
    );
    // A stored id with other content: a conflicting duplicate, quarantined
    // once however often it comes again.
    let id = "evt-conflict-probe";
    let a = env.write("a.ndjson", &model_call(id, "2026-10-05T10:00:00Z", "1"));
    let b = env.write("b.ndjson", &model_call(id, "2026-10-05T10:00:00Z", "2"));
    assert_eq!(counts(&env.ingest(&[&a])), (1, 1, 0, 0, 0));
    assert_eq!(counts(&env.ingest(&[&b])), (1, 0, 0, 1, 1));
    assert_eq!(counts(&env.ingest(&[&b])), (1, 0, 0, 1, 0));
    assert_eq!(counts(&env.ingest(&[&a])), (1, 0, 1, 0, 0));
}

#[test]
fn events_taken_out_by_retention_are_stored_again_when_they_come_again() {
    let env = Env::new();
    let events = sample("events.ndjson");
    let first = env.ingest(&[std::path::Path::new(&events)]);
    let grace = ("AGENTLEDGER_RETAIN_GRACE_SECS", "0");
    env.ok_with_env(grace, &["retain", "--days", "0"]);
    assert_eq!(env.scalar("SELECT count(*) FROM events"), "0");
    let again = env.ingest(&[std::path::Path::new(&events)]);
    assert_eq!(again["stored"], first["stored"], "{again}");
    assert_eq!(
        env.scalar("SELECT count(*) FROM events"),
        first["stored"].to_string()
    );
    let third = env.ingest(&[std::path::Path::new(&events)]);
    assert_eq!(third["stored"], 0, "{third}");
    assert_eq!(
        counts(&third).2,
        counts(&first).1 + counts(&first).2,
        "{third}"
    );
}

#[test]
fn runs_stay_few_as_ingests_pile_up_and_a_lost_index_is_rebuilt() {
    let env = Env::new();
    let parts = env.split_sample(20);
    for (i, p) in parts.iter().enumerate() {
        env.ingest(&[p]);
        // Each ingest adds a run per table; past eight they are merged.
        for table in ["event_index", "quarantine_index"] {
            let runs = committed_files(&env.lake(), table).len();
            assert!(runs <= 9, "{runs} {table} runs after {} ingests", i + 1);
        }
    }
    env.ok(&["compact", "--format", "json"]);
    let refs: Vec<&std::path::Path> = parts.iter().map(|p| p.as_path()).collect();
    let again = env.ingest(&refs);
    assert_eq!(again["stored"], 0, "{again}");
    assert_eq!(again["quarantined_new"], 0, "{again}");

    // The index lost: the ingest stops, naming the file and the way out.
    for f in data_files(&env.lake(), "event_index") {
        std::fs::remove_file(env.lake().join(f)).unwrap();
    }
    let err = env.fails(&["ingest", parts[0].to_str().unwrap()]);
    assert!(
        err.contains("event_index/") && err.contains("agentledger rebuild"),
        "{err}"
    );
    let rebuilt: serde_json::Value =
        serde_json::from_str(&env.ok(&["rebuild", "--format", "json"])).unwrap();
    assert_eq!(
        rebuilt["index"]["event_keys"].to_string(),
        env.scalar("SELECT count(*) FROM events"),
        "{rebuilt}"
    );
    let after = env.ingest(&refs);
    assert_eq!(after["stored"], 0, "{after}");
    assert_eq!(after["quarantined_new"], 0, "{after}");
}

#[test]
fn files_from_before_the_index_are_read_the_old_way() {
    let env = Env::new();
    let events = sample("events.ndjson");
    let first = env.ingest(&[std::path::Path::new(&events)]);
    // Make the commit look like one by a binary without the index.
    let record = env.lake().join("_log/00000000000000000001.json");
    let mut commit: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&record).unwrap()).unwrap();
    commit["summary"].as_object_mut().unwrap().remove("index");
    commit["files"]
        .as_array_mut()
        .unwrap()
        .retain(|f| !f["table"].as_str().unwrap().ends_with("_index"));
    std::fs::write(&record, serde_json::to_vec_pretty(&commit).unwrap()).unwrap();
    for table in ["event_index", "quarantine_index"] {
        for f in data_files(&env.lake(), table) {
            std::fs::remove_file(env.lake().join(f)).unwrap();
        }
    }
    let again = env.ingest(&[std::path::Path::new(&events)]);
    assert_eq!(again["stored"], 0, "{again}");
    assert_eq!(
        counts(&again).2,
        counts(&first).1 + counts(&first).2,
        "{again}"
    );
    assert_eq!(again["quarantined_new"], 0, "{again}");
}
