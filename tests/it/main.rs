//! End-to-end tests of the `agentledger` binary: one test binary, a module
//! per area, each test on its own temporary lake.

mod chaos;
mod checkpoint;
mod cluster;
mod common;
mod compact;
mod definitions;
mod delta;
mod index;
mod ingest;
mod kill;
mod load;
mod memory;
mod metrics;
mod otlp;
mod readiness;
mod report;
mod retain;
mod s3;
mod sample;
mod snapshots;
mod sql;
