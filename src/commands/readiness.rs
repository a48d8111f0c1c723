//! `agentledger readiness`: SPEC section 8's checklist per group of
//! finished runs, with the runs that break each failed condition. Exit 0,
//! or with `--fail-on-fail` 1 when a group is not ready; 2 when the check
//! cannot run (as `gate`).

use std::io::Write;
use std::process::ExitCode;

use agentledger_lake::Lake;
use agentledger_queries::{MetricsQuery, caveats};
use agentledger_reports::readiness::{Group, readiness, to_csv, to_json, to_table};
use anyhow::bail;

use super::metrics::warn_unpriced;
use crate::cli::{ReadinessArgs, ReadinessFormat};

/// Exit status when the check could not run.
pub const ERROR: u8 = 2;

pub async fn run(lake_url: &str, args: ReadinessArgs) -> ExitCode {
    match check(lake_url, &args).await {
        Ok(groups) => {
            if args.fail_on_fail && groups.iter().any(|g| !g.ready()) {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            if super::is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {}", super::error_text(&e));
            ExitCode::from(ERROR)
        }
    }
}

async fn check(lake_url: &str, args: &ReadinessArgs) -> anyhow::Result<Vec<Group>> {
    if let (Some(from), Some(to)) = (args.from, args.to)
        && from >= to
    {
        bail!("--from {from} is not before --to {to}: the period [from, to) is empty");
    }
    let lake = Lake::open_existing(lake_url)?;
    let ctx = agentledger_queries::open_session(&lake).await?;
    let query = MetricsQuery::new(args.by.0.clone(), args.from, args.to);
    let groups = readiness(&ctx, &query, args.limit).await?;
    warn_unpriced(&caveats(&ctx).await?);
    if groups.is_empty() && args.fail_on_fail {
        bail!(
            "no finished runs in the period: there is nothing to judge, so readiness cannot pass"
        );
    }
    let columns: Vec<String> = match groups.first() {
        Some(g) => g.columns.clone(),
        None => Vec::new(),
    };
    let text = match args.format {
        ReadinessFormat::Json => {
            let mut t = serde_json::to_string_pretty(&to_json(&groups))?;
            t.push('\n');
            t.into_bytes()
        }
        ReadinessFormat::Csv => to_csv(&groups, &columns)?,
        ReadinessFormat::Table if groups.is_empty() => b"no finished runs in the period\n".to_vec(),
        ReadinessFormat::Table => to_table(&groups, &columns)?.into_bytes(),
    };
    let mut out = std::io::stdout().lock();
    out.write_all(&text)?;
    out.flush()?;
    Ok(groups)
}
