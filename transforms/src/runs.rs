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
//! parts files, the next refresh copies their rows into its own file and
//! removes them, and its parts then cover every event (`full`).
//!
//! Events are read in chunks of whole date partitions of at most
//! [`CHUNK_ROWS`] rows, so memory stays bounded however large the lake is;
//! a run whose events fall into two chunks simply has two parts.

use std::collections::BTreeMap;
use std::sync::Arc;

use agentledger_lake::Lake;
use agentledger_lake::lock::WriterLock;
use agentledger_lake::log::{Commit, CommitKind, FileEntry, RunPartsCover, Snapshot};
use agentledger_lake::parquet_io::read_all;
use agentledger_lake::schema::{RUN_PARTS, RUN_PARTS_SCHEMA};
use agentledger_lake::writer::{UPLOAD_BUFFER, writer_properties};
use arrow::array::RecordBatch;
use arrow::compute::cast;
use futures::StreamExt;
use object_store::buffered::BufWriter;
use parquet::arrow::AsyncArrowWriter;
use serde::Serialize;

use crate::Result;

/// Events read into one run-parts computation at most (whole date
/// partitions; a single larger partition is read alone).
pub const CHUNK_ROWS: u64 = 2_000_000;

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

/// Brings `run_parts` up to date with the lake; takes the writer lock.
pub async fn refresh_runs(lake: &Lake) -> Result<RefreshSummary> {
    let lock = WriterLock::acquire(lake, "runs").await?;
    let result = refresh_locked(lake).await;
    lock.release().await?;
    result
}

async fn refresh_locked(lake: &Lake) -> Result<RefreshSummary> {
    let mut snapshot = Snapshot::load(lake).await?;
    snapshot.remove_orphans(lake, &[RUN_PARTS]).await?;
    let plan = plan_refresh(&snapshot);
    if plan.sources.is_empty() && plan.removes.is_empty() && plan.copy.is_empty() {
        return Ok(RefreshSummary::default());
    }
    let id = agentledger_lake::log::new_id();
    let (files, summary) = write_parts(lake, &snapshot, &plan, &id).await?;
    let mut commit = Commit::record(
        CommitKind::Runs,
        serde_json::json!({
            "run_parts": RunPartsCover { full: plan.full, covers: plan.covers.clone() },
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
        if merge {
            // Every current part is copied and every uncovered event
            // computed: the new file covers all events.
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

/// Groups event files into chunks of whole date partitions.
fn chunks(files: &[FileEntry]) -> Vec<Vec<&FileEntry>> {
    let mut by_date: BTreeMap<Option<&str>, Vec<&FileEntry>> = BTreeMap::new();
    for f in files {
        by_date.entry(f.date.as_deref()).or_default().push(f);
    }
    let mut out: Vec<Vec<&FileEntry>> = Vec::new();
    let mut rows = 0;
    for (_, files) in by_date {
        let n: u64 = files.iter().map(|f| f.rows).sum();
        if out.is_empty() || rows + n > CHUNK_ROWS {
            out.push(Vec::new());
            rows = 0;
        }
        rows += n;
        out.last_mut().expect("pushed above").extend(files);
    }
    out
}

/// Computes the parts of `plan.sources` into one file.
pub(crate) async fn write_parts(
    lake: &Lake,
    snapshot: &Snapshot,
    plan: &RefreshPlan,
    id: &str,
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
    for chunk in chunks(&plan.sources) {
        summary.events += chunk.iter().map(|f| f.rows).sum::<u64>();
        let (_ctx, df) = crate::run_parts_over(lake, snapshot, &chunk).await?;
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
    for file in &plan.copy {
        let mut stream = read_all(lake, file).await?;
        while let Some(batch) = stream.next().await {
            let batch = conform(&batch?)?;
            summary.parts += batch.num_rows() as u64;
            writer
                .write(&batch)
                .await
                .map_err(agentledger_lake::Error::from)?;
        }
        summary.merged_files += 1;
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
    fn chunks_hold_whole_dates_up_to_the_limit() {
        let file = |date: &str, rows: u64| FileEntry {
            table: "events".into(),
            path: format!("events/date={date}/{rows}.parquet"),
            size: 1,
            rows,
            date: Some(date.into()),
        };
        let files = [
            file("2026-01-02", CHUNK_ROWS / 2),
            file("2026-01-01", CHUNK_ROWS / 2),
            file("2026-01-01", 10),
            file("2026-01-03", CHUNK_ROWS * 2),
            file("2026-01-04", 1),
        ];
        let sizes: Vec<Vec<u64>> = chunks(&files)
            .iter()
            .map(|c| c.iter().map(|f| f.rows).collect())
            .collect();
        assert_eq!(
            sizes,
            [
                vec![CHUNK_ROWS / 2, 10],
                vec![CHUNK_ROWS / 2],
                vec![CHUNK_ROWS * 2],
                vec![1]
            ]
        );
    }
}
