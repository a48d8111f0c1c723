//! `agentledger serve --otlp ADDR`

use std::process::ExitCode;
use std::time::Duration;

use agentledger_ingest::OtlpOptions;
use agentledger_lake::Lake;
use agentledger_serve::{ReceiverConfig, serve_otlp};

use crate::cli::ServeArgs;

pub async fn run(lake: &Lake, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let Some(addr) = args.otlp else {
        anyhow::bail!("nothing to serve: give --otlp ADDR (for example --otlp 127.0.0.1:4318)");
    };
    if !(args.commit_interval.is_finite() && args.commit_interval > 0.0) {
        anyhow::bail!(
            "--commit-interval must be a positive number of seconds, got {}",
            args.commit_interval
        );
    }
    let config = ReceiverConfig {
        commit_interval: Duration::from_secs_f64(args.commit_interval),
        commit_spans: args.commit_spans.max(1),
        max_request_bytes: args.max_request_bytes,
        max_spool_bytes: args.max_spool_bytes,
        otlp: OtlpOptions {
            keep_messages: args.keep_messages,
        },
        ..ReceiverConfig::new(addr, args.spool)
    };
    // Registered before the receiver says it listens: a SIGTERM sent as
    // soon as it does is a shutdown, not the default exit.
    let signals = crate::stop_signal();
    let shutdown = async {
        let (name, _) = signals.await;
        tracing::info!("{name} received");
    };
    let summary = serve_otlp(lake.clone(), config, shutdown).await?;
    tracing::info!(
        requests = summary.requests,
        spans = summary.spans,
        commits = summary.commits,
        stored = summary.stored,
        "stopped; everything accepted is committed"
    );
    Ok(ExitCode::SUCCESS)
}
