//! `agentledger timeline`: one run's events in order, with costs.

use std::process::ExitCode;

use agentledger_lake::Lake;
use agentledger_queries::caveats;
use anyhow::bail;

use super::metrics::warn_unpriced;
use super::output::{emit, output_format};
use crate::cli::TimelineArgs;

pub async fn run(lake: &Lake, args: TimelineArgs) -> anyhow::Result<ExitCode> {
    let format = output_format(args.format, args.out.as_deref())?;
    let ctx = agentledger_queries::open_session(lake).await?;
    let batches = agentledger_queries::timeline(&ctx, &args.tenant, &args.run)
        .await?
        .collect()
        .await?;
    if batches.iter().all(|b| b.num_rows() == 0) {
        bail!(
            "no events for run `{}` of tenant `{}` in {}",
            args.run,
            args.tenant,
            lake.display()
        );
    }
    warn_unpriced(&caveats(&ctx).await?);
    emit(ctx.read_batches(batches)?, format, args.out.as_deref()).await?;
    Ok(ExitCode::SUCCESS)
}
