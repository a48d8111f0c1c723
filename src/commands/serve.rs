//! `agentledger serve [--otlp ADDR] [--pg ADDR]`: the OTLP receiver and the
//! SQL server, each enabled by its own flag, in one process that stops
//! both on SIGTERM or Ctrl-C.

use std::process::ExitCode;
use std::time::Duration;

use agentledger_ingest::OtlpOptions;
use agentledger_lake::Lake;
use agentledger_serve::pg::{Audit, PgConfig};
use agentledger_serve::{ReceiverConfig, serve_otlp, serve_pg};
use agentledger_transforms::memory::{Size, parse_size};
use anyhow::Context;

use crate::cli::ServeArgs;

fn seconds(flag: &str, value: f64) -> anyhow::Result<Duration> {
    if !(value.is_finite() && value > 0.0) {
        anyhow::bail!("{flag} must be a positive number of seconds, got {value}");
    }
    Ok(Duration::from_secs_f64(value))
}

pub async fn run(lake: &Lake, args: ServeArgs) -> anyhow::Result<ExitCode> {
    if args.otlp.is_none() && args.pg.is_none() {
        anyhow::bail!(
            "nothing to serve: give --otlp ADDR (for example --otlp 127.0.0.1:4318), --pg ADDR (for example --pg 127.0.0.1:5432), or both"
        );
    }
    let otlp = match args.otlp {
        Some(addr) => Some(ReceiverConfig {
            commit_interval: seconds("--commit-interval", args.commit_interval)?,
            commit_spans: args.commit_spans.max(1),
            max_request_bytes: args.max_request_bytes,
            max_spool_bytes: args.max_spool_bytes,
            otlp: OtlpOptions {
                keep_messages: args.keep_messages,
            },
            ..ReceiverConfig::new(addr, args.spool.clone())
        }),
        None => None,
    };
    let pg = match args.pg {
        Some(addr) => {
            let query_memory = match parse_size(&args.query_memory)
                .map_err(|e| anyhow::anyhow!("--query-memory: {e}"))?
            {
                Size::Bytes(n) if n > 0 => n,
                _ => anyhow::bail!(
                    "--query-memory must be a size in bytes such as 512M, got {}",
                    args.query_memory
                ),
            };
            let audit = match &args.audit_log {
                Some(path) => Audit::to_file(path)
                    .with_context(|| format!("cannot open the audit log {}", path.display()))?,
                None => Audit::to_stderr(),
            };
            let config = PgConfig {
                tls: args.tls_cert.clone().zip(args.tls_key.clone()),
                statement_timeout: seconds("--statement-timeout", args.statement_timeout)?,
                query_memory,
                max_connections: args.max_connections.max(1),
                idle_timeout: seconds("--idle-timeout", args.idle_timeout)?,
                ..PgConfig::new(addr, args.users.path.clone())
            };
            Some((config, audit))
        }
        None => None,
    };
    // Registered before either says it listens: a SIGTERM sent as soon as
    // one does is a shutdown, not the default exit.
    let signals = crate::stop_signal();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let receiver = async {
        match otlp {
            Some(config) => {
                let summary = serve_otlp(lake.clone(), config, stopped(stop_rx.clone())).await?;
                tracing::info!(
                    requests = summary.requests,
                    spans = summary.spans,
                    commits = summary.commits,
                    stored = summary.stored,
                    "OTLP receiver stopped; everything accepted is committed"
                );
                Ok::<(), anyhow::Error>(())
            }
            None => Ok(()),
        }
    };
    let sql = async {
        match pg {
            Some((config, audit)) => {
                let summary =
                    serve_pg(lake.clone(), config, audit, stopped(stop_rx.clone())).await?;
                tracing::info!(connections = summary.connections, "SQL server stopped");
                Ok::<(), anyhow::Error>(())
            }
            None => Ok(()),
        }
    };
    // One failing (a port in use, a bad certificate) stops the other.
    let stop_on_error = |r: anyhow::Result<()>| {
        if r.is_err() {
            let _ = stop_tx.send(true);
        }
        r
    };
    let signal = async {
        let (name, _) = signals.await;
        tracing::info!("{name} received");
        let _ = stop_tx.send(true);
    };
    let both = async {
        let (a, b) = tokio::join!(async { stop_on_error(receiver.await) }, async {
            stop_on_error(sql.await)
        });
        a.and(b)
    };
    tokio::pin!(both);
    tokio::pin!(signal);
    tokio::select! {
        r = &mut both => r?,
        () = &mut signal => both.await?,
    }
    Ok(ExitCode::SUCCESS)
}
