//! `agentledger serve --pg ADDR`: SQL over the PostgreSQL wire protocol
//! (SPEC section 9), for psql, drivers and BI tools.
//!
//! - The protocol, `pg_catalog` and Arrow-to-PostgreSQL encoding come from
//!   `datafusion-postgres` (on `pgwire`); authentication, sessions and the
//!   read-only rule are this module's.
//! - Every user logs in with SCRAM-SHA-256 against a verifier in the users
//!   file ([`users`], [`scram`]).
//! - A user's session is opened over the newest committed snapshot, as the
//!   user's role sees it ([`agentledger_transforms::scope`]); sessions are
//!   kept per role and snapshot, and each statement runs in a copy of one
//!   with a memory pool of its own.
//! - Only queries run ([`check`]); the statement timeout, connection
//!   limit and idle timeout are enforced here, and every statement and
//!   login is written to the audit log ([`audit`]).

pub mod audit;
pub mod check;
mod handler;
pub mod scram;
pub mod users;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use agentledger_lake::Lake;
use agentledger_lake::log::{Snapshot, read_records_after};
use agentledger_transforms::Scope;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionState;
use datafusion::prelude::SessionContext;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog;
use datafusion_postgres::pgwire;
use pgwire::tokio::tokio_rustls::rustls;
use tokio::net::TcpListener;
use tokio::sync::{Mutex, Semaphore};

pub use audit::Audit;
use handler::ConnHandlers;
use users::User;

/// The catalog name clients see as the database (`current_database()`).
pub const DATABASE: &str = "datafusion";

/// Default longest time one statement may take.
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(300);
/// Default memory one statement may use before it spills or fails.
pub const DEFAULT_QUERY_MEMORY: u64 = 512 << 20;
/// Default largest number of connections at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;
/// Default time a connection may sit idle before it is closed.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// The server's settings.
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// Where to listen.
    pub addr: SocketAddr,
    /// The users file ([`users::Users`]), read again at each login.
    pub users: PathBuf,
    /// A PEM certificate chain and private key: TLS is offered when set.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Longest time one statement may take (a client's
    /// `statement_timeout` may only shorten it).
    pub statement_timeout: Duration,
    /// Memory one statement may use (its own DataFusion pool; operators
    /// that can spill do so first).
    pub query_memory: u64,
    /// Connections at once; one more is refused with SQLSTATE 53300.
    pub max_connections: usize,
    /// A connection with no statement running for this long is closed.
    pub idle_timeout: Duration,
}

impl PgConfig {
    /// The defaults, listening on `addr` with users from `users`.
    pub fn new(addr: SocketAddr, users: PathBuf) -> Self {
        Self {
            addr,
            users,
            tls: None,
            statement_timeout: DEFAULT_STATEMENT_TIMEOUT,
            query_memory: DEFAULT_QUERY_MEMORY,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The TLS certificate or key could not be used.
    #[error("TLS: {0}; the server does not start without the TLS it was asked for")]
    Tls(String),
    /// The users file is unusable at start.
    #[error(transparent)]
    Users(#[from] users::UsersError),
}

/// What a stopped server did.
#[derive(Debug, Default, Clone, Copy)]
pub struct PgSummary {
    /// Connections accepted.
    pub connections: u64,
}

/// State shared by every connection.
pub(crate) struct Shared {
    lake: Lake,
    config: PgConfig,
    audit: Audit,
    /// Makes the salts of names that are not users ([`scram`]).
    secret: Vec<u8>,
    sessions: Mutex<Sessions>,
}

/// Sessions by scope, all over one snapshot.
#[derive(Default)]
struct Sessions {
    snapshot: Option<Arc<Snapshot>>,
    by_scope: HashMap<Scope, SessionState>,
}

/// One connection's state, shared by its handlers and its idle watch.
pub(crate) struct Conn {
    addr: SocketAddr,
    /// Refused at startup: the connection limit was reached.
    over_limit: bool,
    /// The user, once authenticated.
    user: std::sync::OnceLock<Arc<User>>,
    last_active: std::sync::Mutex<Instant>,
    /// Statements running or streaming rows.
    busy: AtomicUsize,
}

impl Conn {
    fn touch(&self) {
        *self.last_active.lock().expect("not poisoned") = Instant::now();
    }

    /// Marks a statement as running until the guard is dropped.
    pub(crate) fn busy(self: &Arc<Self>) -> BusyGuard {
        self.busy.fetch_add(1, Ordering::SeqCst);
        self.touch();
        BusyGuard(Arc::clone(self))
    }

    fn idle_for(&self) -> Option<Duration> {
        if self.busy.load(Ordering::SeqCst) > 0 {
            return None;
        }
        Some(self.last_active.lock().expect("not poisoned").elapsed())
    }
}

/// See [`Conn::busy`].
pub(crate) struct BusyGuard(Arc<Conn>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Shared {
    /// A session for one statement: the newest snapshot as `scope` sees
    /// it, with a memory pool of its own.
    pub(crate) async fn session(&self, scope: &Scope) -> Result<SessionContext, String> {
        let state = self.state_for(scope).await?;
        let runtime = state.runtime_env();
        // Spill files go where every command's go (--spill-dir).
        let spill = agentledger_transforms::memory::budget()?
            .spill_dir()
            .map(|dir| DiskManagerMode::Directories(vec![dir.to_path_buf()]))
            .unwrap_or(DiskManagerMode::OsTmpDirectory);
        let statement_runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(
                usize::try_from(self.config.query_memory).unwrap_or(usize::MAX),
            )))
            .with_object_store_registry(Arc::clone(&runtime.object_store_registry))
            .with_disk_manager_builder(DiskManagerBuilder::default().with_mode(spill))
            .build_arc()
            .map_err(|e| format!("cannot make the statement's runtime: {e}"))?;
        let state = SessionStateBuilder::new_from_existing(state)
            .with_runtime_env(statement_runtime)
            .build();
        Ok(SessionContext::new_with_state(state))
    }

    async fn state_for(&self, scope: &Scope) -> Result<SessionState, String> {
        let known = self.sessions.lock().await.snapshot.clone();
        // Outside the lock: statements of other connections list the log
        // at the same time.
        let newest = match known {
            Some(s) => {
                let newer = read_records_after(&self.lake, s.version())
                    .await
                    .map_err(|e| e.to_string())?;
                if newer.is_empty() {
                    s
                } else {
                    Arc::new(
                        Snapshot::load(&self.lake)
                            .await
                            .map_err(|e| e.to_string())?,
                    )
                }
            }
            None => Arc::new(
                Snapshot::load(&self.lake)
                    .await
                    .map_err(|e| e.to_string())?,
            ),
        };
        let mut sessions = self.sessions.lock().await;
        let current = sessions.snapshot.as_ref().map(|s| s.version());
        if current.is_none_or(|v| v < newest.version()) {
            sessions.snapshot = Some(Arc::clone(&newest));
            sessions.by_scope.clear();
        }
        if let Some(state) = sessions.by_scope.get(scope) {
            return Ok(state.clone());
        }
        let snapshot = sessions.snapshot.clone().expect("set above");
        // Results go to clients as text: string views scan faster.
        let ctx = agentledger_queries::open_session_scoped(
            &self.lake,
            &snapshot,
            scope,
            agentledger_queries::Strings::Views,
        )
        .await
        .map_err(|e| e.to_string())?;
        setup_pg_catalog(&ctx, DATABASE, EmptyContextProvider)
            .map_err(|e| format!("cannot set up pg_catalog: {e}"))?;
        ctx.register_udf(version_udf());
        ctx.register_udf(to_regtype_udf());
        let state = ctx.state();
        sessions.by_scope.insert(scope.clone(), state.clone());
        Ok(state)
    }
}

/// The version PostgreSQL clients read with `SELECT version()`:
/// SQLAlchemy and others parse `PostgreSQL <major>.<minor>` out of it.
pub const VERSION: &str = concat!(
    "PostgreSQL 16.6 (agentledger ",
    env!("CARGO_PKG_VERSION"),
    ", on Apache DataFusion)"
);

/// `version()` as PostgreSQL answers it ([`VERSION`]).
fn version_udf() -> datafusion::logical_expr::ScalarUDF {
    use datafusion::arrow::datatypes::DataType;
    use datafusion::common::ScalarValue;
    use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
    create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|_| {
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(
                VERSION.into(),
            ))))
        }),
    )
}

/// `to_regtype(name)`: always NULL (no such type), which is what drivers
/// that probe for extension types (psycopg's `TypeInfo.fetch`, which
/// SQLAlchemy runs for `hstore` on connect) take as "not installed".
fn to_regtype_udf() -> datafusion::logical_expr::ScalarUDF {
    use datafusion::arrow::datatypes::DataType;
    use datafusion::common::ScalarValue;
    use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
    create_udf(
        "to_regtype",
        vec![DataType::Utf8],
        DataType::Int32,
        Volatility::Immutable,
        Arc::new(|_| Ok(ColumnarValue::Scalar(ScalarValue::Int32(None)))),
    )
}

/// The TLS acceptor for a certificate chain and key in PEM files.
fn tls_acceptor(cert: &PathBuf, key: &PathBuf) -> Result<pgwire::tokio::TlsAcceptor, PgError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| PgError::Tls(format!("certificate {}: {e}", cert.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| PgError::Tls(format!("certificate {}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(PgError::Tls(format!(
            "certificate {}: no certificate in the file",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| PgError::Tls(format!("private key {}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PgError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| PgError::Tls(format!("the certificate and key do not go together: {e}")))?;
    Ok(pgwire::tokio::TlsAcceptor::from(Arc::new(config)))
}

/// Serves SQL until `shutdown` resolves.
pub async fn serve_pg(
    lake: Lake,
    config: PgConfig,
    audit: Audit,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<PgSummary, PgError> {
    // A users file that does not parse stops the server now, not at the
    // first login.
    users::Users::load(&config.users)?;
    let tls = match &config.tls {
        Some((cert, key)) => Some(tls_acceptor(cert, key)?),
        None => None,
    };
    let listener = TcpListener::bind(config.addr)
        .await
        .map_err(|source| PgError::Bind {
            addr: config.addr,
            source,
        })?;
    let local = listener.local_addr().map_err(|source| PgError::Bind {
        addr: config.addr,
        source,
    })?;
    let mut secret = vec![0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
        .map_err(|_| PgError::Tls("the system's random number generator failed".into()))?;
    tracing::info!(
        listen = %local,
        tls = tls.is_some(),
        users = %config.users.display(),
        statement_timeout_s = config.statement_timeout.as_secs_f64(),
        query_memory = config.query_memory,
        max_connections = config.max_connections,
        "PostgreSQL server listening on {local}"
    );
    let limit = Arc::new(Semaphore::new(config.max_connections));
    let idle_timeout = config.idle_timeout;
    let shared = Arc::new(Shared {
        lake,
        config,
        audit,
        secret,
        sessions: Mutex::new(Sessions::default()),
    });
    let mut summary = PgSummary::default();
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (socket, addr) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("accepting a connection failed: {e}");
                    continue;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        summary.connections += 1;
        let permit = Arc::clone(&limit).try_acquire_owned().ok();
        let conn = Arc::new(Conn {
            addr,
            over_limit: permit.is_none(),
            user: std::sync::OnceLock::new(),
            last_active: std::sync::Mutex::new(Instant::now()),
            busy: AtomicUsize::new(0),
        });
        let handlers = ConnHandlers::new(Arc::clone(&shared), Arc::clone(&conn));
        // Without TLS, a second handle on the socket lets the idle timeout
        // tell the client why before it closes (pgwire owns the first).
        let (socket, notice) = if tls.is_none() {
            match second_handle(socket) {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(client = %addr, "cannot use the connection: {e}");
                    continue;
                }
            }
        } else {
            (socket, None)
        };
        let tls = tls.clone();
        connections.spawn(async move {
            let _permit = permit;
            tokio::select! {
                r = pgwire::tokio::process_socket(socket, tls, handlers) => {
                    if let Err(e) = r {
                        tracing::debug!(client = %addr, "connection ended: {e}");
                    }
                }
                () = idle_watch(&conn, idle_timeout) => {
                    if let Some(mut notice) = notice {
                        // Nothing runs and nothing is being sent: the
                        // message goes out whole, as PostgreSQL sends it.
                        let _ = std::io::Write::write_all(&mut notice, &idle_fatal());
                    }
                    tracing::info!(client = %addr, "closed after {}s idle", idle_timeout.as_secs());
                }
            }
        });
    }
    tracing::info!("PostgreSQL server stopping");
    connections.shutdown().await;
    Ok(summary)
}

/// The socket, and a second handle on it for [`idle_fatal`].
fn second_handle(
    socket: tokio::net::TcpStream,
) -> std::io::Result<(tokio::net::TcpStream, Option<std::net::TcpStream>)> {
    let std = socket.into_std()?;
    let notice = std.try_clone()?;
    Ok((tokio::net::TcpStream::from_std(std)?, Some(notice)))
}

/// PostgreSQL's ErrorResponse for an idle session ended by the server:
/// `FATAL 57P05 terminating connection due to idle-session timeout`.
fn idle_fatal() -> Vec<u8> {
    let mut fields = Vec::new();
    for (tag, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', "57P05"),
        (b'M', "terminating connection due to idle-session timeout"),
    ] {
        fields.push(tag);
        fields.extend_from_slice(value.as_bytes());
        fields.push(0);
    }
    fields.push(0);
    let mut message = vec![b'E'];
    message.extend_from_slice(&(fields.len() as u32 + 4).to_be_bytes());
    message.extend_from_slice(&fields);
    message
}

/// Resolves once the connection has been idle for `timeout`.
async fn idle_watch(conn: &Conn, timeout: Duration) {
    let tick = (timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
    loop {
        tokio::time::sleep(tick).await;
        if conn.idle_for().is_some_and(|idle| idle >= timeout) {
            return;
        }
    }
}
