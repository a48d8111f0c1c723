//! Keeping `run_parts` up to date, so that `runs` reads runs, not events.
//!
//! An ingest commits the parts of its own events (see [`crate::parts`]);
//! [`refresh_runs`] computes `run_parts.sql` over any events that no current
//! part covers (committed by an older agentledger, or by an ingest without
//! an observer) and commits the result as a `runs` commit, merging parts
//! files when that is due (a second commit when the first left a run in
//! two rows). After a price load or a retention commit every part is stale
//! (its model costs used the old prices, or it counts removed events), and
//! so is every part made with other definitions than this binary's
//! ([`crate::definitions`]: a changed metric); the refresh then rebuilds all
//! of them from every event, removing the old files in the same commit.
//! [`RefreshOptions::force`] rebuilds them whatever they are
//! (`agentledger rebuild`). Readers never depend on it for correctness: a
//! session computes whatever is not covered on the fly (see
//! [`agentledger_lake::log::RunCoverage`]).
//!
//! Parts files do not pile up: while the current parts are small
//! ([`MERGE_ALWAYS_ROWS`]), the refresh merges them with the new parts into
//! one file with one row per run and removes them (`merge_parts.sql`; parts
//! files alone are merged by `parts::PartsMerger`, the same rules in Rust).
//! A file that is the only current one and holds one row per run is marked
//! `unique`: sessions then read it without merging, and once later parts
//! are added it stays the *base* that sessions merge only the runs those
//! later parts touch with (`merge_on_read.sql`). So a large lake merges
//! everything again only once [`MERGE_NEWER_FILES`] files were added after
//! the base or they hold a quarter as many rows; without a base (parts of
//! several chunks), once there are [`MERGE_PARTS_FILES`] files.
//!
//! Memory stays bounded however large the lake is. New events are read in
//! chunks of whole date partitions of about [`CHUNK_ROWS`] events, each
//! once; a run with events in two chunks then has two rows, so a refresh that
//! needed several chunks merges its own file right after. Merges read runs
//! in buckets by a hash of (tenant_id, run_id) (`run_bucket`): every part and
//! event of a run is in its bucket, so each bucket is merged on its own.

use std::sync::Arc;

use agentledger_lake::Lake;
use agentledger_lake::lease::Lease;
use agentledger_lake::log::{Commit, CommitKind, FileEntry, RunPartsCover, Snapshot};
use agentledger_lake::schema::{EVENTS, RUN_PARTS, RUN_PARTS_SCHEMA};
use agentledger_lake::writer::open_file;
use arrow::array::RecordBatch;
use arrow::compute::cast;
use futures::StreamExt;
use object_store::buffered::BufWriter;
use parquet::arrow::AsyncArrowWriter;
use serde::Serialize;

use crate::{Bucket, Result};

/// Events read into one run-parts computation (whole date partitions), or
/// events plus eight times the parts rows in one bucket of a merge: what
/// bounds a refresh's memory.
pub const CHUNK_ROWS: u64 = 1_000_000;

/// Current parts files that make the next refresh merge them all, when no
/// base of one row per run exists.
pub const MERGE_PARTS_FILES: usize = 8;

/// Parts files written after the base (see
/// [`agentledger_lake::log::RunCoverage::base_parts`]) that make the next
/// refresh merge everything into a new base. Readers merge only the runs
/// those files touch with the base (merge on read), so they can pile up
/// for days of hourly ingests; merging sooner would rewrite every run each
/// time.
pub const MERGE_NEWER_FILES: usize = 48;

/// Current parts rows up to which every refresh merges them with its new
/// parts (cheap at this size), so that small, frequent ingests keep one row
/// per run and `runs` never has to regroup.
pub const MERGE_ALWAYS_ROWS: u64 = 500_000;

/// [`MERGE_ALWAYS_ROWS`], or `AGENTLEDGER_MERGE_ALWAYS_ROWS` when set (a
/// tuning knob; tests set it to 0 to see a small lake behave as a large one).
pub fn merge_always_rows() -> u64 {
    agentledger_lake::retry::env_count(
        "AGENTLEDGER_MERGE_ALWAYS_ROWS",
        "rows",
        0,
        MERGE_ALWAYS_ROWS,
    )
}

/// What a refresh did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RefreshSummary {
    /// The new parts cover every event: a rebuild (after a price load,
    /// retention or a change of definitions, or forced), a merge of all
    /// current parts, or a first refresh.
    pub full: bool,
    /// Events read.
    pub events: u64,
    /// Run-part rows in the last file written (computed and copied).
    pub parts: u64,
    /// Current parts files merged into the new one.
    pub merged_files: usize,
    /// Parts files the refresh took out of the lake (merged, stale or
    /// rebuilt).
    pub removed_files: usize,
    /// The definitions the parts were made with ([`crate::definitions`]).
    pub definitions: String,
    /// The version committed, or none when everything was covered.
    pub version: Option<u64>,
}

/// Tuning of a refresh.
#[derive(Debug, Clone, Copy)]
pub struct RefreshOptions {
    /// Events (or eight times as many parts rows) per bucket of runs.
    pub chunk_rows: u64,
    /// Rebuild every part from the events even if they are current
    /// (`agentledger rebuild`).
    pub force: bool,
    /// How long to wait for the writer lease; `None` waits as every writer
    /// does (`AGENTLEDGER_LOCK_WAIT_SECS`). The refresh after an ingest
    /// waits for nobody: its parts are an optimisation, and another writer
    /// holding the lease will bring them up to date.
    pub lease_wait: Option<std::time::Duration>,
}

/// Memory limit per event of a chunk ([`default_chunk_rows`]). The joins
/// of `run_parts.sql` hold a chunk's per-run rows in hash tables, which
/// DataFusion cannot spill; measured at 100 to 200 bytes per event.
pub const LIMIT_BYTES_PER_CHUNK_ROW: u64 = 512;

/// [`CHUNK_ROWS`], or fewer under a memory limit below
/// [`CHUNK_ROWS`] × [`LIMIT_BYTES_PER_CHUNK_ROW`] (512 MiB), so that a
/// refresh fits the limit: a 64 MiB limit reads 131072 events at a time.
pub fn default_chunk_rows() -> u64 {
    crate::memory::budget().map_or(CHUNK_ROWS, |b| {
        (b.limit() / LIMIT_BYTES_PER_CHUNK_ROW).clamp(1, CHUNK_ROWS)
    })
}

impl Default for RefreshOptions {
    /// [`default_chunk_rows`], or `AGENTLEDGER_RUNS_CHUNK_ROWS` when set
    /// (fewer rows, less memory, a little more time).
    fn default() -> Self {
        Self {
            chunk_rows: agentledger_lake::retry::env_count(
                "AGENTLEDGER_RUNS_CHUNK_ROWS",
                "rows",
                1,
                default_chunk_rows(),
            ),
            force: false,
            lease_wait: None,
        }
    }
}

/// Brings `run_parts` up to date with the lake; takes the writer lock.
pub async fn refresh_runs(lake: &Lake) -> Result<RefreshSummary> {
    refresh_runs_with(lake, RefreshOptions::default()).await
}

/// [`refresh_runs`] with other settings (a forced rebuild; tests use tiny
/// buckets).
pub async fn refresh_runs_with(lake: &Lake, options: RefreshOptions) -> Result<RefreshSummary> {
    let lock = match options.lease_wait {
        None => Lease::writer(lake, "runs").await?,
        Some(wait) => {
            use agentledger_lake::lease::{WRITER, Waiting};
            Lease::acquire(lake, WRITER, "runs", Waiting::Patiently(wait)).await?
        }
    };
    let result = refresh_locked(&lock.fence(lake), options).await;
    lock.release().await?;
    result
}

async fn refresh_locked(lake: &Lake, options: RefreshOptions) -> Result<RefreshSummary> {
    let definitions = crate::definitions();
    let mut total = RefreshSummary {
        definitions: definitions.to_string(),
        ..Default::default()
    };
    // A refresh that had to read its events in several date chunks leaves
    // one file whose runs may have two rows; the second round merges it.
    for round in 0..2 {
        let mut snapshot = Snapshot::load(lake).await?;
        snapshot.remove_orphans(lake, &[RUN_PARTS]).await?;
        let force = options.force && round == 0;
        let Some(plan) = plan_refresh(&snapshot, definitions, force) else {
            break;
        };
        let id = agentledger_lake::log::new_id();
        let (files, summary, unique) = write_parts(lake, &snapshot, &plan, &id, options).await?;
        let mut cover = RunPartsCover {
            full: plan.full,
            covers: plan.covers.clone(),
            own: false,
            unique,
            definitions: Some(definitions.to_string()),
        };
        // Ingests take no lease: one may commit while the parts are
        // computed. The parts stay right for what they cover; only a claim
        // about events they never saw must go (see `rebase_cover`).
        let version = loop {
            let mut commit = Commit::record(
                CommitKind::Runs,
                serde_json::json!({
                    "run_parts": cover,
                    "events": summary.events,
                    "parts": summary.parts,
                    "merged_files": summary.merged_files,
                }),
            );
            commit.id = id.clone();
            commit.files = files.clone();
            commit.removes = plan.removes.clone();
            match snapshot.commit(lake, commit).await {
                Ok(version) => break version,
                Err(agentledger_lake::Error::CommitConflict { version }) => {
                    let newer = snapshot.refreshed(lake).await?;
                    let since = newer.since(snapshot.version());
                    if !rebase_cover(&mut cover, &snapshot, since) {
                        return Err(agentledger_lake::Error::CommitConflict { version }.into());
                    }
                    snapshot = newer;
                }
                Err(e) => return Err(e.into()),
            }
        };
        total = RefreshSummary {
            full: total.full || summary.full,
            events: total.events + summary.events,
            parts: summary.parts,
            merged_files: total.merged_files + summary.merged_files,
            removed_files: total.removed_files + plan.removes.len(),
            definitions: total.definitions,
            version: Some(version),
        };
        agentledger_lake::retain::delete_due(
            lake,
            &snapshot,
            agentledger_lake::retain::grace_period(),
        )
        .await?;
    }
    Ok(total)
}

/// Moves a refresh's cover, made against `snapshot`, on top of `since`
/// (commits made after it). Only writers without the writer lease can have
/// committed since (ingests, landing and alerts records); anything else
/// returns false. A cover of every event (`full`) becomes a cover of the
/// versions that held events in `snapshot`, and parts are no longer the
/// only ones or covering everything (`unique`) once others added files.
pub(crate) fn rebase_cover(
    cover: &mut RunPartsCover,
    snapshot: &Snapshot,
    since: &[Commit],
) -> bool {
    if since.iter().any(|c| {
        !matches!(
            c.kind,
            CommitKind::Ingest | CommitKind::Landing | CommitKind::Alerts
        )
    }) {
        return false;
    }
    if cover.full {
        cover.full = false;
        let mut versions: Vec<u64> = snapshot
            .state()
            .appended
            .iter()
            .filter(|f| f.entry.table == EVENTS)
            .map(|f| f.added_by)
            .collect();
        versions.append(&mut cover.covers);
        versions.sort_unstable();
        versions.dedup();
        cover.covers = versions;
    }
    if since.iter().any(|c| !c.files.is_empty()) {
        cover.unique = false;
    }
    true
}

/// What a refresh has to compute.
#[derive(Debug, Default)]
pub(crate) struct RefreshPlan {
    /// The new parts cover every event.
    pub full: bool,
    /// Events to compute parts from.
    pub sources: Vec<FileEntry>,
    /// Versions whose events the new parts cover (when not `full`).
    pub covers: Vec<u64>,
    /// Current parts merged with the new ones into one row per run.
    pub merge: Vec<FileEntry>,
    /// Parts files the commit takes out.
    pub removes: Vec<String>,
}

/// What to do for a binary of `definitions`, or `None` when the parts are
/// current and need no merging; `force` rebuilds every part from the events
/// (`None` only when the lake has neither events nor parts).
pub(crate) fn plan_refresh(
    snapshot: &Snapshot,
    definitions: &str,
    force: bool,
) -> Option<RefreshPlan> {
    let coverage = snapshot.run_coverage(definitions);
    let all_parts = || -> Vec<String> {
        coverage
            .parts
            .iter()
            .chain(&coverage.stale_parts)
            .map(|f| f.path.clone())
            .collect()
    };
    if force && coverage.events.is_empty() && all_parts().is_empty() {
        return None;
    }
    if force || !coverage.stale_parts.is_empty() {
        // Prices, events or definitions changed under every part, or the
        // caller wants them rebuilt: rebuild from events.
        return Some(RefreshPlan {
            full: true,
            sources: coverage.events.iter().map(|(_, f)| (*f).clone()).collect(),
            removes: all_parts(),
            ..Default::default()
        });
    }
    let sources: Vec<FileEntry> = coverage
        .uncovered_events
        .iter()
        .map(|(_, f)| (*f).clone())
        .collect();
    let mut covers: Vec<u64> = coverage.uncovered_events.iter().map(|(v, _)| *v).collect();
    covers.dedup();
    let current: Vec<FileEntry> = coverage.parts.iter().map(|f| (*f).clone()).collect();
    let current_rows: u64 = current.iter().map(|f| f.rows).sum();
    // Whether the parts files piled up enough to merge, with `extra` more
    // about to be written: with a base, once the newer files are many or
    // hold a quarter as many rows as the base; without, once there are
    // several files.
    let base_rows: u64 = coverage.base_parts.iter().map(|f| f.rows).sum();
    let newer_rows: u64 = coverage.newer_parts.iter().map(|f| f.rows).sum();
    let piled_up = |extra: usize| {
        if coverage.base_parts.is_empty() {
            current.len() + extra >= MERGE_PARTS_FILES
        } else {
            coverage.newer_parts.len() + extra >= MERGE_NEWER_FILES
                || newer_rows.saturating_mul(4) >= base_rows
        }
    };
    if sources.is_empty() {
        // Everything is covered. One file that may hold a run twice (read
        // in date chunks, or an ingest's parts with a run written out and
        // seen again) is merged into one row per run; several files (an
        // ingest's parts beside earlier ones) are merged on the same terms
        // as new events below.
        let merge = match current.len() {
            0 => false,
            1 => !coverage.unique,
            _ => piled_up(0) || current_rows <= merge_always_rows(),
        };
        return merge.then(|| RefreshPlan {
            full: true,
            removes: all_parts(),
            merge: current,
            ..Default::default()
        });
    }
    if current.is_empty() {
        return Some(RefreshPlan {
            full: true,
            sources,
            ..Default::default()
        });
    }
    if piled_up(1) || current_rows <= merge_always_rows() {
        // Parts files piled up, or few enough to merge every time: merge
        // them all with the new parts.
        return Some(RefreshPlan {
            full: true,
            sources,
            removes: all_parts(),
            merge: current,
            ..Default::default()
        });
    }
    Some(RefreshPlan {
        sources,
        covers,
        ..Default::default()
    })
}

/// Groups event files into chunks of whole date partitions of about
/// `chunk_rows` events (a larger partition is a chunk of its own).
fn chunks(files: &[FileEntry], chunk_rows: u64) -> Vec<Vec<&FileEntry>> {
    let mut by_date: std::collections::BTreeMap<Option<&str>, Vec<&FileEntry>> =
        std::collections::BTreeMap::new();
    for f in files {
        by_date.entry(f.date.as_deref()).or_default().push(f);
    }
    let mut out: Vec<Vec<&FileEntry>> = Vec::new();
    let mut rows = 0;
    for (_, files) in by_date {
        let n: u64 = files.iter().map(|f| f.rows).sum();
        if out.is_empty() || rows + n > chunk_rows {
            out.push(Vec::new());
            rows = 0;
        }
        rows += n;
        out.last_mut().expect("pushed above").extend(files);
    }
    out
}

/// How many buckets of runs a merge reads in.
fn bucket_count(events: u64, parts: u64, chunk_rows: u64) -> u64 {
    (events + parts * 8).div_ceil(chunk_rows.max(1)).max(1)
}

/// Computes the parts of a plan into one file; also says whether the file
/// holds one row per run.
///
/// New events are read in chunks of whole dates (each read once); a run
/// with events in two chunks then has two rows, and the file is not
/// unique. A merge reads runs in hash buckets instead: each bucket holds
/// every part and event of its runs, so the result has one row per run.
pub(crate) async fn write_parts(
    lake: &Lake,
    snapshot: &Snapshot,
    plan: &RefreshPlan,
    id: &str,
    options: RefreshOptions,
) -> Result<(Vec<FileEntry>, RefreshSummary, bool)> {
    let mut summary = RefreshSummary {
        full: plan.full,
        ..Default::default()
    };
    if plan.sources.is_empty() && plan.merge.is_empty() {
        return Ok((vec![], summary, plan.full));
    }
    let relative = format!("{RUN_PARTS}/part-{id}-0001.parquet");
    let mut writer = open_file(lake, &relative, &RUN_PARTS_SCHEMA)?;
    summary.events = plan.sources.iter().map(|f| f.rows).sum();
    summary.merged_files = plan.merge.len();
    let unique;
    if plan.merge.is_empty() {
        let chunks = chunks(&plan.sources, options.chunk_rows);
        unique = plan.full && chunks.len() == 1;
        for chunk in chunks {
            let (_ctx, df) = crate::run_parts_over(lake, snapshot, &chunk).await?;
            write_stream(&mut writer, df, &mut summary).await?;
        }
    } else {
        unique = true;
        let events: Vec<&FileEntry> = plan.sources.iter().collect();
        let parts: Vec<&FileEntry> = plan.merge.iter().collect();
        let count = bucket_count(
            summary.events,
            parts.iter().map(|f| f.rows).sum(),
            options.chunk_rows,
        );
        for index in 0..count {
            // Parts alone are merged in Rust (merge_parts.sql's definition,
            // several times faster than its first_value aggregates); with new
            // events, or if a sum overflows, by the SQL.
            if events.is_empty()
                && merge_in_rust(lake, &parts, index, count, &mut writer, &mut summary).await?
            {
                continue;
            }
            let bucket = Bucket { index, count };
            let (_ctx, df) =
                crate::merged_parts_of_bucket(lake, snapshot, &parts, &events, bucket).await?;
            write_stream(&mut writer, df, &mut summary).await?;
        }
    }
    writer
        .finish()
        .await
        .map_err(agentledger_lake::Error::from)?;
    let entry = FileEntry {
        table: RUN_PARTS.to_string(),
        path: relative,
        size: writer.bytes_written() as u64,
        rows: summary.parts,
        date: None,
    };
    Ok((vec![entry], summary, unique))
}

/// Merges bucket `index` of `count` of the parts files with
/// [`crate::parts::PartsMerger`] and writes it; `false` (nothing written)
/// when the merger gives up.
async fn merge_in_rust(
    lake: &Lake,
    parts: &[&FileEntry],
    index: u64,
    count: u64,
    writer: &mut AsyncArrowWriter<BufWriter>,
    summary: &mut RefreshSummary,
) -> Result<bool> {
    let mut merger = crate::parts::PartsMerger::default();
    for file in parts {
        let mut stream = agentledger_lake::parquet_io::read_all(lake, file).await?;
        while let Some(batch) = stream.next().await {
            if merger.add(&batch?, index, count).is_err() {
                return Ok(false);
            }
        }
    }
    for batch in merger.drain()? {
        summary.parts += batch.num_rows() as u64;
        writer
            .write(&batch)
            .await
            .map_err(agentledger_lake::Error::from)?;
    }
    Ok(true)
}

async fn write_stream(
    writer: &mut AsyncArrowWriter<BufWriter>,
    df: datafusion::prelude::DataFrame,
    summary: &mut RefreshSummary,
) -> Result<()> {
    let mut stream = df.execute_stream().await?;
    while let Some(batch) = stream.next().await {
        let batch = conform(&batch?)?;
        summary.parts += batch.num_rows() as u64;
        writer
            .write(&batch)
            .await
            .map_err(agentledger_lake::Error::from)?;
    }
    Ok(())
}

/// A batch of `run_parts.sql` output in the stored schema.
fn conform(batch: &RecordBatch) -> Result<RecordBatch> {
    let columns = RUN_PARTS_SCHEMA
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(field, column)| cast(column, field.data_type()))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(datafusion::error::DataFusionError::from)?;
    Ok(RecordBatch::try_new(Arc::clone(&RUN_PARTS_SCHEMA), columns)
        .map_err(datafusion::error::DataFusionError::from)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn run_parts_sql_gives_the_stored_schema() {
        let lake = Lake::open("memory://run-parts-schema").unwrap();
        let snapshot = Snapshot::default();
        let (_ctx, df) = crate::run_parts_over(&lake, &snapshot, &[]).await.unwrap();
        let columns = |fields: &arrow::datatypes::Fields| -> Vec<String> {
            fields
                .iter()
                .map(|f| format!("{} {}", f.name(), f.data_type()))
                .collect()
        };
        assert_eq!(
            columns(df.schema().as_arrow().fields()),
            columns(RUN_PARTS_SCHEMA.fields())
        );
    }

    /// The definitions of the parts [`lake_with_parts`] makes.
    const DEFS: &str = "test-definitions";

    /// [`plan_refresh`] for a binary of the parts' definitions, not forced.
    fn plan_for(snapshot: &Snapshot) -> Option<RefreshPlan> {
        plan_refresh(snapshot, DEFS, false)
    }

    /// A snapshot of a memory lake: an events file, then `parts` parts
    /// files of `rows` rows each that cover it (one commit each), then, if
    /// `new_events`, an ingest no part covers.
    async fn lake_with_parts(name: &str, parts: usize, rows: u64, new_events: bool) -> Snapshot {
        let lake = Lake::open(&format!("memory://plan-{name}")).unwrap();
        let mut snapshot = Snapshot::load(&lake).await.unwrap();
        let file = |table: &str, path: String, rows: u64| FileEntry {
            table: table.into(),
            path,
            size: 1,
            rows,
            date: None,
        };
        let mut ingest = Commit::record(CommitKind::Ingest, serde_json::Value::Null);
        ingest.files = vec![file("events", "events/e1.parquet".into(), 10)];
        let first = snapshot.commit(&lake, ingest).await.unwrap();
        for i in 0..parts {
            let mut runs = Commit::record(
                CommitKind::Runs,
                serde_json::json!({"run_parts": RunPartsCover {
                    covers: vec![first],
                    definitions: Some(DEFS.into()),
                    ..Default::default()
                }}),
            );
            runs.files = vec![file(RUN_PARTS, format!("run_parts/p{i}.parquet"), rows)];
            snapshot.commit(&lake, runs).await.unwrap();
        }
        if new_events {
            let mut ingest = Commit::record(CommitKind::Ingest, serde_json::Value::Null);
            ingest.files = vec![file("events", "events/e2.parquet".into(), 10)];
            snapshot.commit(&lake, ingest).await.unwrap();
        }
        snapshot
    }

    #[tokio::test]
    async fn parts_are_merged_while_small_or_once_eight_files_pile_up() {
        let big = MERGE_ALWAYS_ROWS + 1;
        // Big parts and new events: new parts beside them, no merge.
        let plan = plan_for(&lake_with_parts("big", 1, big, true).await).unwrap();
        assert!(plan.merge.is_empty() && !plan.full, "{plan:?}");
        assert_eq!(plan.covers, [3]);
        assert_eq!(plan.sources.len(), 1);
        // Small parts: merged with the new ones every time.
        let plan = plan_for(&lake_with_parts("small", 1, MERGE_ALWAYS_ROWS, true).await).unwrap();
        assert_eq!((plan.merge.len(), plan.full), (1, true), "{plan:?}");
        // Seven big files plus the new parts make eight: all merged.
        let n = MERGE_PARTS_FILES - 1;
        let plan = plan_for(&lake_with_parts("seven", n, big, true).await).unwrap();
        assert_eq!(plan.merge.len(), n, "{plan:?}");
        assert_eq!(plan.removes.len(), n);
        // Nothing new: several big files stay until eight pile up, several
        // small ones are merged.
        assert!(
            plan_for(&lake_with_parts("two-big", 2, big, false).await).is_none(),
            "two big files are left as they are"
        );
        let plan =
            plan_for(&lake_with_parts("eight", MERGE_PARTS_FILES, big, false).await).unwrap();
        assert_eq!(plan.merge.len(), MERGE_PARTS_FILES, "{plan:?}");
        let plan = plan_for(&lake_with_parts("two-small", 2, 10, false).await).unwrap();
        assert_eq!(plan.merge.len(), 2, "{plan:?}");
        assert!(plan.sources.is_empty());
    }

    #[tokio::test]
    async fn parts_of_other_definitions_or_a_forced_refresh_rebuild_everything() {
        let big = MERGE_ALWAYS_ROWS + 1;
        let lake = lake_with_parts("defs", 2, big, true).await;
        // This binary: new parts beside the current ones.
        let plan = plan_refresh(&lake, DEFS, false).unwrap();
        assert!(!plan.full && plan.removes.is_empty(), "{plan:?}");
        // Another binary: every part is stale; all of them are rebuilt from
        // every event, and the commit removes them.
        for (defs, force) in [("other", false), (DEFS, true)] {
            let plan = plan_refresh(&lake, defs, force).unwrap();
            assert!(plan.full && plan.merge.is_empty(), "{plan:?}");
            assert_eq!(plan.sources.len(), 2, "{plan:?}");
            assert_eq!(
                plan.removes,
                ["run_parts/p0.parquet", "run_parts/p1.parquet"]
            );
        }
        // Current and nothing to merge: only a forced refresh rebuilds.
        let settled = lake_with_parts("defs-settled", 2, big, false).await;
        assert!(plan_refresh(&settled, DEFS, false).is_none());
        let plan = plan_refresh(&settled, DEFS, true).unwrap();
        assert_eq!(
            (plan.full, plan.sources.len(), plan.removes.len()),
            (true, 1, 2)
        );
        // An empty lake has nothing to rebuild.
        assert!(plan_refresh(&Snapshot::default(), DEFS, true).is_none());
    }

    #[test]
    fn chunks_hold_whole_dates_up_to_the_limit() {
        let file = |date: &str, rows: u64| FileEntry {
            table: "events".into(),
            path: format!("events/date={date}/{rows}.parquet"),
            size: 1,
            rows,
            date: Some(date.into()),
        };
        let c = 100;
        let files = [
            file("2026-01-02", c / 2),
            file("2026-01-01", c / 2),
            file("2026-01-01", 10),
            file("2026-01-03", c * 2),
            file("2026-01-04", 1),
        ];
        let sizes: Vec<Vec<u64>> = chunks(&files, c)
            .iter()
            .map(|chunk| chunk.iter().map(|f| f.rows).collect())
            .collect();
        assert_eq!(sizes, [vec![c / 2, 10], vec![c / 2], vec![c * 2], vec![1]]);
    }

    #[test]
    fn buckets_split_runs_evenly_and_keep_each_run_whole() {
        assert_eq!(bucket_count(0, 0, CHUNK_ROWS), 1);
        assert_eq!(bucket_count(CHUNK_ROWS, 0, CHUNK_ROWS), 1);
        assert_eq!(bucket_count(CHUNK_ROWS + 1, 0, CHUNK_ROWS), 2);
        assert_eq!(bucket_count(CHUNK_ROWS, CHUNK_ROWS / 8, CHUNK_ROWS), 2);
        let mut sizes = [0u32; 4];
        for run in 0..40_000 {
            let b = crate::udf::run_bucket("acme", &format!("run-{run}"), 4);
            assert_eq!(b, crate::udf::run_bucket("acme", &format!("run-{run}"), 4));
            sizes[b as usize] += 1;
        }
        assert!(
            sizes.iter().all(|n| (9_000..11_000).contains(n)),
            "{sizes:?}"
        );
        assert_ne!(
            crate::udf::run_bucket("a", "bc", 1 << 20),
            crate::udf::run_bucket("ab", "c", 1 << 20),
            "the pair is hashed with a separator"
        );
    }
}
