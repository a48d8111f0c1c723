//! `agentledger serve`: the long-running process.
//!
//! It hosts the OTLP/HTTP receiver ([`otlp`]): agents instrumented with
//! OpenTelemetry send their traces to `POST /v1/traces`; each request is
//! made durable in a local spool before it is answered, and the spool is
//! committed to the lake in batches through the same ingest as
//! `agentledger ingest` (SPEC section 7), so validation, deduplication and
//! quarantine are the same for every input.

pub mod otlp;
pub mod spool;

pub use otlp::{ReceiverConfig, ReceiverSummary, serve_otlp};
