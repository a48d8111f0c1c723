//! The audit log: one JSON line per login and per statement, to a file or
//! to stderr, so a security review can answer who read what.
//!
//! A statement line holds `time` (UTC, when it started), `user`, `role`,
//! `client`, `statement` (its text; for a refused statement only its kind,
//! so that a refused `ALTER ROLE ... PASSWORD` leaves no password behind),
//! `outcome` (`ok`, `error`, `refused`, `timeout`, `cancelled`: the client
//! stopped reading), `rows` sent, `duration_ms`, and `error` when there is
//! one. A login line has `event: "login"` and `outcome` `ok` or `refused`.
//! Passwords never reach the server: SCRAM sends a proof.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::Serialize;

/// Where audit lines go.
#[derive(Clone)]
pub struct Audit {
    out: Arc<Mutex<Box<dyn Write + Send>>>,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Audit")
    }
}

/// One statement's audit line.
#[derive(Debug, Serialize)]
pub struct StatementLine<'a> {
    /// When the statement started, RFC 3339 UTC.
    pub time: String,
    /// The user.
    pub user: &'a str,
    /// The user's role.
    pub role: &'a str,
    /// The client's address.
    pub client: SocketAddr,
    /// The statement's text, or its kind when refused.
    pub statement: &'a str,
    /// `ok`, `error`, `refused`, `timeout` or `cancelled`.
    pub outcome: &'a str,
    /// Rows sent.
    pub rows: u64,
    /// Time from the statement's start to its last row.
    pub duration_ms: f64,
    /// The error sent to the client, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
}

#[derive(Serialize)]
struct LoginLine<'a> {
    time: String,
    event: &'static str,
    user: &'a str,
    client: SocketAddr,
    outcome: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

impl Audit {
    /// Lines appended to `path` (created if missing).
    pub fn to_file(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Self::to_writer(Box::new(file)))
    }

    /// Lines to stderr.
    pub fn to_stderr() -> Self {
        Self::to_writer(Box::new(std::io::stderr()))
    }

    /// Lines to any writer.
    pub fn to_writer(out: Box<dyn Write + Send>) -> Self {
        Self {
            out: Arc::new(Mutex::new(out)),
        }
    }

    /// Writes a statement's line.
    pub fn statement(&self, line: &StatementLine<'_>) {
        self.write(line);
    }

    /// Writes a login's line.
    pub fn login(&self, user: &str, client: SocketAddr, refused: Option<&str>) {
        self.write(&LoginLine {
            time: now(),
            event: "login",
            user,
            client,
            outcome: if refused.is_some() { "refused" } else { "ok" },
            reason: refused,
        });
    }

    fn write<T: Serialize>(&self, line: &T) {
        let mut text = match serde_json::to_string(line) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!("cannot write an audit line: {e}");
                return;
            }
        };
        text.push('\n');
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            tracing::error!("cannot write the audit log: {e}");
        }
    }
}

/// Now, RFC 3339 UTC with milliseconds.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
