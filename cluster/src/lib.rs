//! Past one machine: agentledger's queries on an Apache DataFusion Ballista
//! cluster, with the same SQL files and plans as the embedded engine.
//!
//! One binary plays the three roles:
//!
//! - [`run_scheduler`] (`agentledger cluster scheduler`): Ballista's
//!   scheduler, in process. It receives a client's logical plan, plans it
//!   into stages with agentledger's functions and rules, and hands tasks to
//!   executors.
//! - [`run_executor`] (`agentledger cluster executor`): Ballista's executor,
//!   in process. It runs tasks, reading the lake from its object store with
//!   its own credentials, and serves its shuffle output to the others.
//! - [`Ballista`] (`--engine ballista://HOST:PORT`): a client. A command's
//!   session is planned as always against the committed snapshot; its
//!   queries are then sent to the scheduler instead of being run here.
//!
//! [`codec`] is how our table scans and plan nodes travel; [`stores`] is how
//! a process of the cluster reaches the store a plan names.

pub mod codec;
pub mod fragment;
pub mod stores;
pub mod window_sort;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agentledger_transforms::engine::Remote;
use agentledger_transforms::memory;
use ballista_core::config::BALLISTA_CLIENT_GRPC_CONNECT_TIMEOUT_SECONDS;
use ballista_core::extension::{
    SessionConfigExt, SessionStateExt, ballista_aggregate_functions, ballista_scalar_functions,
    ballista_window_functions,
};
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::SessionState;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::prelude::SessionConfig;

use crate::codec::{LakeLogicalCodec, LakePhysicalCodec};
use crate::fragment::{Cutting, Reassemble};
use crate::stores::LakeStores;
use crate::window_sort::SortByPartitionKeys;

/// Errors of the cluster's processes and of reaching them.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An `--engine` value that names no engine.
    #[error(
        "{0:?} is not an engine: use `embedded` (this process) or `ballista://HOST:PORT` (a scheduler started with `agentledger cluster scheduler`)"
    )]
    BadEngine(String),
    /// The scheduler did not answer.
    #[error(
        "cannot reach the Ballista scheduler at {engine} (tried {tried}): {reason}; is `agentledger cluster scheduler` running there?"
    )]
    Unreachable {
        engine: String,
        tried: String,
        reason: String,
    },
    /// An address that does not parse.
    #[error("{what} {address:?} is not HOST:PORT: {reason}")]
    BadAddress {
        what: &'static str,
        address: String,
        reason: String,
    },
    /// Ballista failed.
    #[error("{0}")]
    Ballista(#[from] ballista_core::error::BallistaError),
    /// DataFusion failed.
    #[error("{0}")]
    DataFusion(#[from] DataFusionError),
    /// A setting could not be used.
    #[error("{0}")]
    Setting(String),
}

/// Result with this crate's error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How long a client waits for the scheduler to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The engine `--engine` names: `None` for this process (`embedded`, or no
/// value), or a Ballista scheduler.
pub fn parse_engine(text: &str) -> Result<Option<Ballista>> {
    let text = text.trim();
    if text.is_empty() || text == "embedded" {
        return Ok(None);
    }
    let Some(address) = text.strip_prefix("ballista://") else {
        return Err(Error::BadEngine(text.to_string()));
    };
    let address = address.trim_end_matches('/');
    let (host, port) = split_host_port("the engine", address)?;
    Ok(Some(Ballista {
        host: host.to_string(),
        port,
    }))
}

fn split_host_port<'a>(what: &'static str, address: &'a str) -> Result<(&'a str, u16)> {
    let bad = |reason: &str| Error::BadAddress {
        what,
        address: address.to_string(),
        reason: reason.to_string(),
    };
    let (host, port) = address.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let port = port
        .parse::<u16>()
        .map_err(|e| bad(&format!("the port: {e}")))?;
    Ok((host, port))
}

/// A Ballista scheduler, as a client reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ballista {
    host: String,
    port: u16,
}

impl Ballista {
    /// Fails at once, naming the address, when nothing accepts a connection
    /// there: a command then stops before it plans anything.
    pub async fn check_reachable(&self) -> Result<()> {
        let unreachable = |tried: String, reason: String| Error::Unreachable {
            engine: self.describe(),
            tried,
            reason,
        };
        let target = (self.host.as_str(), self.port);
        let addresses: Vec<SocketAddr> = target
            .to_socket_addrs()
            .map_err(|e| unreachable(format!("{}:{}", self.host, self.port), e.to_string()))?
            .collect();
        let mut last = String::from("the name has no address");
        for address in &addresses {
            match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(address))
                .await
            {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
            }
        }
        let tried = addresses
            .iter()
            .map(SocketAddr::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        Err(unreachable(tried, last))
    }
}

impl Remote for Ballista {
    fn upgrade(&self, state: SessionState) -> DfResult<SessionState> {
        let config = state
            .config()
            .clone()
            .upgrade_for_ballista()
            .with_ballista_logical_extension_codec(Arc::new(LakeLogicalCodec::default()))
            .with_ballista_physical_extension_codec(Arc::new(LakePhysicalCodec::default()))
            // Ballista 55's adaptive planner re-plans joins between stages
            // and loses what the plan knew of its input's order: a window
            // whose PARTITION BY keys a filter made constant then fails
            // ("Expects PARTITION BY expression to be ordered"). The static
            // planner runs DataFusion's own plan, stage by stage.
            .with_ballista_adaptive_query_planner(false)
            // The embedded engine's join choice: hash joins (Ballista turns
            // them off for sort-merge joins, which spill). A sort-merge join
            // sorts every model call to join the few price rows; a hash join
            // collects the small side. A build side that does not fit the
            // executor's memory fails the query, as it does in one process.
            .set_bool("datafusion.optimizer.prefer_hash_join", true)
            .set_usize(
                BALLISTA_CLIENT_GRPC_CONNECT_TIMEOUT_SECONDS,
                CONNECT_TIMEOUT.as_secs() as usize,
            );
        let state = SessionStateBuilder::new_from_existing(state)
            .with_config(config)
            .build()
            .upgrade_for_ballista(format!("http://{}:{}", self.host, self.port))?;
        // Plans travel in pieces ([`fragment`]).
        let cutting = Cutting {
            inner: Arc::clone(state.query_planner()),
        };
        Ok(SessionStateBuilder::new_from_existing(state)
            .with_query_planner(Arc::new(cutting))
            .build())
    }

    fn describe(&self) -> String {
        format!("ballista://{}:{}", self.host, self.port)
    }
}

/// The session a scheduler plans in and an executor's functions come from:
/// Ballista's functions and rules, then agentledger's ([`agentledger_transforms::functions`],
/// [`agentledger_transforms::with_rules`]), over the process's memory budget
/// and [`LakeStores`].
pub fn cluster_state(config: SessionConfig) -> DfResult<SessionState> {
    let mut functions = ballista_scalar_functions();
    // After DataFusion's: ours replace its `to_char`.
    functions.extend(agentledger_transforms::functions());
    let builder = SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .with_runtime_env(runtime()?)
        .with_optimizer_rules(ballista_core::optimizer::ballista_default_optimizer_rules())
        .with_scalar_functions(functions)
        .with_aggregate_functions(ballista_aggregate_functions())
        .with_window_functions(ballista_window_functions());
    Ok(agentledger_transforms::with_rules(builder)
        // A client's plan arrives in pieces ([`fragment`]).
        .with_analyzer_rule(Arc::new(Reassemble))
        // Windows whose stage does not know its keys are constant.
        .with_physical_optimizer_rule(Arc::new(SortByPartitionKeys))
        .build())
}

/// A runtime under the process's memory budget that opens stores on use.
fn runtime() -> DfResult<Arc<datafusion::execution::runtime_env::RuntimeEnv>> {
    let budget = memory::budget().map_err(DataFusionError::Configuration)?;
    budget
        .runtime_env_with(Some(Arc::new(LakeStores::default())))
        .map_err(DataFusionError::Configuration)
}

/// `agentledger cluster scheduler`'s settings.
#[derive(Debug, Clone)]
pub struct SchedulerSettings {
    /// Where to listen, `HOST:PORT`.
    pub bind: String,
    /// The host executors and clients reach this scheduler by.
    pub external_host: Option<String>,
    /// Seconds without a heartbeat after which an executor is taken for
    /// dead and its tasks run elsewhere.
    pub executor_timeout: u64,
}

/// Runs a scheduler until the process is stopped.
pub async fn run_scheduler(settings: SchedulerSettings) -> Result<()> {
    let (host, port) = split_host_port("--bind", &settings.bind)?;
    let address: SocketAddr = (host, port)
        .to_socket_addrs()
        .map_err(|e| Error::BadAddress {
            what: "--bind",
            address: settings.bind.clone(),
            reason: e.to_string(),
        })?
        .next()
        .ok_or_else(|| Error::BadAddress {
            what: "--bind",
            address: settings.bind.clone(),
            reason: "the name has no address".into(),
        })?;
    let config = SchedulerConfig {
        bind_host: host.to_string(),
        bind_port: port,
        external_host: settings
            .external_host
            .clone()
            .unwrap_or_else(|| host.to_string()),
        executor_timeout_seconds: settings.executor_timeout,
        expire_dead_executor_interval_seconds: settings.executor_timeout.clamp(1, 15),
        no_executors_grace_period_seconds: settings.executor_timeout,
        override_session_builder: Some(Arc::new(cluster_state)),
        override_logical_codec: Some(Arc::new(LakeLogicalCodec::default())),
        override_physical_codec: Some(Arc::new(LakePhysicalCodec::default())),
        ..SchedulerConfig::default()
    };
    let cluster = BallistaCluster::new_from_config(&config).await?;
    tracing::info!(%address, "Ballista scheduler listening");
    eprintln!("agentledger cluster scheduler listening on {address}");
    start_server(cluster, address, Arc::new(config)).await?;
    Ok(())
}

/// `agentledger cluster executor`'s settings.
#[derive(Debug, Clone)]
pub struct ExecutorSettings {
    /// The scheduler, `ballista://HOST:PORT` or `HOST:PORT`.
    pub scheduler: String,
    /// Tasks run at once.
    pub concurrency: usize,
    /// Where to listen for shuffle reads (Arrow Flight), `HOST:PORT`; the
    /// task port is the next one.
    pub bind: String,
    /// The host the scheduler and other executors reach this one by.
    pub external_host: Option<String>,
    /// Where shuffle files are written.
    pub work_dir: PathBuf,
}

/// Runs an executor until the process is stopped (SIGTERM or Ctrl-C).
pub async fn run_executor(settings: ExecutorSettings) -> Result<()> {
    let scheduler = settings
        .scheduler
        .strip_prefix("ballista://")
        .unwrap_or(&settings.scheduler)
        .trim_end_matches('/');
    let (scheduler_host, scheduler_port) = split_host_port("--scheduler", scheduler)?;
    let (host, port) = split_host_port("--bind", &settings.bind)?;
    let grpc_port = port.checked_add(1).ok_or_else(|| Error::BadAddress {
        what: "--bind",
        address: settings.bind.clone(),
        reason: "the task port (the next one) would be past 65535".into(),
    })?;
    std::fs::create_dir_all(&settings.work_dir).map_err(|e| {
        Error::Setting(format!(
            "cannot create the work folder {}: {e}",
            settings.work_dir.display()
        ))
    })?;
    let budget = memory::budget().map_err(Error::Setting)?;
    let functions: BallistaFunctionRegistry =
        (&cluster_state(SessionConfig::new_with_ballista())?).into();
    let config = ExecutorProcessConfig {
        bind_host: host.to_string(),
        external_host: settings.external_host.clone(),
        port,
        grpc_port,
        scheduler_host: scheduler_host.to_string(),
        scheduler_port,
        scheduler_connect_timeout_seconds: 30,
        vcores: settings.concurrency.max(1),
        work_dir: Some(settings.work_dir.display().to_string()),
        executor_heartbeat_interval_seconds: 2,
        // The process's --memory-limit, shared by the tasks it runs at
        // once: each task's pool is its share (Ballista's policy), over
        // our runtime's spill folder.
        memory_pool_size: Some(budget.limit()),
        print_thread_info: false,
        override_function_registry: Some(Arc::new(functions)),
        override_runtime_producer: Some(Arc::new(|_config: &SessionConfig| runtime())),
        override_logical_codec: Some(Arc::new(LakeLogicalCodec::default())),
        override_physical_codec: Some(Arc::new(LakePhysicalCodec::default())),
        ..ExecutorProcessConfig::default()
    };
    eprintln!(
        "agentledger cluster executor on {host}:{port} (tasks on {grpc_port}), {} at once, scheduler {scheduler_host}:{scheduler_port}",
        config.vcores
    );
    start_executor_process(Arc::new(config)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines_parse_and_bad_ones_say_what_is_expected() {
        assert_eq!(parse_engine("").unwrap(), None);
        assert_eq!(parse_engine("embedded").unwrap(), None);
        let engine = parse_engine("ballista://sched.example:50050")
            .unwrap()
            .unwrap();
        assert_eq!(engine.describe(), "ballista://sched.example:50050");
        let engine = parse_engine("ballista://[::1]:7000/").unwrap().unwrap();
        assert_eq!(engine.port, 7000);
        assert_eq!(engine.host, "::1");
        for bad in [
            "duckdb",
            "http://x:1",
            "ballista://x",
            "ballista://:1",
            "ballista://x:y",
        ] {
            let err = parse_engine(bad).unwrap_err().to_string();
            assert!(
                err.contains(bad.trim_start_matches("ballista://")),
                "{bad}: {err}"
            );
        }
    }

    #[tokio::test]
    async fn an_absent_scheduler_is_named_with_the_address_tried() {
        // A port nothing listens on: bound, then closed.
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let engine = parse_engine(&format!("ballista://127.0.0.1:{port}"))
            .unwrap()
            .unwrap();
        let err = engine.check_reachable().await.unwrap_err().to_string();
        assert!(
            err.contains(&format!("ballista://127.0.0.1:{port}"))
                && err.contains(&format!("tried 127.0.0.1:{port}")),
            "{err}"
        );
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        engine.check_reachable().await.unwrap();
        drop(listener);
    }
}
