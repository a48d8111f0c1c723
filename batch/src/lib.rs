//! `agentledger run`: the scheduled batch.
//!
//! One run: take the batch lock, reload reference files that changed,
//! ingest the landing files not ingested before, write the report of the
//! week, deliver its alerts. Every step is idempotent, so a run killed at any
//! point is finished by the next one:
//!
//! - a reference file is reloaded only when its content hash differs from
//!   the one recorded by the load in force;
//! - landing files are recorded (path, size, content hash) in the lake's
//!   log after their ingest commits; a kill in between makes the next run
//!   ingest them again, which stores nothing twice (ingest is idempotent)
//!   and then records them; a recorded file whose bytes changed is reported
//!   and not read again;
//! - the report's files are replaced whole; alerts already delivered to the
//!   webhook are not sent again.

pub mod config;
pub mod ops;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use agentledger_ingest::reference::{ReferenceKind, content_hash, loaded_hash};
use agentledger_ingest::source::expand;
use agentledger_lake::Lake;
use agentledger_lake::lease::Lease;
use agentledger_lake::log::{Commit, CommitKind, Snapshot, append_locked};
use agentledger_reports::publish::publish;
use agentledger_reports::webhook::{WebhookOptions, redacted};
use agentledger_reports::weekly::{IsoWeek, figures};
use serde_json::json;

pub use config::{Config, LandingArea};

/// What the command line adds to the config.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The week to report (default: the last complete ISO week).
    pub week: Option<IsoWeek>,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct RunOutcome {
    /// Negative accounts in the week reported.
    pub alerts: usize,
    /// Alerts the webhook did not take after every retry.
    pub failed_deliveries: usize,
    /// Landing files whose bytes changed after they were ingested.
    pub changed_files: usize,
    /// The report page.
    pub report: Option<PathBuf>,
}

/// The batch failed.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The lake.
    #[error(transparent)]
    Lake(#[from] agentledger_lake::Error),
    /// Ingest or a reference load.
    #[error(transparent)]
    Ingest(#[from] agentledger_ingest::error::Error),
    /// The report or its webhook.
    #[error(transparent)]
    Publish(#[from] agentledger_reports::publish::PublishError),
    /// Reading the figures.
    #[error(transparent)]
    Query(#[from] agentledger_reports::export::Error),
    /// Opening the session.
    #[error(transparent)]
    Session(#[from] agentledger_queries::Error),
    /// The config lacks something.
    #[error("{0}")]
    Config(String),
}

/// Landing files already ingested: path → (size, hash).
fn landed(snapshot: &Snapshot) -> HashMap<String, (u64, String)> {
    // Parsed when the log was read: a record that does not parse failed the
    // load, so no landed file is ever forgotten.
    snapshot
        .state()
        .landed
        .values()
        .map(|f| (f.path.clone(), (f.size, f.hash.clone())))
        .collect()
}

async fn reload_reference(lake: &Lake, kind: ReferenceKind, file: &str) -> Result<(), BatchError> {
    let step = kind.name();
    let bytes = std::fs::read(file)
        .map_err(|e| BatchError::Config(format!("cannot read {step} file {file}: {e}")))?;
    let hash = content_hash(&bytes);
    let snapshot = Snapshot::load(lake).await?;
    if loaded_hash(&snapshot, kind).as_deref() == Some(hash.as_str()) {
        tracing::info!(step, file, "unchanged, not reloaded");
        return Ok(());
    }
    let summary = ops::load(lake, kind, std::path::Path::new(file)).await?;
    tracing::info!(
        step,
        file,
        rows = summary.rows,
        version = summary.version,
        "loaded"
    );
    Ok(())
}

async fn ingest_landing(
    lake: &Lake,
    area: &LandingArea,
    outcome: &mut RunOutcome,
) -> Result<(), BatchError> {
    let landing = area.path.as_str();
    let sources = expand(&[landing.to_string()]).await?;
    let snapshot = Snapshot::load(lake).await?;
    let seen = landed(&snapshot);
    let handle = tokio::runtime::Handle::current();
    let mut new = Vec::new();
    let mut unchanged = 0;
    for source in sources {
        let s = source.clone();
        let h = handle.clone();
        let (size, hash) = tokio::task::spawn_blocking(move || s.content_hash(&h))
            .await
            .map_err(|e| BatchError::Config(format!("hashing failed: {e}")))??;
        let name = source.name();
        match seen.get(&name) {
            Some((s, h)) if *s == size && *h == hash => unchanged += 1,
            Some((s, _)) => {
                outcome.changed_files += 1;
                tracing::warn!(
                    step = "landing",
                    file = name,
                    size_then = s,
                    size_now = size,
                    "file changed after it was ingested; not read again (ingest it under a new name if the change is wanted)"
                );
            }
            None => new.push((name, size, hash)),
        }
    }
    tracing::info!(
        step = "landing",
        new = new.len(),
        already_ingested = unchanged,
        changed = outcome.changed_files,
        "scanned"
    );
    if new.is_empty() {
        return Ok(());
    }
    let started = Instant::now();
    let names: Vec<String> = new.iter().map(|(n, _, _)| n.clone()).collect();
    let summary = ops::ingest(lake, &names, &area.options(), None).await?;
    tracing::info!(
        step = "ingest",
        files = names.len(),
        read = summary.read,
        stored = summary.stored,
        duplicate = summary.duplicate,
        quarantined = summary.quarantined,
        seconds = (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        "done"
    );
    // Record what was ingested, after the ingest committed.
    let mut commit = Commit::record(
        CommitKind::Landing,
        json!({
            "ingest_id": summary.ingest_id,
            "files": new.iter().map(|(p, s, h)| json!({"path": p, "size": s, "hash": h})).collect::<Vec<_>>(),
        }),
    );
    commit.id = summary.ingest_id.clone();
    append_locked(lake, "landing", commit).await?;
    Ok(())
}

/// Runs the batch on `lake`.
pub async fn run(
    lake: &Lake,
    config: &Config,
    options: &RunOptions,
) -> Result<RunOutcome, BatchError> {
    let lock = Lease::batch(lake, "agentledger run").await?;
    tracing::info!(
        step = "start",
        lake = %lake.display(),
        lease_generation = lock.generation(),
        "batch started"
    );
    // Every commit of the run is fenced by the batch lease: a batch that
    // lost it (paused past its expiry, then taken over) commits nothing.
    let result = run_locked(&lock.fence(lake), config, options).await;
    lock.release().await?;
    result
}

async fn run_locked(
    lake: &Lake,
    config: &Config,
    options: &RunOptions,
) -> Result<RunOutcome, BatchError> {
    let mut outcome = RunOutcome::default();
    if let Some(prices) = &config.prices {
        reload_reference(lake, ReferenceKind::Prices, prices).await?;
    }
    if let Some(plans) = &config.plans {
        reload_reference(lake, ReferenceKind::Plans, plans).await?;
    }
    if let Some(policies) = &config.policies {
        reload_reference(lake, ReferenceKind::Policies, policies).await?;
    }
    let areas = config.landing_areas();
    if areas.is_empty() {
        tracing::info!(step = "landing", "no landing area configured");
    }
    for area in &areas {
        ingest_landing(lake, area, &mut outcome).await?;
    }

    let refreshed = agentledger_queries::refresh_runs(lake).await?;
    if let Some(version) = refreshed.version {
        tracing::info!(
            step = "runs",
            events = refreshed.events,
            parts = refreshed.parts,
            full = refreshed.full,
            version,
            "run parts brought up to date"
        );
    }

    let week = options
        .week
        .unwrap_or_else(|| IsoWeek::last_complete(chrono::Utc::now().date_naive()));
    let reports = config
        .reports
        .clone()
        .ok_or_else(|| BatchError::Config("the config has no `reports` folder".into()))?;
    let dir = PathBuf::from(reports).join(week.label());
    let ctx = agentledger_queries::open_session(lake).await?;
    let f = figures(&ctx, week).await?;
    if f.unpriced_model_calls_lake > 0 {
        tracing::warn!(
            step = "report",
            unpriced_model_calls = f.unpriced_model_calls_lake,
            "model calls without cost_usd or a price in force count as 0 USD"
        );
    }
    let mut opts = WebhookOptions::default();
    if let Some(t) = config.alerts.timeout_seconds {
        opts.timeout = std::time::Duration::from_secs(t);
    }
    if let Some(a) = config.alerts.attempts {
        opts.attempts = a.max(1);
    }
    let url = config.alerts.webhook.as_deref();
    let published = publish(lake, &dir, &f, url, &opts, |files| {
        tracing::info!(
            step = "report",
            week = week.label(),
            tenants = f.accounts.len(),
            negative_accounts = files.alerts.len(),
            report = %files.html.display(),
            "written"
        );
    })
    .await?;
    outcome.alerts = published.files.alerts.len();
    outcome.report = Some(published.files.html.clone());

    match (url, published.tally()) {
        (Some(url), Some(tally)) => {
            outcome.failed_deliveries = tally.failed;
            for d in published.failed() {
                tracing::error!(
                    step = "alerts",
                    tenant_id = d.tenant_id,
                    week = d.iso_week,
                    error = d.error,
                    "webhook did not take the alert"
                );
            }
            tracing::info!(
                step = "alerts",
                webhook = redacted(url),
                sent = tally.sent,
                already_sent = tally.already_sent,
                failed = tally.failed,
                "delivered"
            );
        }
        _ => tracing::info!(
            step = "alerts",
            alerts = outcome.alerts,
            "no webhook configured; alerts are in alerts.json"
        ),
    }
    Ok(outcome)
}
