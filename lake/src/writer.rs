//! Writing Hive-partitioned Parquet files.
//!
//! [`PartitionedWriter`] routes each row of a batch to the file of its
//! `date` partition. Memory stays bounded however many partitions an input
//! touches: when the writers' buffered data passes a budget, the largest
//! open file is finished and a later row of that date starts a new file.
//! Files are written straight to their final place; they become visible only
//! when a commit names them (see [`crate::log`]).

use std::collections::BTreeMap;
use std::sync::{Arc, mpsc};

use arrow::array::{Date32Array, RecordBatch, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::SchemaRef;
use object_store::buffered::BufWriter;
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::error::Result;
use crate::log::FileEntry;
use crate::schema::RUN_PARTS_SCHEMA;
use crate::store::Lake;

/// Rows per Parquet row group.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Bytes an open file buffers before uploading a part (S3's minimum part
/// size), counted against the memory budget for every open file.
pub const UPLOAD_BUFFER: usize = 5 * 1024 * 1024;

/// A partition that received no rows in this many writes is finished: input
/// that moves forward in time then keeps only a few files open.
pub const IDLE_WRITES: u64 = 8;

/// A batch whose rows fall into more stretches of one date than this is
/// split by gathering each date's rows instead of slicing.
const MAX_STRETCHES: usize = 32;

/// Columns of free-form text: no statistics, a small dictionary budget.
const FREE_TEXT: [&str; 2] = ["attributes", "raw_line"];

/// Dictionary page budget of a free-form text column, per column chunk.
const FREE_TEXT_DICTIONARY_BYTES: usize = 64 * 1024;

/// Columns of a run parts file whose value differs from run to run.
const RUN_PARTS_PER_RUN: [&str; 7] = [
    "run_id",
    "started_at",
    "started_event_id",
    "finished_at",
    "finished_event_id",
    "first_event_at",
    "last_event_at",
];

/// Writer settings shared by every table: zstd level 1 (none for content
/// hashes, which do not compress), page statistics (chunk statistics and no
/// dictionary on per-row ids and hashes, none on free-form text), line
/// numbers as deltas, a bloom filter on `event_id` where the table has one.
pub fn writer_properties(schema: &SchemaRef) -> WriterProperties {
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(1).expect("valid level"),
        ))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_created_by(format!("agentledger {}", env!("CARGO_PKG_VERSION")));
    if schema.field_with_name("event_id").is_ok() {
        props = props.set_column_bloom_filter_enabled(ColumnPath::from("event_id"), true);
    }
    // Columns with a value per row (ids, times, line numbers, hashes): a
    // dictionary only costs time before the writer gives up on it, and
    // min/max per page of random ids prune nothing (event_id has its bloom
    // filter; ts keeps its statistics, which do prune).
    for column in ["event_id", "idempotency_key", "content_hash", "line", "ts"] {
        if schema.field_with_name(column).is_ok() {
            props = props.set_column_dictionary_enabled(ColumnPath::from(column), false);
        }
    }
    // Run parts hold one row per run: its id, the ids of its first and
    // last events and its times are as distinct as event ids (a 2M-event
    // ingest interned 236,658 of each into a dictionary the writer then
    // gave up after a megabyte).
    if schema.fields() == RUN_PARTS_SCHEMA.fields() {
        for column in RUN_PARTS_PER_RUN {
            props = props.set_column_dictionary_enabled(ColumnPath::from(column), false);
        }
    }
    // Counts and latencies take thousands of values: interning each one
    // cost more time than plain encoding under zstd, and made the files no
    // smaller (2M events: 46 MB of events files plain, 47 MB with them).
    for column in [
        "input_tokens",
        "output_tokens",
        "cached_input_tokens",
        "reasoning_tokens",
        "latency_ms",
    ] {
        if schema.field_with_name(column).is_ok() {
            props = props.set_column_dictionary_enabled(ColumnPath::from(column), false);
        }
    }
    for column in ["event_id", "idempotency_key", "content_hash"] {
        if schema.field_with_name(column).is_ok() {
            props = props
                .set_column_statistics_enabled(ColumnPath::from(column), EnabledStatistics::Chunk);
        }
    }
    // Content hashes are random 64-bit numbers: zstd found nothing to take
    // from them (2M events: 16.03 MB compressed from 16.03 MB) and spent a
    // pass over every byte trying.
    if schema.field_with_name("content_hash").is_ok() {
        props = props
            .set_column_compression(ColumnPath::from("content_hash"), Compression::UNCOMPRESSED);
    }
    // Line numbers rise by one from row to row within a file: as deltas
    // they take a few bits a row before zstd sees them, where plain they
    // gave zstd eight bytes a row to shrink (16 MB to 2 MB at 2M events).
    if schema.field_with_name("line").is_ok() {
        props = props.set_column_encoding(ColumnPath::from("line"), Encoding::DELTA_BINARY_PACKED);
    }
    // Free-form text: JSON objects and whole input lines. Where they repeat
    // (a few attribute sets) a dictionary is small and pays; where they do
    // not (a request id in every object) a small budget ends the attempt
    // after the writer's first mini-batch (1,024 values) instead of a
    // megabyte of values. Their min/max prune nothing and cost a
    // comparison of long strings per value.
    for column in FREE_TEXT {
        if schema.field_with_name(column).is_ok() {
            props = props
                .set_column_dictionary_page_size_limit(
                    ColumnPath::from(column),
                    FREE_TEXT_DICTIONARY_BYTES,
                )
                .set_column_statistics_enabled(ColumnPath::from(column), EnabledStatistics::None);
        }
    }
    props.build()
}

/// A Parquet writer for a new file at `relative` in the lake, with the
/// lake's writer settings and upload buffer; `finish()` completes the
/// upload.
pub fn open_file(
    lake: &Lake,
    relative: &str,
    schema: &SchemaRef,
) -> Result<AsyncArrowWriter<BufWriter>> {
    let sink =
        BufWriter::with_capacity(Arc::clone(lake.store()), lake.path(relative), UPLOAD_BUFFER);
    Ok(AsyncArrowWriter::try_new(
        sink,
        Arc::clone(schema),
        Some(writer_properties(schema)),
    )?)
}

/// Writes one whole batch to `relative` as a single Parquet file.
pub async fn write_file(
    lake: &Lake,
    table: &str,
    relative: &str,
    batch: &RecordBatch,
) -> Result<FileEntry> {
    let mut writer = open_file(lake, relative, &batch.schema())?;
    writer.write(batch).await?;
    // finish() writes the footer and completes the upload.
    writer.finish().await?;
    let size = writer.bytes_written() as u64;
    Ok(FileEntry {
        table: table.to_string(),
        path: relative.to_string(),
        size,
        rows: batch.num_rows() as u64,
        date: None,
    })
}

struct OpenFile {
    writer: AsyncArrowWriter<BufWriter>,
    relative: String,
    rows: u64,
    last_write: u64,
}

impl OpenFile {
    /// Memory this file holds: encoded data not yet handed over, and the
    /// upload buffer.
    fn memory(&self) -> usize {
        self.writer.memory_size() + UPLOAD_BUFFER
    }
}

/// Writes rows of one table into `date=YYYY-MM-DD/` partitions.
pub struct PartitionedWriter {
    lake: Lake,
    table: String,
    schema: SchemaRef,
    file_prefix: String,
    memory_budget: usize,
    open: BTreeMap<i32, OpenFile>,
    parts: BTreeMap<i32, u32>,
    done: Vec<FileEntry>,
    writes: u64,
}

impl std::fmt::Debug for PartitionedWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionedWriter")
            .field("table", &self.table)
            .field("open", &self.open.len())
            .field("done", &self.done.len())
            .finish()
    }
}

impl PartitionedWriter {
    /// A writer for `table` whose files are named `part-<file_prefix>-<n>.parquet`.
    pub fn new(
        lake: &Lake,
        table: &str,
        schema: SchemaRef,
        file_prefix: &str,
        memory_budget: usize,
    ) -> Self {
        Self {
            lake: lake.clone(),
            table: table.to_string(),
            schema,
            file_prefix: file_prefix.to_string(),
            memory_budget,
            open: BTreeMap::new(),
            parts: BTreeMap::new(),
            done: Vec::new(),
            writes: 0,
        }
    }

    /// Writes `batch`, whose row `i` belongs to partition `dates.value(i)`
    /// (days since the Unix epoch).
    pub async fn write(&mut self, batch: &RecordBatch, dates: &Date32Array) -> Result<()> {
        self.writes += 1;
        let writes = self.writes;
        // Consecutive rows of one date: input that moves forward in time
        // has a few such stretches per batch, each written as a slice of
        // the batch (no copy). Rows of many interleaved dates are gathered
        // by date instead. Either way a date's rows keep their order.
        let mut stretches: Vec<(i32, usize, usize)> = Vec::new();
        for (i, &d) in dates.values().iter().enumerate() {
            match stretches.last_mut() {
                Some((date, _, len)) if *date == d => *len += 1,
                _ => {
                    if stretches.len() == MAX_STRETCHES {
                        break;
                    }
                    stretches.push((d, i, 1));
                }
            }
        }
        let covered: usize = stretches.iter().map(|s| s.2).sum();
        let parts: Vec<(i32, RecordBatch)> = if covered == batch.num_rows() {
            stretches
                .into_iter()
                .map(|(date, start, len)| (date, batch.slice(start, len)))
                .collect()
        } else {
            let mut rows_by_date: BTreeMap<i32, Vec<u32>> = BTreeMap::new();
            for (i, d) in dates.values().iter().enumerate() {
                rows_by_date.entry(*d).or_default().push(i as u32);
            }
            rows_by_date
                .into_iter()
                .map(|(date, rows)| Ok((date, take_record_batch(batch, &UInt32Array::from(rows))?)))
                .collect::<Result<_>>()?
        };
        for (date, part) in parts {
            let file = self.file_for(date)?;
            file.writer.write(&part).await?;
            file.rows += part.num_rows() as u64;
            file.last_write = writes;
        }
        let idle: Vec<i32> = self
            .open
            .iter()
            .filter(|(_, f)| writes - f.last_write >= IDLE_WRITES)
            .map(|(d, _)| *d)
            .collect();
        for date in idle {
            self.close(date).await?;
        }
        self.enforce_budget().await
    }

    fn file_for(&mut self, date: i32) -> Result<&mut OpenFile> {
        if !self.open.contains_key(&date) {
            let n = self.parts.entry(date).or_insert(0);
            *n += 1;
            let day = format_date(date);
            let relative = format!(
                "{}/date={day}/part-{}-{:04}.parquet",
                self.table, self.file_prefix, n
            );
            let writer = open_file(&self.lake, &relative, &self.schema)?;
            self.open.insert(
                date,
                OpenFile {
                    writer,
                    relative,
                    rows: 0,
                    last_write: self.writes,
                },
            );
        }
        Ok(self.open.get_mut(&date).expect("inserted above"))
    }

    async fn enforce_budget(&mut self) -> Result<()> {
        loop {
            let total: usize = self.open.values().map(OpenFile::memory).sum();
            if total <= self.memory_budget || self.open.is_empty() {
                return Ok(());
            }
            let largest = *self
                .open
                .iter()
                .max_by_key(|(_, f)| f.memory())
                .map(|(d, _)| d)
                .expect("not empty");
            self.close(largest).await?;
        }
    }

    async fn close(&mut self, date: i32) -> Result<()> {
        if let Some(mut file) = self.open.remove(&date) {
            file.writer.finish().await?;
            let size = file.writer.bytes_written() as u64;
            self.done.push(FileEntry {
                table: self.table.clone(),
                path: file.relative,
                size,
                rows: file.rows,
                date: Some(format_date(date)),
            });
        }
        Ok(())
    }

    /// Finishes every open file and returns all files written.
    pub async fn finish(mut self) -> Result<Vec<FileEntry>> {
        let dates: Vec<i32> = self.open.keys().copied().collect();
        for d in dates {
            self.close(d).await?;
        }
        self.done.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(self.done)
    }
}

/// What the caller asks of a [`Worker`].
enum Command<T> {
    Work(T),
    Finish,
}

/// State of its own on a thread of its own: [`Worker::send`] hands an item
/// over and returns, and the thread applies it to the state while the
/// caller goes on; at most `queue` items wait, so memory stays bounded.
/// Items are applied in the order they are sent. An error stops the
/// thread; the next call returns it. The ingest's Parquet writers run so
/// ([`WriterThread`], and the run parts the ingest computes).
pub struct Worker<T, R> {
    commands: Option<mpsc::SyncSender<Command<T>>>,
    thread: Option<std::thread::JoinHandle<Result<Option<R>>>>,
}

impl<T, R> std::fmt::Debug for Worker<T, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").finish_non_exhaustive()
    }
}

impl<T: Send + 'static, R: Send + 'static> Worker<T, R> {
    /// Starts a thread named `name` that applies each item sent to `state`
    /// with `work`, and on [`Worker::finish`] turns the state into the
    /// result with `finish`.
    pub fn spawn<S: Send + 'static>(
        name: String,
        queue: usize,
        mut state: S,
        mut work: impl FnMut(&mut S, T) -> Result<()> + Send + 'static,
        finish: impl FnOnce(S) -> Result<R> + Send + 'static,
    ) -> Self {
        let (commands, received) = mpsc::sync_channel::<Command<T>>(queue);
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                for command in received {
                    match command {
                        Command::Work(item) => work(&mut state, item)?,
                        Command::Finish => return finish(state).map(Some),
                    }
                }
                // Dropped unfinished (the caller failed): the state is
                // dropped, not finished; files it had open are abandoned.
                Ok(None)
            })
            .expect("a thread can be started");
        Self {
            commands: Some(commands),
            thread: Some(thread),
        }
    }

    /// Hands `item` over (waiting while `queue` items wait already).
    pub fn send(&mut self, item: T) -> Result<()> {
        self.command(Command::Work(item))
    }

    /// Waits for the items sent to be applied, then finishes the state.
    pub fn finish(mut self) -> Result<R> {
        self.command(Command::Finish)?;
        drop(self.commands.take());
        match self.join()? {
            Some(result) => Ok(result),
            None => unreachable!("a worker told to finish returns what it finished"),
        }
    }

    fn command(&mut self, command: Command<T>) -> Result<()> {
        let commands = self.commands.as_ref().expect("not finished");
        match commands.send(command) {
            Ok(()) => Ok(()),
            // The thread stops early only on an error: that error.
            Err(_) => {
                drop(self.commands.take());
                self.join()?;
                unreachable!("a worker thread stops early only on an error")
            }
        }
    }

    fn join(&mut self) -> Result<Option<R>> {
        let thread = self.thread.take().expect("joined once");
        match thread.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl<T, R> Drop for Worker<T, R> {
    /// A worker dropped unfinished (the caller failed) stops; what it
    /// wrote is never committed.
    fn drop(&mut self) {
        drop(self.commands.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A [`PartitionedWriter`] on a [`Worker`] thread, so that splitting rows
/// by partition, encoding and compressing Parquet run beside the caller's
/// work instead of between its steps. Rows are written in the order they
/// are handed over.
#[derive(Debug)]
pub struct WriterThread(Worker<(RecordBatch, Date32Array), Vec<FileEntry>>);

impl WriterThread {
    /// Starts `writer` on a new thread that runs its async writes on
    /// `runtime`; at most `queue` batches wait.
    pub fn spawn(writer: PartitionedWriter, runtime: tokio::runtime::Handle, queue: usize) -> Self {
        let finishing = runtime.clone();
        Self(Worker::spawn(
            format!("{}-writer", writer.table),
            queue,
            writer,
            move |writer, (batch, dates)| runtime.block_on(writer.write(&batch, &dates)),
            move |writer| finishing.block_on(writer.finish()),
        ))
    }

    /// Hands `batch` over, its row `i` going to partition `dates.value(i)`.
    pub fn write(&mut self, batch: RecordBatch, dates: Date32Array) -> Result<()> {
        self.0.send((batch, dates))
    }

    /// Writes what is left and finishes every file: all files written.
    pub fn finish(self) -> Result<Vec<FileEntry>> {
        self.0.finish()
    }
}

/// `YYYY-MM-DD` of a Date32 value.
pub fn format_date(days: i32) -> String {
    chrono::NaiveDate::from_num_days_from_ce_opt(days + 719_163)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| format!("invalid-{days}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use futures::StreamExt;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]))
    }

    /// Every partition's values, in file order, from the files written.
    async fn read_back(lake: &Lake, files: &[FileEntry]) -> BTreeMap<String, Vec<i64>> {
        let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for file in files {
            let mut stream = crate::parquet_io::read_columns(lake, file, &["v"])
                .await
                .unwrap();
            while let Some(batch) = stream.next().await {
                let batch = batch.unwrap();
                out.entry(file.date.clone().unwrap())
                    .or_default()
                    .extend(batch.column(0).as_primitive::<Int64Type>().values());
            }
        }
        out
    }

    /// Batches of values `0..n`, value `v` in partition `date_of(v)`.
    fn batches(n: i64, date_of: impl Fn(i64) -> i32) -> Vec<(RecordBatch, Date32Array)> {
        (0..n)
            .step_by(1000)
            .map(|from| {
                let values: Vec<i64> = (from..(from + 1000).min(n)).collect();
                let dates =
                    Date32Array::from(values.iter().map(|v| date_of(*v)).collect::<Vec<_>>());
                let batch =
                    RecordBatch::try_new(schema(), vec![Arc::new(Int64Array::from(values))])
                        .unwrap();
                (batch, dates)
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rows_land_in_their_partition_in_input_order_sliced_or_gathered() {
        // Stretches of one date (sliced), dates alternating row by row
        // (gathered), and a mix.
        type DateOf = fn(i64) -> i32;
        let cases: [(&str, DateOf); 4] = [
            ("stretches", |v| 20_000 + (v / 700) as i32),
            ("two dates taking turns", |v| 20_000 + ((v / 50) % 2) as i32),
            ("interleaved", |v| 20_000 + (v % 3) as i32),
            ("mixed", |v| {
                20_000 + if v % 1000 < 900 { 0 } else { (v % 7) as i32 }
            }),
        ];
        for (name, date_of) in cases {
            let dir = tempfile::tempdir().unwrap();
            let lake = Lake::open(dir.path().to_str().unwrap()).unwrap();
            let writer = PartitionedWriter::new(&lake, "t", schema(), "x", 64 << 20);
            let mut thread = WriterThread::spawn(writer, tokio::runtime::Handle::current(), 2);
            for (batch, dates) in batches(5_500, date_of) {
                thread.write(batch, dates).unwrap();
            }
            let files = tokio::task::spawn_blocking(move || thread.finish())
                .await
                .unwrap()
                .unwrap();
            let mut want: BTreeMap<String, Vec<i64>> = BTreeMap::new();
            for v in 0..5_500 {
                want.entry(format_date(date_of(v))).or_default().push(v);
            }
            assert_eq!(read_back(&lake, &files).await, want, "{name}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_writer_thread_reports_its_error_and_a_dropped_one_finishes_nothing() {
        // The table's folder is a file: no data file can be written there.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t"), b"not a folder").unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap()).unwrap();
        let writer = PartitionedWriter::new(&lake, "t", schema(), "x", 64 << 20);
        let mut thread = WriterThread::spawn(writer, tokio::runtime::Handle::current(), 2);
        let outcome = tokio::task::spawn_blocking(move || {
            for (batch, dates) in batches(3_000, |_| 20_000) {
                thread.write(batch, dates)?;
            }
            thread.finish()
        })
        .await
        .unwrap();
        assert!(outcome.is_err(), "{outcome:?}");

        // Dropped before finishing: no file is finished.
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap()).unwrap();
        let writer = PartitionedWriter::new(&lake, "t", schema(), "x", 64 << 20);
        let mut thread = WriterThread::spawn(writer, tokio::runtime::Handle::current(), 2);
        tokio::task::spawn_blocking(move || {
            for (batch, dates) in batches(3_000, |v| 20_000 + (v % 2) as i32) {
                thread.write(batch, dates).unwrap();
            }
            drop(thread);
        })
        .await
        .unwrap();
        let parquet: Vec<_> = walk(dir.path())
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
            .collect();
        assert_eq!(parquet, Vec::<std::path::PathBuf>::new());
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
        out
    }

    /// The `attributes` column chunk and its pages as written with the
    /// lake's settings, for `rows` values made by `value`.
    fn free_text_chunk(
        rows: usize,
        value: impl Fn(usize) -> String,
    ) -> (
        parquet::file::metadata::ColumnChunkMetaData,
        Vec<parquet::column::page::Page>,
    ) {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let schema = Arc::new(Schema::new(vec![
            Field::new("attributes", DataType::Utf8, true),
            Field::new("model", DataType::Utf8, true),
        ]));
        let column = |f: &dyn Fn(usize) -> String| -> arrow::array::ArrayRef {
            Arc::new(arrow::array::StringArray::from(
                (0..rows).map(f).collect::<Vec<_>>(),
            ))
        };
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![column(&value), column(&|i| format!("m-{}", i % 3))],
        )
        .unwrap();
        let mut buffer = Vec::new();
        let props = writer_properties(&schema);
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(&mut buffer, schema, Some(props)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let reader = SerializedFileReader::new(bytes::Bytes::from(buffer)).unwrap();
        let group = reader.get_row_group(0).unwrap();
        assert!(
            group.metadata().column(1).statistics().is_some(),
            "other text keeps its statistics"
        );
        let pages = group
            .get_column_page_reader(0)
            .unwrap()
            .map(|page| page.unwrap())
            .collect();
        (group.metadata().column(0).clone(), pages)
    }

    #[test]
    fn free_text_has_no_bounds_and_gives_up_its_dictionary_early() {
        use parquet::basic::{Encoding, PageType};
        // Distinct objects of about 200 bytes: the dictionary stops after
        // the first mini-batch (1,024 values), where a megabyte's budget
        // would have taken about 5,000 of them.
        let distinct = |i: usize| format!("{{\"request_id\":\"{i:0>180}\"}}");
        let (chunk, pages) = free_text_chunk(20_000, distinct);
        assert!(chunk.statistics().is_none(), "{:?}", chunk.statistics());
        let parquet::column::page::Page::DictionaryPage { num_values, .. } = &pages[0] else {
            panic!("no dictionary page first: {:?}", pages[0].page_type());
        };
        assert!(*num_values <= 2048, "{num_values} values in the dictionary");
        assert!(
            pages
                .iter()
                .any(|p| p.page_type() == PageType::DATA_PAGE && p.encoding() == Encoding::PLAIN),
            "no plain pages after the dictionary"
        );
        // A few repeated objects stay dictionary encoded throughout.
        let repeated = |i: usize| format!("{{\"region\":\"r-{}\"}}", i % 3);
        let (chunk, pages) = free_text_chunk(20_000, repeated);
        assert!(chunk.statistics().is_none());
        let parquet::column::page::Page::DictionaryPage { num_values, .. } = &pages[0] else {
            panic!("no dictionary page first: {:?}", pages[0].page_type());
        };
        assert_eq!(*num_values, 3);
        assert!(
            pages[1..]
                .iter()
                .all(|p| p.encoding() == Encoding::RLE_DICTIONARY),
            "{:?}",
            pages.iter().map(|p| p.encoding()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn run_parts_store_per_run_values_without_a_dictionary() {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let rows = 5_000;
        let schema = Arc::clone(&RUN_PARTS_SCHEMA);
        let columns: Vec<arrow::array::ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| -> arrow::array::ArrayRef {
                match f.data_type() {
                    // Two tenants and three workflows: values that repeat.
                    DataType::Utf8 => Arc::new(arrow::array::StringArray::from_iter_values(
                        (0..rows).map(|i| match f.name().as_str() {
                            "tenant_id" => format!("t-{}", i % 2),
                            "workflow" => format!("w-{}", i % 3),
                            name => format!("{name}-{i}"),
                        }),
                    )),
                    DataType::Timestamp(_, tz) => Arc::new(
                        arrow::array::TimestampMicrosecondArray::from_iter_values(
                            (0..rows as i64).map(|i| 1_700_000_000_000_000 + i * 1_000),
                        )
                        .with_timezone_opt(tz.clone()),
                    ),
                    other => arrow::array::new_null_array(other, rows),
                }
            })
            .collect();
        let batch = RecordBatch::try_new(Arc::clone(&schema), columns).unwrap();
        let mut buffer = Vec::new();
        let props = writer_properties(&schema);
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(&mut buffer, Arc::clone(&schema), Some(props))
                .unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let reader = SerializedFileReader::new(bytes::Bytes::from(buffer)).unwrap();
        let group = reader.get_row_group(0).unwrap();
        let dictionary = |name: &str| {
            let i = schema.index_of(name).unwrap();
            group
                .metadata()
                .column(i)
                .dictionary_page_offset()
                .is_some()
        };
        for name in RUN_PARTS_PER_RUN {
            assert!(!dictionary(name), "{name} has a dictionary");
        }
        assert!(dictionary("tenant_id") && dictionary("workflow"));
        // Events keep their run ids' dictionary: a run has many events.
        let events = Arc::new(Schema::new(vec![Field::new(
            "run_id",
            DataType::Utf8,
            false,
        )]));
        let props = writer_properties(&events);
        assert!(props.dictionary_enabled(&parquet::schema::types::ColumnPath::from("run_id")));
    }

    #[test]
    fn hashes_are_stored_uncompressed_and_line_numbers_as_deltas() {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let schema = Arc::new(Schema::new(vec![
            Field::new("line", DataType::Int64, false),
            Field::new("content_hash", DataType::Int64, false),
            Field::new("latency_ms", DataType::Int64, true),
        ]));
        let rows = 10_000i64;
        let columns: Vec<arrow::array::ArrayRef> = vec![
            Arc::new(arrow::array::Int64Array::from_iter_values(1..=rows)),
            Arc::new(arrow::array::Int64Array::from_iter_values(
                (0..rows).map(|i| xxhash_rust::xxh3::xxh3_64(&i.to_le_bytes()) as i64),
            )),
            Arc::new(arrow::array::Int64Array::from_iter_values(
                (0..rows).map(|i| i % 700),
            )),
        ];
        let batch = RecordBatch::try_new(Arc::clone(&schema), columns).unwrap();
        let mut buffer = Vec::new();
        let mut writer = parquet::arrow::ArrowWriter::try_new(
            &mut buffer,
            Arc::clone(&schema),
            Some(writer_properties(&schema)),
        )
        .unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let reader = SerializedFileReader::new(bytes::Bytes::from(buffer.clone())).unwrap();
        let group = reader.get_row_group(0).unwrap();
        let chunk = |name: &str| {
            group
                .metadata()
                .column(schema.index_of(name).unwrap())
                .clone()
        };
        let hash = chunk("content_hash");
        assert_eq!(hash.compression(), Compression::UNCOMPRESSED);
        assert_eq!(hash.compressed_size(), hash.uncompressed_size());
        let line = chunk("line");
        assert!(
            line.encodings().any(|e| e == Encoding::DELTA_BINARY_PACKED),
            "{:?}",
            line.encodings().collect::<Vec<_>>()
        );
        // 10,000 line numbers as deltas: well under a byte a row.
        assert!(
            line.uncompressed_size() < 4_000,
            "{}",
            line.uncompressed_size()
        );
        // Everything else keeps zstd and plain encoding.
        let other = chunk("latency_ms");
        assert!(matches!(other.compression(), Compression::ZSTD(_)));
        assert!(
            other
                .encodings()
                .all(|e| e != Encoding::DELTA_BINARY_PACKED)
        );
        // And the values read back as written.
        let back: Vec<RecordBatch> =
            parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(
                bytes::Bytes::from(buffer),
                1 << 20,
            )
            .unwrap()
            .collect::<std::result::Result<_, _>>()
            .unwrap();
        assert_eq!(back, vec![batch]);
    }

    #[test]
    fn dates_format_as_iso() {
        assert_eq!(format_date(0), "1970-01-01");
        assert_eq!(format_date(20_000), "2024-10-04");
    }
}
