//! `agentledger ingest SOURCE...`

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use agentledger_ingest::{IngestSummary, Input, OtlpOptions, Progress};
use agentledger_lake::Lake;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::{IngestArgs, InputArg, SummaryFormat};

/// A progress bar on stderr, drawn only when stderr is a terminal.
struct Bar(ProgressBar);

impl Progress for Bar {
    fn start(&self, total_bytes: u64) {
        self.0.set_length(total_bytes);
    }
    fn update(&self, bytes_read: u64) {
        self.0.set_position(bytes_read);
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

pub async fn run(lake: &Lake, args: IngestArgs) -> anyhow::Result<ExitCode> {
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} ingest [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let progress: Arc<dyn Progress> = Arc::new(Bar(bar));
    let options = agentledger_ingest::IngestOptions {
        input: match args.input {
            InputArg::Auto => Input::Auto,
            InputArg::Ndjson => Input::Ndjson,
            InputArg::Otlp => Input::Otlp,
        },
        otlp: OtlpOptions {
            keep_messages: args.keep_messages,
        },
        ..Default::default()
    };
    let summary =
        agentledger_batch::ops::ingest(lake, &args.sources, &options, Some(progress)).await?;
    let mut out = std::io::stdout().lock();
    match args.format {
        SummaryFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&summary)?)?,
        SummaryFormat::Text => print_text(&mut out, lake, &summary)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn print_text(out: &mut dyn Write, lake: &Lake, s: &IngestSummary) -> std::io::Result<()> {
    match s.version {
        Some(v) => writeln!(
            out,
            "ingested into {} (lake version {v}, ingest {})",
            lake.display(),
            s.ingest_id
        )?,
        None => writeln!(out, "nothing new for {} (no commit)", lake.display())?,
    }
    writeln!(
        out,
        "read {}  stored {}  duplicate {}  quarantined {}",
        s.read, s.stored, s.duplicate, s.quarantined
    )?;
    if !s.quarantine_reasons.is_empty() {
        let reasons: Vec<String> = s
            .quarantine_reasons
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        writeln!(
            out,
            "quarantine: {} ({} new); see: agentledger sql \"SELECT source, line, reason, message FROM quarantine ORDER BY source, line\"",
            reasons.join(", "),
            s.quarantined_new
        )?;
    }
    if let Some(o) = &s.otlp {
        writeln!(
            out,
            "spans: read {}  skipped {} (not GenAI)  events derived {}",
            o.spans_read, o.spans_skipped, o.events_derived
        )?;
    }
    for src in &s.sources {
        write!(
            out,
            "  {}: read {} stored {} duplicate {} quarantined {}",
            src.source, src.read, src.stored, src.duplicate, src.quarantined
        )?;
        match &src.otlp {
            Some(o) => writeln!(
                out,
                " (OTLP: {} spans, {} skipped, {} events)",
                o.spans_read, o.spans_skipped, o.events_derived
            )?,
            None => writeln!(out)?,
        }
    }
    Ok(())
}
