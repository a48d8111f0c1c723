//! Errors of ingest and reference loads.

/// Result with the ingest error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why an ingest or a reference load could not complete. Bad lines are not
/// errors: they go to the quarantine and the ingest goes on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A source could not be found, listed or read.
    #[error("cannot read source {source_name}: {reason}")]
    Source {
        /// The source as given or as expanded.
        source_name: String,
        /// What failed.
        reason: String,
    },
    /// A reference file was refused; the table in force is unchanged.
    #[error("{file} line {line}: {reason} (nothing was loaded; the table in force is unchanged)")]
    Reference {
        /// The reference file.
        file: String,
        /// 1-based line number (the header is line 1).
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// The lake could not be read or written.
    #[error(transparent)]
    Lake(#[from] agentledger_lake::Error),
    /// Building Arrow data failed.
    #[error("arrow error: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// A background task failed.
    #[error("internal task failed: {0}")]
    Task(String),
    /// Concurrent writers kept changing what the ingest had decided.
    #[error("{0}")]
    Conflict(String),
}
