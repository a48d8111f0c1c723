//! One module per subcommand: arguments in, library call, output printed.

mod ingest;
mod load;
mod sample;
mod sql;

use std::process::ExitCode;

use agentledger_lake::Lake;

use crate::cli::{Cli, Command};

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Sample(args) => sample::run(args),
        Command::Ingest(args) => ingest::run(&open(&cli.lake)?, args).await,
        Command::Load(args) => load::run(&open(&cli.lake)?, args).await,
        Command::Sql(args) => sql::run(&open(&cli.lake)?, args).await,
    }
}

fn open(url: &str) -> anyhow::Result<Lake> {
    Ok(Lake::open(url)?)
}
