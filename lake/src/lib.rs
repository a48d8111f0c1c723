//! The storage contract of agentledger.
//!
//! Everything that knows how the lake is laid out lives here: how a lake URL
//! becomes an object store ([`store`]), the one Arrow schema of each table
//! ([`schema`]), the commit log that makes an ingest or a reference load
//! atomic ([`log`]), the leases that keep writers and the batch exclusive ([`lease`]) and the partitioned Parquet
//! writer ([`writer`]). Each table also carries a Delta Lake transaction log
//! derived from the commit log ([`delta`]), so other engines read exactly
//! the committed rows.
//!
//! The main design choice: data files are plain Hive-partitioned Parquet that
//! any engine can read, and *visibility* is decided by a commit log. A data
//! file counts only once a commit record under `_log/` names it, and that
//! record is created with a conditional put (`PutMode::Create`), which is
//! atomic on every store. A process killed at any instant therefore leaves the
//! lake as it was before the commit or with all of it; files it wrote without
//! committing are orphans, ignored by readers and deleted by the next writer.

pub mod checkpoint;
pub mod compact;
pub mod delta;
pub mod error;
pub mod index;
pub mod keyfile;
pub mod lease;
pub mod log;
pub mod memory;
pub mod observe;
pub mod parquet_io;
pub mod retain;
pub mod retry;
pub mod schema;
pub mod state;
pub mod store;
pub mod writer;

pub use error::{Error, Result};
pub use log::{Commit, CommitKind, FileEntry, Snapshot};
pub use store::Lake;
