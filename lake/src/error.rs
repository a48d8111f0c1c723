//! Errors of the storage layer.

/// Result with the lake's error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong while opening, reading or writing the lake.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A command that only reads was pointed at a local lake that does not exist.
    #[error(
        "no lake at '{0}' (agentledger ingest or load creates one; check --lake or AGENTLEDGER_LAKE)"
    )]
    NoLake(String),
    /// The lake URL could not be understood or its scheme is not supported.
    #[error("invalid lake URL '{url}': {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// An object store operation failed.
    #[error("object store error: {0}")]
    Store(#[from] object_store::Error),
    /// Reading or writing Parquet failed.
    #[error("parquet error: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// Building or converting Arrow data failed.
    #[error("arrow error: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// A commit record in `_log/` could not be parsed.
    #[error("corrupt commit record {path}: {reason}")]
    CorruptLog {
        /// The record's path inside the lake.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The lake was written in a format newer than this binary knows.
    #[error(
        "the lake needs a {what} of format {needed} ({path}); this agentledger is a {what} of format {supported}: upgrade agentledger"
    )]
    NewerFormat {
        /// The commit record that says so.
        path: String,
        /// `reader` or `writer`.
        what: &'static str,
        /// The version the lake needs.
        needed: u32,
        /// The version this binary has.
        supported: u32,
    },
    /// Another process holds a lease this one needs.
    #[error(
        "the lake is locked by another {lease} ({holder}); a live holder renews its lease, a killed one's is taken over once it expires (record {path})"
    )]
    Locked {
        /// The lease (`writer`, `batch`).
        lease: String,
        /// Who holds it (pid, host, purpose, since and until when).
        holder: String,
        /// The newest lease record's path.
        path: String,
    },
    /// This process no longer holds the lease it worked under, so it must
    /// not commit.
    #[error("lost the {lease} lease: {reason}; nothing was committed, run again")]
    LeaseLost {
        /// The lease (`writer`, `batch`).
        lease: String,
        /// How it was lost.
        reason: String,
    },
    /// A lease record could not be read.
    #[error("corrupt lease record {path}: {reason}")]
    CorruptLease {
        /// The record's path.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Another writer committed the same version first.
    #[error("commit conflict: version {version} was committed by another writer; run again")]
    CommitConflict {
        /// The version both writers tried to create.
        version: u64,
    },
    /// A local file system operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A commit landed, but the Delta Lake log of one of its tables could not
    /// be brought up to date (see [`crate::delta`]). The lake itself is
    /// fine; the next write brings the Delta log up to date.
    #[error(
        "the commit landed at version {version}, but the Delta log of table {table} could not be updated ({reason}); engines reading {table}/_delta_log see the table as it was until the next agentledger write brings it up to date"
    )]
    DeltaSync {
        /// The lake version committed.
        version: u64,
        /// The table whose Delta log is behind.
        table: String,
        /// Why it could not be updated.
        reason: String,
    },
    /// A table's Delta Lake log holds something agentledger did not write or
    /// cannot read.
    #[error("Delta log {path}: {reason}")]
    DeltaLog {
        /// The Delta log file's path inside the lake.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A data file does not hold what the commit log says it holds.
    #[error("corrupt data file {path}: {reason}")]
    CorruptData {
        /// The file's path inside the lake.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A key file (see [`crate::keyfile`]) is truncated, damaged or not a
    /// key file.
    #[error("corrupt key file {path}: {reason}")]
    CorruptIndex {
        /// The file's path inside the lake.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Records were given to a key file writer out of key order.
    #[error(
        "key file {path}: key {key:032x} comes after key {previous:032x}; keys must be strictly increasing"
    )]
    KeyOrder {
        /// The file's path inside the lake.
        path: String,
        /// The last key written.
        previous: u128,
        /// The key refused.
        key: u128,
    },
}

/// The result of a spawned task: its own result, or its panic resumed here
/// (a bug shows as the panic it is), or an error if the runtime cancelled
/// it while `what` was being done.
pub async fn joined<T>(task: tokio::task::JoinHandle<Result<T>>, what: &str) -> Result<T> {
    match task.await {
        Ok(result) => result,
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => Err(Error::Io {
                context: format!("{what} cancelled"),
                source: std::io::Error::other(e),
            }),
        },
    }
}
