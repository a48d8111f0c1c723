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
    /// Another process holds the writer lock.
    #[error(
        "the lake is locked by another writer ({holder}); wait for it to finish, or if that process is gone, delete {path}"
    )]
    Locked {
        /// Who holds the lock (pid, host, since when).
        holder: String,
        /// The lock object's path, for manual recovery.
        path: String,
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
    /// A data file does not hold what the commit log says it holds.
    #[error("corrupt data file {path}: {reason}")]
    CorruptData {
        /// The file's path inside the lake.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
}
