//! The ingest run: expand sources, take the writer lock, stream, commit.
//!
//! Duplicates follow SPEC section 1: validation comes first, so a bad line
//! never claims an `event_id`; then a valid event whose id is stored already
//! (in the lake, or earlier in this ingest) is an exact repeat (`duplicate`,
//! not stored) or a conflicting one (`conflicting_duplicate`, quarantined).
//! A quarantined line is stored once per (source, line number, raw text), so
//! ingesting the same file twice adds nothing to the quarantine either.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::BufRead;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use agentledger_lake::Lake;
use agentledger_lake::lock::WriterLock;
use agentledger_lake::log::{Commit, CommitKind, FileEntry, Snapshot, now_rfc3339};
use agentledger_lake::parquet_io::read_columns;
use agentledger_lake::schema::{EVENTS, EVENTS_SCHEMA, QUARANTINE, QUARANTINE_SCHEMA};
use agentledger_lake::writer::PartitionedWriter;
use arrow::array::{AsArray, Date32Array};
use arrow::datatypes::Int64Type;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use serde::Serialize;
use xxhash_rust::xxh3::{xxh3_64, xxh3_128};

use crate::batch::RowBuilder;
use crate::error::{Error, Result};
use crate::source::{Source, expand};
use crate::validate::{Rejection, Val, validate};

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Tuning knobs of an ingest.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Rows buffered before they are handed to the Parquet writers.
    pub batch_rows: usize,
    /// Bytes the Parquet writers may buffer before files are finished early.
    pub memory_budget: usize,
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self {
            batch_rows: 16 * 1024,
            memory_budget: 128 * 1024 * 1024,
        }
    }
}

/// Receives progress: bytes read from storage out of a total.
pub trait Progress: Send + Sync {
    /// Called once with the total size of all sources.
    fn start(&self, total_bytes: u64);
    /// Called now and then with the bytes read so far.
    fn update(&self, bytes_read: u64);
    /// Called when reading is done.
    fn finish(&self);
}

/// Counts of one source.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SourceSummary {
    /// The source file or object.
    pub source: String,
    /// Non-blank lines read.
    pub read: u64,
    /// New events stored.
    pub stored: u64,
    /// Exact repeats of stored events.
    pub duplicate: u64,
    /// Lines quarantined (bad lines and conflicting duplicates).
    pub quarantined: u64,
}

/// What an ingest did. `read = stored + duplicate + quarantined`, in total
/// and for every source.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IngestSummary {
    /// Non-blank lines read.
    pub read: u64,
    /// New events stored.
    pub stored: u64,
    /// Exact repeats of stored events, not stored again.
    pub duplicate: u64,
    /// Lines sent to the quarantine (including ones already there).
    pub quarantined: u64,
    /// Quarantined lines that were not in the quarantine before.
    pub quarantined_new: u64,
    /// Quarantined lines by reason code.
    pub quarantine_reasons: BTreeMap<String, u64>,
    /// Counts per source, in ingest order.
    pub sources: Vec<SourceSummary>,
    /// This ingest's id (the prefix of the files it wrote).
    pub ingest_id: String,
    /// The lake version committed, or none when there was nothing new.
    pub version: Option<u64>,
}

/// Ingests `sources` into `lake`.
pub async fn ingest(
    lake: &Lake,
    sources: &[String],
    options: &IngestOptions,
    progress: Option<Arc<dyn Progress>>,
) -> Result<IngestSummary> {
    let files = expand(sources).await?;
    let lock = WriterLock::acquire(lake, "ingest").await?;
    let result = ingest_locked(lake, files, options, progress).await;
    lock.release().await?;
    result
}

async fn ingest_locked(
    lake: &Lake,
    files: Vec<Source>,
    options: &IngestOptions,
    progress: Option<Arc<dyn Progress>>,
) -> Result<IngestSummary> {
    let mut snapshot = Snapshot::load(lake).await?;
    remove_orphans(lake, &snapshot).await?;
    let index = Index::load(lake, &snapshot).await?;

    let ingest_id = new_id();
    let job = Job {
        lake: lake.clone(),
        ingest_id: ingest_id.clone(),
        ingested_at: chrono::Utc::now().timestamp_micros(),
        options: options.clone(),
        progress,
        handle: tokio::runtime::Handle::current(),
    };
    let (mut summary, files) = tokio::task::spawn_blocking(move || job.run(files, index))
        .await
        .map_err(|e| Error::Task(e.to_string()))??;
    summary.ingest_id = ingest_id.clone();

    if !files.is_empty() {
        let commit = Commit {
            version: 0,
            kind: CommitKind::Ingest,
            id: ingest_id,
            committed_at: now_rfc3339(),
            replaces: vec![],
            files,
            summary: serde_json::json!({
                "read": summary.read,
                "stored": summary.stored,
                "duplicate": summary.duplicate,
                "quarantined": summary.quarantined,
                "quarantined_new": summary.quarantined_new,
                "sources": summary.sources.iter().map(|s| &s.source).collect::<Vec<_>>(),
            }),
        };
        summary.version = Some(snapshot.commit(lake, commit).await?);
    }
    Ok(summary)
}

/// Deletes data files that no commit names: what a killed writer left.
/// Runs under the writer lock, so no live writer's files are touched.
async fn remove_orphans(lake: &Lake, snapshot: &Snapshot) -> Result<()> {
    let known = snapshot.all_paths();
    for table in [EVENTS, QUARANTINE] {
        let listed: Vec<_> = lake
            .store()
            .list(Some(&lake.path(table)))
            .try_collect()
            .await
            .map_err(agentledger_lake::Error::from)?;
        for meta in listed {
            let Some(rel) = lake.relative(&meta.location) else {
                continue;
            };
            if !known.contains(rel.as_str()) {
                match lake.store().delete(&meta.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(agentledger_lake::Error::from(e).into()),
                }
            }
        }
    }
    Ok(())
}

/// What is stored already: event ids with their content hashes, and the keys
/// of quarantined lines.
struct Index {
    events: HashMap<u128, i64>,
    quarantine: HashSet<u128>,
}

impl Index {
    async fn load(lake: &Lake, snapshot: &Snapshot) -> Result<Self> {
        let event_files = snapshot.files(EVENTS);
        let rows: u64 = event_files.iter().map(|f| f.rows).sum();
        let mut events = HashMap::with_capacity(rows as usize);
        for file in event_files {
            let mut stream = read_columns(lake, file, &["event_id", "content_hash"]).await?;
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                let ids = batch.column(0).as_string::<i32>();
                let hashes = batch.column(1).as_primitive::<Int64Type>();
                for i in 0..batch.num_rows() {
                    events.insert(xxh3_128(ids.value(i).as_bytes()), hashes.value(i));
                }
            }
        }
        let mut quarantine = HashSet::new();
        for file in snapshot.files(QUARANTINE) {
            let mut stream = read_columns(lake, file, &["source", "line", "raw_line"]).await?;
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                let sources = batch.column(0).as_string::<i32>();
                let lines = batch.column(1).as_primitive::<Int64Type>();
                let raws = batch.column(2).as_string::<i32>();
                for i in 0..batch.num_rows() {
                    quarantine.insert(quarantine_key(
                        sources.value(i),
                        lines.value(i),
                        raws.value(i),
                    ));
                }
            }
        }
        Ok(Self { events, quarantine })
    }
}

fn quarantine_key(source: &str, line: i64, raw: &str) -> u128 {
    let mut key = Vec::with_capacity(source.len() + raw.len() + 10);
    key.extend_from_slice(source.as_bytes());
    key.push(0);
    key.extend_from_slice(&line.to_le_bytes());
    key.extend_from_slice(raw.as_bytes());
    xxh3_128(&key)
}

/// A new id: UTC time to the microsecond plus a random suffix. Sorts by time.
fn new_id() -> String {
    let now = chrono::Utc::now();
    let noise =
        xxh3_64(format!("{}-{:?}", std::process::id(), now.timestamp_nanos_opt()).as_bytes());
    format!("{}-{:08x}", now.format("%Y%m%dT%H%M%S%6fZ"), noise as u32)
}

/// The raw text of a line, losslessly: invalid UTF-8 bytes become `\xNN`.
pub fn raw_text(line: &[u8]) -> String {
    let mut out = String::with_capacity(line.len());
    for chunk in line.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    out
}

struct Job {
    lake: Lake,
    ingest_id: String,
    ingested_at: i64,
    options: IngestOptions,
    progress: Option<Arc<dyn Progress>>,
    handle: tokio::runtime::Handle,
}

struct Sinks {
    events: RowBuilder,
    event_dates: Vec<i32>,
    event_writer: PartitionedWriter,
    quarantine: RowBuilder,
    quarantine_writer: PartitionedWriter,
    quarantine_date: i32,
}

impl Job {
    fn run(self, files: Vec<Source>, mut index: Index) -> Result<(IngestSummary, Vec<FileEntry>)> {
        let mut sinks = Sinks {
            events: RowBuilder::new(Arc::clone(&EVENTS_SCHEMA)),
            event_dates: Vec::with_capacity(self.options.batch_rows),
            event_writer: PartitionedWriter::new(
                &self.lake,
                EVENTS,
                Arc::clone(&EVENTS_SCHEMA),
                &self.ingest_id,
                self.options.memory_budget,
            ),
            quarantine: RowBuilder::new(Arc::clone(&QUARANTINE_SCHEMA)),
            quarantine_writer: PartitionedWriter::new(
                &self.lake,
                QUARANTINE,
                Arc::clone(&QUARANTINE_SCHEMA),
                &self.ingest_id,
                self.options.memory_budget / 8,
            ),
            quarantine_date: self.ingested_at.div_euclid(MICROS_PER_DAY) as i32,
        };
        let total_bytes: u64 = files.iter().map(Source::size).sum();
        if let Some(p) = &self.progress {
            p.start(total_bytes);
        }
        let counter = Arc::new(AtomicU64::new(0));
        let mut summary = IngestSummary::default();
        for source in &files {
            let counts =
                self.read_source(source, &mut index, &mut sinks, &counter, &mut summary)?;
            summary.read += counts.read;
            summary.stored += counts.stored;
            summary.duplicate += counts.duplicate;
            summary.quarantined += counts.quarantined;
            summary.sources.push(counts);
        }
        self.flush_events(&mut sinks)?;
        self.flush_quarantine(&mut sinks)?;
        if let Some(p) = &self.progress {
            p.update(counter.load(Ordering::Relaxed));
            p.finish();
        }
        let mut written = self.handle.block_on(sinks.event_writer.finish())?;
        written.extend(self.handle.block_on(sinks.quarantine_writer.finish())?);
        Ok((summary, written))
    }

    fn read_source(
        &self,
        source: &Source,
        index: &mut Index,
        sinks: &mut Sinks,
        counter: &Arc<AtomicU64>,
        summary: &mut IngestSummary,
    ) -> Result<SourceSummary> {
        let name = source.name();
        let mut reader = source.open(&self.handle, Arc::clone(counter))?;
        let mut counts = SourceSummary {
            source: name.clone(),
            ..Default::default()
        };
        let mut buf = Vec::with_capacity(4096);
        let mut line_no: i64 = 0;
        loop {
            buf.clear();
            let n = reader
                .read_until(b'\n', &mut buf)
                .map_err(|e| Error::Source {
                    source_name: name.clone(),
                    reason: format!("read failed after line {line_no}: {e}"),
                })?;
            if n == 0 {
                break;
            }
            line_no += 1;
            if buf.last() == Some(&b'\n') {
                buf.pop();
            }
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            if buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            counts.read += 1;
            let rejection = match validate(&buf) {
                Ok(event) => {
                    let key = xxh3_128(event.event_id.as_bytes());
                    let hash = event.content_hash as i64;
                    match index.events.get(&key) {
                        Some(stored) if *stored == hash => {
                            counts.duplicate += 1;
                            None
                        }
                        Some(_) => Some(Rejection {
                            code: "conflicting_duplicate",
                            message: format!(
                                "event_id '{}' is already stored with different content; the event stored first stays",
                                event.event_id
                            ),
                            event_id: Some(event.event_id),
                        }),
                        None => {
                            index.events.insert(key, hash);
                            counts.stored += 1;
                            sinks
                                .event_dates
                                .push(event.ts_micros.div_euclid(MICROS_PER_DAY) as i32);
                            let provenance = [
                                Some(Val::Str(name.clone())),
                                Some(Val::Int(line_no)),
                                Some(Val::Str(self.ingest_id.clone())),
                                Some(Val::Ts(self.ingested_at)),
                                Some(Val::Int(hash)),
                            ];
                            sinks
                                .events
                                .push(event.values.into_iter().chain(provenance));
                            None
                        }
                    }
                }
                Err(rejection) => Some(rejection),
            };
            if let Some(r) = rejection {
                counts.quarantined += 1;
                *summary
                    .quarantine_reasons
                    .entry(r.code.to_string())
                    .or_default() += 1;
                let raw = raw_text(&buf);
                if index
                    .quarantine
                    .insert(quarantine_key(&name, line_no, &raw))
                {
                    summary.quarantined_new += 1;
                    sinks.quarantine.push([
                        Some(Val::Str(self.ingest_id.clone())),
                        Some(Val::Ts(self.ingested_at)),
                        Some(Val::Str(name.clone())),
                        Some(Val::Int(line_no)),
                        Some(Val::Str(r.code.to_string())),
                        Some(Val::Str(r.message)),
                        r.event_id.map(Val::Str),
                        Some(Val::Str(raw)),
                    ]);
                    if sinks.quarantine.len() >= self.options.batch_rows {
                        self.flush_quarantine(sinks)?;
                    }
                }
            }
            if sinks.events.len() >= self.options.batch_rows {
                self.flush_events(sinks)?;
                if let Some(p) = &self.progress {
                    p.update(counter.load(Ordering::Relaxed));
                }
            }
        }
        Ok(counts)
    }

    fn flush_events(&self, sinks: &mut Sinks) -> Result<()> {
        if sinks.events.is_empty() {
            return Ok(());
        }
        let batch = sinks.events.finish()?;
        let dates = Date32Array::from(std::mem::take(&mut sinks.event_dates));
        debug_assert_eq!(dates.len(), batch.num_rows());
        self.handle
            .block_on(sinks.event_writer.write(&batch, &dates))?;
        Ok(())
    }

    fn flush_quarantine(&self, sinks: &mut Sinks) -> Result<()> {
        if sinks.quarantine.is_empty() {
            return Ok(());
        }
        let batch = sinks.quarantine.finish()?;
        let dates = Date32Array::from(vec![sinks.quarantine_date; batch.num_rows()]);
        self.handle
            .block_on(sinks.quarantine_writer.write(&batch, &dates))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: &str, day: u32) -> String {
        format!(
            r#"{{"event_id":"{id}","event_type":"run_finished","ts":"2026-10-{day:02}T10:00:00Z","tenant_id":"acme","run_id":"r-{id}","outcome":"success"}}"#
        )
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn object_store_sources_and_lakes_work_end_to_end() {
        let source = Lake::open("memory://ingest-src").unwrap();
        let body = format!("{}\n{}\nnot json\n", line("a", 5), line("b", 6));
        source
            .store()
            .put(&source.path("landing/one.ndjson"), body.into_bytes().into())
            .await
            .unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, line("c", 7).as_bytes()).unwrap();
        source
            .store()
            .put(
                &source.path("landing/two.jsonl.gz"),
                gz.finish().unwrap().into(),
            )
            .await
            .unwrap();
        source
            .store()
            .put(
                &source.path("landing/notes.txt"),
                b"skip me".to_vec().into(),
            )
            .await
            .unwrap();

        let lake = Lake::open("memory://ingest-lake").unwrap();
        let summary = ingest(
            &lake,
            &["memory://ingest-src/landing".to_string()],
            &IngestOptions::default(),
            None,
        )
        .await
        .unwrap();
        assert_eq!(
            (summary.read, summary.stored, summary.quarantined),
            (4, 3, 1)
        );
        let names: Vec<&str> = summary.sources.iter().map(|s| s.source.as_str()).collect();
        assert_eq!(
            names,
            [
                "memory://ingest-src/landing/one.ndjson",
                "memory://ingest-src/landing/two.jsonl.gz"
            ]
        );

        let snapshot = Snapshot::load(&lake).await.unwrap();
        let dates: Vec<_> = snapshot
            .files(EVENTS)
            .iter()
            .map(|f| f.date.clone().unwrap())
            .collect();
        assert_eq!(dates, ["2026-10-05", "2026-10-06", "2026-10-07"]);

        // Again: nothing new, and no new commit.
        let again = ingest(
            &lake,
            &["memory://ingest-src/landing/".to_string()],
            &IngestOptions::default(),
            None,
        )
        .await
        .unwrap();
        assert_eq!(
            (
                again.stored,
                again.duplicate,
                again.quarantined,
                again.quarantined_new
            ),
            (0, 3, 1, 0)
        );
        assert_eq!(again.version, None);
        assert_eq!(Snapshot::load(&lake).await.unwrap().version(), 1);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn tiny_budgets_split_files_but_lose_nothing() {
        let source = Lake::open("memory://budget-src").unwrap();
        let body: String = (0..500)
            .map(|i| line(&format!("e{i}"), 1 + (i % 9) as u32) + "\n")
            .collect();
        source
            .store()
            .put(&source.path("e.ndjson"), body.into_bytes().into())
            .await
            .unwrap();
        let lake = Lake::open("memory://budget-lake").unwrap();
        let options = IngestOptions {
            batch_rows: 7,
            memory_budget: 1,
        };
        let s = ingest(
            &lake,
            &["memory://budget-src/e.ndjson".to_string()],
            &options,
            None,
        )
        .await
        .unwrap();
        assert_eq!(s.stored, 500);
        let snapshot = Snapshot::load(&lake).await.unwrap();
        let files = snapshot.files(EVENTS);
        assert!(
            files.len() > 9,
            "files were finished early: {}",
            files.len()
        );
        assert_eq!(files.iter().map(|f| f.rows).sum::<u64>(), 500);
        let index = Index::load(&lake, &snapshot).await.unwrap();
        assert_eq!(index.events.len(), 500);
    }

    #[test]
    fn raw_text_keeps_invalid_bytes_visible() {
        assert_eq!(raw_text(b"ok \xff\xfe"), "ok \\xFF\\xFE");
        assert_eq!(raw_text("é".as_bytes()), "é");
    }

    #[test]
    fn ids_sort_by_time_and_differ() {
        let a = new_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_id();
        assert!(a < b, "{a} {b}");
    }
}
