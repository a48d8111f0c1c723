//! Ingest: sources to validated Arrow batches to the lake.
//!
//! [`ingest()`] streams every line of every source through
//! [`validate::validate`] (an OTLP/JSON source's spans first through
//! [`otlp`], SPEC section 7), drops exact repeats, quarantines the rest of what
//! is not a valid new event, and commits all of it to the lake at once.
//! [`reference`] loads the two reference CSVs. [`sampler`] writes realistic
//! sample input.
//!
//! The design choice that shapes this crate: one pass, bounded memory. The
//! input is cut into blocks of whole lines that worker threads validate
//! into Arrow batches in parallel; one thread takes them in input order,
//! deduplicates and writes them, so every decision is the one a line-by-line
//! reading makes. Whether an event is stored already is asked of the lake's
//! key index, block by block, reading index data that grows with the block
//! and the partitions it touches, not with the lake
//! (`agentledger_lake::index`). What the ingest holds grows with its own
//! input, not with the lake: a Bloom filter over the ids it stores (about
//! two bytes an event, see [`dedup`]) and the suspects it holds aside,
//! within their budget. Only the lake's files that the index does not cover
//! (written by binaries before it, until `agentledger rebuild`) are read
//! whole, into that filter and the quarantine keys.
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
mod names;
pub mod onepass;
pub mod otlp;
pub mod rebase;
pub mod reference;
pub mod sampler;
pub mod source;
pub mod validate;

pub use error::{Error, Result};
pub use ingest::{
    IngestOptions, IngestSummary, Input, OtlpCounts, Progress, SourceSummary, ingest,
    ingest_observed,
};
pub use limits::Limits;
pub use otlp::OtlpOptions;
pub use reference::{LoadSummary, ReferenceKind, load_reference};
