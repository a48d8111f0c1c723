//! `agentledger report`: the weekly margin report into a folder.

use std::process::ExitCode;

use agentledger_lake::Lake;
use agentledger_queries::Caveats;
use agentledger_reports::report::write_report;
use agentledger_reports::webhook::{WebhookOptions, deliver};
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
    let files = write_report(&args.out, &f)?;
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
    if let Some(url) = &args.webhook {
        let deliveries = deliver(lake, url, &files.alerts, &WebhookOptions::default()).await?;
        let failed: Vec<_> = deliveries.iter().filter(|d| d.status == "failed").collect();
        println!(
            "alerts: {} sent, {} already sent, {} failed",
            deliveries.iter().filter(|d| d.status == "sent").count(),
            deliveries
                .iter()
                .filter(|d| d.status == "already_sent")
                .count(),
            failed.len()
        );
        if let Some(d) = failed.first() {
            bail!(
                "the webhook did not take {} alert(s); first: {} ({}); run again to retry them",
                failed.len(),
                d.tenant_id,
                d.error.clone().unwrap_or_default()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
