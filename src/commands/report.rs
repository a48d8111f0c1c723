//! `agentledger report`: the weekly margin report into a folder.

use std::process::ExitCode;

use agentledger_lake::Lake;
use agentledger_queries::Caveats;
use agentledger_reports::publish::publish;
use agentledger_reports::webhook::WebhookOptions;
use agentledger_reports::weekly::{IsoWeek, figures};
use anyhow::bail;

use super::metrics::warn_unpriced;
use crate::cli::ReportArgs;

pub async fn run(lake: &Lake, args: ReportArgs) -> anyhow::Result<ExitCode> {
    let week = args
        .week
        .unwrap_or_else(|| IsoWeek::last_complete(chrono::Utc::now().date_naive()));
    let ctx = agentledger_queries::open_session(lake).await?;
    let f = figures(&ctx, week).await?;
    // The figures already counted them: no second pass over the lake.
    warn_unpriced(&Caveats {
        unpriced_model_calls: f.unpriced_model_calls_lake,
        open_runs: f.open_runs,
        open_cost: 0,
    });
    let published = publish(
        lake,
        &args.out,
        &f,
        args.webhook.as_deref(),
        &WebhookOptions::default(),
        |files| {
            println!(
                "{week} ({} to {}): {} tenant{}, {} negative account{}",
                week.monday(),
                week.sunday(),
                f.accounts.len(),
                if f.accounts.len() == 1 { "" } else { "s" },
                files.alerts.len(),
                if files.alerts.len() == 1 { "" } else { "s" },
            );
            println!("report: {}", files.html.display());
        },
    )
    .await?;
    if let Some(tally) = published.tally() {
        println!(
            "alerts: {} sent, {} already sent, {} failed",
            tally.sent, tally.already_sent, tally.failed
        );
        if let Some(d) = published.failed().next() {
            bail!(
                "the webhook did not take {} alert(s); first: {} ({}); run again to retry them",
                tally.failed,
                d.tenant_id,
                d.error.clone().unwrap_or_default()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
