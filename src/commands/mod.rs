//! One module per subcommand: arguments in, library call, output printed.

mod cluster;
mod compact;
mod gate;
mod ingest;
mod load;
mod metrics;
mod output;
mod readiness;
mod rebuild;
mod report;
mod retain;
mod run;
mod sample;
mod serve;
mod sql;
mod timeline;
mod user;

use std::process::ExitCode;

use agentledger_lake::Lake;

use crate::cli::{Cli, Command};

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let reads = matches!(
        cli.command,
        Command::Sql(_)
            | Command::Metrics(_)
            | Command::Timeline(_)
            | Command::Gate(_)
            | Command::Readiness(_)
            | Command::Report(_)
            | Command::Serve(_)
    );
    if reads && let Err(e) = choose_engine(cli.engine.as_deref()).await {
        if matches!(cli.command, Command::Gate(_) | Command::Readiness(_)) {
            // Their exit status 1 is an answer ("not ready"); 2 is "could not run".
            eprintln!("error: {}", error_text(&e));
            return Ok(ExitCode::from(gate::ERROR));
        }
        return Err(e);
    }
    match cli.command {
        Command::Cluster(args) => cluster::run(args).await,
        Command::Sample(args) => sample::run(args),
        Command::Serve(args) => serve::run(&open(&cli.lake)?, args).await,
        Command::User(args) => user::run(args),
        Command::Ingest(args) => ingest::run(&open(&cli.lake)?, args).await,
        Command::Load(args) => load::run(&open(&cli.lake)?, args).await,
        Command::Sql(args) => sql::run(&Lake::open_existing(&cli.lake)?, args).await,
        Command::Metrics(args) => metrics::run(&Lake::open_existing(&cli.lake)?, args).await,
        Command::Timeline(args) => timeline::run(&Lake::open_existing(&cli.lake)?, args).await,
        Command::Gate(args) => Ok(gate::run(&cli.lake, args).await),
        Command::Readiness(args) => Ok(readiness::run(&cli.lake, args).await),
        Command::Report(args) => report::run(&Lake::open_existing(&cli.lake)?, args).await,
        Command::Run(args) => Ok(run::run(&cli.lake, cli.engine.as_deref(), args).await),
        Command::Retain(args) => retain::run(&Lake::open_existing(&cli.lake)?, args).await,
        Command::Compact(args) => compact::run(&Lake::open_existing(&cli.lake)?, args).await,
        Command::Rebuild(args) => rebuild::run(&Lake::open_existing(&cli.lake)?, args).await,
    }
}

/// Makes this process's read sessions run on the engine `text` names
/// (`--engine`), after checking that its scheduler answers: a command whose
/// cluster is down fails at once, naming the address it tried.
pub async fn choose_engine(text: Option<&str>) -> anyhow::Result<()> {
    let Some(engine) = text
        .map(agentledger_cluster::parse_engine)
        .transpose()?
        .flatten()
    else {
        return Ok(());
    };
    engine.check_reachable().await?;
    agentledger_transforms::engine::configure(std::sync::Arc::new(engine))
        .map_err(anyhow::Error::msg)
}

fn open(url: &str) -> anyhow::Result<Lake> {
    Ok(Lake::open(url)?)
}

/// Whether an error is a closed stdout (`... | head`), which is no failure.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || cause.to_string().contains("Broken pipe")
    })
}

/// An error as one line for stderr. A query that did not fit in the memory
/// limit says so, with the limit and how to raise it.
pub fn error_text(e: &anyhow::Error) -> String {
    agentledger_transforms::memory::exhausted_message(e.as_ref()).unwrap_or_else(|| {
        // Each cause once: a wrapper whose message already holds its
        // source's (DataFusion's errors do, several levels deep) would
        // otherwise print the same sentence three times.
        let mut out = String::new();
        for cause in e.chain() {
            let text = cause.to_string();
            if out.contains(&text) {
                continue;
            }
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        out.replace('\n', " ")
    })
}
