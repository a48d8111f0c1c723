//! Ingest: sources to validated Arrow batches to the lake.
//!
//! [`ingest()`] streams every line of every source through
//! [`validate::validate`], drops exact repeats, quarantines the rest of what
//! is not a valid new event, and commits all of it to the lake at once.
//! [`reference`] loads the two reference CSVs. [`sampler`] writes realistic
//! sample input.
//!
//! The design choice that shapes this crate: one pass, bounded memory. Lines
//! are read one at a time, rows go to Arrow builders that are flushed to
//! Parquet every few thousand rows, and the only state that grows with the
//! lake is the event-id index (16 bytes of id hash and 8 of content hash per
//! stored event).

pub mod batch;
pub mod decimal;
pub mod dedup;
pub mod error;
pub mod ingest;
pub mod json;
pub mod reference;
pub mod sampler;
pub mod source;
pub mod validate;

pub use error::{Error, Result};
pub use ingest::{IngestOptions, IngestSummary, Progress, SourceSummary, ingest, ingest_observed};
pub use reference::{LoadSummary, ReferenceKind, load_reference};
