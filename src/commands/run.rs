//! `agentledger run`: the scheduled batch. Exit 0 done, 1 failed, 3 (with
//! `--fail-on-alert`) done with negative accounts.

use std::process::ExitCode;

use agentledger_batch::{Config, RunOptions};
use agentledger_lake::Lake;

use crate::cli::RunArgs;

/// Exit status when the week has negative accounts and `--fail-on-alert`.
pub const ALERT: u8 = 3;

/// Its log lines go through `tracing`, formatted as `--log-format` says
/// (see [`crate::logs`]).
///
/// The engine: `--engine` (or `AGENTLEDGER_ENGINE`) wins over the file's
/// `engine`.
pub async fn run(lake_arg: &str, engine: Option<&str>, args: RunArgs) -> ExitCode {
    let fail = |message: String| {
        tracing::error!(step = "batch", "{}", message.replace('\n', " "));
        ExitCode::FAILURE
    };
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => return fail(e.to_string()),
    };
    if let Err(e) = super::choose_engine(engine.or(config.engine.as_deref())).await {
        return fail(super::error_text(&e));
    }
    let lake_url = config.lake.clone().unwrap_or_else(|| lake_arg.to_string());
    let lake = match Lake::open(&lake_url) {
        Ok(l) => l,
        Err(e) => return fail(e.to_string()),
    };
    let options = RunOptions { week: args.week };
    match agentledger_batch::run(&lake, &config, &options).await {
        Ok(outcome) => {
            if outcome.failed_deliveries > 0 {
                return fail(format!(
                    "{} alert(s) could not be delivered; run again to retry them",
                    outcome.failed_deliveries
                ));
            }
            tracing::info!(
                step = "done",
                negative_accounts = outcome.alerts,
                changed_landing_files = outcome.changed_files,
                report = outcome.report.map(|p| p.display().to_string()),
                "batch finished"
            );
            if args.fail_on_alert && outcome.alerts > 0 {
                ExitCode::from(ALERT)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => fail(
            agentledger_transforms::memory::exhausted_message(&e).unwrap_or_else(|| e.to_string()),
        ),
    }
}
