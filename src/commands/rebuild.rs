//! `agentledger rebuild`: every run part computed again from the events.

use std::process::ExitCode;

use agentledger_lake::Lake;
use agentledger_transforms::runs::{RefreshOptions, refresh_runs_with};

use crate::cli::{RebuildArgs, SummaryFormat};

pub async fn run(lake: &Lake, args: RebuildArgs) -> anyhow::Result<ExitCode> {
    // The refresh every write runs, forced: it takes the writer lease and
    // rebuilds every part, current or not, in one commit that removes them.
    let options = RefreshOptions {
        force: true,
        ..RefreshOptions::default()
    };
    let summary = refresh_runs_with(lake, options).await?;
    match args.format {
        SummaryFormat::Json => println!("{}", serde_json::to_string_pretty(&summary)?),
        SummaryFormat::Text => match summary.version {
            Some(v) => println!(
                "rebuilt run parts from {} event{}: {} run-part row{}, {} old parts file{} removed (definitions {}, lake version {v})",
                summary.events,
                plural(summary.events),
                summary.parts,
                plural(summary.parts),
                summary.removed_files,
                plural(summary.removed_files as u64),
                summary.definitions,
            ),
            None => println!(
                "nothing to rebuild: the lake has no events and no run parts (definitions {})",
                summary.definitions
            ),
        },
    }
    Ok(ExitCode::SUCCESS)
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}
