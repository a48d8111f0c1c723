//! `agentledger metrics`: SPEC section 3's metrics by the keys asked for.

use std::process::ExitCode;

use agentledger_lake::Lake;
use agentledger_queries::{Caveats, MetricsQuery, caveats, money_text};
use agentledger_reports::export::Format;
use anyhow::bail;

use super::output::{emit, output_format};
use crate::cli::MetricsArgs;

pub async fn run(lake: &Lake, args: MetricsArgs) -> anyhow::Result<ExitCode> {
    if let (Some(from), Some(to)) = (args.from, args.to)
        && from >= to
    {
        bail!("--from {from} is not before --to {to}: the period [from, to) is empty");
    }
    let format = output_format(args.format, args.out.as_deref())?;
    let query = MetricsQuery::new(args.by.0, args.from, args.to);
    let ctx = agentledger_queries::open_session(lake).await?;
    if !args.open {
        agentledger_queries::cache_runs_for_metrics(&ctx).await?;
    }
    let notes = caveats(&ctx).await?;
    warn_unpriced(&notes);
    let df = if args.open {
        agentledger_queries::open_runs(&ctx, &query).await?
    } else {
        agentledger_queries::metrics(&ctx, &query).await?
    };
    emit(df, format, args.out.as_deref()).await?;
    if format == Format::Table && !args.open && notes.open_runs > 0 {
        println!(
            "{} open run{} (no run_finished yet, {} USD so far) not counted above: agentledger metrics --open",
            notes.open_runs,
            if notes.open_runs == 1 { "" } else { "s" },
            money_text(notes.open_cost)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// SPEC section 2: every command that reports money warns while unpriced
/// model calls exist.
pub fn warn_unpriced(notes: &Caveats) {
    if notes.unpriced_model_calls > 0 {
        eprintln!(
            "warning: {} model call{} in the lake have no cost_usd and no price in force; they count as 0 USD (see model_calls where cost_source = 'unpriced', and agentledger load prices)",
            notes.unpriced_model_calls,
            if notes.unpriced_model_calls == 1 {
                ""
            } else {
                "s"
            },
        );
    }
}
