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

        // Re-running completes it exactly, and leaves no orphan files behind.
        lake.ingest(&[&events]);
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
