//! `agentledger gate`: the release gate. Exit 0 pass, 1 fail, 2 error.

use std::process::ExitCode;

use agentledger_lake::Lake;
use agentledger_queries::MetricsQuery;
use agentledger_queries::gate::{GateResult, VersionRate, gate};

use crate::cli::{GateArgs, SummaryFormat};

/// Exit status when the gate could not decide.
pub const ERROR: u8 = 2;

pub async fn run(lake_url: &str, args: GateArgs) -> ExitCode {
    match decide(lake_url, &args).await {
        Ok(result) => {
            match args.format {
                SummaryFormat::Json => match serde_json::to_string_pretty(&result) {
                    Ok(text) => println!("{text}"),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::from(ERROR);
                    }
                },
                SummaryFormat::Text => print_text(&result),
            }
            if result.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("error: {}", super::error_text(&e));
            ExitCode::from(ERROR)
        }
    }
}

async fn decide(lake_url: &str, args: &GateArgs) -> anyhow::Result<GateResult> {
    if !args.threshold.is_finite() || args.threshold < 0.0 {
        anyhow::bail!("--threshold must be a number of percentage points >= 0");
    }
    let lake = Lake::open_existing(lake_url)?;
    let ctx = agentledger_queries::open_session(&lake).await?;
    let period = MetricsQuery::new(vec![], args.from, args.to);
    Ok(gate(
        &ctx,
        &args.baseline,
        &args.candidate,
        args.threshold,
        &period,
    )
    .await?)
}

fn line(role: &str, v: &VersionRate) -> String {
    format!(
        "{role:<9} {:<16} {:>6}/{:<6} succeeded  {:6.2}%  (95% CI {:.2}% to {:.2}%)",
        v.agent_version,
        v.successes,
        v.runs,
        v.success_rate * 100.0,
        v.ci_low * 100.0,
        v.ci_high * 100.0
    )
}

fn print_text(r: &GateResult) {
    println!("{}", line("baseline", &r.baseline));
    println!("{}", line("candidate", &r.candidate));
    println!(
        "drop      {:.2} points (95% CI {:.2} to {:.2}), threshold {:.2}",
        r.drop_pp, r.drop_ci_low_pp, r.drop_ci_high_pp, r.threshold_pp
    );
    let noise = if r.drop_ci_low_pp <= 0.0 && r.drop_ci_high_pp >= 0.0 {
        " (the interval includes no change: more runs would tell)"
    } else {
        ""
    };
    println!("verdict   {}{noise}", r.verdict.to_uppercase());
}
