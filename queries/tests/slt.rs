//! Runs the sqllogictest files in `tests/slt/` against a fresh lake each.
//!
//! Besides SQL, a record's text may be one of these commands, so a case can
//! hold its data and the command under test next to the expected answer:
//!
//! - `INGEST` followed by NDJSON lines: ingests them (as `agentledger ingest`)
//! - `LOAD prices` / `LOAD plans` / `LOAD policies` followed by CSV lines:
//!   loads the table
//! - `METRICS [--by KEYS] [--from DATE] [--to DATE] [--open] [| COLUMNS]`:
//!   the rows of `agentledger metrics`, or only the comma list COLUMNS
//! - `GATE BASELINE CANDIDATE [--threshold PP] [--from DATE] [--to DATE]`:
//!   verdict, both versions' runs and successes, and the drop in points
//! - `TIMELINE TENANT RUN`: the rows of `agentledger timeline`
//! - `READINESS [--by KEYS] [--from DATE] [--to DATE] [| COLUMNS]`: the rows
//!   of `agentledger readiness` (measures and verdicts)
//! - `OFFENDERS [--by KEYS] [--from DATE] [--to DATE] [--limit N] [| COLUMNS]`:
//!   the offending runs `agentledger readiness` lists
//!
//! Values print as DataFusion's sqllogictests print them: NULL for null,
//! `(empty)` for an empty string, decimals with all their digits.
//!
//! Checks are strict. A `query` record's type string must name each column's
//! type: `T` text, `I` integer, `R` floating point, `N` decimal (money:
//! exact, never a float), `B` boolean, `D` date, `P` timestamp, `?` anything
//! else. Rows are compared column by column: each expected line is split at
//! whitespace and must have exactly the query's columns, each equal to its
//! value, so a value that holds a space cannot pass as two columns: a value's
//! spaces print as `·` (and tabs and newlines as `\t` and `\n`).
//!
//! Every file runs four times, in each of the ways `runs` can be read:
//! - `events`: no run parts are stored; `runs` is computed from the events;
//! - `parts`: run parts are refreshed after every INGEST and LOAD, as the
//!   commands do, so `runs` merges stored parts;
//! - `split`: every INGEST line is its own ingest, each followed by a
//!   refresh reading in buckets of a few events, so runs are merged from
//!   many parts (and parts files get merged as they pile up);
//! - `observed`: every INGEST computes the parts of its own events as it
//!   stores them (as the commands do), holding only two runs in memory so
//!   runs are written out and met again, then refreshes.
//!
//! `cargo test -p agentledger-queries --test slt [NAME]` runs the files
//! whose name contains NAME.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use agentledger_ingest::ingest::{IngestOptions, ingest, ingest_observed};
use agentledger_ingest::reference::{ReferenceKind, load_reference};
use agentledger_lake::Lake;
use agentledger_queries::{MetricsQuery, gate::gate, parse_keys};
use arrow::array::{Array, RecordBatch};
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::prelude::DataFrame;
use sqllogictest::DBOutput;

/// A column's type in a `query` record; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColumnType {
    Text,
    Integer,
    Float,
    Decimal,
    Boolean,
    Date,
    Timestamp,
    Other,
}

impl sqllogictest::ColumnType for ColumnType {
    fn from_char(value: char) -> Option<Self> {
        Some(match value {
            'T' => Self::Text,
            'I' => Self::Integer,
            'R' => Self::Float,
            'N' => Self::Decimal,
            'B' => Self::Boolean,
            'D' => Self::Date,
            'P' => Self::Timestamp,
            '?' => Self::Other,
            _ => return None,
        })
    }

    fn to_char(&self) -> char {
        match self {
            Self::Text => 'T',
            Self::Integer => 'I',
            Self::Float => 'R',
            Self::Decimal => 'N',
            Self::Boolean => 'B',
            Self::Date => 'D',
            Self::Timestamp => 'P',
            Self::Other => '?',
        }
    }
}

impl ColumnType {
    fn of(data_type: &DataType) -> Self {
        match data_type {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Self::Text,
            t if t.is_integer() => Self::Integer,
            t if t.is_floating() => Self::Float,
            DataType::Decimal32(..)
            | DataType::Decimal64(..)
            | DataType::Decimal128(..)
            | DataType::Decimal256(..) => Self::Decimal,
            DataType::Boolean => Self::Boolean,
            DataType::Date32 | DataType::Date64 => Self::Date,
            DataType::Timestamp(..) => Self::Timestamp,
            DataType::Dictionary(_, value) => Self::of(value),
            _ => Self::Other,
        }
    }
}

/// Each expected line holds exactly the row's values, in order, split at
/// whitespace.
fn column_by_column(
    _: sqllogictest::Normalizer,
    actual: &[Vec<String>],
    expected: &[String],
) -> bool {
    actual.len() == expected.len()
        && actual.iter().zip(expected).all(|(row, line)| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() == row.len() && fields.iter().zip(row).all(|(f, v)| f == v)
        })
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct SltError(String);

fn err(e: impl std::fmt::Display) -> SltError {
    SltError(e.to_string())
}

/// How `runs` is read; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Events,
    Parts,
    Split,
    Observed,
}

impl Mode {
    const ALL: [Mode; 4] = [Mode::Events, Mode::Parts, Mode::Split, Mode::Observed];

    fn name(self) -> &'static str {
        match self {
            Mode::Events => "events",
            Mode::Parts => "parts",
            Mode::Split => "split",
            Mode::Observed => "observed",
        }
    }
}

struct LakeDb {
    dir: tempfile::TempDir,
    lake: Lake,
    files: usize,
    mode: Mode,
}

impl LakeDb {
    fn new(mode: Mode) -> Result<Self, SltError> {
        let dir = tempfile::tempdir().map_err(err)?;
        let lake = Lake::open(dir.path().join("lake").to_str().unwrap()).map_err(err)?;
        Ok(Self {
            dir,
            lake,
            files: 0,
            mode,
        })
    }

    async fn refresh(&self) -> Result<(), SltError> {
        if self.mode != Mode::Events {
            // Split mode also reads in buckets of a few events, so runs
            // are computed and merged bucket by bucket.
            let options = agentledger_queries::RefreshOptions {
                chunk_rows: if self.mode == Mode::Split {
                    3
                } else {
                    agentledger_transforms::runs::CHUNK_ROWS
                },
                force: false,
                lease_wait: None,
            };
            agentledger_queries::refresh_runs_with(&self.lake, options)
                .await
                .map_err(err)?;
            // What follows reads stored parts only.
            let snapshot = agentledger_lake::log::Snapshot::load(&self.lake)
                .await
                .map_err(err)?;
            let coverage = snapshot.run_coverage(agentledger_transforms::definitions());
            if !coverage.uncovered_events.is_empty() || !coverage.stale_parts.is_empty() {
                return Err(SltError("the refresh left events uncovered".into()));
            }
        }
        Ok(())
    }

    async fn ingest_text(&mut self, body: &str) -> Result<u64, SltError> {
        let path = self.write_file("ndjson", body)?;
        let sources = [path.display().to_string()];
        let summary = if self.mode == Mode::Observed {
            // Parts computed by the ingest, holding two runs at a time so
            // that runs are written out and met again.
            let observer = agentledger_queries::PartsObserver::new(2);
            let (summary, observer) = ingest_observed(
                &self.lake,
                &sources,
                &IngestOptions::default(),
                None,
                observer,
            )
            .await
            .map_err(err)?;
            if let Some(why) = observer.gave_up() {
                return Err(SltError(format!("the ingest gave up its parts: {why}")));
            }
            summary
        } else {
            ingest(&self.lake, &sources, &IngestOptions::default(), None)
                .await
                .map_err(err)?
        };
        self.refresh().await?;
        Ok(summary.stored)
    }

    fn write_file(&mut self, ext: &str, body: &str) -> Result<PathBuf, SltError> {
        self.files += 1;
        let path = self.dir.path().join(format!("input-{}.{ext}", self.files));
        std::fs::write(&path, format!("{body}\n")).map_err(err)?;
        Ok(path)
    }

    async fn rows(df: DataFrame) -> Result<DBOutput<ColumnType>, SltError> {
        let types: Vec<ColumnType> = df
            .schema()
            .fields()
            .iter()
            .map(|f| ColumnType::of(f.data_type()))
            .collect();
        let batches = df.collect().await.map_err(err)?;
        Ok(DBOutput::Rows {
            types,
            rows: format_rows(&batches)?,
        })
    }

    async fn command(&mut self, sql: &str) -> Result<DBOutput<ColumnType>, SltError> {
        let (head, body) = sql.split_once('\n').unwrap_or((sql, ""));
        let words: Vec<&str> = head.split_whitespace().collect();
        match words.as_slice() {
            ["INGEST"] => {
                let stored = if self.mode == Mode::Split {
                    let mut stored = 0;
                    for line in body.lines().filter(|l| !l.trim().is_empty()) {
                        stored += self.ingest_text(line).await?;
                    }
                    stored
                } else {
                    self.ingest_text(body).await?
                };
                Ok(DBOutput::StatementComplete(stored))
            }
            ["LOAD", table] => {
                let kind = match *table {
                    "prices" => ReferenceKind::Prices,
                    "plans" => ReferenceKind::Plans,
                    "policies" => ReferenceKind::Policies,
                    other => return Err(SltError(format!("LOAD {other}?"))),
                };
                let path = self.write_file("csv", body)?;
                let summary = load_reference(&self.lake, kind, &path).await.map_err(err)?;
                self.refresh().await?;
                Ok(DBOutput::StatementComplete(summary.rows))
            }
            [cmd @ ("READINESS" | "OFFENDERS"), args @ ..] => {
                let (args, columns) = split_columns(args);
                let (query, _) = parse_period(args)?;
                let ctx = agentledger_queries::open_session(&self.lake)
                    .await
                    .map_err(err)?;
                let df = if *cmd == "READINESS" {
                    agentledger_queries::readiness(&ctx, &query).await
                } else {
                    let limit = flag(args, "--limit")
                        .map(|l| l.parse::<u64>().map_err(err))
                        .transpose()?
                        .unwrap_or(agentledger_queries::OFFENDERS_AS_WRITTEN);
                    agentledger_queries::readiness_offenders(&ctx, &query, limit).await
                }
                .map_err(err)?;
                Self::rows(keep_columns(df, columns)?).await
            }
            ["METRICS", args @ ..] => {
                // `METRICS ... | a,b,c` keeps only those columns.
                let (args, columns) = split_columns(args);
                let (query, flags) = parse_period(args)?;
                let ctx = agentledger_queries::open_session(&self.lake)
                    .await
                    .map_err(err)?;
                let df = if flags.contains(&"--open") {
                    agentledger_queries::open_runs(&ctx, &query).await
                } else {
                    agentledger_queries::metrics(&ctx, &query).await
                }
                .map_err(err)?;
                Self::rows(keep_columns(df, columns)?).await
            }
            ["GATE", baseline, candidate, args @ ..] => {
                let (query, _) = parse_period(args)?;
                let threshold = flag(args, "--threshold")
                    .map(|t| t.parse::<f64>().map_err(err))
                    .transpose()?
                    .unwrap_or(2.0);
                let ctx = agentledger_queries::open_session(&self.lake)
                    .await
                    .map_err(err)?;
                let r = gate(&ctx, baseline, candidate, threshold, &query)
                    .await
                    .map_err(err)?;
                // Verdict, two "successes/runs" and three points.
                Ok(DBOutput::Rows {
                    types: [ColumnType::Text; 3]
                        .into_iter()
                        .chain([ColumnType::Float; 3])
                        .collect(),
                    rows: vec![vec![
                        r.verdict.to_string(),
                        format!("{}/{}", r.baseline.successes, r.baseline.runs),
                        format!("{}/{}", r.candidate.successes, r.candidate.runs),
                        format!("{:.4}", r.drop_pp),
                        format!("{:.4}", r.drop_ci_low_pp),
                        format!("{:.4}", r.drop_ci_high_pp),
                    ]],
                })
            }
            ["TIMELINE", tenant, run] => {
                let ctx = agentledger_queries::open_session(&self.lake)
                    .await
                    .map_err(err)?;
                let df = agentledger_queries::timeline(&ctx, tenant, run)
                    .await
                    .map_err(err)?;
                Self::rows(df).await
            }
            _ => {
                let ctx = agentledger_queries::open_session(&self.lake)
                    .await
                    .map_err(err)?;
                let df = agentledger_transforms::query(&ctx, sql)
                    .await
                    .map_err(err)?;
                Self::rows(df).await
            }
        }
    }
}

/// `ARGS | a,b,c`: the arguments, and the columns to keep (all: `None`).
fn split_columns<'a, 'b>(args: &'b [&'a str]) -> (&'b [&'a str], Option<&'a str>) {
    match args.iter().position(|a| *a == "|") {
        Some(bar) => (&args[..bar], args.get(bar + 1).copied()),
        None => (args, None),
    }
}

/// `df` with only the comma list `columns`, when given.
fn keep_columns(df: DataFrame, columns: Option<&str>) -> Result<DataFrame, SltError> {
    match columns {
        Some(list) => df
            .select_columns(&list.split(',').collect::<Vec<_>>())
            .map_err(err),
        None => Ok(df),
    }
}

fn flag<'a>(args: &[&'a str], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| *a == name)
        .and_then(|i| args.get(i + 1).copied())
}

fn parse_period<'a>(args: &[&'a str]) -> Result<(MetricsQuery, Vec<&'a str>), SltError> {
    let keys = parse_keys(flag(args, "--by").unwrap_or("")).map_err(SltError)?;
    let date = |name| flag(args, name).map(|d| d.parse().map_err(err)).transpose();
    Ok((
        MetricsQuery::new(keys, date("--from")?, date("--to")?),
        args.to_vec(),
    ))
}

fn format_rows(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>, SltError> {
    let options = FormatOptions::default()
        .with_null("NULL")
        .with_timestamp_tz_format(Some("%Y-%m-%dT%H:%M:%S%.6fZ"));
    let mut rows = Vec::new();
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        for row in 0..batch.num_rows() {
            rows.push(
                formatters
                    .iter()
                    .zip(batch.columns())
                    .map(|(f, c)| {
                        let text = f.value(row).to_string();
                        if c.is_valid(row) && text.is_empty() {
                            "(empty)".to_string()
                        } else {
                            // One value, one field of the expected line.
                            text.replace(' ', "·")
                                .replace('\t', "\\t")
                                .replace('\n', "\\n")
                        }
                    })
                    .collect(),
            );
        }
    }
    Ok(rows)
}

#[async_trait::async_trait]
impl sqllogictest::AsyncDB for LakeDb {
    type Error = SltError;
    type ColumnType = ColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<ColumnType>, SltError> {
        self.command(sql.trim()).await
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "agentledger"
    }

    async fn sleep(dur: std::time::Duration) {
        tokio::time::sleep(dur).await;
    }
}

fn slt_files(filter: Option<&str>) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/slt exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .filter(|p| filter.is_none_or(|f| p.to_string_lossy().contains(f)))
        .collect();
    files.sort();
    files
}

fn main() {
    // libtest-style arguments (--nocapture, --test-threads ...) are ignored;
    // a bare word filters the files by name.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let files = slt_files(filter.as_deref());
    assert!(
        !files.is_empty(),
        "no .slt file in tests/slt matches {}",
        filter.as_deref().unwrap_or("(no filter)")
    );
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    for file in &files {
        for mode in Mode::ALL {
            let name = format!(
                "{} [{}]",
                file.file_name().unwrap().to_string_lossy(),
                mode.name()
            );
            let result = runtime.block_on(async {
                let mut runner =
                    sqllogictest::Runner::new(move || async move { LakeDb::new(mode) });
                runner.with_validator(column_by_column);
                runner.with_column_validator(sqllogictest::strict_column_validator);
                runner.run_file_async(file).await
            });
            match result {
                Ok(()) => println!("slt {name} ... ok"),
                Err(e) => {
                    println!("slt {name} ... FAILED\n{}", e.display(false));
                    failures.lock().unwrap().push(name);
                }
            }
        }
    }
    let failures = failures.lock().unwrap();
    let total = files.len() * Mode::ALL.len();
    println!(
        "\nslt: {} passed, {} failed",
        total - failures.len(),
        failures.len()
    );
    if !failures.is_empty() {
        std::process::exit(1);
    }
}
