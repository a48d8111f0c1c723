//! One connection's handlers: SCRAM login ([`Startup`]) and statements
//! ([`Queries`], for the simple and the extended protocol).

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DfParsed;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::arrow_pg::datatypes::df::encode_dataframe;
use datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use datafusion_postgres::hooks::QueryHook;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::pgwire;
use datafusion_postgres::{DfSessionService, pgwire::api::query::ExtendedQueryHandler};
use futures::{Sink, StreamExt};
use pgwire::api::auth::{
    DefaultServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::SimpleQueryHandler;
use pgwire::api::results::{FieldInfo, QueryResponse, Response};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, METADATA_USER, PgWireConnectionState, PgWireServerHandlers, Type,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::startup::Authentication;
use pgwire::types::format::FormatOptions;

use super::audit::{self, StatementLine};
use super::check::{self, Refusal};
use super::scram::{self, Failure};
use super::users::{User, Users, Verifier};
use super::{Conn, Shared};

/// A statement as parsed and planned for the extended protocol (the type
/// `datafusion-postgres` uses).
type DfStatement = (String, Option<(Statement, LogicalPlan)>);

/// The session statements answered without the query engine: cursors,
/// SET and SHOW, transactions (datafusion-postgres's), and savepoints.
fn hooks() -> Vec<Arc<dyn QueryHook>> {
    vec![
        Arc::new(CursorStatementHook),
        Arc::new(SetShowHook),
        Arc::new(TransactionStatementHook),
        Arc::new(SavepointHook),
    ]
}

/// `SAVEPOINT` and `RELEASE SAVEPOINT`, which drivers send around
/// statements (psycopg's nested transactions, pandas through SQLAlchemy):
/// nothing here writes, so there is nothing to roll back to.
struct SavepointHook;

fn savepoint_tag(statement: &Statement) -> Option<&'static str> {
    match statement {
        Statement::Savepoint { .. } => Some("SAVEPOINT"),
        Statement::ReleaseSavepoint { .. } => Some("RELEASE"),
        _ => None,
    }
}

#[async_trait]
impl QueryHook for SavepointHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _ctx: &SessionContext,
        _client: &mut dyn datafusion_postgres::hooks::HookClient,
    ) -> Option<PgWireResult<Response>> {
        savepoint_tag(statement)
            .map(|tag| Ok(Response::Execution(pgwire::api::results::Tag::new(tag))))
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _ctx: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        savepoint_tag(statement).map(|_| {
            Ok(LogicalPlan::EmptyRelation(
                datafusion::logical_expr::EmptyRelation {
                    produce_one_row: false,
                    schema: Arc::new(datafusion::common::DFSchema::empty()),
                },
            ))
        })
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _plan: &LogicalPlan,
        _params: &datafusion::common::ParamValues,
        _ctx: &SessionContext,
        _client: &mut dyn datafusion_postgres::hooks::HookClient,
    ) -> Option<PgWireResult<Response>> {
        savepoint_tag(statement)
            .map(|tag| Ok(Response::Execution(pgwire::api::results::Tag::new(tag))))
    }
}

/// The handlers of one connection.
pub(crate) struct ConnHandlers {
    startup: Arc<Startup>,
    queries: Arc<Queries>,
}

impl ConnHandlers {
    pub(crate) fn new(shared: Arc<Shared>, conn: Arc<Conn>) -> Self {
        let describe = DfSessionService::new(Arc::new(SessionContext::new()));
        Self {
            startup: Arc::new(Startup {
                shared: Arc::clone(&shared),
                conn: Arc::clone(&conn),
                state: tokio::sync::Mutex::new(AuthState::Initial),
            }),
            queries: Arc::new(Queries {
                parser: Arc::new(ScopedParser {
                    shared,
                    conn,
                    describe,
                }),
                hooks: hooks(),
            }),
        }
    }
}

impl PgWireServerHandlers for ConnHandlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::clone(&self.queries)
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::clone(&self.queries)
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::clone(&self.startup)
    }
}

fn error(severity: &str, code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        severity.to_string(),
        code.to_string(),
        message.into(),
    )))
}

fn refused(r: &Refusal) -> PgWireError {
    error("ERROR", r.code, r.message.clone())
}

/// A DataFusion error as PostgreSQL reports one: out of memory as 53200
/// with what to do, a statement that does not plan as 42000, SQL that
/// DataFusion has no support for (an error it raises, such as an
/// unsupported type) as PostgreSQL's 0A000 feature_not_supported.
fn df_error(e: &DataFusionError) -> PgWireError {
    if let Some(message) = agentledger_transforms::memory::exhausted_message(e) {
        return error("ERROR", "53200", message);
    }
    let code = match e.find_root() {
        DataFusionError::SQL(..) | DataFusionError::Plan(_) | DataFusionError::SchemaError(..) => {
            "42000"
        }
        DataFusionError::NotImplemented(_) => "0A000",
        _ => "XX000",
    };
    error("ERROR", code, e.to_string())
}

/// `df_error` for errors that arrive wrapped by pgwire or
/// datafusion-postgres.
fn pg_error(e: PgWireError) -> PgWireError {
    match e {
        PgWireError::ApiError(inner) => match inner.downcast::<DataFusionError>() {
            Ok(df) => df_error(&df),
            Err(other) => {
                if let Some(message) = agentledger_transforms::memory::exhausted_message(&*other) {
                    error("ERROR", "53200", message)
                } else {
                    error("ERROR", "XX000", other.to_string())
                }
            }
        },
        other => other,
    }
}

/// The audit log's outcome of a statement that failed with `e`.
fn outcome(e: &PgWireError) -> &'static str {
    match e {
        PgWireError::UserError(i) if i.code == "57014" => "timeout",
        PgWireError::UserError(i) if i.code == "25006" || i.code == "42501" => "refused",
        _ => "error",
    }
}

fn timed_out() -> PgWireError {
    error(
        "ERROR",
        "57014",
        "canceling statement due to statement timeout",
    )
}

/// PostgreSQL's words for every failed login, whatever the reason, so a
/// client cannot tell an unknown user from a wrong password.
fn login_failed(name: &str) -> PgWireError {
    error(
        "FATAL",
        "28P01",
        format!("password authentication failed for user \"{name}\""),
    )
}

/// The login state of a connection.
enum AuthState {
    Initial,
    Continue(Box<Continue>),
    Done,
}

/// A login after the server's first SCRAM message.
struct Continue {
    user: Option<User>,
    name: String,
    exchange: scram::Exchange,
}

/// SCRAM-SHA-256 login against the users file.
pub(crate) struct Startup {
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    state: tokio::sync::Mutex<AuthState>,
}

fn random_nonce() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 18];
    // A failing system RNG leaves zeros; the nonce is then still unique
    // with the client's part, and the failure is logged.
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).is_err() {
        tracing::error!("the system's random number generator failed");
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: pgwire::messages::PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        use futures::SinkExt;
        use pgwire::messages::PgWireFrontendMessage as M;
        match message {
            M::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                if self.conn.over_limit {
                    let name = client.metadata().get(METADATA_USER).cloned();
                    let reason = format!(
                        "sorry, too many clients already: this server takes {} connections at once",
                        self.shared.config.max_connections
                    );
                    self.shared.audit.login(
                        name.as_deref().unwrap_or(""),
                        self.conn.addr,
                        Some(&reason),
                    );
                    return Err(error("FATAL", "53300", reason));
                }
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                client
                    .send(PgWireBackendMessage::Authentication(Authentication::SASL(
                        vec![scram::MECHANISM.to_string()],
                    )))
                    .await?;
            }
            M::PasswordMessageFamily(msg) => {
                let mut state = self.state.lock().await;
                match std::mem::replace(&mut *state, AuthState::Done) {
                    AuthState::Initial => {
                        let initial = msg.into_sasl_initial_response()?;
                        if initial.auth_method != scram::MECHANISM {
                            return Err(PgWireError::UnsupportedSASLAuthMethod(
                                initial.auth_method,
                            ));
                        }
                        let data = initial.data.unwrap_or_default();
                        let text = std::str::from_utf8(&data)
                            .map_err(|_| error("FATAL", "08P01", "SCRAM message is not UTF-8"))?;
                        let name = client
                            .metadata()
                            .get(METADATA_USER)
                            .cloned()
                            .unwrap_or_default();
                        let user = match Users::load(&self.shared.config.users) {
                            Ok(users) => users.get(&name).cloned(),
                            Err(e) => {
                                tracing::error!("login of {name:?} refused: {e}");
                                None
                            }
                        };
                        let verifier = user
                            .as_ref()
                            .and_then(|u| u.scram.as_deref())
                            .and_then(|t| Verifier::parse(t).ok());
                        let (exchange, first) = scram::server_first(
                            text,
                            verifier,
                            &name,
                            &self.shared.secret,
                            &random_nonce(),
                        )
                        .map_err(|f| match f {
                            Failure::Malformed(m) => error("FATAL", "08P01", m),
                            Failure::Refused => login_failed(&name),
                        })?;
                        client
                            .send(PgWireBackendMessage::Authentication(
                                Authentication::SASLContinue(Bytes::from(first)),
                            ))
                            .await?;
                        *state = AuthState::Continue(Box::new(Continue {
                            user,
                            name,
                            exchange,
                        }));
                    }
                    AuthState::Continue(next) => {
                        let Continue {
                            user,
                            name,
                            exchange,
                        } = *next;
                        let response = msg.into_sasl_response()?;
                        let text = std::str::from_utf8(&response.data)
                            .map_err(|_| error("FATAL", "08P01", "SCRAM message is not UTF-8"))?;
                        match (exchange.finish(text), user) {
                            (Ok(last), Some(user)) => {
                                client
                                    .send(PgWireBackendMessage::Authentication(
                                        Authentication::SASLFinal(Bytes::from(last)),
                                    ))
                                    .await?;
                                self.shared.audit.login(&name, self.conn.addr, None);
                                let _ = self.conn.user.set(Arc::new(user));
                                let mut parameters = DefaultServerParameterProvider::default();
                                parameters.is_superuser = false;
                                parameters.default_transaction_read_only = true;
                                finish_authentication(client, &parameters).await?;
                            }
                            (Err(Failure::Malformed(m)), _) => {
                                self.shared.audit.login(&name, self.conn.addr, Some(&m));
                                return Err(error("FATAL", "08P01", m));
                            }
                            _ => {
                                self.shared.audit.login(
                                    &name,
                                    self.conn.addr,
                                    Some("wrong password, unknown user or no verifier"),
                                );
                                return Err(login_failed(&name));
                            }
                        }
                    }
                    AuthState::Done => return Err(PgWireError::InvalidSASLState),
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// What an audit line needs beyond the outcome.
struct Pending {
    shared: Arc<Shared>,
    user: Arc<User>,
    client: std::net::SocketAddr,
    statement: String,
    time: String,
    started: Instant,
    rows: u64,
    outcome: Option<(&'static str, Option<String>)>,
    _busy: super::BusyGuard,
}

impl Pending {
    fn finish(&mut self, outcome: &'static str, error: Option<String>) {
        self.outcome = Some((outcome, error));
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let (outcome, error) = self.outcome.take().unwrap_or(("cancelled", None));
        self.shared.audit.statement(&StatementLine {
            time: std::mem::take(&mut self.time),
            user: &self.user.name,
            role: self.user.role.name(),
            client: self.client,
            statement: &self.statement,
            outcome,
            rows: self.rows,
            duration_ms: self.started.elapsed().as_secs_f64() * 1e3,
            error: error.as_deref(),
        });
    }
}

/// Statements of one connection.
pub(crate) struct Queries {
    parser: Arc<ScopedParser>,
    hooks: Vec<Arc<dyn QueryHook>>,
}

/// Plans statements for the extended protocol over the newest snapshot,
/// as the connection's user sees it, refusing what is not a query.
pub(crate) struct ScopedParser {
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    /// For parameter and result types, which only read the plan.
    describe: DfSessionService,
}

impl ScopedParser {
    fn user(&self) -> PgWireResult<Arc<User>> {
        self.conn
            .user
            .get()
            .cloned()
            .ok_or_else(|| error("FATAL", "28000", "not logged in"))
    }

    fn pending(&self, user: &Arc<User>, statement: String, started: Instant) -> Pending {
        Pending {
            shared: Arc::clone(&self.shared),
            user: Arc::clone(user),
            client: self.conn.addr,
            statement,
            time: audit::now(),
            started,
            rows: 0,
            outcome: None,
            _busy: self.conn.busy(),
        }
    }

    /// The deadline of a statement started at `started`: the server's
    /// timeout, or the client's `statement_timeout` if shorter.
    fn deadline<C: ClientInfo + ?Sized>(
        &self,
        client: &C,
        started: Instant,
    ) -> tokio::time::Instant {
        let server = self.shared.config.statement_timeout;
        let timeout = match datafusion_postgres_client_timeout(client) {
            Some(t) if !t.is_zero() => t.min(server),
            _ => server,
        };
        tokio::time::Instant::from_std(started) + timeout
    }

    /// The user's session for one statement.
    async fn session(&self, user: &User) -> PgWireResult<SessionContext> {
        self.shared
            .session(&user.scope())
            .await
            .map_err(|e| error("ERROR", "58000", format!("cannot open the lake: {e}")))
    }

    /// Parses `sql` (one statement), checks it and plans it with `ctx`.
    async fn plan<C>(
        &self,
        client: &C,
        ctx: SessionContext,
        user: &User,
        sql: &str,
        types: &[Option<Type>],
    ) -> Result<Option<DfStatement>, (PgWireError, String)>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut statements = PostgresCompatibilityParser::new().parse(sql).map_err(|e| {
            (
                error("ERROR", "42601", e.to_string()),
                "unparsed statement".to_string(),
            )
        })?;
        if statements.is_empty() {
            return Ok(None);
        }
        if statements.len() > 1 {
            return Err((
                error(
                    "ERROR",
                    "42601",
                    "cannot insert multiple commands into a prepared statement",
                ),
                "several statements".into(),
            ));
        }
        let statement = statements.remove(0);
        let scoped = user.scope().tenant_list().is_some();
        check::statement(&statement, scoped).map_err(|r| (refused(&r), check::kind(&statement)))?;
        let service = DfSessionService::new_with_hooks(Arc::new(ctx), hooks());
        let parsed = service
            .query_parser()
            .parse_sql(client, &statement.to_string(), types)
            .await
            .map_err(|e| (pg_error(e), statement.to_string()))?;
        if let Some((_, Some((statement, plan)))) = &parsed {
            check::plan(plan).map_err(|r| (refused(&r), check::kind(statement)))?;
        }
        Ok(parsed)
    }
}

/// The client's `SET statement_timeout`, as datafusion-postgres keeps it.
fn datafusion_postgres_client_timeout<C: ClientInfo + ?Sized>(
    client: &C,
) -> Option<std::time::Duration> {
    client
        .metadata()
        .get("statement_timeout_ms")
        .and_then(|s| s.parse::<u64>().ok())
        .map(std::time::Duration::from_millis)
}

#[async_trait]
impl QueryParser for ScopedParser {
    type Statement = DfStatement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<DfStatement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let user = self.user()?;
        let started = Instant::now();
        let ctx = self.session(&user).await?;
        match self.plan(client, ctx, &user, sql, types).await {
            Ok(parsed) => Ok(parsed),
            Err((e, statement)) => {
                self.pending(&user, statement, started)
                    .finish(outcome(&e), Some(e.to_string()));
                Err(e)
            }
        }
    }

    fn get_parameter_types(&self, stmt: &DfStatement) -> PgWireResult<Vec<Type>> {
        self.describe.query_parser().get_parameter_types(stmt)
    }

    fn get_result_schema(
        &self,
        stmt: &DfStatement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        self.describe
            .query_parser()
            .get_result_schema(stmt, column_format)
    }
}

/// Counts the rows of `response` as they are sent, ends them with an error
/// at `deadline`, and writes the audit line when they end.
fn watched(
    mut response: QueryResponse,
    deadline: tokio::time::Instant,
    pending: Pending,
) -> QueryResponse {
    let rows = std::mem::replace(&mut response.data_rows, Box::pin(futures::stream::empty()));
    let stream = futures::stream::unfold(
        (rows, pending, false),
        move |(mut rows, mut pending, done)| async move {
            if done {
                return None;
            }
            match tokio::time::timeout_at(deadline, rows.next()).await {
                Ok(Some(Ok(row))) => {
                    pending.rows += 1;
                    Some((Ok(row), (rows, pending, false)))
                }
                Ok(Some(Err(e))) => {
                    let e = pg_error(e);
                    pending.finish("error", Some(e.to_string()));
                    Some((Err(e), (rows, pending, true)))
                }
                Ok(None) => {
                    pending.finish("ok", None);
                    None
                }
                Err(_) => {
                    let e = timed_out();
                    pending.finish("timeout", Some(e.to_string()));
                    Some((Err(e), (rows, pending, true)))
                }
            }
        },
    );
    response.data_rows = Box::pin(stream);
    response
}

/// Runs `fut` until `deadline`.
async fn before<T>(
    deadline: tokio::time::Instant,
    fut: impl std::future::Future<Output = T>,
) -> PgWireResult<T> {
    tokio::time::timeout_at(deadline, fut)
        .await
        .map_err(|_| timed_out())
}

impl Queries {
    /// Plans and starts one query of the simple protocol.
    async fn run_query<C>(
        &self,
        client: &C,
        ctx: &SessionContext,
        statement: &Statement,
        deadline: tokio::time::Instant,
    ) -> PgWireResult<QueryResponse>
    where
        C: ClientInfo + ?Sized,
    {
        let state = ctx.state();
        let plan = before(
            deadline,
            state.statement_to_plan(DfParsed::Statement(Box::new(statement.clone()))),
        )
        .await?
        .map_err(|e| df_error(&e))?;
        check::plan(&plan).map_err(|r| refused(&r))?;
        let df = before(deadline, ctx.execute_logical_plan(plan))
            .await?
            .map_err(|e| df_error(&e))?;
        let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        before(
            deadline,
            encode_dataframe(df, &Format::UnifiedText, Some(options)),
        )
        .await?
        .map_err(pg_error)
    }

    /// Checks a cursor's query as a query: `DECLARE c CURSOR FOR SELECT
    /// ... INTO t` would create a table.
    async fn check_declare(&self, ctx: &SessionContext, statement: &Statement) -> PgWireResult<()> {
        if let Statement::Declare { stmts } = statement {
            for declare in stmts {
                if let Some(query) = &declare.for_query {
                    let plan = ctx
                        .state()
                        .statement_to_plan(DfParsed::Statement(Box::new(Statement::Query(
                            query.clone(),
                        ))))
                        .await
                        .map_err(|e| df_error(&e))?;
                    check::plan(&plan).map_err(|r| refused(&r))?;
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl SimpleQueryHandler for Queries {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let p = &self.parser;
        let user = p.user()?;
        let started = Instant::now();
        let statements = match PostgresCompatibilityParser::new().parse(query) {
            Ok(s) => s,
            Err(e) => {
                let e = error("ERROR", "42601", e.to_string());
                p.pending(&user, "unparsed statement".into(), started)
                    .finish("error", Some(e.to_string()));
                return Err(e);
            }
        };
        if statements.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        // The whole batch is checked before any of it runs.
        let scoped = user.scope().tenant_list().is_some();
        for statement in &statements {
            if let Err(r) = check::statement(statement, scoped) {
                let e = refused(&r);
                p.pending(&user, check::kind(statement), started)
                    .finish("refused", Some(e.to_string()));
                return Err(e);
            }
        }
        let ctx = p.session(&user).await?;
        let mut results = Vec::with_capacity(statements.len());
        'statements: for statement in statements {
            let started = Instant::now();
            let deadline = p.deadline(client, started);
            let mut pending = p.pending(&user, statement.to_string(), started);
            if let Err(e) = self.check_declare(&ctx, &statement).await {
                pending.statement = check::kind(&statement);
                pending.finish("refused", Some(e.to_string()));
                return Err(e);
            }
            for hook in &self.hooks {
                if let Some(result) = hook.handle_simple_query(&statement, &ctx, client).await {
                    match result {
                        Ok(response) => {
                            pending.finish("ok", None);
                            results.push(response);
                            continue 'statements;
                        }
                        Err(e) => {
                            let e = pg_error(e);
                            pending.finish("error", Some(e.to_string()));
                            return Err(e);
                        }
                    }
                }
            }
            match self.run_query(client, &ctx, &statement, deadline).await {
                Ok(response) => results.push(Response::Query(watched(response, deadline, pending))),
                Err(e) => {
                    pending.finish(outcome(&e), Some(e.to_string()));
                    return Err(e);
                }
            }
        }
        Ok(results)
    }
}

#[async_trait]
impl ExtendedQueryHandler for Queries {
    type Statement = DfStatement;
    type QueryParser = ScopedParser;

    fn query_parser(&self) -> Arc<ScopedParser> {
        Arc::clone(&self.parser)
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<DfStatement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = DfStatement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let p = &self.parser;
        let user = p.user()?;
        let started = Instant::now();
        let deadline = p.deadline(client, started);
        let text = portal.statement.statement.0.clone();
        let mut pending = p.pending(&user, text.clone(), started);
        if portal.statement.statement.1.is_none() {
            pending.finish("ok", None);
            return Ok(Response::EmptyQuery);
        }
        // Planned again over the newest snapshot: the statement was
        // planned when it was prepared, perhaps many commits ago.
        let ctx = p.session(&user).await?;
        let planned = match p
            .plan(
                client,
                ctx.clone(),
                &user,
                &text,
                &portal.statement.parameter_types,
            )
            .await
        {
            Ok(Some(planned)) => planned,
            Ok(None) => {
                pending.finish("ok", None);
                return Ok(Response::EmptyQuery);
            }
            Err((e, statement)) => {
                // A refused statement is logged by its kind only.
                pending.statement = statement;
                pending.finish(outcome(&e), Some(e.to_string()));
                return Err(e);
            }
        };
        let mut fresh = Portal::new_cursor(
            portal.name.clone(),
            Arc::new(StoredStatement::new(
                portal.statement.id.clone(),
                planned,
                portal.statement.parameter_types.clone(),
            )),
        );
        fresh.parameter_format = portal.parameter_format.clone();
        fresh.parameters = portal.parameters.clone();
        fresh.result_column_format = portal.result_column_format.clone();
        fresh.state = Arc::clone(&portal.state);
        let service = DfSessionService::new_with_hooks(Arc::new(ctx), hooks());
        let run = ExtendedQueryHandler::do_query(&service, client, &fresh, max_rows);
        let response = match before(deadline, run).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) | Err(e) => {
                let e = pg_error(e);
                pending.finish("error", Some(e.to_string()));
                return Err(e);
            }
        };
        Ok(match response {
            Response::Query(q) => Response::Query(watched(q, deadline, pending)),
            other => {
                pending.finish("ok", None);
                other
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlstate(e: PgWireError) -> String {
        match e {
            PgWireError::UserError(info) => info.code,
            other => panic!("not a user error: {other:?}"),
        }
    }

    #[test]
    fn datafusion_errors_reach_clients_with_postgres_sqlstates() {
        for (error, code) in [
            (DataFusionError::Plan("no such column".into()), "42000"),
            (
                DataFusionError::NotImplemented("Unsupported SQL type".into()),
                "0A000",
            ),
            (
                DataFusionError::Execution("division by zero".into()),
                "XX000",
            ),
            // The cause decides, however deep it is wrapped.
            (
                DataFusionError::Context(
                    "planning".into(),
                    Box::new(DataFusionError::NotImplemented("LATERAL".into())),
                ),
                "0A000",
            ),
        ] {
            let shown = error.to_string();
            assert_eq!(sqlstate(df_error(&error)), code, "{shown}");
        }
    }
}
