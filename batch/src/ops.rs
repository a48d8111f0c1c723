//! One entry point per write operation, with the rules of what it brings
//! along (the run parts an ingest computes, the refresh a price load or a
//! retention makes due). The commands (`agentledger ingest`, `load`,
//! `retain`) and the scheduled batch both call these, so the rules live in
//! one place.

use std::sync::Arc;

use agentledger_ingest::ingest::{IngestOptions, IngestSummary, Progress, ingest_observed};
use agentledger_ingest::reference::{LoadSummary, ReferenceKind, load_reference};
use agentledger_lake::Lake;
use agentledger_lake::retain::RetainSummary;
use chrono::NaiveDate;

use crate::BatchError;

/// Ingests `sources`, computing the run parts of what it stores as it
/// writes it and committing them with the events (see docs/lake.md); then,
/// when it committed, brings the run parts up to date (merging them with
/// earlier ones when that is due) unless another writer holds the writer
/// lease: ingests take no lock, and one never waits for another's refresh.
pub async fn ingest(
    lake: &Lake,
    sources: &[String],
    options: &IngestOptions,
    progress: Option<Arc<dyn Progress>>,
) -> Result<IngestSummary, BatchError> {
    let observer = agentledger_queries::PartsObserver::default();
    let (summary, _) = ingest_observed(lake, sources, options, progress, observer).await?;
    if summary.version.is_some() {
        let options = agentledger_queries::RefreshOptions {
            lease_wait: Some(std::time::Duration::ZERO),
            ..Default::default()
        };
        match agentledger_queries::refresh_runs_with(lake, options).await {
            Ok(_) => {}
            // Busy: the parts are brought up to date by that writer or the
            // next refresh; answers do not depend on it.
            Err(agentledger_queries::Error::Lake(agentledger_lake::Error::Locked { .. })) => {}
            Err(e) => return Err(e.into()),
        }
        // The same for the key index: its runs are merged once they pile
        // up, so the next ingests probe a few runs, not one per ingest.
        // The ingest is committed: a merge that fails costs only speed, and
        // the next ingest tries again.
        if let Err(e) = agentledger_lake::index::merge_if_due(lake).await {
            tracing::warn!(
                "the ingest is committed, but its key index runs could not be merged ({e}); the next ingest tries again"
            );
        }
    }
    Ok(summary)
}

/// Loads a reference file as the new version of its table. New prices make
/// every run part stale: they are rebuilt now rather than on every later
/// query.
pub async fn load(
    lake: &Lake,
    kind: ReferenceKind,
    file: &std::path::Path,
) -> Result<LoadSummary, BatchError> {
    let summary = load_reference(lake, kind, file).await?;
    if kind == ReferenceKind::Prices {
        agentledger_queries::refresh_runs(lake).await?;
    }
    Ok(summary)
}

/// Takes partitions dated before `cutoff` out of the lake; the removed
/// events leave every run part stale, so they are rebuilt now.
pub async fn retain(
    lake: &Lake,
    cutoff: NaiveDate,
    dry_run: bool,
) -> Result<RetainSummary, BatchError> {
    let summary = agentledger_lake::retain::retain(lake, cutoff, dry_run).await?;
    if summary.version.is_some() {
        agentledger_queries::refresh_runs(lake).await?;
    }
    Ok(summary)
}
