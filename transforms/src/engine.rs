//! Where a session's queries run: in this process (the default), or on a
//! query engine elsewhere (`--engine ballista://...`, see the
//! `agentledger-cluster` crate).
//!
//! A session is planned here either way, against the same committed
//! snapshot; a [`Remote`] engine changes how the plan is executed. The
//! choice is the process's, made once by the binary before any session
//! opens, like the memory budget ([`crate::memory`]). Writes (ingest,
//! rebuild) always run here: only the sessions that read
//! ([`crate::session_scoped`]) use it.

use std::fmt;
use std::sync::{Arc, OnceLock};

use datafusion::error::Result;
use datafusion::execution::SessionState;

/// A query engine outside this process.
pub trait Remote: fmt::Debug + Send + Sync {
    /// `state` made to execute its queries on this engine. Called before
    /// agentledger's functions are registered on the session, so the
    /// engine may reset the function list.
    fn upgrade(&self, state: SessionState) -> Result<SessionState>;

    /// The engine as the user named it (`ballista://host:port`).
    fn describe(&self) -> String;
}

static ENGINE: OnceLock<Arc<dyn Remote>> = OnceLock::new();

/// Makes every read session of this process execute on `remote`. Fails
/// if an engine was already chosen.
pub fn configure(remote: Arc<dyn Remote>) -> std::result::Result<(), String> {
    ENGINE
        .set(remote)
        .map_err(|_| "the query engine was already chosen".to_string())
}

/// The remote engine chosen for this process, if any.
pub fn remote() -> Option<&'static Arc<dyn Remote>> {
    ENGINE.get()
}
