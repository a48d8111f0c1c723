//! `agentledger serve`: the long-running process.
//!
//! It hosts the OTLP/HTTP receiver ([`otlp`]): agents instrumented with
//! OpenTelemetry send their traces to `POST /v1/traces`; each request is
//! made durable in a local spool before it is answered, and the spool is
//! committed to the lake in batches through the same ingest as
//! `agentledger ingest` (SPEC section 7), so validation, deduplication and
//! quarantine are the same for every input.
//!
//! It also hosts the PostgreSQL-wire SQL server ([`pg`], SPEC section 9):
//! read-only SQL over the newest committed snapshot for psql, drivers and
//! BI tools, with SCRAM logins and tenant-scoped users. Each is enabled on
//! its own.

pub mod otlp;
pub mod pg;
pub mod spool;

pub use otlp::{ReceiverConfig, ReceiverSummary, serve_otlp};
pub use pg::{PgConfig, PgSummary, serve_pg};
