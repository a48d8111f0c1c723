//! SPEC section 1 and the lake layout of section 4, through the binary.

use std::io::Write;

use crate::common::{Env, data_files, event, model_call, sample};

fn counts(s: &serde_json::Value) -> (u64, u64, u64, u64) {
    let n = |k: &str| s[k].as_u64().unwrap_or_else(|| panic!("no {k} in {s}"));
    (n("read"), n("stored"), n("duplicate"), n("quarantined"))
}

#[test]
fn good_bad_and_repeated_lines_are_counted_and_nothing_is_lost() {
    let env = Env::new();
    let lines = [
        model_call("e1", "2026-10-05T10:00:00Z", "0.5"),
        String::new(), // blank: skipped, not counted
        "   ".to_string(),
        "{not json".to_string(),
        model_call("e2", "2026-10-05T11:00:00Z", "\"0.25\""),
        // exact repeat of e1 with other key order, spacing and number spelling
        r#"{ "cost_usd": 5e-1, "output_tokens":20, "input_tokens":100, "model":"gpt-4.1", "run_id":"r1", "tenant_id":"acme", "ts":"2026-10-05T10:00:00Z", "event_type":"model_call", "event_id":"e1" }"#.to_string(),
        // same id, different content
        model_call("e1", "2026-10-05T10:00:00Z", "0.6"),
        event("e3", "model_call", "2026-10-05T12:00:00Z", r#""model":"m","input_tokens":"800","output_tokens":1"#),
    ];
    let file = env.write("events.ndjson", &(lines.join("\n") + "\r\n"));
    let s = env.ingest(&[&file]);
    assert_eq!(counts(&s), (6, 2, 1, 3), "{s}");
    assert_eq!(s["sources"][0]["read"], 6);
    assert_eq!(s["quarantine_reasons"]["invalid_json"], 1);
    assert_eq!(s["quarantine_reasons"]["conflicting_duplicate"], 1);
    assert_eq!(s["quarantine_reasons"]["wrong_type"], 1);

    let q =
        env.query("SELECT line, reason, message, event_id, raw_line FROM quarantine ORDER BY line");
    assert_eq!(q.len(), 3);
    assert_eq!(q[0]["line"], 4);
    assert_eq!(q[0]["reason"], "invalid_json");
    assert_eq!(q[0]["raw_line"], "{not json");
    assert_eq!(q[1]["reason"], "conflicting_duplicate");
    assert_eq!(q[1]["event_id"], "e1");
    assert_eq!(q[2]["line"], 8);
    assert!(
        q[2]["message"].as_str().unwrap().contains("'input_tokens'"),
        "{}",
        q[2]
    );

    // The event stored first stays.
    assert_eq!(
        env.scalar("SELECT cost_usd FROM events WHERE event_id = 'e1'"),
        "0.500000000000"
    );

    // The same file again: nothing new stored, nothing added to the quarantine.
    let again = env.ingest(&[&file]);
    assert_eq!(counts(&again), (6, 0, 3, 3), "{again}");
    assert!(
        again["version"].is_null(),
        "no commit when nothing is new: {again}"
    );
    assert_eq!(env.scalar("SELECT count(*) FROM events"), "2");
    assert_eq!(env.scalar("SELECT count(*) FROM quarantine"), "3");
}

#[test]
fn duplicates_are_found_across_files_and_ingests() {
    let env = Env::new();
    let a = env.write("a.ndjson", &model_call("x1", "2026-10-05T10:00:00Z", "1"));
    let b = env.write(
        "b.ndjson",
        &[
            model_call("x1", "2026-10-05T10:00:00Z", "1.000"),
            model_call("x2", "2026-10-06T10:00:00Z", "2"),
        ]
        .join("\n"),
    );
    let s = env.ingest(&[&a, &b]);
    assert_eq!(counts(&s), (3, 2, 1, 0), "{s}");
    let c = env.write("c.ndjson", &model_call("x2", "2026-10-06T10:00:00Z", "3"));
    let s = env.ingest(&[&c]);
    assert_eq!(counts(&s), (1, 0, 0, 1), "{s}");
    assert_eq!(
        env.scalar("SELECT sum(cost_usd) FROM events"),
        "3.000000000000"
    );
}

#[test]
fn compressed_files_directories_globs_and_file_urls_are_read_in_order() {
    let env = Env::new();
    let dir = env.path("landing");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    writeln!(gz, "{}", model_call("g1", "2026-10-05T10:00:00Z", "1")).unwrap();
    std::fs::write(dir.join("b.ndjson.gz"), gz.finish().unwrap()).unwrap();
    let zst =
        zstd::encode_all(model_call("z1", "2026-10-05T10:00:00Z", "1").as_bytes(), 3).unwrap();
    std::fs::write(dir.join("sub/c.jsonl.zst"), zst).unwrap();
    std::fs::write(
        dir.join("a.json"),
        model_call("p1", "2026-10-05T10:00:00Z", "1"),
    )
    .unwrap();
    std::fs::write(dir.join("README.txt"), "not events").unwrap();
    let s = env.ingest(&[&dir]);
    let sources: Vec<&str> = s["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources.len(), 3, "{s}");
    assert!(
        sources[0].ends_with("/a.json")
            && sources[1].ends_with("/b.ndjson.gz")
            && sources[2].ends_with("/sub/c.jsonl.zst")
    );
    assert_eq!(counts(&s), (3, 3, 0, 0));

    let glob_file = env.write(
        "more/x1.ndjson",
        &model_call("m1", "2026-10-05T10:00:00Z", "1"),
    );
    env.write(
        "more/x2.ndjson",
        &model_call("m2", "2026-10-05T10:00:00Z", "1"),
    );
    let pattern = format!("{}/more/*.ndjson", env.dir.path().display());
    let out: serde_json::Value =
        serde_json::from_str(&env.ok(&["ingest", "--format", "json", &pattern])).unwrap();
    assert_eq!(out["stored"], 2);
    let url = format!("file://{}", glob_file.display());
    let out: serde_json::Value =
        serde_json::from_str(&env.ok(&["ingest", "--format", "json", &url])).unwrap();
    assert_eq!(out["duplicate"], 1);
}

#[test]
fn events_are_hive_partitioned_by_utc_date_with_exact_types() {
    let env = Env::new();
    // 23:30 at -05:00 is 04:30 UTC the next day.
    let f = env.write(
        "e.ndjson",
        &[
            model_call("late", "2026-10-05T23:30:00-05:00", "0.000000000001"),
            event(
                "t1",
                "tool_call",
                "2026-10-05T08:00:00.1234567Z",
                r#""tool":"crm","access":"write","status":"timeout""#,
            ),
        ]
        .join("\n"),
    );
    env.ingest(&[&f]);
    let files = data_files(&env.lake(), "events");
    assert!(
        files
            .iter()
            .any(|f| f.starts_with("events/date=2026-10-06/") && f.ends_with(".parquet")),
        "{files:?}"
    );
    assert!(
        files
            .iter()
            .any(|f| f.starts_with("events/date=2026-10-05/")),
        "{files:?}"
    );
    let rows = env.query(
        "SELECT event_id, ts, CAST(date AS VARCHAR) AS date, arrow_typeof(cost_usd) AS money, arrow_typeof(ts) AS t, cost_usd \
         FROM events ORDER BY event_id",
    );
    assert_eq!(rows[0]["event_id"], "late");
    assert_eq!(rows[0]["ts"], "2026-10-06T04:30:00.000000Z");
    assert_eq!(rows[0]["date"], "2026-10-06");
    assert_eq!(rows[0]["money"], "Decimal128(38, 12)");
    assert_eq!(rows[0]["t"], "Timestamp(µs, \"UTC\")");
    assert_eq!(rows[0]["cost_usd"], "0.000000000001");
    assert_eq!(
        rows[1]["ts"], "2026-10-05T08:00:00.123456Z",
        "digits past the microsecond are truncated"
    );
    assert_eq!(
        rows[1]["cost_usd"], "0.000000000000",
        "tool_call cost defaults to 0"
    );
    assert_eq!(
        env.scalar("SELECT count(*) FROM tool_calls WHERE is_error"),
        "1"
    );
    assert_eq!(
        env.scalar(
            "SELECT count(*) FROM model_calls WHERE cached_input_tokens = 0 AND status = 'ok'"
        ),
        "1"
    );
}

#[test]
fn unknown_fields_are_kept_in_attributes() {
    let env = Env::new();
    let f = env.write(
        "e.ndjson",
        &event(
            "a1",
            "run_started",
            "2026-10-05T10:00:00Z",
            r#""workflow":"w","attributes":{"region":"eu"},"trace_id":"abc""#,
        ),
    );
    env.ingest(&[&f]);
    assert_eq!(
        env.scalar("SELECT attributes FROM events"),
        r#"{"region":"eu","trace_id":"abc"}"#
    );
}

#[test]
fn an_unreadable_source_fails_the_ingest_and_changes_nothing() {
    let env = Env::new();
    let good = env.write("good.ndjson", &model_call("g", "2026-10-05T10:00:00Z", "1"));
    let missing = env.path("missing.ndjson");
    let err = env.fails(&["ingest", good.to_str().unwrap(), missing.to_str().unwrap()]);
    assert!(
        err.starts_with("error: ") && err.contains("missing.ndjson"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "one-line reason: {err}");
    assert_eq!(env.scalar("SELECT count(*) FROM events"), "0");

    // A corrupt gzip file fails mid-read; nothing of the ingest is committed.
    let bad_gz = env.path("bad.ndjson.gz");
    std::fs::write(&bad_gz, [0x1f, 0x8b, 0x08, 0x00, 0x01, 0x02]).unwrap();
    let err = env.fails(&["ingest", good.to_str().unwrap(), bad_gz.to_str().unwrap()]);
    assert!(err.contains("bad.ndjson.gz"), "{err}");
    assert_eq!(env.scalar("SELECT count(*) FROM events"), "0");
    // The next ingest cleans up the files the failed one wrote.
    env.ingest(&[&good]);
    assert_eq!(data_files(&env.lake(), "events").len(), 1);
}

#[test]
fn every_line_is_accounted_for_in_a_larger_sample() {
    let env = Env::new();
    let dir = env.path("sample");
    env.ok(&["sample", "--out", dir.to_str().unwrap(), "--runs", "300"]);
    let s = env.ingest(&[&dir.join("events.ndjson")]);
    let (read, stored, duplicate, quarantined) = counts(&s);
    assert_eq!(read, stored + duplicate + quarantined);
    assert!(quarantined > 0 && duplicate > 0 && stored > 1000, "{s}");
    assert_eq!(
        env.scalar("SELECT count(*) FROM events")
            .parse::<u64>()
            .unwrap(),
        stored
    );
    assert_eq!(
        env.scalar("SELECT count(DISTINCT event_id) FROM events")
            .parse::<u64>()
            .unwrap(),
        stored
    );
    assert_eq!(
        env.scalar("SELECT count(*) FROM quarantine")
            .parse::<u64>()
            .unwrap(),
        quarantined
    );
}

#[test]
fn a_successful_ingest_is_silent_on_stderr_when_it_is_not_a_terminal() {
    let env = Env::new();
    let f = env.write("e.ndjson", &model_call("s1", "2026-10-05T10:00:00Z", "1"));
    let out = env.run(&["ingest", f.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("read 1  stored 1  duplicate 0  quarantined 0"),
        "{text}"
    );
}

/// A lease record as another process would have left it.
fn lease_record(lease: &str, generation: u64, host: &str, pid: u32, expires_in_ms: i64) -> String {
    let expires = chrono::Utc::now() + chrono::Duration::milliseconds(expires_in_ms);
    serde_json::json!({
        "lease": lease,
        "generation": generation,
        "holder": format!("{host}-{pid}-{generation}"),
        "host": host,
        "pid": pid,
        "purpose": "ingest",
        "acquired_at": "2026-11-24T00:00:00Z",
        "expires_at": expires.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    })
    .to_string()
}

/// A writer that was killed on another node, or was PID 1 in its container,
/// holds the writer lease only until it expires; a writer that finds it
/// waits that long at most, then takes it over, with no person involved.
/// Ingests take no lease at all: they go on meanwhile.
#[test]
fn a_writer_lease_left_by_another_host_or_pid_1_is_taken_over_when_it_expires() {
    let env = Env::new();
    let f = env.write("e.ndjson", &model_call("l1", "2026-10-05T10:00:00Z", "1"));
    env.ingest(&[&f]); // creates the lake, and refreshes under the lease
    let plans = sample("customer_plans.csv");
    let dir = env.lake().join("_lock/writer");
    let newest = |dir: &std::path::Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json"))
            .collect();
        names.sort();
        let last = names.last().unwrap().clone();
        let record: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(&last)).unwrap()).unwrap();
        record
    };
    let released = newest(&dir);
    assert_eq!(released["released"], true, "{released}");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let mut generation = released["generation"].as_u64().unwrap();
    for (holder_host, pid) in [("node-7f3a9c", 4242), (host.trim(), 1)] {
        // Valid for another 2 s and never renewed: its holder is dead.
        generation += 1;
        std::fs::write(
            dir.join(format!("{generation:020}.json")),
            lease_record("writer", generation, holder_host, pid, 2000),
        )
        .unwrap();
        // An ingest does not wait: it commits while the lease is held (and
        // leaves the run-parts refresh to whoever holds it).
        let new = env.write(
            &format!("n{generation}.ndjson"),
            &model_call(&format!("n{generation}"), "2026-10-05T11:00:00Z", "1"),
        );
        let s = env.json_with_env(
            ("AGENTLEDGER_LOCK_WAIT_SECS", "0"),
            &["ingest", "--format", "json", new.to_str().unwrap()],
        );
        assert_eq!(s["stored"], 1, "{s}");
        // A writer that takes the lease and may not wait is refused,
        // naming the holder.
        let out = env
            .command()
            .env("AGENTLEDGER_LOCK_WAIT_SECS", "0")
            .args(["load", "plans", &plans])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(
            err.contains("locked by another writer")
                && err.contains(&format!("pid {pid} on {holder_host}")),
            "{err}"
        );
        // It names the record a person would look at, once.
        let record = format!(
            "{}/_lock/writer/{generation:020}.json",
            env.lake().display()
        );
        assert!(err.contains(&record), "{err}");
        assert_eq!(
            err.matches(env.lake().to_str().unwrap()).count(),
            1,
            "{err}"
        );
        // One that may wait takes it over once it expires.
        let started = std::time::Instant::now();
        env.ok(&["load", "plans", &plans]);
        let waited = started.elapsed();
        assert!(
            waited >= std::time::Duration::from_millis(1000),
            "{waited:?}"
        );
        assert!(waited < std::time::Duration::from_secs(30), "{waited:?}");
        let after = newest(&dir);
        assert_eq!(after["released"], true, "released after the load: {after}");
        assert!(
            after["generation"].as_u64().unwrap() > generation,
            "{after}"
        );
        generation = after["generation"].as_u64().unwrap();
    }
    // Commits record the fencing number of the lease they were made under.
    let log = env.lake().join("_log");
    let mut records: Vec<_> = std::fs::read_dir(&log)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    records.sort();
    let last: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(records.last().unwrap()).unwrap()).unwrap();
    assert_eq!(last["kind"], "load_plans", "{last}");
    assert_eq!(last["fences"][0]["lease"], "writer", "{last}");
    assert!(
        last["fences"][0]["generation"].as_u64().unwrap() > 1,
        "{last}"
    );
}

#[test]
fn the_lake_comes_from_the_flag_or_the_environment() {
    let env = Env::new();
    let f = env.write("e.ndjson", &model_call("v1", "2026-10-05T10:00:00Z", "1"));
    let other = env.path("other-lake");
    let out = env
        .command()
        .args([
            "--lake",
            other.to_str().unwrap(),
            "ingest",
            f.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(other.join("_log").is_dir());
    assert!(
        !env.lake().join("_log").exists(),
        "--lake wins over AGENTLEDGER_LAKE"
    );
}

/// An ingest killed after it wrote its run parts file but before its commit
/// leaves that file behind; the next ingest removes it with the other
/// orphans, even one that commits nothing (so no refresh follows it).
#[test]
fn an_ingest_removes_orphan_run_parts_files() {
    let env = Env::new();
    env.ok(&["load", "prices", &sample("model_prices.csv")]);
    let events = sample("events.ndjson");
    env.ingest(&[std::path::Path::new(&events)]);
    let orphan = env.lake().join("run_parts/part-killed-0001.parquet");
    std::fs::write(&orphan, b"not committed").unwrap();
    // Younger than the orphan grace period, it may be a live writer's: kept.
    let again = env.ingest(&[std::path::Path::new(&events)]);
    assert_eq!(again["stored"], 0, "{again}");
    assert!(orphan.exists(), "a young file is never taken for an orphan");
    let again = env.json_with_env(
        ("AGENTLEDGER_ORPHAN_GRACE_SECS", "0"),
        &["ingest", "--format", "json", &events],
    );
    assert_eq!(again["stored"], 0, "{again}");
    assert!(again["version"].is_null(), "nothing committed: {again}");
    assert!(!orphan.exists(), "the orphan parts file is gone");
    let parts = data_files(&env.lake(), "run_parts");
    assert_eq!(parts.len(), 1, "{parts:?}");
}

/// An ingest walks the tables for orphans only when no writer did for a
/// quarter of the orphan grace period (the walk lists every file of a lake
/// that may hold years of them): an old orphan found right after a walk
/// stays until the next walk is due, then goes.
#[test]
fn an_ingest_walks_for_orphans_only_when_a_walk_is_due() {
    let env = Env::new();
    env.ok(&["load", "prices", &sample("model_prices.csv")]);
    let events = sample("events.ndjson");
    env.ingest(&[std::path::Path::new(&events)]);
    let mark = env.lake().join("_orphans_walked");
    assert!(mark.exists(), "the first ingest walked and marked it");
    let set_age = |path: &std::path::Path, secs: u64| {
        let then = std::time::SystemTime::now() - std::time::Duration::from_secs(secs);
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(then)
            .unwrap();
    };
    let orphan = env.lake().join("events/part-killed-0001.parquet");
    std::fs::write(&orphan, b"not committed").unwrap();
    set_age(&orphan, 2 * 3600);
    // Past the (default, one hour) grace period, but the last walk was just now.
    let again = env.ingest(&[std::path::Path::new(&events)]);
    assert_eq!(again["stored"], 0, "{again}");
    assert!(orphan.exists(), "no walk is due a moment after one");
    // The last walk 16 minutes ago: more than a quarter of the hour.
    set_age(&mark, 16 * 60);
    env.ingest(&[std::path::Path::new(&events)]);
    assert!(!orphan.exists(), "a due walk deletes the old orphan");
    let age = std::fs::metadata(&mark)
        .unwrap()
        .modified()
        .unwrap()
        .elapsed()
        .unwrap();
    assert!(age.as_secs() < 60, "the walk marked its time: {age:?}");
}
