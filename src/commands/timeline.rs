//! `agentledger timeline`: one run's events in order, with costs; as rows,
//! or as one self-contained HTML page with the policy in force and every
//! breach marked.

use std::process::ExitCode;

use agentledger_lake::Lake;
use agentledger_queries::caveats;
use anyhow::{Context, bail};

use super::metrics::warn_unpriced;
use super::output::{emit, output_format};
use crate::cli::TimelineArgs;

pub async fn run(lake: &Lake, args: TimelineArgs) -> anyhow::Result<ExitCode> {
    let ctx = agentledger_queries::open_session(lake).await?;
    let missing = || {
        anyhow::anyhow!(
            "no events for run `{}` of tenant `{}` in {}",
            args.run,
            args.tenant,
            lake.display()
        )
    };
    let Some(format) = args.format.rows() else {
        let page = agentledger_reports::timeline::timeline_html(&ctx, &args.tenant, &args.run)
            .await?
            .ok_or_else(missing)?;
        warn_unpriced(&caveats(&ctx).await?);
        match &args.out {
            Some(path) => {
                std::fs::write(path, page)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                eprintln!("wrote {}", path.display());
            }
            None => {
                use std::io::Write;
                std::io::stdout().lock().write_all(page.as_bytes())?;
            }
        }
        return Ok(ExitCode::SUCCESS);
    };
    let format = output_format(format, args.out.as_deref())?;
    let batches = agentledger_queries::timeline(&ctx, &args.tenant, &args.run)
        .await?
        .collect()
        .await?;
    if batches.iter().all(|b| b.num_rows() == 0) {
        bail!(missing());
    }
    warn_unpriced(&caveats(&ctx).await?);
    // Printed from memory here, whatever engine ran the query.
    let rows = datafusion::prelude::SessionContext::new().read_batches(batches)?;
    emit(rows, format, args.out.as_deref()).await?;
    Ok(ExitCode::SUCCESS)
}
