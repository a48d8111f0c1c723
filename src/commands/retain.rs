//! `agentledger retain`: take old event and quarantine partitions out.

use std::process::ExitCode;

use agentledger_lake::Lake;
use agentledger_lake::retain::grace_period;

use crate::cli::{RetainArgs, SummaryFormat};

pub async fn run(lake: &Lake, args: RetainArgs) -> anyhow::Result<ExitCode> {
    let today = chrono::Utc::now().date_naive();
    let cutoff = today - chrono::Duration::days(i64::from(args.days));
    let summary = agentledger_batch::ops::retain(lake, cutoff, args.dry_run).await?;
    match args.format {
        SummaryFormat::Json => println!("{}", serde_json::to_string_pretty(&summary)?),
        SummaryFormat::Text => {
            let verb = if args.dry_run {
                "would delete"
            } else {
                "deleted"
            };
            for p in &summary.partitions {
                println!(
                    "{verb} {}/date={}  ({} file{}, {} rows, {} bytes)",
                    p.table,
                    p.date,
                    p.files,
                    if p.files == 1 { "" } else { "s" },
                    p.rows,
                    p.bytes
                );
            }
            let rows: u64 = summary.partitions.iter().map(|p| p.rows).sum();
            println!(
                "{} partition{} before {} ({rows} rows){}",
                summary.partitions.len(),
                if summary.partitions.len() == 1 {
                    ""
                } else {
                    "s"
                },
                summary.cutoff,
                if args.dry_run {
                    ": dry run, nothing changed".to_string()
                } else {
                    format!(
                        "; readers stopped seeing them at lake version {}; {} file{} deleted from storage (files are kept {} s after their removal for queries already running)",
                        summary.version.map_or("-".into(), |v| v.to_string()),
                        summary.files_deleted,
                        if summary.files_deleted == 1 { "" } else { "s" },
                        grace_period().as_secs()
                    )
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
