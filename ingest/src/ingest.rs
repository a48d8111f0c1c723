//! The ingest run: expand sources, take the writer lock, stream, commit.
//!
//! Duplicates follow SPEC section 1: validation comes first, so a bad line
//! never claims an `event_id`; then a valid event whose id is stored already
//! (in the lake, or earlier in this ingest) is an exact repeat (`duplicate`,
//! not stored) or a conflicting one (`conflicting_duplicate`, quarantined).
//! A quarantined line is stored once per (source, line number, raw text), so
//! ingesting the same file twice adds nothing to the quarantine either.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, mpsc};

use agentledger_lake::Lake;
use agentledger_lake::error::joined;
use agentledger_lake::index::{
    KeyIndex, READ_AHEAD, event_key, for_each_event, quarantine_key, quarantine_keys, write_run,
};
use agentledger_lake::keyfile::{self, Record};
use agentledger_lake::log::{FileEntry, Snapshot};
use agentledger_lake::observe::EventObserver;
use agentledger_lake::parquet_io::read_columns;
use agentledger_lake::schema::{
    EVENT_INDEX, EVENTS, EVENTS_SCHEMA, QUARANTINE, QUARANTINE_INDEX, QUARANTINE_SCHEMA, RUN_PARTS,
};
use agentledger_lake::writer::{PartitionedWriter, WriterThread};
use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Date32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::compute::{concat_batches, filter_record_batch};
use arrow::datatypes::{Int64Type, SchemaRef};
use futures::StreamExt;
use serde::Serialize;
use xxhash_rust::xxh3::xxh3_64;

use crate::batch::{RowBuilder, Sizes};
use crate::dedup::Bloom;
use crate::error::{Error, Result};
use crate::limits::{Limits, RAW_EXCERPT_BYTES};
use crate::otlp::{OtlpOptions, looks_like_otlp, map_traces, parse_line};
use crate::rebase::{MAX_RESTARTS, Prepared, Rebased};
use crate::source::{Source, expand};
use crate::validate::{EVENT_COLUMNS, Origin, Rejection, Val, validate_into};

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Event index entries an ingest holds before it writes them as a run: 32
/// bytes each, so 32 MB, held while decoding, where a large ingest's memory
/// peaks (2M entries, as `agentledger rebuild` writes, took a 20M-event
/// ingest's peak from 411 MB to 504 MB).
pub const INDEX_RUN_RECORDS: usize = 1 << 20;

/// Tuning knobs of an ingest.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// The most event rows handed to the Parquet writers (and to an
    /// observer) at once, and the quarantine rows buffered before they are.
    pub batch_rows: usize,
    /// Bytes the Parquet writers may buffer before files are finished early.
    pub memory_budget: usize,
    /// Bytes of suspect events (maybe seen before) held before they are
    /// resolved against what is stored.
    pub suspect_budget: usize,
    /// Size of the duplicate filter in bits; `None` sizes it from the lake
    /// and the input (tests set it tiny to force the exact path).
    pub dedup_filter_bits: Option<u64>,
    /// What one line may cost (length, nesting, keys, attribute size); a
    /// line over a limit is quarantined with that limit's reason code.
    /// The default reads overrides from the environment
    /// ([`Limits::from_env`]).
    pub limits: Limits,
    /// What the sources hold: SPEC section-1 NDJSON, OTLP/JSON traces, or
    /// either, told per source by its content.
    pub input: Input,
    /// How OTLP spans are mapped (SPEC section 7).
    pub otlp: OtlpOptions,
    /// Event index entries held before they are written as a run
    /// ([`INDEX_RUN_RECORDS`]; tests set it tiny to have runs written
    /// while the ingest goes on).
    pub index_run_records: usize,
}

/// What a source holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Input {
    /// Told per source by its first bytes (after decompression): OTLP/JSON
    /// when its first object starts with `resourceSpans`, else NDJSON.
    #[default]
    Auto,
    /// SPEC section-1 events, one JSON object per line.
    Ndjson,
    /// OTLP/JSON traces, one `TracesData` object per line (SPEC section 7).
    Otlp,
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self {
            batch_rows: 16 * 1024,
            memory_budget: 96 * 1024 * 1024,
            suspect_budget: 64 * 1024 * 1024,
            dedup_filter_bits: None,
            limits: Limits::from_env(),
            input: Input::Auto,
            otlp: OtlpOptions::default(),
            index_run_records: INDEX_RUN_RECORDS,
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
    /// For an OTLP/JSON source: its spans and what they gave.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp: Option<OtlpCounts>,
}

/// What the spans of OTLP/JSON sources gave (SPEC section 7). For such a
/// source, `read` counts the events derived plus the lines that were not
/// OTLP/JSON at all (quarantined as `invalid_otlp`), so `read = stored +
/// duplicate + quarantined` holds as for NDJSON.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct OtlpCounts {
    /// Spans read.
    pub spans_read: u64,
    /// Spans that gave no event: not GenAI spans, or GenAI operations that
    /// map to nothing (a nested agent span).
    pub spans_skipped: u64,
    /// Events derived from the spans (each then stored, duplicate or
    /// quarantined like a line).
    pub events_derived: u64,
}

impl OtlpCounts {
    fn add(&mut self, other: OtlpCounts) {
        self.spans_read += other.spans_read;
        self.spans_skipped += other.spans_skipped;
        self.events_derived += other.events_derived;
    }
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
    /// What the spans gave, when a source was OTLP/JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp: Option<OtlpCounts>,
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
    Ok(ingest_observed(lake, sources, options, progress, ())
        .await?
        .0)
}

/// Ingests `sources` into `lake`, handing every stored event to `observer`
/// as it is written and committing the observer's files with the events
/// (see [`EventObserver`]). Returns the observer with the summary.
pub async fn ingest_observed<O: EventObserver + 'static>(
    lake: &Lake,
    sources: &[String],
    options: &IngestOptions,
    progress: Option<Arc<dyn Progress>>,
    observer: O,
) -> Result<(IngestSummary, O)> {
    let files = expand(sources).await?;
    // No lock: the ingest prepares against a snapshot and commits with a
    // conditional put; when another writer committed first it rebases onto
    // what they did (see [`crate::rebase`]).
    let mut observer = observer;
    let mut restarts = 0u32;
    loop {
        let (prepared, mut snapshot, returned) =
            prepare(lake, files.clone(), options, progress.clone(), observer).await?;
        observer = returned;
        let mut prepared = match prepared {
            Ok(prepared) => prepared,
            // Nothing new: nothing to commit. Still bring the tables'
            // Delta logs up to date: this is how a re-run of an ingest
            // killed after its commit and before its Delta write ends.
            Err(summary) => {
                agentledger_lake::delta::sync(lake, &snapshot).await?;
                return Ok((summary, observer));
            }
        };
        let mut round = 0u32;
        let why = loop {
            match snapshot.commit(lake, prepared.commit()).await {
                Ok(version) => {
                    prepared.summary.version = Some(version);
                    return Ok((prepared.summary, observer));
                }
                Err(agentledger_lake::Error::CommitConflict { .. }) => {
                    let newer = snapshot.refreshed(lake).await?;
                    let since = newer.since(snapshot.version()).to_vec();
                    round += 1;
                    match prepared.rebase(lake, &since, round).await? {
                        Rebased::Ready => snapshot = newer,
                        Rebased::Restart(why) => break why,
                    }
                }
                Err(e) => return Err(e.into()),
            }
        };
        prepared.discard(lake).await?;
        restarts += 1;
        if restarts > MAX_RESTARTS {
            return Err(Error::Conflict(format!(
                "the ingest started over {MAX_RESTARTS} times because of concurrent writers (last: {why}); nothing was committed, run it again"
            )));
        }
    }
}

/// Decides every line of `files` against the newest snapshot and writes the
/// ingest's files: the commit to make (or, when nothing is new, the
/// summary), the snapshot it stands on, and the observer.
#[allow(clippy::type_complexity)]
pub(crate) async fn prepare<O: EventObserver + 'static>(
    lake: &Lake,
    files: Vec<Source>,
    options: &IngestOptions,
    progress: Option<Arc<dyn Progress>>,
    mut observer: O,
) -> Result<(std::result::Result<Prepared, IngestSummary>, Snapshot, O)> {
    let snapshot = Snapshot::load(lake).await?;
    // Run parts too: an ingest killed after writing its parts file leaves
    // one. Only files older than the orphan grace period go: a younger one
    // may be a concurrent ingest's. Not at every ingest: only when no
    // writer walked for a quarter of that period.
    snapshot
        .remove_orphans_if_due(
            lake,
            &[EVENTS, QUARANTINE, RUN_PARTS, EVENT_INDEX, QUARANTINE_INDEX],
        )
        .await?;
    let index = Index::load(
        lake,
        &snapshot,
        expected_events(&files),
        options.dedup_filter_bits,
    )
    .await?;

    let ingest_id = new_id();
    observer.begin(lake, &snapshot, &ingest_id).await?;
    let job = Job {
        lake: lake.clone(),
        ingest_id: ingest_id.clone(),
        ingested_at: chrono::Utc::now().timestamp_micros(),
        options: options.clone(),
        progress,
        handle: tokio::runtime::Handle::current(),
        workers: decode_threads(),
    };
    let (mut summary, mut files, mut observer) = tokio::task::spawn_blocking(move || {
        let result = job.run(files, index, &mut observer);
        result.map(|(summary, files)| (summary, files, observer))
    })
    .await
    .map_err(|e| Error::Task(e.to_string()))??;
    summary.ingest_id = ingest_id.clone();
    // The decoding and writing threads have ended: what they freed goes
    // back to the system before the run parts and index runs allocate.
    agentledger_lake::memory::release_freed();
    // One after the other, not at once: together they raised the peak
    // memory of a 20M-event ingest from about 480 MB to 570 MB.
    let observed = observer.finish().await?;
    agentledger_lake::memory::release_freed();
    if files.is_empty() {
        return Ok((Err(summary), snapshot, observer));
    }
    // The index runs of what it stores, committed with it: the events'
    // were written as the events were (see `State::records`), the
    // quarantine's are read from its files.
    let quarantined: Vec<FileEntry> = files
        .iter()
        .filter(|f| f.table == QUARANTINE)
        .cloned()
        .collect();
    let runs = agentledger_lake::index::runs_for(lake, &ingest_id, &quarantined).await?;
    files.extend(runs);
    let mut cover = None;
    if let Some(observed) = observed {
        cover = Some(observed.cover);
        files.extend(observed.files);
    }
    let prepared = Prepared {
        id: ingest_id,
        files,
        cover,
        summary,
    };
    Ok((Ok(prepared), snapshot, observer))
}

/// What is stored already: the key indexes of events and quarantine
/// (probed block by block), and for the files they do not cover (and for
/// this ingest's own events) a filter over their ids (exact answers come
/// from those files) and the keys of their quarantined lines.
struct Index {
    events: KeyIndex,
    quarantined: KeyIndex,
    filter: Bloom,
    quarantine: HashSet<u128>,
    /// Keys of lines about to be rejected that the quarantine index holds.
    quarantined_before: HashSet<u128>,
}

impl Index {
    async fn load(
        lake: &Lake,
        snapshot: &Snapshot,
        expected_new: u64,
        filter_bits: Option<u64>,
    ) -> Result<Self> {
        let events = KeyIndex::of(snapshot, EVENTS)?;
        let quarantined = KeyIndex::of(snapshot, QUARANTINE)?;
        let unindexed: u64 = events.unindexed().iter().map(|f| f.rows).sum();
        let mut filter = match filter_bits {
            Some(bits) => Bloom::with_bits(bits),
            None => Bloom::with_expected(unindexed + expected_new),
        };
        for file in events.unindexed() {
            let mut stream = read_columns(lake, file, &["event_id"]).await?;
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                let ids = batch.column(0).as_string::<i32>();
                for id in ids.iter().flatten() {
                    filter.insert(event_key(id));
                }
            }
        }
        let mut quarantine = HashSet::new();
        for file in quarantined.unindexed() {
            quarantine.extend(quarantine_keys(lake, file).await?);
        }
        Ok(Self {
            events,
            quarantined,
            filter,
            quarantine,
            quarantined_before: HashSet::new(),
        })
    }
}

/// Hashing for maps and sets of keys, which are xxh3-128 hashes already.
type KeyHasher = foldhash::fast::FixedState;

/// The keys and content hashes of the events in `file` whose keys are in
/// `wanted`, in file order.
async fn stored_among(
    lake: &Lake,
    file: &FileEntry,
    wanted: &HashSet<u128, KeyHasher>,
) -> agentledger_lake::Result<Vec<(u128, i64)>> {
    let mut found = Vec::new();
    for_each_event(lake, file, |key, hash| {
        if wanted.contains(&key) {
            found.push((key, hash));
        }
    })
    .await?;
    Ok(found)
}

/// The rejection of an event whose id is stored with other content.
fn conflicting(event_id: &str) -> Rejection {
    Rejection {
        code: "conflicting_duplicate",
        message: format!(
            "event_id '{event_id}' is already stored with different content; the event stored first stays"
        ),
        event_id: Some(event_id.to_string()),
    }
}

/// A rough upper bound of the events in the sources, to size the filter:
/// about 150 bytes a line (agent events with their ids and timestamps are
/// rarely shorter; a shorter line only costs a few more suspects), compressed
/// input about 8 times smaller.
fn expected_events(files: &[Source]) -> u64 {
    files
        .iter()
        .map(|f| {
            let name = f.name();
            let factor = if name.ends_with(".gz") || name.ends_with(".zst") {
                8
            } else {
                1
            };
            f.size() * factor / 150
        })
        .sum()
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

/// Batches of new events waiting for the Parquet writer's thread.
const WRITER_QUEUE: usize = 2;

/// How many keys ahead of its insert a key's block of the duplicate
/// filter is prefetched: enough inserts to cover a load from memory.
const PREFETCH_AHEAD: usize = 8;

/// Bytes of input a decoding worker takes at once (whole lines).
const BLOCK_BYTES: usize = 2 << 20;

/// Room past [`BLOCK_BYTES`] in a fresh block, for the line that crosses
/// the block's end.
const BLOCK_SLACK: usize = 256 * 1024;

/// Decoding threads: the machine's cores, or `AGENTLEDGER_INGEST_THREADS`.
fn decode_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    agentledger_lake::retry::env_count("AGENTLEDGER_INGEST_THREADS", "threads", 1, cores as u64)
        as usize
}

/// Whole lines of one source, numbered from `first_line`.
struct Block {
    seq: u64,
    first_line: i64,
    /// Lines in `data`, blank ones included (to size what is built).
    lines: usize,
    data: Vec<u8>,
    /// Set for a line over the length limit: `data` is then only the start
    /// of that one line (at most [`RAW_EXCERPT_BYTES`]), and this is its
    /// full length in bytes (without its line end).
    too_long: Option<u64>,
}

/// What the workers need to know of the ingest.
#[derive(Clone, Copy)]
struct BlockMeta<'a> {
    source: &'a str,
    ingest_id: &'a str,
    ingested_at: i64,
    limits: Limits,
    format: Format,
    otlp: OtlpOptions,
}

/// How the lines of a block are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// SPEC section-1 events.
    Ndjson,
    /// OTLP/JSON objects, each mapped to events.
    Otlp,
    /// Events derived from spans before (a suspect decoded again).
    Derived,
}

/// One block validated: the valid lines as events rows (provenance
/// included) with what deduplication needs, and the rejected lines.
struct Decoded {
    read: u64,
    batch: Option<RecordBatch>,
    keys: Vec<u128>,
    dates: Vec<i32>,
    /// Byte range of each valid row's line in `data`.
    spans: Vec<(usize, usize)>,
    data: Vec<u8>,
    rejections: Vec<(i64, String, Rejection)>,
    /// For an OTLP block: its spans and what they gave.
    otlp: Option<OtlpCounts>,
}

/// Cuts `reader` into blocks of whole lines and sends them in order.
///
/// A line longer than `max_line` bytes (its line end aside) is never held
/// whole: once it is known to be too long, the reader keeps only its first
/// [`RAW_EXCERPT_BYTES`], reads past the rest up to the line end while
/// counting its length, and sends it as a block of its own (see
/// [`Block::too_long`]). So a block holds at most about `BLOCK_BYTES` plus
/// one line of `max_line`, whatever the input.
///
/// The buffers of blocks already used come back on `spare` (see
/// [`Cutter::fresh`]), so that the same few megabytes carry the whole
/// input instead of a new allocation, and its page faults, per block.
fn cut_blocks(
    reader: Box<dyn std::io::BufRead + Send>,
    name: &str,
    max_line: usize,
    tx: &mpsc::SyncSender<Block>,
    spare: &mpsc::Receiver<Vec<u8>>,
) -> Result<()> {
    cut_blocks_of(reader, name, max_line, BLOCK_BYTES, tx, spare)
}

/// [`cut_blocks`] into blocks of at least `block_bytes` (tests vary it).
fn cut_blocks_of(
    mut reader: Box<dyn std::io::BufRead + Send>,
    name: &str,
    max_line: usize,
    block_bytes: usize,
    tx: &mpsc::SyncSender<Block>,
    spare: &mpsc::Receiver<Vec<u8>>,
) -> Result<()> {
    let mut cutter = Cutter {
        tx,
        spare,
        block_bytes,
        seq: 0,
        next_line: 1,
        data: Vec::with_capacity(block_bytes + BLOCK_SLACK),
        lines: 0,
        line_start: 0,
        long: None,
        // One byte more for a CR before the LF, which is not part of a line.
        max_with_cr: max_line.saturating_add(1),
    };
    loop {
        let buf = reader.fill_buf().map_err(|e| Error::Source {
            source_name: name.to_string(),
            reason: format!("read failed after line {}: {e}", cutter.next_line - 1),
        })?;
        if buf.is_empty() {
            break;
        }
        let n = buf.len();
        // Each read is searched once, so a very long line costs no more
        // than a short one per byte.
        let sent = cutter.take(buf);
        reader.consume(n);
        // A closed channel means the consumer failed; it reports why.
        if !sent {
            return Ok(());
        }
    }
    cutter.finish();
    Ok(())
}

/// The state of [`cut_blocks`] between reads.
struct Cutter<'t> {
    tx: &'t mpsc::SyncSender<Block>,
    /// Buffers of blocks already used, to fill again.
    spare: &'t mpsc::Receiver<Vec<u8>>,
    /// A block is sent once it holds this many bytes.
    block_bytes: usize,
    seq: u64,
    /// The number of the first line in `data`.
    next_line: i64,
    /// Whole lines, then the start of the line being read.
    data: Vec<u8>,
    /// Whole lines in `data`.
    lines: i64,
    /// Where the line being read starts in `data`.
    line_start: usize,
    /// The line being read past, when it is over the limit.
    long: Option<LongLine>,
    max_with_cr: usize,
}

/// A line over the length limit, being read past.
struct LongLine {
    /// Its first bytes, at most [`RAW_EXCERPT_BYTES`].
    excerpt: Vec<u8>,
    /// Bytes read so far.
    len: u64,
    /// Whether it is all white space so far (a blank line is skipped).
    blank: bool,
    /// Whether its last byte so far is a CR.
    ends_in_cr: bool,
}

impl LongLine {
    fn add(&mut self, bytes: &[u8]) {
        let room = RAW_EXCERPT_BYTES.saturating_sub(self.excerpt.len());
        self.excerpt
            .extend_from_slice(&bytes[..room.min(bytes.len())]);
        self.len += bytes.len() as u64;
        self.blank = self.blank && bytes.iter().all(u8::is_ascii_whitespace);
        if let Some(&last) = bytes.last() {
            self.ends_in_cr = last == b'\r';
        }
    }
}

impl Cutter<'_> {
    /// An empty buffer for the next block: a used one when one has come
    /// back and is of a block's size (a buffer that grew for a long line,
    /// or one of another use, is dropped), else a new one.
    fn fresh(&self) -> Vec<u8> {
        let usual = self.block_bytes + BLOCK_SLACK;
        while let Ok(mut used) = self.spare.try_recv() {
            if (usual..=2 * usual).contains(&used.capacity()) {
                used.clear();
                return used;
            }
        }
        Vec::with_capacity(usual)
    }

    /// Takes one read's bytes; false once the consumer is gone.
    fn take(&mut self, buf: &[u8]) -> bool {
        let mut pos = 0;
        while pos < buf.len() {
            let rest = &buf[pos..];
            if let Some(long) = &mut self.long {
                let Some(i) = memchr::memchr(b'\n', rest) else {
                    long.add(rest);
                    return true;
                };
                long.add(&rest[..i]);
                pos += i + 1;
                if !self.end_long_line() {
                    return false;
                }
                continue;
            }
            // The run of whole lines within the limit, copied at once.
            let mut partial = self.data.len() - self.line_start;
            let (mut whole, mut lines, mut over) = (0, 0, false);
            for i in memchr::memchr_iter(b'\n', rest) {
                if partial + (i - whole) > self.max_with_cr {
                    over = true;
                    break;
                }
                partial = 0;
                whole = i + 1;
                lines += 1;
                if self.data.len() + whole >= self.block_bytes {
                    break;
                }
            }
            if whole > 0 {
                self.data.extend_from_slice(&rest[..whole]);
                pos += whole;
                self.lines += lines;
                self.line_start = self.data.len();
                if self.data.len() >= self.block_bytes && !self.send_lines() {
                    return false;
                }
                continue;
            }
            if !over && partial + rest.len() <= self.max_with_cr {
                // The start of a line that may still fit. A full block goes
                // now, without it, rather than wait for its end.
                self.data.extend_from_slice(rest);
                return self.data.len() < self.block_bytes || self.send_lines();
            }
            // Over the limit: keep its start, read past the rest of it.
            let mut long = LongLine {
                excerpt: Vec::new(),
                len: 0,
                blank: true,
                ends_in_cr: false,
            };
            long.add(&self.data[self.line_start..]);
            self.data.truncate(self.line_start);
            self.long = Some(long);
        }
        true
    }

    /// Sends the whole lines read so far, if any, keeping the start of the
    /// line being read for the next block; false once the consumer is gone.
    fn send_lines(&mut self) -> bool {
        if self.line_start == 0 {
            return true;
        }
        let mut next = self.fresh();
        next.extend_from_slice(&self.data[self.line_start..]);
        self.data.truncate(self.line_start);
        let block = Block {
            seq: self.seq,
            first_line: self.next_line,
            lines: self.lines as usize,
            data: std::mem::replace(&mut self.data, next),
            too_long: None,
        };
        self.seq += 1;
        self.next_line += self.lines;
        self.lines = 0;
        self.line_start = 0;
        self.tx.send(block).is_ok()
    }

    /// Ends the long line being read past: sends the lines before it, then
    /// it as a block of its own (a blank one is kept as an empty line, for
    /// the numbering).
    fn end_long_line(&mut self) -> bool {
        let long = self.long.take().expect("a long line is being read");
        if long.blank {
            self.data.push(b'\n');
            self.lines += 1;
            self.line_start = self.data.len();
            return true;
        }
        if !self.send_lines() {
            return false;
        }
        let len = long.len - u64::from(long.ends_in_cr);
        let mut excerpt = long.excerpt;
        if excerpt.len() as u64 > len {
            excerpt.truncate(len as usize); // a line end's CR, when all fit
        } else {
            drop_cut_char(&mut excerpt);
        }
        let block = Block {
            seq: self.seq,
            first_line: self.next_line,
            lines: 1,
            data: excerpt,
            too_long: Some(len),
        };
        self.seq += 1;
        self.next_line += 1;
        self.tx.send(block).is_ok()
    }

    /// Sends what is left at the end of the input (a last line may lack its
    /// line end).
    fn finish(mut self) {
        // (A blank long last line leaves an empty line, sent below.)
        if self.long.is_some() && !self.end_long_line() {
            return;
        }
        if self.line_start < self.data.len() {
            // The last line, without a line end: a whole line all the same.
            self.lines += 1;
            self.line_start = self.data.len();
        }
        self.send_lines();
    }
}

/// Drops a UTF-8 sequence cut off at the end of `bytes` (an excerpt), so the
/// stored raw text does not end in escaped halves of a character.
fn drop_cut_char(bytes: &mut Vec<u8>) {
    // A sequence is at most 4 bytes: its lead byte is among the last 4.
    let tail = bytes.len().saturating_sub(4)..bytes.len();
    let Some(lead) = tail.rev().find(|&i| bytes[i] & 0xC0 != 0x80) else {
        return;
    };
    let needed = match bytes[lead] {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => 1,
    };
    if bytes.len() - lead < needed {
        bytes.truncate(lead);
    }
}

/// The Int64 column `name` of an events batch.
fn column_i64<'a>(batch: &'a RecordBatch, name: &str) -> &'a Int64Array {
    batch
        .column_by_name(name)
        .expect("an events batch")
        .as_primitive::<Int64Type>()
}

fn column_str<'a>(batch: &'a RecordBatch, name: &str) -> &'a StringArray {
    batch
        .column_by_name(name)
        .expect("an events batch")
        .as_string::<i32>()
}

/// Validates every line of a block: an NDJSON line as an event, an OTLP
/// line as the events its spans map to (SPEC section 7). `like` is what
/// the worker's last block built (to size this one's columns), and is
/// set to what this one built.
fn decode_block(block: Block, meta: BlockMeta<'_>, like: &mut Sizes) -> Result<Decoded> {
    let data = block.data;
    let mut out = Decoded {
        read: 0,
        batch: None,
        keys: Vec::new(),
        dates: Vec::new(),
        spans: Vec::new(),
        data: Vec::new(),
        rejections: Vec::new(),
        otlp: (meta.format == Format::Otlp).then(OtlpCounts::default),
    };
    if let Some(len) = block.too_long {
        out.read = 1;
        let rejection = Rejection {
            code: "line_too_long",
            message: format!(
                "line is {len} bytes long, over the limit of {} bytes; it was not read whole, and its raw text here is truncated to its first {} bytes",
                meta.max_line(),
                data.len()
            ),
            event_id: None,
        };
        out.rejections
            .push((block.first_line, raw_text(&data), rejection));
        return Ok(out);
    }
    // The non-blank lines: number, start, end (without a CR).
    let mut lines: Vec<(i64, usize, usize)> = Vec::with_capacity(block.lines);
    let mut line_no = block.first_line - 1;
    let mut start = 0;
    while start < data.len() {
        let end = memchr::memchr(b'\n', &data[start..]).map_or(data.len(), |i| start + i);
        let line_start = start;
        start = end + 1;
        line_no += 1;
        let mut line = &data[line_start..end];
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        lines.push((line_no, line_start, line_start + line.len()));
    }
    match meta.format {
        Format::Ndjson | Format::Derived => {
            let origin = match meta.format {
                Format::Derived => Origin::Span,
                _ => Origin::Line,
            };
            out.read = lines.len() as u64;
            validate_rows(&mut out, &data, &lines, origin, None, meta, like)?;
            out.data = data;
        }
        Format::Otlp => {
            let mut counts = OtlpCounts::default();
            let mut derived: Vec<u8> = Vec::new();
            let mut rows: Vec<(i64, usize, usize)> = Vec::new();
            let mut labels: Vec<(String, String)> = Vec::new();
            for (no, from, to) in lines {
                let line = &data[from..to];
                match parse_line(line) {
                    Err(reason) => {
                        out.read += 1;
                        let rejection = Rejection {
                            code: "invalid_otlp",
                            message: reason,
                            event_id: None,
                        };
                        out.rejections.push((no, raw_text(line), rejection));
                    }
                    Ok(traces) => {
                        let mapped = map_traces(&traces, meta.otlp);
                        counts.spans_read += mapped.spans;
                        counts.spans_skipped += mapped.skipped;
                        counts.events_derived += mapped.events.len() as u64;
                        for event in mapped.events {
                            let at = derived.len();
                            derived.extend_from_slice(&event.json);
                            rows.push((no, at, derived.len()));
                            derived.push(b'\n');
                            labels.push((event.trace_id, event.span_id));
                        }
                    }
                }
            }
            out.read += rows.len() as u64;
            validate_rows(
                &mut out,
                &derived,
                &rows,
                Origin::Span,
                Some(&labels),
                meta,
                like,
            )?;
            out.data = derived;
            out.otlp = Some(counts);
        }
    }
    Ok(out)
}

/// Validates the lines `rows` (number, start, end in `data`) into
/// `out`'s events batch and rejections. `labels` names, for events derived
/// from spans, the trace and span each came from (put before a rejection's
/// message in place of a line number). What is built is sized for every
/// row valid, with text like `like`'s (which it then updates).
fn validate_rows(
    out: &mut Decoded,
    data: &[u8],
    rows: &[(i64, usize, usize)],
    origin: Origin,
    labels: Option<&[(String, String)]>,
    meta: BlockMeta<'_>,
    like: &mut Sizes,
) -> Result<()> {
    let n = rows.len();
    let mut builder = RowBuilder::with_capacity(Arc::clone(&EVENT_COLUMNS_SCHEMA), n, like);
    let mut lines: Vec<i64> = Vec::with_capacity(n);
    let mut hashes: Vec<i64> = Vec::with_capacity(n);
    out.keys.reserve(n);
    out.dates.reserve(n);
    out.spans.reserve(n);
    // One vector of values, filled again for each line.
    let mut spare = Vec::new();
    for (i, &(line_no, from, to)) in rows.iter().enumerate() {
        let line = &data[from..to];
        match validate_into(line, &meta.limits, origin, std::mem::take(&mut spare)) {
            Ok(mut event) => {
                out.keys.push(event_key(&event.event_id));
                hashes.push(event.content_hash as i64);
                out.dates
                    .push(event.ts_micros.div_euclid(MICROS_PER_DAY) as i32);
                lines.push(line_no);
                out.spans.push((from, to));
                let mut values = std::mem::take(&mut event.values);
                builder.push(values.drain(..));
                spare = values;
            }
            Err(mut rejection) => {
                if let Some((trace, span)) = labels.map(|l| &l[i]) {
                    rejection.message = format!("trace {trace} span {span}: {}", rejection.message);
                }
                out.rejections.push((line_no, raw_text(line), rejection));
            }
        }
    }
    let n = out.keys.len();
    if n > 0 {
        *like = builder.sizes();
        let events = builder.finish()?;
        let mut columns = events.columns().to_vec();
        columns.push(repeated(meta.source, n));
        columns.push(Arc::new(Int64Array::from(lines)));
        columns.push(repeated(meta.ingest_id, n));
        columns.push(Arc::new(
            TimestampMicrosecondArray::from(vec![meta.ingested_at; n]).with_timezone("UTC"),
        ));
        columns.push(Arc::new(Int64Array::from(hashes)));
        out.batch = Some(RecordBatch::try_new(Arc::clone(&EVENTS_SCHEMA), columns)?);
    }
    Ok(())
}

/// Arrays of one value repeated, kept by a decoding thread: [`repeated`].
const REPEATED_KEPT: usize = 4;

thread_local! {
    static REPEATED: RefCell<Vec<StringArray>> = const { RefCell::new(Vec::new()) };
}

/// `value` repeated `n` times (`n` > 0). Every row of a block has the same
/// source and ingest id; rather than copy them into each block's batch
/// (about 100 bytes a row), each decoding thread keeps an array of them a
/// little longer than its blocks and hands out a slice of it, which shares
/// its buffers.
fn repeated(value: &str, n: usize) -> ArrayRef {
    REPEATED.with(|kept| {
        let mut kept = kept.borrow_mut();
        if let Some(array) = kept.iter().find(|a| a.len() >= n && a.value(0) == value) {
            return Arc::new(array.slice(0, n)) as ArrayRef;
        }
        kept.retain(|a| a.value(0) != value);
        if kept.len() == REPEATED_KEPT {
            kept.remove(0);
        }
        // Room for blocks somewhat larger than this one.
        let array = StringArray::from_iter_values(std::iter::repeat_n(value, n + n / 4));
        let slice = array.slice(0, n);
        kept.push(array);
        Arc::new(slice)
    })
}

impl BlockMeta<'_> {
    /// The longest line this block's format allows.
    fn max_line(&self) -> usize {
        match self.format {
            Format::Otlp => self.limits.max_otlp_line_bytes,
            Format::Ndjson | Format::Derived => self.limits.max_line_bytes,
        }
    }
}

/// The events schema without its provenance columns: what validation fills.
static EVENT_COLUMNS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(
        EVENTS_SCHEMA
            .project(&(0..*EVENT_COLUMNS).collect::<Vec<_>>())
            .expect("in range"),
    )
});

struct Job {
    lake: Lake,
    ingest_id: String,
    ingested_at: i64,
    options: IngestOptions,
    progress: Option<Arc<dyn Progress>>,
    handle: tokio::runtime::Handle,
    /// Decoding threads (read once, not per source).
    workers: usize,
}

/// A valid event whose id the filter may have seen: resolved exactly at the
/// end of the ingest (or when the suspects outgrow their budget). Only the
/// line is kept; a suspect that proves new is validated again to store it.
struct Suspect {
    source: usize,
    line: i64,
    key: u128,
    hash: i64,
    event_id: String,
    raw: String,
}

/// The mutable state of one ingest run.
struct State<'o> {
    index: Index,
    observer: &'o mut dyn EventObserver,
    event_writer: WriterThread,
    quarantine: RowBuilder,
    quarantine_writer: PartitionedWriter,
    quarantine_date: i32,
    suspects: Vec<Suspect>,
    suspect_bytes: usize,
    /// The event index entries of the events handed to the writer and not
    /// yet written as a run: taken as the events are stored, so that
    /// neither the suspects' check nor the index reads this ingest's files
    /// back. A run is written once `index_run_records` are held.
    records: Vec<Record>,
    /// The event index runs written so far, and how many.
    index_runs: Vec<FileEntry>,
    run_count: u32,
    sources: Vec<SourceSummary>,
    reasons: BTreeMap<String, u64>,
    quarantined_new: u64,
}

impl Job {
    fn run(
        self,
        files: Vec<Source>,
        index: Index,
        observer: &mut dyn EventObserver,
    ) -> Result<(IngestSummary, Vec<FileEntry>)> {
        let mut st = State {
            index,
            observer,
            event_writer: WriterThread::spawn(
                PartitionedWriter::new(
                    &self.lake,
                    EVENTS,
                    Arc::clone(&EVENTS_SCHEMA),
                    &self.ingest_id,
                    self.options.memory_budget,
                ),
                self.handle.clone(),
                WRITER_QUEUE,
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
            suspects: Vec::new(),
            suspect_bytes: 0,
            records: Vec::with_capacity(
                (self.options.index_run_records as u64).min(expected_events(&files)) as usize,
            ),
            index_runs: Vec::new(),
            run_count: 0,
            sources: Vec::with_capacity(files.len()),
            reasons: BTreeMap::new(),
            quarantined_new: 0,
        };
        let total_bytes: u64 = files.iter().map(Source::size).sum();
        if let Some(p) = &self.progress {
            p.start(total_bytes);
        }
        let counter = Arc::new(AtomicU64::new(0));
        for (i, source) in files.iter().enumerate() {
            st.sources.push(SourceSummary {
                source: source.name(),
                ..Default::default()
            });
            self.read_source(i, source, &mut st, &counter)?;
        }
        if let Some(p) = &self.progress {
            p.update(counter.load(Ordering::Relaxed));
            p.finish();
        }
        // The reading and decoding threads have ended: the blocks and
        // batches they freed go back to the system before the suspects are
        // resolved and every open file is finished (the peak of a 20M-event
        // ingest was there, with that memory still held).
        agentledger_lake::memory::release_freed();
        self.resolve_suspects(&mut st)?;
        self.flush_quarantine(&mut st)?;
        self.write_index_run(&mut st)?;
        let mut written = st.event_writer.finish()?;
        written.extend(self.handle.block_on(st.quarantine_writer.finish())?);
        written.append(&mut st.index_runs);

        let mut summary = IngestSummary {
            quarantine_reasons: st.reasons,
            quarantined_new: st.quarantined_new,
            ..Default::default()
        };
        for s in &st.sources {
            summary.read += s.read;
            summary.stored += s.stored;
            summary.duplicate += s.duplicate;
            summary.quarantined += s.quarantined;
            if let Some(counts) = s.otlp {
                summary.otlp.get_or_insert_default().add(counts);
            }
        }
        summary.sources = st.sources;
        Ok((summary, written))
    }

    /// Reads one source through the decoding pipeline: a reader thread cuts
    /// the input into blocks of whole lines, worker threads validate blocks
    /// into Arrow batches in parallel, and this thread takes the results in
    /// input order to deduplicate and write them, so every decision is the
    /// same as reading line by line.
    fn read_source(
        &self,
        index: usize,
        source: &Source,
        st: &mut State,
        counter: &Arc<AtomicU64>,
    ) -> Result<()> {
        let name = source.name();
        let mut reader = source.open(&self.handle, Arc::clone(counter))?;
        let format = match self.options.input {
            Input::Ndjson => Format::Ndjson,
            Input::Otlp => Format::Otlp,
            Input::Auto => {
                let start = reader.fill_buf().map_err(|e| Error::Source {
                    source_name: name.clone(),
                    reason: e.to_string(),
                })?;
                if looks_like_otlp(start) {
                    Format::Otlp
                } else {
                    Format::Ndjson
                }
            }
        };
        // An OTLP source is one with OTLP counts (how its suspects are
        // decoded again, below).
        if format == Format::Otlp {
            st.sources[index].otlp = Some(OtlpCounts::default());
        }
        let workers = self.workers;
        let meta = BlockMeta {
            source: &name,
            ingest_id: &self.ingest_id,
            ingested_at: self.ingested_at,
            limits: self.options.limits,
            format,
            otlp: self.options.otlp,
        };
        std::thread::scope(|scope| -> Result<()> {
            let (block_tx, block_rx) = mpsc::sync_channel::<Block>(workers);
            let block_rx = Arc::new(Mutex::new(block_rx));
            let (out_tx, out_rx) = mpsc::sync_channel::<(u64, Result<Decoded>)>(workers);
            // Blocks' buffers, once taken, go back to the reader. At most
            // as many as are in flight at once, so unbounded is bounded.
            let (spare_tx, spare_rx) = mpsc::channel::<Vec<u8>>();
            let read_name = name.clone();
            let max_line = meta.max_line();
            let reading =
                scope.spawn(move || cut_blocks(reader, &read_name, max_line, &block_tx, &spare_rx));
            for _ in 0..workers {
                let rx = Arc::clone(&block_rx);
                let tx = out_tx.clone();
                scope.spawn(move || {
                    let mut like = Sizes::default();
                    loop {
                        let next = rx.lock().map(|r| r.recv());
                        let Ok(Ok(block)) = next else { break };
                        let seq = block.seq;
                        if tx
                            .send((seq, decode_block(block, meta, &mut like)))
                            .is_err()
                        {
                            break;
                        }
                    }
                });
            }
            drop(out_tx);
            let mut pending: BTreeMap<u64, Result<Decoded>> = BTreeMap::new();
            let mut next = 0u64;
            for (seq, decoded) in out_rx.iter() {
                pending.insert(seq, decoded);
                while let Some(decoded) = pending.remove(&next) {
                    next += 1;
                    let mut decoded = decoded?;
                    let data = std::mem::take(&mut decoded.data);
                    self.take_block(index, decoded, &data, st)?;
                    // The reader may be done already: then it is dropped.
                    let _ = spare_tx.send(data);
                    if let Some(p) = &self.progress {
                        p.update(counter.load(Ordering::Relaxed));
                    }
                }
            }
            reading
                .join()
                .map_err(|_| Error::Task("reader thread panicked".into()))??;
            Ok(())
        })
    }

    /// Deduplicates one decoded block (its lines' bytes in `data`) and hands
    /// its new events to the writers.
    fn take_block(&self, index: usize, d: Decoded, data: &[u8], st: &mut State) -> Result<()> {
        st.sources[index].read += d.read;
        if let (Some(total), Some(block)) = (&mut st.sources[index].otlp, d.otlp) {
            total.add(block);
        }
        // Stored before this ingest: the index answers exactly.
        let rows = d.batch.as_ref().map_or(0, RecordBatch::num_rows);
        let stored = self
            .handle
            .block_on(st.index.events.lookup(&self.lake, &d.keys[..rows]))?;
        let mut rejections = d.rejections;
        let mut keep = Vec::with_capacity(rows);
        if let Some(batch) = &d.batch {
            let ids = batch.column(0).as_string::<i32>();
            let hashes = column_i64(batch, "content_hash");
            let lines = column_i64(batch, "line");
            for i in 0..rows {
                match stored.get(&d.keys[i]) {
                    None => keep.push(true),
                    Some(found) if found.hash == hashes.value(i) => {
                        keep.push(false);
                        st.sources[index].duplicate += 1;
                    }
                    Some(_) => {
                        keep.push(false);
                        let (start, end) = d.spans[i];
                        rejections.push((
                            lines.value(i),
                            String::from_utf8_lossy(&data[start..end]).into_owned(),
                            conflicting(ids.value(i)),
                        ));
                    }
                }
            }
        }
        let name = st.sources[index].source.clone();
        let keys: Vec<u128> = rejections
            .iter()
            .map(|(line, raw, _)| quarantine_key(&name, *line, raw))
            .collect();
        self.check_quarantined(st, keys)?;
        // In input order, as if read line by line.
        rejections.sort_by_key(|(line, _, _)| *line);
        for (line, raw, rejection) in rejections {
            self.reject(st, index, line, raw, rejection)?;
        }
        let Some(batch) = d.batch else {
            return Ok(());
        };
        let ids = batch.column(0).as_string::<i32>();
        let tenants = column_str(&batch, "tenant_id");
        let runs = column_str(&batch, "run_id");
        let lines = column_i64(&batch, "line");
        let hashes = column_i64(&batch, "content_hash");
        for (i, kept) in keep.iter_mut().enumerate() {
            // The filter's block of a later key is loaded while this one
            // is added.
            if let Some(&ahead) = d.keys[..rows].get(i + PREFETCH_AHEAD) {
                st.index.filter.prefetch(ahead);
            }
            if !*kept {
                continue;
            }
            let key = d.keys[i];
            if st.index.filter.insert(key) {
                let (start, end) = d.spans[i];
                let raw = String::from_utf8_lossy(&data[start..end]).into_owned();
                st.observer.hold(tenants.value(i), runs.value(i));
                let event_id = ids.value(i).to_string();
                // Only the line and the id are kept (not the decoded row).
                st.suspect_bytes += raw.len() + event_id.len() + std::mem::size_of::<Suspect>();
                st.suspects.push(Suspect {
                    source: index,
                    line: lines.value(i),
                    key,
                    hash: hashes.value(i),
                    event_id,
                    raw,
                });
                *kept = false;
            }
        }
        let kept = keep.iter().filter(|k| **k).count();
        st.sources[index].stored += kept as u64;
        let entries = keep
            .iter()
            .enumerate()
            .filter(|(_, k)| **k)
            .map(|(i, _)| Record {
                key: d.keys[i],
                hash: hashes.value(i),
                date: d.dates[i],
            });
        self.index_stored(st, entries)?;
        if kept > 0 {
            let (batch, dates) = if kept == batch.num_rows() {
                (batch, d.dates)
            } else {
                let mask = BooleanArray::from(keep.clone());
                let dates: Vec<i32> = d
                    .dates
                    .iter()
                    .zip(&keep)
                    .filter(|(_, k)| **k)
                    .map(|(d, _)| *d)
                    .collect();
                (filter_record_batch(&batch, &mask)?, dates)
            };
            self.write_events(st, &batch, &dates)?;
        }
        if st.suspect_bytes >= self.options.suspect_budget {
            self.resolve_suspects(st)?;
        }
        Ok(())
    }

    /// Takes the index entries of events handed to the writer (see
    /// [`State::records`]).
    fn index_stored(&self, st: &mut State, entries: impl Iterator<Item = Record>) -> Result<()> {
        for record in entries {
            st.records.push(record);
            if st.records.len() >= self.options.index_run_records {
                self.write_index_run(st)?;
            }
        }
        Ok(())
    }

    /// Writes the entries held as an event index run.
    fn write_index_run(&self, st: &mut State) -> Result<()> {
        if st.records.is_empty() {
            return Ok(());
        }
        let run = self.handle.block_on(write_run(
            &self.lake,
            EVENT_INDEX,
            &self.ingest_id,
            &mut st.run_count,
            &mut st.records,
        ))?;
        st.index_runs.push(run);
        Ok(())
    }

    /// Hands new events to the writers, `batch_rows` at a time; row `i`
    /// belongs to the partition `dates[i]`.
    fn write_events(&self, st: &mut State, batch: &RecordBatch, dates: &[i32]) -> Result<()> {
        let step = self.options.batch_rows.max(1);
        for offset in (0..batch.num_rows()).step_by(step) {
            let len = step.min(batch.num_rows() - offset);
            let dates = Date32Array::from(dates[offset..offset + len].to_vec());
            let slice = batch.slice(offset, len);
            st.observer.observe(&slice)?;
            st.event_writer.write(slice, dates)?;
        }
        Ok(())
    }

    /// Looks up, in the quarantine index, the keys of lines about to be
    /// rejected, so that [`Job::reject`] knows which were quarantined before.
    fn check_quarantined(&self, st: &mut State, keys: Vec<u128>) -> Result<()> {
        if st.index.quarantined.runs() == 0 || keys.is_empty() {
            return Ok(());
        }
        let found = self
            .handle
            .block_on(st.index.quarantined.lookup(&self.lake, &keys))?;
        st.index.quarantined_before.extend(found.into_keys());
        Ok(())
    }

    fn reject(
        &self,
        st: &mut State,
        source: usize,
        line: i64,
        raw: String,
        r: Rejection,
    ) -> Result<()> {
        st.sources[source].quarantined += 1;
        *st.reasons.entry(r.code.to_string()).or_default() += 1;
        let name = &st.sources[source].source;
        let key = quarantine_key(name, line, &raw);
        if !st.index.quarantined_before.contains(&key) && st.index.quarantine.insert(key) {
            st.quarantined_new += 1;
            st.quarantine.push([
                Some(Val::Str(self.ingest_id.as_str().into())),
                Some(Val::Ts(self.ingested_at)),
                Some(Val::Str(name.as_str().into())),
                Some(Val::Int(line)),
                Some(Val::Str(r.code.into())),
                Some(Val::Str(r.message.into())),
                r.event_id.map(|id| Val::Str(id.into())),
                Some(Val::Str(raw.into())),
            ]);
            if st.quarantine.len() >= self.options.batch_rows {
                self.flush_quarantine(st)?;
            }
        }
        Ok(())
    }

    /// Decides every pending suspect exactly, in input order: an id stored
    /// before (in the lake, earlier in this ingest, or by an earlier suspect)
    /// makes it a duplicate or a conflicting duplicate; otherwise it is new.
    /// This ingest's own events are looked up in its index entries (the
    /// runs written so far and those held), not read back.
    fn resolve_suspects(&self, st: &mut State) -> Result<()> {
        if st.suspects.is_empty() {
            return Ok(());
        }
        st.suspect_bytes = 0;
        let mut stored: HashMap<u128, Option<i64>, KeyHasher> =
            st.suspects.iter().map(|s| (s.key, None)).collect();
        // Files the lake's index does not cover (from binaries older than
        // the index) are read, READ_AHEAD at once on the runtime's threads;
        // what they found is taken in file order, so the first stored copy
        // of an id is the one kept. An id they hold is in the filter, so
        // this ingest never stored it.
        let unindexed = st.index.events.unindexed().to_vec();
        if !unindexed.is_empty() {
            let wanted: Arc<HashSet<u128, KeyHasher>> = Arc::new(stored.keys().copied().collect());
            self.handle.block_on(async {
                let mut found = futures::stream::iter(unindexed)
                    .map(|file| {
                        let (lake, wanted) = (self.lake.clone(), Arc::clone(&wanted));
                        joined(
                            tokio::spawn(async move { stored_among(&lake, &file, &wanted).await }),
                            "reading back stored events",
                        )
                    })
                    .buffered(READ_AHEAD);
                while let Some(hits) = found.next().await {
                    for (key, hash) in hits? {
                        if let Some(slot) = stored.get_mut(&key) {
                            slot.get_or_insert(hash);
                        }
                    }
                }
                Ok::<_, Error>(())
            })?;
        }
        // This ingest stores an id once, so the order of its runs and held
        // entries does not matter.
        let mut keys: Vec<u128> = stored.keys().copied().collect();
        keys.sort_unstable();
        for run in &st.index_runs {
            let found = self
                .handle
                .block_on(keyfile::probe(&self.lake, &run.path, run.size, &keys))?;
            for (key, record) in keys.iter().zip(found) {
                if let (Some(record), Some(slot)) = (record, stored.get_mut(key)) {
                    slot.get_or_insert(record.hash);
                }
            }
        }
        for record in &st.records {
            if let Some(slot) = stored.get_mut(&record.key) {
                slot.get_or_insert(record.hash);
            }
        }
        let mut new_batches = Vec::new();
        let mut new_dates = Vec::new();
        let mut new_entries = Vec::new();
        let mut conflicts = Vec::new();
        for s in std::mem::take(&mut st.suspects) {
            let slot = stored.get_mut(&s.key).expect("every suspect has a slot");
            match *slot {
                Some(h) if h == s.hash => st.sources[s.source].duplicate += 1,
                Some(_) => {
                    let rejection = conflicting(&s.event_id);
                    conflicts.push((s.source, s.line, s.raw, rejection));
                }
                None => {
                    *slot = Some(s.hash);
                    st.sources[s.source].stored += 1;
                    // Decoded again as a block of its one line: the same
                    // row, provenance and date as when it was read.
                    let name = st.sources[s.source].source.clone();
                    let block = Block {
                        seq: 0,
                        first_line: s.line,
                        lines: 1,
                        data: s.raw.into_bytes(),
                        too_long: None,
                    };
                    // A suspect from an OTLP source is its derived event.
                    let format = if st.sources[s.source].otlp.is_some() {
                        Format::Derived
                    } else {
                        Format::Ndjson
                    };
                    let meta = BlockMeta {
                        source: &name,
                        ingest_id: &self.ingest_id,
                        ingested_at: self.ingested_at,
                        limits: self.options.limits,
                        format,
                        otlp: self.options.otlp,
                    };
                    let d = decode_block(block, meta, &mut Sizes::default())?;
                    new_entries.push(Record {
                        key: s.key,
                        hash: s.hash,
                        date: d.dates[0],
                    });
                    new_batches.push(d.batch.expect("a suspect was valid when read"));
                    new_dates.extend(d.dates);
                }
            }
        }
        let keys: Vec<u128> = conflicts
            .iter()
            .map(|(source, line, raw, _)| quarantine_key(&st.sources[*source].source, *line, raw))
            .collect();
        self.check_quarantined(st, keys)?;
        for (source, line, raw, rejection) in conflicts {
            self.reject(st, source, line, raw, rejection)?;
        }
        if !new_batches.is_empty() {
            let batch = concat_batches(&EVENTS_SCHEMA, &new_batches)?;
            self.index_stored(st, new_entries.into_iter())?;
            self.write_events(st, &batch, &new_dates)?;
        }
        st.observer.release();
        Ok(())
    }

    fn flush_quarantine(&self, st: &mut State) -> Result<()> {
        if st.quarantine.is_empty() {
            return Ok(());
        }
        let batch = st.quarantine.finish()?;
        let dates = Date32Array::from(vec![st.quarantine_date; batch.num_rows()]);
        self.handle
            .block_on(st.quarantine_writer.write(&batch, &dates))?;
        Ok(())
    }
}

#[cfg(test)]
mod otlp_input;
#[cfg(test)]
mod robustness;

/// Tests: `body` stored as `file` in the memory store `memory://{name}-src`
/// and ingested with `options` into a new memory lake `memory://{name}-lake`.
#[cfg(test)]
async fn ingest_memory_file(
    name: &str,
    file: &str,
    body: String,
    options: &IngestOptions,
) -> (Lake, IngestSummary) {
    use object_store::ObjectStoreExt as _;
    let source = Lake::open(&format!("memory://{name}-src")).unwrap();
    source
        .store()
        .put(&source.path(file), body.into_bytes().into())
        .await
        .unwrap();
    let lake = Lake::open(&format!("memory://{name}-lake")).unwrap();
    let summary = ingest(
        &lake,
        &[format!("memory://{name}-src/{file}")],
        options,
        None,
    )
    .await
    .unwrap();
    (lake, summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt as _;

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
        let body: String = (0..500)
            .map(|i| line(&format!("e{i}"), 1 + (i % 9) as u32) + "\n")
            .collect();
        let options = IngestOptions {
            batch_rows: 7,
            memory_budget: 1,
            ..IngestOptions::default()
        };
        let (lake, s) = ingest_memory_file("budget", "e.ndjson", body, &options).await;
        assert_eq!(s.stored, 500);
        let snapshot = Snapshot::load(&lake).await.unwrap();
        let files = snapshot.files(EVENTS);
        assert!(
            files.len() > 9,
            "files were finished early: {}",
            files.len()
        );
        assert_eq!(files.iter().map(|f| f.rows).sum::<u64>(), 500);
        let index = Index::load(&lake, &snapshot, 0, None).await.unwrap();
        // Every file is in the key index, in one run: none is read.
        assert!(index.events.unindexed().is_empty());
        assert_eq!(index.events.runs(), 1);
    }

    /// The same ingests with a normal filter and with one so small that
    /// nearly every event is a suspect give the same, exact answers.
    #[tokio::test(flavor = "multi_thread")]
    async fn suspects_resolve_exactly_whatever_the_filter_size() {
        let source = Lake::open("memory://suspect-src").unwrap();
        let mut first: Vec<String> = (0..300)
            .map(|i| line(&format!("e{i}"), 1 + (i % 5) as u32))
            .collect();
        first.push(line("e5", 1)); // exact repeat (e5 is on day 1)
        first.push(line("e7", 9)); // same id, other content
        first.push(line("e5", 1)); // exact repeat again
        source
            .store()
            .put(
                &source.path("a.ndjson"),
                first.join("\n").into_bytes().into(),
            )
            .await
            .unwrap();
        let second = [
            line("e10", 1),
            line("e299", 3),
            line("e300", 2),
            line("e300", 2),
        ]
        .join("\n");
        source
            .store()
            .put(&source.path("b.ndjson"), second.into_bytes().into())
            .await
            .unwrap();

        let mut results = Vec::new();
        for (name, bits) in [
            ("suspect-lake-big", None),
            ("suspect-lake-tiny", Some(1024)),
        ] {
            let lake = Lake::open(&format!("memory://{name}")).unwrap();
            let options = IngestOptions {
                dedup_filter_bits: bits,
                // Tiny: suspects are resolved many times during the ingest,
                // against index runs written while it goes on.
                suspect_budget: if bits.is_some() { 4096 } else { 64 << 20 },
                index_run_records: if bits.is_some() { 7 } else { INDEX_RUN_RECORDS },
                ..IngestOptions::default()
            };
            let a = ingest(
                &lake,
                &["memory://suspect-src/a.ndjson".into()],
                &options,
                None,
            )
            .await
            .unwrap();
            let b = ingest(
                &lake,
                &["memory://suspect-src/b.ndjson".into()],
                &options,
                None,
            )
            .await
            .unwrap();
            let runs = index_matches_files(&lake).await;
            assert!(
                (bits.is_some() && runs > 40) || (bits.is_none() && runs == 2),
                "{name}: {runs} runs"
            );
            let snapshot = Snapshot::load(&lake).await.unwrap();
            let mut ids = Vec::new();
            let mut conflicts = Vec::new();
            for f in snapshot.files(EVENTS) {
                let mut stream = read_columns(&lake, f, &["event_id"]).await.unwrap();
                while let Some(batch) = stream.next().await {
                    ids.extend(
                        batch
                            .unwrap()
                            .column(0)
                            .as_string::<i32>()
                            .iter()
                            .map(|v| v.unwrap().to_string()),
                    );
                }
            }
            for f in snapshot.files(QUARANTINE) {
                let mut stream = read_columns(&lake, f, &["event_id", "line"]).await.unwrap();
                while let Some(batch) = stream.next().await {
                    let batch = batch.unwrap();
                    // Columns come in file order: line before event_id.
                    let lines = batch.column(0).as_primitive::<Int64Type>();
                    for (i, id) in batch.column(1).as_string::<i32>().iter().enumerate() {
                        conflicts.push(format!("{}@{}", id.unwrap(), lines.value(i)));
                    }
                }
            }
            ids.sort();
            conflicts.sort();
            let counts = |s: &IngestSummary| (s.read, s.stored, s.duplicate, s.quarantined);
            results.push((counts(&a), counts(&b), ids, conflicts));
        }
        assert_eq!(results[0].0, (303, 300, 2, 1));
        assert_eq!(results[0].1, (4, 1, 2, 1));
        assert_eq!(results[0].2.len(), 301);
        assert_eq!(results[0].3, ["e299@2", "e7@302"]);
        assert_eq!(
            results[0], results[1],
            "a tiny filter changes nothing but speed"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_first_line_of_an_id_is_stored_whatever_its_date() {
        // One block whose lines move between dates, with an id repeated
        // later on an earlier date (other content: a conflict) and an
        // exact repeat. Whatever order the rows take on their way to the
        // date partitions, the line read first is the one stored, and each
        // date's file holds its rows in input order.
        let mut lines: Vec<String> = (0..60u32)
            .map(|i| line(&format!("e{i}"), 9 - i % 4))
            .collect();
        lines.insert(3, line("x", 9)); // line 4: stored
        lines.push(line("x", 2)); // line 62: an earlier date, conflicting
        lines.push(line("x", 9)); // line 63: exact repeat
        let (lake, summary) = ingest_memory_file(
            "first-line",
            "a.ndjson",
            lines.join("\n"),
            &IngestOptions::default(),
        )
        .await;
        assert_eq!(
            (summary.stored, summary.duplicate, summary.quarantined),
            (61, 1, 1)
        );
        let snapshot = Snapshot::load(&lake).await.unwrap();
        let mut stored_x = Vec::new();
        for f in snapshot.files(EVENTS) {
            let mut stream = read_columns(&lake, f, &["event_id", "line"]).await.unwrap();
            let mut last = 0;
            while let Some(batch) = stream.next().await {
                let batch = batch.unwrap();
                let ids = batch.column(0).as_string::<i32>();
                let numbers = batch.column(1).as_primitive::<Int64Type>();
                for i in 0..batch.num_rows() {
                    assert!(numbers.value(i) > last, "{}", f.path);
                    last = numbers.value(i);
                    if ids.value(i) == "x" {
                        stored_x.push((f.date.clone().unwrap(), last));
                    }
                }
            }
        }
        assert_eq!(stored_x, [("2026-10-09".to_string(), 4)]);
        let mut quarantined: Vec<i64> = Vec::new();
        for f in snapshot.files(QUARANTINE) {
            let mut stream = read_columns(&lake, f, &["line"]).await.unwrap();
            while let Some(batch) = stream.next().await {
                let batch = batch.unwrap();
                quarantined.extend(batch.column(0).as_primitive::<Int64Type>().values().iter());
            }
        }
        assert_eq!(quarantined, [62]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn index_entries_taken_while_storing_are_those_of_the_files() {
        // Generated events with bad lines, exact and conflicting repeats,
        // NDJSON and OTLP, ingested twice over (the second time half new):
        // with the defaults, and with a tiny filter, suspects resolved
        // often and runs of 50 entries written while the ingest goes on.
        let dir = tempfile::tempdir().unwrap();
        let mut sources = Vec::new();
        for (name, runs, seed, otlp) in [("a", 200, 7, false), ("b", 120, 8, true)] {
            let out = dir.path().join(name);
            let opts = crate::sampler::SampleOptions {
                runs,
                seed,
                otlp,
                ..Default::default()
            };
            crate::sampler::generate(&out, &opts).unwrap();
            let file = if otlp { "traces.json" } else { "events.ndjson" };
            sources.push(out.join(file).to_str().unwrap().to_string());
        }
        let mut summaries = Vec::new();
        for tiny in [false, true] {
            let lake_dir = tempfile::tempdir().unwrap();
            let lake = Lake::open(lake_dir.path().to_str().unwrap()).unwrap();
            let options = if tiny {
                IngestOptions {
                    dedup_filter_bits: Some(1024),
                    suspect_budget: 16 << 10,
                    index_run_records: 50,
                    ..IngestOptions::default()
                }
            } else {
                IngestOptions::default()
            };
            let mut counts = Vec::new();
            for sources in [&sources[..1], &sources[..]] {
                let s = ingest(&lake, sources, &options, None).await.unwrap();
                counts.push((s.read, s.stored, s.duplicate, s.quarantined));
                index_matches_files(&lake).await;
            }
            summaries.push(counts);
        }
        assert!(summaries[0][1].2 > 0, "{summaries:?}");
        assert_eq!(
            summaries[0], summaries[1],
            "a tiny filter changes nothing but speed"
        );
    }

    /// Asserts that the event index entries `lake`'s commits hold are
    /// those its events files give when read back (the entries are taken
    /// as events are stored, not read from the files); the number of runs.
    async fn index_matches_files(lake: &Lake) -> usize {
        let snapshot = Snapshot::load(lake).await.unwrap();
        let runs = snapshot.files(EVENT_INDEX);
        let mut indexed = Vec::new();
        for run in &runs {
            let mut blocks = std::pin::pin!(keyfile::scan(lake, &run.path, run.size));
            while let Some(block) = blocks.next().await {
                indexed.extend(block.unwrap());
            }
        }
        let mut read_back = Vec::new();
        for file in snapshot.files(EVENTS) {
            agentledger_lake::index::push_records_of(lake, file, &mut read_back)
                .await
                .unwrap();
        }
        indexed.sort_by_key(|r| r.key);
        read_back.sort_by_key(|r| r.key);
        assert!(!indexed.is_empty());
        assert_eq!(indexed.len(), read_back.len(), "entries");
        if let Some((entry, stored)) = indexed.iter().zip(&read_back).find(|(a, b)| a != b) {
            panic!("index entry {entry:?}, read back {stored:?}");
        }
        runs.len()
    }

    #[test]
    fn blocks_hold_whole_lines_numbered_across_block_boundaries() {
        // Lines longer than a block, many short ones, and a last line with
        // no line end.
        let mut input = vec![b'a'; BLOCK_BYTES + BLOCK_BYTES / 2];
        input.push(b'\n');
        for i in 0..200_000 {
            input.extend_from_slice(format!("line {i}\n").as_bytes());
        }
        input.extend(std::iter::repeat_n(b'c', BLOCK_BYTES * 2));
        let reader: Box<dyn std::io::BufRead + Send> =
            Box::new(std::io::BufReader::new(std::io::Cursor::new(input.clone())));
        let (tx, rx) = mpsc::sync_channel::<Block>(1);
        let (spare_tx, spare_rx) = mpsc::channel::<Vec<u8>>();
        let mut joined = Vec::new();
        let mut line = 1;
        let mut blocks = 0;
        std::thread::scope(|scope| {
            let cutting =
                scope.spawn(move || cut_blocks(reader, "test", BLOCK_BYTES * 4, &tx, &spare_rx));
            // Each buffer goes back once read, to be filled again.
            for (i, b) in rx.iter().enumerate() {
                assert_eq!(b.seq, i as u64);
                assert_eq!(b.first_line, line, "block {i}");
                let lines = memchr::memchr_iter(b'\n', &b.data).count();
                let unended = usize::from(b.data.last().is_some_and(|&c| c != b'\n'));
                assert_eq!(b.lines, lines + unended, "block {i}'s line count");
                line += lines as i64;
                joined.extend_from_slice(&b.data);
                blocks += 1;
                let _ = spare_tx.send(b.data);
            }
            cutting.join().unwrap().unwrap();
        });
        assert!(blocks >= 3, "{blocks} blocks");
        assert_eq!(joined, input, "nothing lost or repeated");
        assert!(joined.ends_with(b"c"), "the last line has no line end");
    }

    #[test]
    fn a_used_block_buffer_is_filled_again_and_an_odd_one_dropped() {
        let (tx, _rx) = mpsc::sync_channel::<Block>(1);
        let (spare_tx, spare_rx) = mpsc::channel::<Vec<u8>>();
        let cutter = Cutter {
            tx: &tx,
            spare: &spare_rx,
            block_bytes: 1000,
            seq: 0,
            next_line: 1,
            data: Vec::new(),
            lines: 0,
            line_start: 0,
            long: None,
            max_with_cr: 100,
        };
        let usual = 1000 + BLOCK_SLACK;
        // Nothing has come back: a new buffer of a block's size.
        assert!(cutter.fresh().capacity() >= usual);
        // One grown far past a block (for a long line), then a used one.
        spare_tx.send(Vec::with_capacity(4 * usual)).unwrap();
        // (Its odd capacity tells it from a new one: the allocator may well
        // hand a new buffer the address of one just dropped.)
        let mut used = Vec::with_capacity(usual + 4321);
        used.extend_from_slice(b"old lines\n");
        let capacity = used.capacity();
        spare_tx.send(used).unwrap();
        let next = cutter.fresh();
        assert_eq!(next.capacity(), capacity, "the used buffer, not a new one");
        assert!(next.is_empty(), "emptied before it is filled again");
        assert!(spare_rx.try_recv().is_err(), "the grown one was dropped");
    }

    #[test]
    fn repeated_values_are_the_value_asked_for_and_share_a_buffer() {
        let check = |value: &str, n: usize| {
            let array = repeated(value, n);
            let strings = array.as_string::<i32>();
            assert_eq!(strings.len(), n, "{value}");
            assert!(strings.iter().all(|v| v == Some(value)), "{value} x {n}");
            array
        };
        let first = check("source a", 8);
        // Another value between, then the first again: the kept array.
        check("ingest 1", 8);
        let again = check("source a", 10);
        let shared = |a: &ArrayRef, b: &ArrayRef| {
            a.as_string::<i32>().values().as_ptr() == b.as_string::<i32>().values().as_ptr()
        };
        assert!(shared(&first, &again), "a slice of one array");
        // Longer than kept: a new array, kept from then on.
        let longer = check("source a", 11);
        assert!(!shared(&first, &longer));
        assert!(shared(&longer, &check("source a", 3)));
        // More values than are kept, then each one again.
        let values: Vec<String> = (0..2 * REPEATED_KEPT).map(|i| format!("v{i}")).collect();
        for value in values.iter().chain(&values).rev() {
            check(value, 5);
        }
        check("source a", 9);
        REPEATED.with(|kept| assert!(kept.borrow().len() <= REPEATED_KEPT));
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
