//! Compaction: many small event files of a date partition rewritten as one.
//!
//! An hourly batch leaves a file per ingest in each partition it touches;
//! after weeks, queries over `events` (and every ingest's duplicate check)
//! open thousands of small files. [`compact`] rewrites each partition that
//! has `min_files` or more files into a single file, with the same rows in
//! the same order, in one commit that adds the new files and removes the
//! old ones. Readers see the old files or the new ones, never both; the old
//! files stay on storage for the retention grace period, so a query that
//! started before the commit finishes on them.
//!
//! Run parts are not recomputed: only files whose events the current run
//! parts (of the caller's definitions) already cover are compacted, and the
//! commit states that the parts cover its events (`"run_parts": {"own":
//! true}`), so `runs` neither loses nor counts them twice. Files not covered
//! yet (an ingest whose parts are still to be computed, parts made with
//! other definitions) wait for the next compaction.
//!
//! It also merges the key index ([`crate::index`]): when `events` or
//! `quarantine` has more than [`crate::index::MAX_RUNS`] index runs, they are merged, in a
//! commit of its own.

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt;
use serde::Serialize;

use crate::error::Result;
use crate::lease::Lease;
use crate::log::{Commit, CommitKind, FileEntry, RunPartsCover, Snapshot, new_id};
use crate::parquet_io::read_all;
use crate::retain::{delete_due, grace_period};
use crate::schema::{EVENT_INDEX, EVENTS, EVENTS_SCHEMA, QUARANTINE_INDEX};
use crate::store::Lake;
use crate::writer::open_file;

/// Files a partition needs before [`compact`] rewrites it, by default.
pub const MIN_FILES: usize = 8;

/// One partition rewritten.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionCompaction {
    /// The partition's date, YYYY-MM-DD.
    pub date: String,
    /// Files before.
    pub files: usize,
    /// Rows (the same before and after).
    pub rows: u64,
}

/// What a compaction did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CompactSummary {
    /// Partitions rewritten.
    pub partitions: Vec<PartitionCompaction>,
    /// Event files before and after, over the whole lake.
    pub files_before: usize,
    /// Event files after.
    pub files_after: usize,
    /// Event files left alone because no run part covers them yet.
    pub uncovered_files: usize,
    /// The lake version committed, or none when nothing needed compacting.
    pub version: Option<u64>,
    /// Files of earlier removals deleted from storage (past the grace period).
    pub files_deleted: usize,
    /// Key index runs merged into one (more than [`crate::index::MAX_RUNS`]
    /// of a table), in a commit of their own.
    pub index_runs_merged: usize,
}

/// Rewrites every `events` partition with `min_files` or more covered
/// files into one file; takes the writer lock. `definitions` is the version
/// of the run-parts definitions of the caller
/// (`agentledger_transforms::definitions`): only events that parts of those
/// definitions cover are compacted.
pub async fn compact(lake: &Lake, min_files: usize, definitions: &str) -> Result<CompactSummary> {
    let lock = Lease::writer(lake, "compact").await?;
    let result = compact_locked(&lock.fence(lake), min_files.max(2), definitions).await;
    lock.release().await?;
    result
}

async fn compact_locked(
    lake: &Lake,
    min_files: usize,
    definitions: &str,
) -> Result<CompactSummary> {
    let mut snapshot = Snapshot::load(lake).await?;
    snapshot
        .remove_orphans(lake, &[EVENTS, EVENT_INDEX, QUARANTINE_INDEX])
        .await?;
    let coverage = snapshot.run_coverage(definitions);
    let uncovered: BTreeSet<&str> = coverage
        .uncovered_events
        .iter()
        .map(|(_, f)| f.path.as_str())
        .collect();
    let mut by_date: BTreeMap<&str, Vec<&FileEntry>> = BTreeMap::new();
    let mut summary = CompactSummary::default();
    for (_, file) in &coverage.events {
        summary.files_before += 1;
        if uncovered.contains(file.path.as_str()) {
            summary.uncovered_files += 1;
            continue;
        }
        if let Some(date) = file.date.as_deref() {
            by_date.entry(date).or_default().push(file);
        }
    }
    by_date.retain(|_, files| files.len() >= min_files);
    summary.files_after = summary.files_before;
    if by_date.is_empty() {
        // No commit: still bring the Delta logs up to date (a compaction
        // killed after its commit ends this way when run again).
        crate::delta::sync(lake, &snapshot).await?;
        summary.index_runs_merged = crate::index::merge_due(lake, &mut snapshot).await?;
        summary.files_deleted = delete_due(lake, &snapshot, grace_period()).await?;
        return Ok(summary);
    }

    let id = new_id();
    let mut written = Vec::new();
    let mut removes = Vec::new();
    for (date, files) in &by_date {
        let relative = format!("{EVENTS}/date={date}/part-{id}-0001.parquet");
        let mut writer = open_file(lake, &relative, &EVENTS_SCHEMA)?;
        let mut rows = 0u64;
        for file in files {
            let mut stream = read_all(lake, file).await?;
            let mut read = 0u64;
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                read += batch.num_rows() as u64;
                writer.write(&batch).await?;
            }
            if read != file.rows {
                return Err(crate::Error::CorruptData {
                    path: file.path.clone(),
                    reason: format!(
                        "compaction read {read} rows where the commit log says {}; nothing was committed",
                        file.rows
                    ),
                });
            }
            rows += read;
            removes.push(file.path.clone());
        }
        writer.finish().await?;
        written.push(FileEntry {
            table: EVENTS.to_string(),
            path: relative,
            size: writer.bytes_written() as u64,
            rows,
            date: Some((*date).to_string()),
        });
        summary.partitions.push(PartitionCompaction {
            date: (*date).to_string(),
            files: files.len(),
            rows,
        });
        summary.files_after -= files.len() - 1;
    }
    let mut commit = Commit::record(
        CommitKind::Compact,
        serde_json::json!({
            "table": EVENTS,
            "partitions": summary.partitions.len(),
            "files_removed": removes.len(),
            // The current parts covered every removed file; they cover the
            // same events in the new ones.
            "run_parts": RunPartsCover {
                own: true,
                definitions: Some(definitions.to_string()),
                ..Default::default()
            },
        }),
    );
    commit.id = id;
    commit.files = written;
    commit.removes = removes;
    // An ingest committed meanwhile adds files this compaction never
    // touches: the same commit stands on top of it.
    summary.version = Some(snapshot.commit_over_ingests(lake, commit).await?);
    summary.index_runs_merged = crate::index::merge_due(lake, &mut snapshot).await?;
    summary.files_deleted = delete_due(lake, &snapshot, grace_period()).await?;
    Ok(summary)
}
