//! `agentledger sql [QUERY]`: one query, a query from stdin, or a prompt.

use std::io::{IsTerminal, Read};
use std::process::ExitCode;

use agentledger_lake::Lake;
use agentledger_reports::export::Format;
use anyhow::{Context, bail};
use datafusion::prelude::SessionContext;

use super::output::{emit, output_format};
use crate::cli::SqlArgs;

pub async fn run(lake: &Lake, args: SqlArgs) -> anyhow::Result<ExitCode> {
    let format = output_format(args.format, args.out.as_deref())?;
    let ctx = agentledger_queries::open_analyst_session(lake).await?;
    let query = match args.query {
        Some(q) => q,
        None if std::io::stdin().is_terminal() => return repl(&ctx).await,
        None => {
            let mut q = String::new();
            std::io::stdin()
                .read_to_string(&mut q)
                .context("cannot read the query from stdin")?;
            q
        }
    };
    run_one(&ctx, &query, format, args.out.as_deref()).await?;
    Ok(ExitCode::SUCCESS)
}

async fn run_one(
    ctx: &SessionContext,
    sql: &str,
    format: Format,
    out: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let sql = sql.trim().trim_end_matches(';');
    if sql.is_empty() {
        bail!("empty query");
    }
    let df = agentledger_transforms::query(ctx, sql).await?;
    emit(df, format, out).await
}

/// An interactive prompt: statements end with `;` and may span lines;
/// history is kept in ~/.agentledger_history.
async fn repl(ctx: &SessionContext) -> anyhow::Result<ExitCode> {
    let mut editor = rustyline::DefaultEditor::new()?;
    let history =
        std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".agentledger_history"));
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    println!(
        "agentledger sql: tables events, model_calls, tool_calls, runs, model_prices, customer_plans, workflow_policies, quarantine; views metrics, revenue, margin, readiness, readiness_runs, readiness_offenders, run_policies, tool_call_checks."
    );
    println!("End statements with ';'. \\d lists tables, \\q quits.");
    let mut pending = String::new();
    loop {
        let prompt = if pending.is_empty() {
            "agentledger> "
        } else {
            "         ...> "
        };
        let line = match editor.readline(prompt) {
            Ok(line) => line,
            Err(rustyline::error::ReadlineError::Interrupted) => {
                pending.clear();
                continue;
            }
            Err(rustyline::error::ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        let trimmed = line.trim();
        if pending.is_empty() {
            match trimmed {
                "" => continue,
                "\\q" | "quit" | "exit" => break,
                "\\d" => {
                    let _ = editor.add_history_entry(trimmed);
                    let sql = "SELECT table_name, table_type FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name";
                    report(run_one(ctx, sql, Format::Table, None).await);
                    continue;
                }
                _ => {}
            }
        }
        pending.push_str(&line);
        pending.push('\n');
        if trimmed.ends_with(';') {
            let statement = std::mem::take(&mut pending);
            let _ = editor.add_history_entry(statement.trim());
            report(run_one(ctx, &statement, Format::Table, None).await);
        }
    }
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    Ok(ExitCode::SUCCESS)
}

fn report(result: anyhow::Result<()>) {
    if let Err(e) = result {
        eprintln!("error: {}", super::error_text(&e));
    }
}
