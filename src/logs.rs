//! Where log lines go. The library crates emit `tracing` events (a warning
//! that a checkpoint could not be written, the batch's steps); this sets how
//! they are written to stderr:
//!
//! - every command but `run`: warnings and errors only, as
//!   `warning: message` or `error: message`;
//! - `run --log-format text`: `2026-11-24T02:00:00Z  INFO batch started
//!   step="start" lake=...` (tracing-subscriber's text format);
//! - `run --log-format json`: one JSON object per line (tracing-subscriber's
//!   JSON format, the event's fields flattened): `timestamp`, `level`,
//!   `message`, `step` and the step's own fields.
//!
//! Other crates' events (DataFusion, object_store) are shown from warnings
//! up.

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `warning: ...` for commands; no info lines.
    Plain,
    /// The batch's text lines.
    Text,
    /// The batch's JSON lines.
    Json,
}

/// UTC, to the second: `2026-11-24T02:00:00Z`.
struct UtcSeconds;

impl FormatTime for UtcSeconds {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        write!(w, "{now}")
    }
}

/// `warning: message key=value`, as commands have always printed warnings.
struct Plain;

impl<S, N> FormatEvent<S, N> for Plain
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let level = match *event.metadata().level() {
            Level::ERROR => "error",
            Level::WARN => "warning",
            Level::INFO => "info",
            _ => "debug",
        };
        write!(writer, "{level}: ")?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Installs the subscriber for this process.
pub fn init(style: Style) {
    let ours = match style {
        Style::Plain => LevelFilter::WARN,
        Style::Text | Style::Json => LevelFilter::INFO,
    };
    let filter = Targets::new()
        .with_default(LevelFilter::WARN)
        .with_target("agentledger", ours);
    let registry = tracing_subscriber::registry().with(filter);
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let result = match style {
        Style::Plain => registry.with(layer.event_format(Plain)).try_init(),
        Style::Text => registry
            .with(layer.with_timer(UtcSeconds).with_target(false))
            .try_init(),
        Style::Json => registry
            .with(
                layer
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false)
                    .with_target(false)
                    .with_timer(UtcSeconds),
            )
            .try_init(),
    };
    // Only a second call could fail; the first subscriber stays.
    let _ = result;
}
