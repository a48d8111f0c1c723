//! Atomic commits under SIGKILL: real ingests killed at many points leave
//! the lake as it was before that ingest or with all of it, and re-running
//! the ingest stores exactly what is missing.

use std::time::{Duration, Instant};

use crate::common::{Env, data_files};

fn ids(env: &Env, table: &str, column: &str) -> Vec<String> {
    env.query(&format!(
        "SELECT {column} AS v FROM {table} ORDER BY {column}"
    ))
    .into_iter()
    .map(|r| r["v"].to_string())
    .collect()
}

#[test]
fn killed_ingests_leave_the_lake_before_or_after_never_between() {
    let env = Env::new();
    let sample = env.path("sample");
    env.ok(&[
        "sample",
        "--out",
        sample.to_str().unwrap(),
        "--runs",
        "2500",
        "--seed",
        "7",
    ]);
    let base = env.path("base");
    env.ok(&[
        "sample",
        "--out",
        base.to_str().unwrap(),
        "--runs",
        "50",
        "--seed",
        "8",
    ]);
    let events = sample.join("events.ndjson");
    let base_events = base.join("events.ndjson");

    // Reference: what the lake holds before and after the ingest under test.
    let reference = Env::new();
    reference.ingest(&[&base_events]);
    let before_events = ids(&reference, "events", "event_id");
    let before_quarantine = ids(&reference, "quarantine", "line");
    let started = Instant::now();
    reference.ingest(&[&events]);
    let full = started.elapsed();
    let after_events = ids(&reference, "events", "event_id");
    let after_quarantine = ids(&reference, "quarantine", "line");
    assert!(
        after_events.len() > before_events.len() + 10_000,
        "sample too small to kill mid-way"
    );

    let base_files = data_files(&reference.lake(), "events").len();
    let points = 14u32;
    let mut before = 0;
    let mut after = 0;
    let mut mid_write = 0;
    for i in 0..=points {
        let lake = Env::new();
        lake.ingest(&[&base_events]);
        let base_here = data_files(&lake.lake(), "events").len();
        // Spread kills over the whole ingest; the last one lands after it.
        // Three more wait for the first data file to appear and kill then,
        // which lands inside the short window where files are on disk but
        // not yet committed.
        let on_first_file = i >= points - 3 && i < points;
        let delay = if i == points {
            full * 4
        } else {
            full.mul_f64(f64::from(i) / f64::from(points - 4))
                + Duration::from_millis(u64::from(3 * i))
        };
        let mut child = lake
            .command()
            // A SIGKILLed writer cannot release its lease: keep it short so
            // the re-run below takes it over quickly.
            .env("AGENTLEDGER_LEASE_SECS", "2")
            .args(["ingest", events.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        if on_first_file {
            let deadline = Instant::now() + full * 4;
            while data_files(&lake.lake(), "events").len() <= base_here && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_micros(200));
            }
        } else {
            std::thread::sleep(delay);
        }
        let _ = child.kill();
        let _ = child.wait();

        let now_events = ids(&lake, "events", "event_id");
        let now_quarantine = ids(&lake, "quarantine", "line");
        if now_events == before_events {
            assert_eq!(
                now_quarantine, before_quarantine,
                "kill point {i}: events before, quarantine not"
            );
            before += 1;
            if data_files(&lake.lake(), "events").len() > base_here {
                // Killed while writing: its files are on disk, yet invisible.
                mid_write += 1;
            }
        } else {
            assert_eq!(
                now_events, after_events,
                "kill point {i}: half an ingest is visible"
            );
            assert_eq!(
                now_quarantine, after_quarantine,
                "kill point {i}: quarantine half committed"
            );
            after += 1;
        }

        // Re-running completes it exactly, and leaves no orphan files behind
        // (they are all older than a grace period of 0).
        lake.json_with_env(
            ("AGENTLEDGER_ORPHAN_GRACE_SECS", "0"),
            &["ingest", "--format", "json", events.to_str().unwrap()],
        );
        assert_eq!(
            ids(&lake, "events", "event_id"),
            after_events,
            "kill point {i}: re-run"
        );
        assert_eq!(
            ids(&lake, "quarantine", "line"),
            after_quarantine,
            "kill point {i}: re-run"
        );
        let files = data_files(&lake.lake(), "events").len();
        assert_eq!(
            files,
            data_files(&reference.lake(), "events").len(),
            "kill point {i}: orphan files remain"
        );
    }
    eprintln!("kill points: {before} before the commit ({mid_write} while writing), {after} after");
    assert!(base_files > 0);
    assert!(before > 0, "no kill landed before the commit");
    assert!(after > 0, "no kill landed after the commit");
    assert!(
        mid_write > 0,
        "no kill landed while data files were being written"
    );
}

/// SIGTERM (what Kubernetes sends before SIGKILL) stops a writer cleanly:
/// it gives its lease up, so the next writer goes on at once instead of
/// waiting out the lease, and what it had not committed is not visible.
#[test]
fn a_stopped_writer_releases_its_lease_at_once() {
    let env = Env::new();
    let events = env.generated_sample(2500, 9);
    let child = env
        .command()
        .args(["ingest", events.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it holds the lease.
    let leases = env.lake().join("_lock/writer");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !leases.is_dir() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        // It finished before the signal: nothing to check about stopping.
        eprintln!("the ingest finished before SIGTERM");
        return;
    }
    assert_eq!(out.status.code(), Some(143), "{err}");
    assert!(err.contains("stopped by SIGTERM"), "{err}");
    // The lease is free now: a writer that may not wait at all goes on.
    let again = env
        .command()
        .env("AGENTLEDGER_LOCK_WAIT_SECS", "0")
        .args(["ingest", "--format", "json", events.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}
