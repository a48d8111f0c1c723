//! `agentledger rebuild`: every run part computed again from the events,
//! and the key index of events and quarantine written anew.

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
    let index = agentledger_lake::index::rebuild(lake).await?;
    match args.format {
        SummaryFormat::Json => {
            let mut out = serde_json::to_value(&summary)?;
            out["index"] = serde_json::to_value(&index)?;
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
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
    if args.format == SummaryFormat::Text {
        println!(
            "rebuilt the key index: {} event id{}, {} quarantined line{} ({} old run{} removed)",
            index.event_keys,
            plural(index.event_keys),
            index.quarantine_keys,
            plural(index.quarantine_keys),
            index.removed_runs,
            plural(index.removed_runs as u64),
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}
