//! A hook for work that rides along with an ingest.
//!
//! An ingest hands every batch of events it stores to an
//! [`EventObserver`], in the stored schema, as it writes them. The observer
//! may write files of its own under the same writer lock and have them
//! committed with the events, atomically: agentledger uses this to compute
//! the run parts of an ingest's events while they are still in memory,
//! instead of reading them back after the commit.
//!
//! The trait lives here, beside the commit log, so that the ingest (which
//! calls it) and the transforms (which implement it) need not know each
//! other.

use arrow::array::RecordBatch;
use futures::future::BoxFuture;

use crate::error::Result;
use crate::log::{FileEntry, RunPartsCover, Snapshot};
use crate::store::Lake;

/// Files an observer adds to an ingest's commit, and what its run parts
/// cover.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Files to commit with the events.
    pub files: Vec<FileEntry>,
    /// Stated in the commit's summary under `run_parts`.
    pub cover: RunPartsCover,
}

/// Sees every event an ingest stores.
pub trait EventObserver: Send {
    /// Called once under the writer lock, before any event, with the
    /// snapshot the ingest will commit on and the ingest's id.
    fn begin<'a>(
        &'a mut self,
        lake: &'a Lake,
        snapshot: &'a Snapshot,
        ingest_id: &'a str,
    ) -> BoxFuture<'a, Result<()>>;

    /// Called from a blocking thread with each batch of new events, in
    /// [`crate::schema::EVENTS_SCHEMA`], exactly once per stored event.
    fn observe(&mut self, batch: &RecordBatch) -> Result<()>;

    /// Called when an event of this run may yet be stored later in the
    /// ingest (it is held aside until its id is checked against the lake):
    /// the observer should keep what it has of the run at hand until
    /// [`EventObserver::release`].
    fn hold(&mut self, _tenant_id: &str, _run_id: &str) {}

    /// Called when every held event has been stored or set aside for good.
    fn release(&mut self) {}

    /// Called once after the last event and before the commit. `None` adds
    /// nothing to the commit; files written and not returned are orphans.
    fn finish(&mut self) -> BoxFuture<'_, Result<Option<Observed>>>;
}

/// No observer: the ingest commits its events and nothing else.
impl EventObserver for () {
    fn begin<'a>(
        &'a mut self,
        _lake: &'a Lake,
        _snapshot: &'a Snapshot,
        _ingest_id: &'a str,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn observe(&mut self, _batch: &RecordBatch) -> Result<()> {
        Ok(())
    }

    fn finish(&mut self) -> BoxFuture<'_, Result<Option<Observed>>> {
        Box::pin(async { Ok(None) })
    }
}
