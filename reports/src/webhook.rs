//! Sending alerts to a webhook, once.
//!
//! Each negative account is POSTed as one JSON object: the alert's fields
//! plus a Slack-compatible `text`. A request that times out, cannot connect
//! or gets HTTP 429 or 5xx is retried with exponential backoff and equal
//! jitter (each wait is between half and all of the backoff); any other
//! answer is final. Requests go through the same async HTTP client
//! (`reqwest`, rustls) that the object stores use, so the binary carries
//! one HTTP stack. Each delivery is then recorded in the
//! lake's commit log (kind `alerts`: tenant, week and a hash of the URL, never
//! the URL itself, which is usually a secret), and alerts already recorded
//! for the same URL are skipped, so re-running a week sends nothing twice. A
//! crash between a POST and its record can send that one alert again on the
//! next run (at least once, never silently lost).

use std::collections::HashSet;
use std::time::Duration;

use agentledger_lake::Lake;
use agentledger_lake::log::{Commit, CommitKind, Snapshot, append_locked, now_rfc3339};
use serde::Serialize;

use crate::report::Alert;

/// How hard to try.
#[derive(Debug, Clone)]
pub struct WebhookOptions {
    /// Timeout of one request, connect to last byte.
    pub timeout: Duration,
    /// Attempts per alert, the first included.
    pub attempts: u32,
    /// Delay before the first retry; doubled each time.
    pub base_delay: Duration,
    /// Longest delay between attempts.
    pub max_delay: Duration,
}

impl Default for WebhookOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

/// What became of one alert; printed, logged and serialized as `sent`,
/// `already_sent` or `failed`.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// The webhook took it (HTTP 2xx) and the delivery was recorded.
    Sent,
    /// A delivery to the same URL was recorded before; not sent again.
    AlreadySent,
    /// Every attempt failed, or the webhook gave a final refusal.
    Failed,
}

impl DeliveryStatus {
    /// The status as printed and logged.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::AlreadySent => "already_sent",
            Self::Failed => "failed",
        }
    }
}

impl std::fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened to one alert.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Delivery {
    /// The tenant.
    pub tenant_id: String,
    /// `YYYY-Www`.
    pub iso_week: String,
    /// Sent, already sent or failed.
    pub status: DeliveryStatus,
    /// Requests made.
    pub attempts: u32,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Delivery failed in a way that is not about one alert.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// Reading or writing the lake's log failed.
    #[error(transparent)]
    Lake(#[from] agentledger_lake::Error),
    /// The URL is not http(s).
    #[error("webhook URL must start with http:// or https://, not '{0}'")]
    BadUrl(String),
    /// The HTTP client could not be set up (TLS backend or root
    /// certificates).
    #[error("cannot set up the webhook's HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// How many alerts ended in each status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// Delivered now.
    pub sent: usize,
    /// Delivered by an earlier run.
    pub already_sent: usize,
    /// Not delivered; a re-run retries them.
    pub failed: usize,
}

impl Tally {
    /// Counts `deliveries` by status.
    pub fn of(deliveries: &[Delivery]) -> Self {
        let mut t = Self::default();
        for d in deliveries {
            match d.status {
                DeliveryStatus::Sent => t.sent += 1,
                DeliveryStatus::AlreadySent => t.already_sent += 1,
                DeliveryStatus::Failed => t.failed += 1,
            }
        }
        t
    }
}

/// Identifies a webhook without storing it: its xxh3-128 hash.
pub fn url_hash(url: &str) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(url.as_bytes()))
}

/// The body POSTed for an alert.
pub fn payload(alert: &Alert) -> serde_json::Value {
    let mut body = serde_json::to_value(alert).expect("alerts serialize");
    body["text"] = serde_json::Value::String(alert.text());
    body
}

fn delivered(snapshot: &Snapshot, hash: &str) -> HashSet<(String, String)> {
    let mut done = HashSet::new();
    // Parsed when the log was read: a record that does not parse failed
    // the load, so no delivered alert is sent twice.
    for record in &snapshot.state().alerts {
        if record.webhook_hash != hash {
            continue;
        }
        for d in &record.deliveries {
            done.insert((d.tenant_id.clone(), d.iso_week.clone()));
        }
    }
    done
}

enum Outcome {
    Sent,
    Retry(String),
    Final(String),
}

async fn post(client: &reqwest::Client, url: &str, body: &str) -> Outcome {
    match client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_owned())
        .send()
        .await
    {
        Ok(resp) => {
            let code = resp.status().as_u16();
            match code {
                200..=299 => Outcome::Sent,
                429 | 500..=599 => Outcome::Retry(format!("HTTP {code}")),
                _ => Outcome::Final(format!("HTTP {code}")),
            }
        }
        Err(e) => Outcome::Retry(describe(e)),
    }
}

/// A transport error as text: reqwest's message without the URL (which is
/// usually a secret) and then its causes, which say what actually went
/// wrong (connection refused, timed out, ...).
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The wait before retry number `retry` (1-based): `base × 2^(retry−1)`,
/// capped, then scaled by a random factor in [0.5, 1): equal jitter, so
/// retries spread out but never come sooner than half the backoff.
pub fn backoff(options: &WebhookOptions, retry: u32) -> Duration {
    let exp = options
        .base_delay
        .saturating_mul(1u32 << (retry.saturating_sub(1)).min(16));
    let capped = exp.min(options.max_delay);
    capped.mul_f64(0.5 + fastrand::f64() * 0.5)
}

/// Sends every alert not yet delivered to `url`, recording each delivery.
pub async fn deliver(
    lake: &Lake,
    url: &str,
    alerts: &[Alert],
    options: &WebhookOptions,
) -> Result<Vec<Delivery>, WebhookError> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(WebhookError::BadUrl(url.to_string()));
    }
    let hash = url_hash(url);
    let already = delivered(&Snapshot::load(lake).await?, &hash);
    let client = reqwest::Client::builder()
        .timeout(options.timeout)
        .build()
        .map_err(WebhookError::Client)?;
    let mut out = Vec::new();
    for alert in alerts {
        if already.contains(&(alert.tenant_id.clone(), alert.iso_week.clone())) {
            out.push(Delivery {
                tenant_id: alert.tenant_id.clone(),
                iso_week: alert.iso_week.clone(),
                status: DeliveryStatus::AlreadySent,
                attempts: 0,
                error: None,
            });
            continue;
        }
        let body = payload(alert).to_string();
        let mut attempts = 0;
        let error: Option<String>;
        loop {
            attempts += 1;
            match post(&client, url, &body).await {
                Outcome::Sent => {
                    error = None;
                    break;
                }
                Outcome::Final(e) => {
                    error = Some(e);
                    break;
                }
                Outcome::Retry(e) => {
                    if attempts >= options.attempts {
                        error = Some(e);
                        break;
                    }
                    tokio::time::sleep(backoff(options, attempts)).await;
                }
            }
        }
        let status = if error.is_none() {
            record(lake, &hash, url, alert, attempts).await?;
            DeliveryStatus::Sent
        } else {
            DeliveryStatus::Failed
        };
        out.push(Delivery {
            tenant_id: alert.tenant_id.clone(),
            iso_week: alert.iso_week.clone(),
            status,
            attempts,
            error: error.map(|e| format!("{e} after {attempts} attempt(s)")),
        });
    }
    Ok(out)
}

/// The scheme and host of a URL, safe to log (no path, no credentials).
pub fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => format!("{}://{}/…", u.scheme(), u.host_str().unwrap_or("?")),
        Err(_) => "(invalid URL)".into(),
    }
}

async fn record(
    lake: &Lake,
    hash: &str,
    url: &str,
    alert: &Alert,
    attempts: u32,
) -> Result<(), WebhookError> {
    let commit = Commit::record(
        CommitKind::Alerts,
        serde_json::json!({
            "webhook": redacted(url),
            "webhook_hash": hash,
            "deliveries": [{
                "tenant_id": alert.tenant_id,
                "week": alert.week,
                "iso_week": alert.iso_week,
                "margin_usd": alert.margin_usd,
                "attempts": attempts,
                "delivered_at": now_rfc3339(),
            }],
        }),
    );
    append_locked(lake, "alerts", commit).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_is_capped_and_jittered() {
        let o = WebhookOptions {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            ..Default::default()
        };
        for _ in 0..50 {
            let d1 = backoff(&o, 1);
            assert!(
                d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100),
                "{d1:?}"
            );
            let d3 = backoff(&o, 3);
            assert!(
                d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400),
                "{d3:?}"
            );
            let d9 = backoff(&o, 9);
            assert!(
                d9 >= Duration::from_millis(500) && d9 <= Duration::from_millis(1000),
                "{d9:?}"
            );
        }
    }

    #[test]
    fn statuses_serialize_print_and_tally_as_before() {
        let all = [
            (DeliveryStatus::Sent, "sent"),
            (DeliveryStatus::AlreadySent, "already_sent"),
            (DeliveryStatus::Failed, "failed"),
        ];
        for (status, text) in all {
            assert_eq!(serde_json::to_value(status).unwrap(), text);
            assert_eq!(status.to_string(), text);
            assert_eq!(status.as_str(), text);
        }
        let delivery = |status| Delivery {
            tenant_id: "acme".into(),
            iso_week: "2026-W43".into(),
            status,
            attempts: 1,
            error: None,
        };
        assert_eq!(
            serde_json::to_value(delivery(DeliveryStatus::AlreadySent)).unwrap(),
            serde_json::json!({"tenant_id": "acme", "iso_week": "2026-W43",
                               "status": "already_sent", "attempts": 1})
        );
        let deliveries: Vec<_> = [
            DeliveryStatus::Sent,
            DeliveryStatus::Failed,
            DeliveryStatus::Sent,
            DeliveryStatus::AlreadySent,
        ]
        .into_iter()
        .map(delivery)
        .collect();
        assert_eq!(
            Tally::of(&deliveries),
            Tally {
                sent: 2,
                already_sent: 1,
                failed: 1
            }
        );
    }

    #[test]
    fn urls_are_logged_without_their_secret_path() {
        assert_eq!(
            redacted("https://hooks.slack.com/services/T000/B000/XXXX"),
            "https://hooks.slack.com/…"
        );
        assert_ne!(url_hash("http://a/1"), url_hash("http://a/2"));
    }
}
