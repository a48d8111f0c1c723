//! SIGKILL at many seeded moments spread over every kind of write (reference
//! loads, ingests, compaction, retention and the scheduled batch), each
//! followed by re-running what was interrupted and what came after: the
//! stored events, the quarantine and the metrics always equal those of the
//! run that was never interrupted, nothing is left that a later write
//! cannot clean, and every table's Delta log names exactly the committed
//! files.
//!
//! `AGENTLEDGER_CHAOS_POINTS` sets how many kill points (default 100).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Env, committed_files, data_files, delta_files, sample};

const WEEK: &str = "2026-W44";

/// One step of the workload: the arguments of one command.
fn workload(env: &Env, config: &Path) -> Vec<Vec<String>> {
    let part = |i: usize| {
        env.path(&format!("parts/part-{i}.ndjson"))
            .display()
            .to_string()
    };
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    vec![
        s(&["load", "prices", &sample("model_prices.csv")]),
        s(&["load", "plans", &sample("customer_plans.csv")]),
        s(&["ingest", &part(0)]),
        s(&["ingest", &part(1), &part(0)]),
        s(&["compact", "--min-files", "2"]),
        s(&["retain", "--days", &retain_days().to_string()]),
        s(&["run", "--config", config.to_str().unwrap(), "--week", WEEK]),
        s(&["ingest", &part(2), &part(1)]),
    ]
}

/// Keeps the sample's later weeks, so retention takes some partitions out
/// and leaves others.
fn retain_days() -> i64 {
    let keep_from = chrono::NaiveDate::from_ymd_opt(2026, 10, 20).unwrap();
    (chrono::Utc::now().date_naive() - keep_from).num_days()
}

/// What must come out the same: events, quarantine and metrics.
fn outcome(lake: &Path) -> (String, String, String) {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_agentledger"))
            .env("AGENTLEDGER_LAKE", lake)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    (
        run(&[
            "sql",
            "--format",
            "csv",
            "SELECT event_id, content_hash FROM events ORDER BY event_id",
        ]),
        run(&[
            "sql",
            "--format",
            "csv",
            "SELECT source, line, reason FROM quarantine ORDER BY source, line",
        ]),
        run(&["metrics", "--by", "tenant_id,week", "--format", "csv"]),
    )
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Every data file on disk that no commit names.
fn unnamed_files(lake: &Path) -> Vec<String> {
    let mut named = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(lake.join("_log")).unwrap() {
        let path = entry.unwrap().path();
        // Only commit records: a create killed mid-write can leave the
        // store's temporary `NNN.json#N` beside them, which readers ignore.
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let record: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for f in record["files"].as_array().unwrap() {
            named.insert(f["path"].as_str().unwrap().to_string());
        }
    }
    [
        "events",
        "quarantine",
        "run_parts",
        "event_index",
        "quarantine_index",
    ]
    .iter()
    .flat_map(|table| data_files(lake, table))
    .filter(|rel| !named.contains(rel))
    .collect()
}

/// A small seeded generator (xorshift64*), so a failing point can be rerun.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn fraction(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[test]
fn writes_killed_at_a_hundred_moments_are_completed_by_rerunning() {
    let env = Env::new();
    // A sample of three parts, the third also in the batch's landing area.
    let text = std::fs::read_to_string(sample("events.ndjson")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let per = lines.len().div_ceil(3);
    for (i, chunk) in lines.chunks(per).enumerate() {
        env.write(
            &format!("parts/part-{i}.ndjson"),
            &(chunk.join("\n") + "\n"),
        );
    }
    std::fs::create_dir_all(env.path("landing")).unwrap();
    std::fs::copy(
        env.path("parts/part-2.ndjson"),
        env.path("landing/part-2.ndjson"),
    )
    .unwrap();
    let config = |lake: &Path, reports: &Path| {
        format!(
            "lake = \"{}\"\nlanding = \"{}\"\nprices = \"{}\"\nplans = \"{}\"\nreports = \"{}\"\n",
            lake.display(),
            env.path("landing").display(),
            sample("model_prices.csv"),
            sample("customer_plans.csv"),
            reports.display()
        )
    };
    let command = |lake: &Path, args: &[String]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_agentledger"));
        c.env("AGENTLEDGER_LAKE", lake)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    };
    let must = |lake: &Path, args: &[String], what: &str| {
        let out = command(lake, args)
            .env("AGENTLEDGER_ORPHAN_GRACE_SECS", "0")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{what}: {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };

    // The uninterrupted run, keeping the lake as it was before each step.
    let reference = env.path("reference");
    let reference_config = env.write("reference.toml", &config(&reference, &env.path("r0")));
    let steps = workload(&env, &reference_config);
    let mut before: Vec<PathBuf> = Vec::new();
    let mut took: Vec<Duration> = Vec::new();
    std::fs::create_dir_all(&reference).unwrap();
    for (i, step) in steps.iter().enumerate() {
        let snapshot = env.path(&format!("before-{i}"));
        copy_dir(&reference, &snapshot);
        before.push(snapshot);
        let started = Instant::now();
        must(&reference, step, "reference");
        took.push(started.elapsed());
    }
    let expected = outcome(&reference);
    assert!(
        expected.0.lines().count() > 1000,
        "too few events to kill mid-way"
    );
    assert!(expected.1.lines().count() > 1, "the sample has bad lines");

    let points: u64 = std::env::var("AGENTLEDGER_CHAOS_POINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let mut rng = Rng(0x5eed_c4a0_5000_0001);
    let mut killed = vec![0u32; steps.len()];
    let mut finished_anyway = 0;
    for point in 0..points {
        let step = (point as usize) % steps.len();
        let lake = env.path(&format!("point-{point}"));
        copy_dir(&before[step], &lake);
        let config_file = env.write(
            &format!("point-{point}.toml"),
            &config(&lake, &env.path(&format!("reports-{point}"))),
        );
        let steps = workload(&env, &config_file);
        // Anywhere from the start to a little past the step's usual time.
        let delay = took[step].mul_f64(rng.fraction() * 1.2);
        let mut child = command(&lake, &steps[step])
            // A SIGKILLed process cannot give its leases up: keep them short.
            .env("AGENTLEDGER_LEASE_SECS", "1")
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        let status = child.wait().unwrap();
        if status.success() {
            finished_anyway += 1;
        } else {
            killed[step] += 1;
        }
        // Re-run the interrupted step and everything after it.
        for (i, s) in steps.iter().enumerate().skip(step) {
            must(
                &lake,
                s,
                &format!("point {point} (step {step}), re-running step {i}"),
            );
        }
        let got = outcome(&lake);
        assert_eq!(
            got.0, expected.0,
            "point {point} (step {step}, {delay:?}): events"
        );
        assert_eq!(
            got.1, expected.1,
            "point {point} (step {step}, {delay:?}): quarantine"
        );
        assert_eq!(
            got.2, expected.2,
            "point {point} (step {step}, {delay:?}): metrics"
        );
        // A later write cleans what the killed one left: every data file
        // on disk is named by a commit once orphans past their grace go.
        must(&lake, &steps[steps.len() - 1], "clean-up");
        let left = unnamed_files(&lake);
        assert!(
            left.is_empty(),
            "point {point} (step {step}): left behind {left:?}"
        );
        // Other engines read what agentledger reads: the Delta logs caught
        // up with whatever the killed process had committed.
        for table in agentledger_lake::delta::TABLES {
            assert_eq!(
                delta_files(&lake, table),
                committed_files(&lake, table),
                "point {point} (step {step}): the Delta log of {table}"
            );
        }
        std::fs::remove_dir_all(&lake).unwrap();
    }
    eprintln!("kill points per step {killed:?}; {finished_anyway} finished before the kill");
    // Kills landed in every step, not only before or after them.
    assert!(
        killed.iter().all(|k| *k > 0) || points < steps.len() as u64 * 4,
        "{killed:?}"
    );
}
