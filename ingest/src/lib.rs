//! Ingest: sources to validated Arrow batches to the lake.
//!
//! [`ingest()`] streams every line of every source through
//! [`validate::validate`], drops exact repeats, quarantines the rest of what
//! is not a valid new event, and commits all of it to the lake at once.
//! [`reference`] loads the two reference CSVs. [`sampler`] writes realistic
//! sample input.
//!
//! The design choice that shapes this crate: one pass, bounded memory. The
//! input is cut into blocks of whole lines that worker threads validate
//! into Arrow batches in parallel; one thread takes them in input order,
//! deduplicates and writes them, so every decision is the one a line-by-line
//! reading makes. The only state that grows with the lake is the event-id
//! Bloom filter (about two bytes per stored event, see [`dedup`]).
//!
//! Bounded per line too: every line is held to the [`Limits`] of length,
//! nesting, keys per object and attribute size before the work they bound,
//! so no line, whatever its shape, can crash the ingest, stall it or take
//! its memory; a line over a limit is quarantined like any other bad line.

pub mod batch;
pub mod decimal;
pub mod dedup;
pub mod error;
pub mod ingest;
pub mod json;
pub mod limits;
pub mod rebase;
pub mod reference;
pub mod sampler;
pub mod source;
pub mod validate;

pub use error::{Error, Result};
pub use ingest::{IngestOptions, IngestSummary, Progress, SourceSummary, ingest, ingest_observed};
pub use limits::Limits;
pub use reference::{LoadSummary, ReferenceKind, load_reference};
