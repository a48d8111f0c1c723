//! Publishing a week: the report's files, then its alerts to a webhook.
//!
//! `agentledger report` and the batch (`agentledger run`) publish a week
//! the same way and differ only in how they tell people (lines on stdout,
//! log lines on stderr), so both call [`publish`] and get typed outcomes
//! back ([`DeliveryStatus`], counted by [`Tally`]) instead of each writing,
//! delivering and counting status strings on its own. `on_written` runs
//! between the two steps, so the report's location is shown before a slow
//! delivery (retries can take a minute) and even when delivery then fails.

use std::path::Path;

use agentledger_lake::Lake;

use crate::report::{ReportError, ReportFiles, write_report};
use crate::webhook::{Delivery, DeliveryStatus, Tally, WebhookError, WebhookOptions, deliver};
use crate::weekly::WeeklyFigures;

/// What [`publish`] did.
#[derive(Debug, Clone)]
pub struct Published {
    /// The report's files and its alerts.
    pub files: ReportFiles,
    /// One per alert; `None` when no webhook was given.
    pub deliveries: Option<Vec<Delivery>>,
}

impl Published {
    /// Deliveries counted by status; `None` when no webhook was given.
    pub fn tally(&self) -> Option<Tally> {
        self.deliveries.as_deref().map(Tally::of)
    }

    /// The alerts the webhook did not take, in alert order.
    pub fn failed(&self) -> impl Iterator<Item = &Delivery> {
        self.deliveries
            .iter()
            .flatten()
            .filter(|d| d.status == DeliveryStatus::Failed)
    }
}

/// Publishing failed as a whole (an alert the webhook refuses is not an
/// error: it is a [`DeliveryStatus::Failed`] delivery).
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Writing the report's files.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// The webhook URL, its HTTP client or recording deliveries in the lake.
    #[error(transparent)]
    Webhook(#[from] WebhookError),
}

/// Writes the report of `figures` into `dir`, calls `on_written`, then,
/// with a `webhook` URL, delivers the alerts not yet delivered to it.
pub async fn publish(
    lake: &Lake,
    dir: &Path,
    figures: &WeeklyFigures,
    webhook: Option<&str>,
    options: &WebhookOptions,
    on_written: impl FnOnce(&ReportFiles),
) -> Result<Published, PublishError> {
    let files = write_report(dir, figures)?;
    on_written(&files);
    let deliveries = match webhook {
        Some(url) => Some(deliver(lake, url, &files.alerts, options).await?),
        None => None,
    };
    Ok(Published { files, deliveries })
}
