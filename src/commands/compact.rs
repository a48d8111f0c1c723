//! `agentledger compact`: many small event files of a partition as one.

use std::process::ExitCode;

use agentledger_lake::Lake;
use agentledger_lake::compact::compact;
use agentledger_lake::retain::grace_period;

use crate::cli::{CompactArgs, SummaryFormat};

pub async fn run(lake: &Lake, args: CompactArgs) -> anyhow::Result<ExitCode> {
    let min_files = usize::try_from(args.min_files).unwrap_or(usize::MAX);
    let summary = compact(lake, min_files, agentledger_transforms::definitions()).await?;
    match args.format {
        SummaryFormat::Json => println!("{}", serde_json::to_string_pretty(&summary)?),
        SummaryFormat::Text => {
            for p in &summary.partitions {
                println!(
                    "compacted events/date={}: {} files -> 1 ({} rows)",
                    p.date, p.files, p.rows
                );
            }
            match summary.version {
                Some(v) => println!(
                    "event files: {} -> {} (lake version {v})",
                    summary.files_before, summary.files_after
                ),
                None => println!(
                    "nothing to compact: no partition has {} or more files ({} event files)",
                    args.min_files, summary.files_before
                ),
            }
            println!(
                "{} removed file{} deleted from storage (removed files are kept {} s, so queries already running can finish; the next compact, retain or run-parts merge after that deletes them)",
                summary.files_deleted,
                if summary.files_deleted == 1 { "" } else { "s" },
                grace_period().as_secs()
            );
            if summary.uncovered_files > 0 {
                println!(
                    "{} newer file{} left alone until their run parts are computed (the next ingest or run does it)",
                    summary.uncovered_files,
                    if summary.uncovered_files == 1 {
                        ""
                    } else {
                        "s"
                    }
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
