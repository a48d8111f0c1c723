//! Writing Hive-partitioned Parquet files.
//!
//! [`PartitionedWriter`] routes each row of a batch to the file of its
//! `date` partition. Memory stays bounded however many partitions an input
//! touches: when the writers' buffered data passes a budget, the largest
//! open file is finished and a later row of that date starts a new file.
//! Files are written straight to their final place; they become visible only
//! when a commit names them (see [`crate::log`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Date32Array, RecordBatch, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::SchemaRef;
use object_store::buffered::BufWriter;
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::error::Result;
use crate::log::FileEntry;
use crate::store::Lake;

/// Rows per Parquet row group.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Bytes an open file buffers before uploading a part (S3's minimum part
/// size), counted against the memory budget for every open file.
pub const UPLOAD_BUFFER: usize = 5 * 1024 * 1024;

/// A partition that received no rows in this many writes is finished: input
/// that moves forward in time then keeps only a few files open.
pub const IDLE_WRITES: u64 = 8;

/// Writer settings shared by every table: zstd level 1, page statistics
/// (chunk statistics and no dictionary on per-row ids and hashes), a bloom
/// filter on `event_id` where the table has one.
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
    for column in ["event_id", "idempotency_key", "content_hash"] {
        if schema.field_with_name(column).is_ok() {
            props = props
                .set_column_statistics_enabled(ColumnPath::from(column), EnabledStatistics::Chunk);
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
        let mut rows_by_date: BTreeMap<i32, Vec<u32>> = BTreeMap::new();
        for (i, d) in dates.values().iter().enumerate() {
            rows_by_date.entry(*d).or_default().push(i as u32);
        }
        self.writes += 1;
        let writes = self.writes;
        let single = rows_by_date.len() == 1;
        for (date, rows) in rows_by_date {
            let part = if single {
                batch.clone()
            } else {
                take_record_batch(batch, &UInt32Array::from(rows))?
            };
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

    /// Finishes every open file, so that everything written so far can be
    /// read back; later rows start new files.
    pub async fn finish_open(&mut self) -> Result<()> {
        let dates: Vec<i32> = self.open.keys().copied().collect();
        for d in dates {
            self.close(d).await?;
        }
        Ok(())
    }

    /// The files finished so far.
    pub fn finished(&self) -> &[FileEntry] {
        &self.done
    }

    /// Finishes every open file and returns all files written.
    pub async fn finish(mut self) -> Result<Vec<FileEntry>> {
        self.finish_open().await?;
        self.done.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(self.done)
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

    #[test]
    fn dates_format_as_iso() {
        assert_eq!(format_date(0), "1970-01-01");
        assert_eq!(format_date(20_000), "2024-10-04");
    }
}
