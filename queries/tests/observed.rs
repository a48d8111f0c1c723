//! The run parts an ingest computes while it stores events (`PartsObserver`)
//! give the same `runs`, to the last column, as `run_parts.sql` over the
//! stored events: on the sample data with its bad lines, late events and
//! repeats, in the generator's order (run by run) and shuffled (runs
//! interleaved, so runs are written out of memory and met again).

use std::hash::{Hash, Hasher};

use agentledger_ingest::ingest::{IngestOptions, ingest, ingest_observed};
use agentledger_ingest::reference::{ReferenceKind, load_reference};
use agentledger_ingest::sampler::{SampleOptions, generate};
use agentledger_lake::Lake;
use agentledger_lake::log::Snapshot;
use agentledger_queries::PartsObserver;
use agentledger_transforms::definitions;

async fn runs_text(lake: &Lake) -> String {
    let ctx = agentledger_queries::open_session(lake).await.unwrap();
    let batches = ctx
        .sql("SELECT * FROM runs ORDER BY tenant_id, run_id")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string()
}

async fn lake_with_prices(dir: &std::path::Path, name: &str, sample: &std::path::Path) -> Lake {
    let lake = Lake::open(dir.join(name).to_str().unwrap()).unwrap();
    let prices = sample.join("model_prices.csv");
    load_reference(&lake, ReferenceKind::Prices, &prices)
        .await
        .unwrap();
    lake
}

/// The generator's sample of `runs` runs, made in `dir/sample`: that
/// folder and its event files.
fn sample_of(dir: &std::path::Path, runs: u64) -> (std::path::PathBuf, Vec<std::path::PathBuf>) {
    let sample = dir.join("sample");
    let options = SampleOptions {
        runs,
        ..SampleOptions::default()
    };
    let files = generate(&sample, &options)
        .unwrap()
        .files
        .into_iter()
        .filter(|f| {
            f.extension()
                .is_some_and(|e| e == "ndjson" || e == "jsonl" || e == "json")
        })
        .collect();
    (sample, files)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observed_parts_equal_the_sql_parts_in_any_order() {
    let dir = tempfile::tempdir().unwrap();
    let (sample, files) = sample_of(dir.path(), 1_500);
    let mut lines: Vec<String> = Vec::new();
    for file in &files {
        lines.extend(
            std::fs::read_to_string(file)
                .unwrap()
                .lines()
                .map(str::to_string),
        );
    }
    assert!(lines.len() > 10_000, "{} lines", lines.len());
    let in_order = dir.path().join("in-order.ndjson");
    std::fs::write(&in_order, lines.join("\n")).unwrap();
    lines.sort_by_key(|line| {
        let mut h = std::hash::DefaultHasher::new();
        line.hash(&mut h);
        h.finish()
    });
    let shuffled = dir.path().join("shuffled.ndjson");
    std::fs::write(&shuffled, lines.join("\n")).unwrap();

    // The third case sizes the duplicate filter at about 7 bits an event,
    // so a few percent of the events are suspects, held aside and stored at
    // the end of the ingest: their runs are held in memory meanwhile and
    // keep one row.
    for (input, unique, filter_bits) in [
        (&in_order, true, None),
        (&shuffled, false, None),
        (&in_order, true, Some(100_000)),
    ] {
        let sources = [input.display().to_string()];
        let stem = input.file_stem().unwrap().to_str().unwrap();
        let name = match filter_bits {
            Some(bits) => format!("{stem}-{bits}-bit-filter"),
            None => stem.to_string(),
        };
        let plain = lake_with_prices(dir.path(), &format!("{name}-sql"), &sample).await;
        ingest(&plain, &sources, &IngestOptions::default(), None)
            .await
            .unwrap();
        let observed = lake_with_prices(dir.path(), &format!("{name}-observed"), &sample).await;
        // Batches of 1,000 events, so that runs are written out between them.
        let small_batches = IngestOptions {
            batch_rows: 1_000,
            dedup_filter_bits: filter_bits,
            ..IngestOptions::default()
        };
        let (_, observer) = ingest_observed(
            &observed,
            &sources,
            &small_batches,
            None,
            PartsObserver::new(100),
        )
        .await
        .unwrap();
        assert_eq!(observer.gave_up(), None);

        let snapshot = Snapshot::load(&observed).await.unwrap();
        let coverage = snapshot.run_coverage(definitions());
        assert!(coverage.uncovered_events.is_empty(), "{name}: all covered");
        assert_eq!(coverage.parts.len(), 1, "{name}: one parts file");
        assert_eq!(coverage.unique, unique, "{name}: unique parts");
        let plain_coverage = Snapshot::load(&plain).await.unwrap();
        assert!(plain_coverage.run_coverage(definitions()).parts.is_empty());

        let expected = runs_text(&plain).await;
        assert!(expected.lines().count() > 1_000, "{name}: runs listed");
        assert_eq!(runs_text(&observed).await, expected, "{name}: as ingested");
        let refreshed = agentledger_queries::refresh_runs(&observed).await.unwrap();
        assert_eq!(
            refreshed.version.is_some(),
            !unique,
            "{name}: only parts with a run twice are merged"
        );
        assert!(
            Snapshot::load(&observed)
                .await
                .unwrap()
                .run_coverage(definitions())
                .unique
        );
        assert_eq!(runs_text(&observed).await, expected, "{name}: refreshed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overflowing_sum_leaves_the_events_to_the_sql() {
    let dir = tempfile::tempdir().unwrap();
    let call = |id: &str| {
        format!(
            r#"{{"event_id":"{id}","event_type":"model_call","ts":"2026-10-05T00:03:20Z","tenant_id":"acme","run_id":"r1","model":"m","provider":"p","input_tokens":9223372036854775807,"output_tokens":1,"latency_ms":1}}"#
        )
    };
    let input = dir.path().join("big.ndjson");
    std::fs::write(&input, format!("{}\n{}\n", call("e1"), call("e2"))).unwrap();
    let lake = Lake::open(dir.path().join("lake").to_str().unwrap()).unwrap();
    let (summary, observer) = ingest_observed(
        &lake,
        &[input.display().to_string()],
        &IngestOptions::default(),
        None,
        PartsObserver::default(),
    )
    .await
    .unwrap();
    assert_eq!(summary.stored, 2);
    assert!(
        observer
            .gave_up()
            .is_some_and(|why| why.contains("overflow")),
        "{:?}",
        observer.gave_up()
    );
    let snapshot = Snapshot::load(&lake).await.unwrap();
    let coverage = snapshot.run_coverage(definitions());
    assert!(coverage.parts.is_empty(), "no parts committed");
    assert_eq!(coverage.uncovered_events.len(), 1, "left to run_parts.sql");
}

/// Compaction keeps the run parts' coverage: files no part covers yet stay
/// as they are, compacted files stay covered, and parts that were unique
/// stay unique, so `runs` gives the same rows throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_keeps_what_the_run_parts_cover() {
    let dir = tempfile::tempdir().unwrap();
    let sample = dir.path().join("sample");
    let summary = generate(
        &sample,
        &SampleOptions {
            runs: 300,
            ..SampleOptions::default()
        },
    )
    .unwrap();
    let text = std::fs::read_to_string(&summary.files[0]).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let third = lines.len().div_ceil(3);
    let files: Vec<String> = lines
        .chunks(third)
        .enumerate()
        .map(|(i, chunk)| {
            let path = dir.path().join(format!("part-{i}.ndjson"));
            std::fs::write(&path, chunk.join("\n")).unwrap();
            path.display().to_string()
        })
        .collect();
    let lake = lake_with_prices(dir.path(), "lake", &sample).await;
    // The first third without parts (as an older agentledger left it), the
    // rest with the parts the ingest computes.
    ingest(&lake, &files[..1], &IngestOptions::default(), None)
        .await
        .unwrap();
    for file in &files[1..] {
        ingest_observed(
            &lake,
            std::slice::from_ref(file),
            &IngestOptions::default(),
            None,
            PartsObserver::default(),
        )
        .await
        .unwrap();
    }
    let expected = runs_text(&lake).await;
    let uncovered = |s: &Snapshot| -> Vec<String> {
        let mut paths: Vec<String> = s
            .run_coverage(definitions())
            .uncovered_events
            .iter()
            .map(|(_, f)| f.path.clone())
            .collect();
        paths.sort();
        paths
    };
    let before = Snapshot::load(&lake).await.unwrap();
    assert!(!uncovered(&before).is_empty());

    let compacted = agentledger_lake::compact::compact(&lake, 2, definitions())
        .await
        .unwrap();
    assert!(compacted.version.is_some(), "{compacted:?}");
    assert_eq!(compacted.uncovered_files, uncovered(&before).len());
    let after = Snapshot::load(&lake).await.unwrap();
    assert_eq!(uncovered(&after), uncovered(&before), "left alone");
    assert_eq!(
        runs_text(&lake).await,
        expected,
        "after a partial compaction"
    );

    agentledger_queries::refresh_runs(&lake).await.unwrap();
    assert!(
        Snapshot::load(&lake)
            .await
            .unwrap()
            .run_coverage(definitions())
            .unique
    );
    let compacted = agentledger_lake::compact::compact(&lake, 2, definitions())
        .await
        .unwrap();
    assert!(compacted.version.is_some(), "{compacted:?}");
    assert_eq!(compacted.uncovered_files, 0);
    let last = Snapshot::load(&lake).await.unwrap();
    let coverage = last.run_coverage(definitions());
    assert!(coverage.uncovered_events.is_empty());
    assert!(coverage.unique, "a compaction keeps unique parts unique");
    let mut dates: Vec<_> = coverage.events.iter().map(|(_, f)| &f.date).collect();
    let n = dates.len();
    dates.dedup();
    assert_eq!(dates.len(), n, "one file per partition");
    assert_eq!(
        runs_text(&lake).await,
        expected,
        "after compacting everything"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parts_file_that_cannot_be_written_fails_the_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let (sample, files) = sample_of(dir.path(), 300);
    let sources: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    assert!(!sources.is_empty());
    // Runs written out of memory as the ingest goes on (their rows go to
    // the parts file's thread meanwhile), and every run held to the end.
    // Either way the file fails where its bytes are first stored, and the
    // ingest must fail with it, naming the file.
    for (name, max_runs) in [("written out", 20), ("held", 1_000_000)] {
        let lake = lake_with_prices(dir.path(), &format!("lake-{max_runs}"), &sample).await;
        // The table's folder is a file: no parts file can be written there.
        let root = dir.path().join(format!("lake-{max_runs}"));
        let parts = root.join("run_parts");
        if parts.is_dir() {
            std::fs::remove_dir_all(&parts).unwrap();
        }
        std::fs::write(&parts, b"not a folder").unwrap();
        let before = Snapshot::load(&lake).await.unwrap().version();
        let small_batches = IngestOptions {
            batch_rows: 200,
            ..IngestOptions::default()
        };
        let outcome = ingest_observed(
            &lake,
            &sources,
            &small_batches,
            None,
            PartsObserver::new(max_runs),
        )
        .await;
        let error = outcome.map(|(summary, _)| summary).unwrap_err();
        assert!(
            error.to_string().contains("run_parts/part-"),
            "{name}: the error names the parts file: {error}"
        );
        assert_eq!(
            Snapshot::load(&lake).await.unwrap().version(),
            before,
            "{name}: nothing committed"
        );
    }
}
