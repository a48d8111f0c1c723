//! Keeping `run_parts` up to date, so that `runs` reads runs, not events.
//!
//! [`refresh_runs`] computes `run_parts.sql` over the events that no current
//! part covers (usually the newest ingest) and commits the result as one
//! `runs` commit. After a price load or a retention commit every part is
//! stale (its model costs used the old prices, or it counts removed events),
//! and the refresh rebuilds all of them from every event, removing the old
//! files in the same commit. Readers never depend on it for correctness: a
//! session computes whatever is not covered on the fly (see
//! [`agentledger_lake::log::RunCoverage`]).
//!
//! Parts files do not pile up: once there are [`MERGE_PARTS_FILES`] current
//! parts files, the next refresh merges them (`merge_parts.sql`) with the new
//! parts into one file with one row per run, removes them, and its parts
//! then cover every event (`full`). A refresh whose file is the only current
//! one (a first refresh, a rebuild, a merge) marks it `unique`: sessions then
//! read it without merging.
//!
//! Memory stays bounded however large the lake is: runs are split into
//! buckets by a hash of (tenant_id, run_id) (`run_bucket`), about
//! [`CHUNK_ROWS`] events a bucket, and each bucket is computed and written
//! on its own. Every event of a run is in its bucket, so buckets never share
//! a run.

use std::sync::Arc;

use agentledger_lake::Lake;
use agentledger_lake::lock::WriterLock;
use agentledger_lake::log::{Commit, CommitKind, FileEntry, RunPartsCover, Snapshot};
use agentledger_lake::schema::{RUN_PARTS, RUN_PARTS_SCHEMA};
use agentledger_lake::writer::{UPLOAD_BUFFER, writer_properties};
use arrow::array::RecordBatch;
use arrow::compute::cast;
use futures::StreamExt;
use object_store::buffered::BufWriter;
use parquet::arrow::AsyncArrowWriter;
use serde::Serialize;

use crate::{Bucket, Result};

/// Events (or eight times as many parts rows) per bucket of runs.
pub const CHUNK_ROWS: u64 = 1_000_000;

/// Current parts files that make the next refresh merge them all.
pub const MERGE_PARTS_FILES: usize = 8;

/// What a refresh did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RefreshSummary {
    /// All parts were rebuilt (after a price load or retention).
    pub full: bool,
    /// Events read.
    pub events: u64,
    /// Run-part rows written (computed and copied).
    pub parts: u64,
    /// Current parts files merged into the new one.
    pub merged_files: usize,
    /// The version committed, or none when everything was covered.
    pub version: Option<u64>,
}

/// Tuning of a refresh.
#[derive(Debug, Clone, Copy)]
pub struct RefreshOptions {
    /// Events (or eight times as many parts rows) per bucket of runs.
    pub chunk_rows: u64,
}

impl Default for RefreshOptions {
    fn default() -> Self {
        Self {
            chunk_rows: CHUNK_ROWS,
        }
    }
}

/// Brings `run_parts` up to date with the lake; takes the writer lock.
pub async fn refresh_runs(lake: &Lake) -> Result<RefreshSummary> {
    refresh_runs_with(lake, RefreshOptions::default()).await
}

/// [`refresh_runs`] with other settings (tests use tiny buckets).
pub async fn refresh_runs_with(lake: &Lake, options: RefreshOptions) -> Result<RefreshSummary> {
    let lock = WriterLock::acquire(lake, "runs").await?;
    let result = refresh_locked(lake, options).await;
    lock.release().await?;
    result
}

async fn refresh_locked(lake: &Lake, options: RefreshOptions) -> Result<RefreshSummary> {
    let mut snapshot = Snapshot::load(lake).await?;
    snapshot.remove_orphans(lake, &[RUN_PARTS]).await?;
    let plan = plan_refresh(&snapshot);
    if plan.sources.is_empty() && plan.removes.is_empty() && plan.copy.is_empty() {
        return Ok(RefreshSummary::default());
    }
    let id = agentledger_lake::log::new_id();
    let (files, summary) = write_parts(lake, &snapshot, &plan, &id, options).await?;
    let mut commit = Commit::record(
        CommitKind::Runs,
        serde_json::json!({
            "run_parts": RunPartsCover {
                full: plan.full,
                covers: plan.covers.clone(),
                // A full refresh replaces every current part with its own
                // file, one row per run.
                unique: plan.full,
            },
            "events": summary.events,
            "parts": summary.parts,
            "merged_files": summary.merged_files,
        }),
    );
    commit.id = id;
    commit.files = files;
    commit.removes = plan.removes;
    let version = snapshot.commit(lake, commit).await?;
    agentledger_lake::retain::delete_due(lake, &snapshot, agentledger_lake::retain::grace_period())
        .await?;
    Ok(RefreshSummary {
        version: Some(version),
        ..summary
    })
}

/// What a refresh (or a compaction) has to compute.
#[derive(Debug, Default)]
pub(crate) struct RefreshPlan {
    pub full: bool,
    pub sources: Vec<FileEntry>,
    pub covers: Vec<u64>,
    /// Current parts files whose rows are copied into the new file.
    pub copy: Vec<FileEntry>,
    pub removes: Vec<String>,
}

pub(crate) fn plan_refresh(snapshot: &Snapshot) -> RefreshPlan {
    let coverage = snapshot.run_coverage();
    let full = !coverage.stale_parts.is_empty();
    if full {
        RefreshPlan {
            full,
            sources: coverage.events.iter().map(|(_, f)| (*f).clone()).collect(),
            covers: vec![],
            copy: vec![],
            removes: coverage
                .parts
                .iter()
                .chain(&coverage.stale_parts)
                .map(|f| f.path.clone())
                .collect(),
        }
    } else {
        let mut covers: Vec<u64> = coverage.uncovered_events.iter().map(|(v, _)| *v).collect();
        covers.dedup();
        let sources: Vec<FileEntry> = coverage
            .uncovered_events
            .iter()
            .map(|(_, f)| (*f).clone())
            .collect();
        let merge = !sources.is_empty() && coverage.parts.len() + 1 >= MERGE_PARTS_FILES;
        if merge || (coverage.parts.is_empty() && !sources.is_empty()) {
            // Every current part is merged and every uncovered event
            // computed: the new file covers all events, a row per run.
            RefreshPlan {
                full: true,
                sources,
                covers: vec![],
                copy: coverage.parts.iter().map(|f| (*f).clone()).collect(),
                removes: coverage.parts.iter().map(|f| f.path.clone()).collect(),
            }
        } else {
            RefreshPlan {
                full,
                sources,
                covers,
                copy: vec![],
                removes: vec![],
            }
        }
    }
}

/// How many buckets of runs a refresh reads in.
fn bucket_count(events: u64, parts: u64, chunk_rows: u64) -> u64 {
    (events + parts * 8).div_ceil(chunk_rows.max(1)).max(1)
}

/// Computes the parts of `plan.sources` into one file.
pub(crate) async fn write_parts(
    lake: &Lake,
    snapshot: &Snapshot,
    plan: &RefreshPlan,
    id: &str,
    options: RefreshOptions,
) -> Result<(Vec<FileEntry>, RefreshSummary)> {
    let mut summary = RefreshSummary {
        full: plan.full,
        ..Default::default()
    };
    if plan.sources.is_empty() && plan.copy.is_empty() {
        return Ok((vec![], summary));
    }
    let relative = format!("{RUN_PARTS}/part-{id}-0001.parquet");
    let sink = BufWriter::with_capacity(
        Arc::clone(lake.store()),
        lake.path(&relative),
        UPLOAD_BUFFER,
    );
    let schema = Arc::clone(&RUN_PARTS_SCHEMA);
    let mut writer =
        AsyncArrowWriter::try_new(sink, Arc::clone(&schema), Some(writer_properties(&schema)))
            .map_err(agentledger_lake::Error::from)?;
    let events: Vec<&FileEntry> = plan.sources.iter().collect();
    let parts: Vec<&FileEntry> = plan.copy.iter().collect();
    summary.events = events.iter().map(|f| f.rows).sum();
    summary.merged_files = parts.len();
    let count = bucket_count(
        summary.events,
        parts.iter().map(|f| f.rows).sum(),
        options.chunk_rows,
    );
    for index in 0..count {
        let bucket = Bucket { index, count };
        let (_ctx, df) = if parts.is_empty() {
            crate::run_parts_of_bucket(lake, snapshot, &events, (count > 1).then_some(bucket))
                .await?
        } else {
            crate::merged_parts_of_bucket(lake, snapshot, &parts, &events, bucket).await?
        };
        let mut stream = df.execute_stream().await?;
        while let Some(batch) = stream.next().await {
            let batch = conform(&batch?)?;
            summary.parts += batch.num_rows() as u64;
            writer
                .write(&batch)
                .await
                .map_err(agentledger_lake::Error::from)?;
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
    Ok((vec![entry], summary))
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
