//! Retention: take event and quarantine partitions older than a cutoff out
//! of the lake.
//!
//! One commit (kind `retain`) names every file removed, so a reader sees
//! the table before or after, never half of it. The files themselves are
//! deleted once the removal is older than a grace period (default one hour,
//! `AGENTLEDGER_RETAIN_GRACE_SECS`), so a query that began before the commit
//! can still finish reading them; each retain run deletes what has come due.
//! Reference-table versions are all kept: they are small, and any past
//! report may need the prices and plans that were in force for it.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::NaiveDate;
use object_store::ObjectStoreExt;
use serde::Serialize;

use crate::error::Result;
use crate::lease::Lease;
use crate::log::{Commit, CommitKind, Snapshot};
use crate::schema::{EVENTS, QUARANTINE};
use crate::store::Lake;

/// One partition taken out.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PartitionRemoval {
    /// `events` or `quarantine`.
    pub table: String,
    /// The partition's date.
    pub date: String,
    /// Files in it.
    pub files: usize,
    /// Rows in them.
    pub rows: u64,
    /// Bytes in them.
    pub bytes: u64,
}

/// What a retain run did (or would do).
#[derive(Debug, Clone, Serialize)]
pub struct RetainSummary {
    /// Partitions dated before this are taken out.
    pub cutoff: String,
    /// Nothing was changed.
    pub dry_run: bool,
    /// The partitions, by table and date.
    pub partitions: Vec<PartitionRemoval>,
    /// The lake version committed, if any.
    pub version: Option<u64>,
    /// Files deleted from storage in this run (removals past the grace period).
    pub files_deleted: usize,
}

/// The grace period before removed files are deleted.
pub fn grace_period() -> Duration {
    crate::retry::env_secs("AGENTLEDGER_RETAIN_GRACE_SECS", 3600)
}

/// Takes partitions dated before `cutoff` out of `events` and `quarantine`.
pub async fn retain(lake: &Lake, cutoff: NaiveDate, dry_run: bool) -> Result<RetainSummary> {
    let lock = Lease::writer(lake, "retain").await?;
    let fenced = lock.fence(lake);
    // An ingest that commits meanwhile may add files dated before the
    // cutoff, which retention after it must take out too: plan again.
    let mut attempts = 0;
    let result = loop {
        match retain_locked(&fenced, cutoff, dry_run).await {
            Err(crate::Error::CommitConflict { .. }) if attempts < 10 => attempts += 1,
            other => break other,
        }
    };
    lock.release().await?;
    result
}

async fn retain_locked(lake: &Lake, cutoff: NaiveDate, dry_run: bool) -> Result<RetainSummary> {
    let mut snapshot = Snapshot::load(lake).await?;
    let cutoff_text = cutoff.format("%Y-%m-%d").to_string();
    let mut groups: BTreeMap<(String, String), PartitionRemoval> = BTreeMap::new();
    let mut paths = Vec::new();
    for table in [EVENTS, QUARANTINE] {
        for file in snapshot.files(table) {
            let Some(date) = file.date.as_deref() else {
                continue;
            };
            // Dates are YYYY-MM-DD: text order is date order.
            if date >= cutoff_text.as_str() {
                continue;
            }
            let entry = groups
                .entry((table.to_string(), date.to_string()))
                .or_insert_with(|| PartitionRemoval {
                    table: table.to_string(),
                    date: date.to_string(),
                    files: 0,
                    rows: 0,
                    bytes: 0,
                });
            entry.files += 1;
            entry.rows += file.rows;
            entry.bytes += file.size;
            paths.push(file.path.clone());
        }
    }
    let mut version = None;
    if !dry_run && !paths.is_empty() {
        let mut commit = Commit::record(
            CommitKind::Retain,
            serde_json::json!({ "cutoff": cutoff_text }),
        );
        commit.removes = paths;
        version = Some(snapshot.commit(lake, commit).await?);
    } else if !dry_run {
        // No commit: still bring the Delta logs up to date (a retention
        // killed after its commit ends this way when run again).
        crate::delta::sync(lake, &snapshot).await?;
    }
    let files_deleted = if dry_run {
        0
    } else {
        delete_due(lake, &snapshot, grace_period()).await?
    };
    Ok(RetainSummary {
        cutoff: cutoff_text,
        dry_run,
        partitions: groups.into_values().collect(),
        version,
        files_deleted,
    })
}

/// Deletes the files of removals (retention, compaction, run-part
/// rebuilds) older than `grace`; returns how many were deleted.
pub async fn delete_due(lake: &Lake, snapshot: &Snapshot, grace: Duration) -> Result<usize> {
    let now = chrono::Utc::now();
    let mut deleted = 0;
    for removal in snapshot.state().removals.list()? {
        let due = chrono::DateTime::parse_from_rfc3339(&removal.committed_at)
            .map(|t| {
                now.signed_duration_since(t.with_timezone(&chrono::Utc))
                    .to_std()
                    .unwrap_or_default()
                    >= grace
            })
            .unwrap_or(false);
        if !due {
            continue;
        }
        {
            let path = &removal.path;
            match lake.store().delete(&lake.path(path)).await {
                Ok(()) => {
                    deleted += 1;
                    // A local partition folder left empty goes too.
                    if let Some(root) = lake.local_root()
                        && let Some(dir) = root.join(path).parent()
                    {
                        let _ = std::fs::remove_dir(dir);
                    }
                }
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(deleted)
}
