//! Immutable sorted key files, probed with ranged reads.
//!
//! A key file maps 128-bit keys (event ids hashed with xxh3-128) to a content
//! hash and a date, like Apache Hudi's record-level index or an HBase HFile:
//! "is this event stored, and with what content hash?" is answered for `k`
//! keys by reading data that grows with `k`, not with the number of keys
//! stored. A file is written once, in key order ([`KeyFileWriter`],
//! [`write_all`], [`merge`]), and then only read: [`probe`] looks keys up in
//! at most three round trips to the store whatever their number, [`scan`]
//! streams every record in key order with bounded memory.
//!
//! # On-disk layout
//!
//! Every integer is big-endian (so for keys, byte order is numeric order).
//! `N` is the record count, `B = ceil(N / 512)` the number of data blocks,
//! `T = ceil(B / 1024)` the number of level-1 blocks. (Readers take the two
//! block sizes from the trailer; this module writes 512 and 1024.)
//!
//! ```text
//! offset 0            data block 0 | data block 1 | ... | data block B-1
//!                       each: up to RECORDS_PER_BLOCK (512) records of 28 bytes
//!                             key u128 (16) | hash i64 (8) | date i32 (4)
//!                       then an 8-byte xxh3-64 of those records
//!                       (only the last block may hold fewer than 512 records;
//!                       block i starts at i * (512 * 28 + 8))
//! level-1 offset      level-1 block 0 | ... | level-1 block T-1
//!                       each: up to ENTRIES_PER_L1 (1024) keys of 16 bytes,
//!                       the first key of data blocks j*1024 .. j*1024+1023,
//!                       then an 8-byte xxh3-64 of those keys
//!                       (block j starts at level-1 offset + j * (1024 * 16 + 8))
//! top offset          top index: T keys of 16 bytes, the first key of each
//!                       level-1 block
//! size - 80           trailer (TRAILER_BYTES = 80):
//!                        0..8   magic b"ALKEYS01"
//!                        8..12  format version (1)
//!                       12..16  records per data block (512)
//!                       16..20  entries per level-1 block (1024)
//!                       20..24  reserved, zero
//!                       24..32  record count N
//!                       32..40  level-1 offset
//!                       40..48  top offset
//!                       48..64  last (largest) key, zero when N = 0
//!                       64..72  xxh3-64 of the top index
//!                       72..80  xxh3-64 of trailer bytes 0..72
//! ```
//!
//! Each block checksum is seeded with the block's offset in the file, so a
//! block at the wrong place fails too. With the two trailer checksums every
//! byte of the file is covered: a truncated or damaged file is an error
//! ([`Error::CorruptIndex`], naming the file and what is wrong), never a
//! wrong answer. The reader also checks that the trailer describes exactly
//! the file's size, that a level-1 block starts with its top-index key and a
//! data block with its level-1 key, and that keys strictly increase.
//!
//! # Reading
//!
//! [`probe`] reads the file's tail (trailer and top index; at least the last
//! 64 KiB, so a small file's level-1 index, or all of a small file, comes
//! with it), then the level-1 blocks the keys fall in with one
//! `get_ranges` call, then the data blocks with another: at most three round
//! trips (`get_ranges` coalesces nearby ranges and fetches in parallel). The
//! tail read is sized from the file size so that the top index of a file
//! with our block sizes always fits in it (a file with smaller blocks may
//! cost a fourth read). Memory holds the blocks the keys touch: callers with
//! millions of keys may probe them in batches.
//!
//! Sizes come from the caller (the commit log records them): a file whose
//! stored size differs is reported as truncated or overwritten.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{self, BoxStream, Stream, StreamExt, TryStreamExt};
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{GetOptions, ObjectStore, ObjectStoreExt};
use tokio::io::AsyncWriteExt;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use crate::error::{Error, Result, joined};
use crate::store::Lake;

/// Bytes of one record on disk: key (16), hash (8), date (4).
pub const RECORD_BYTES: usize = 28;
/// Records per data block (the last block may hold fewer).
pub const RECORDS_PER_BLOCK: usize = 512;
/// Keys (first keys of data blocks) per level-1 index block.
pub const ENTRIES_PER_L1: usize = 1024;
/// The first bytes of the trailer.
pub const MAGIC: &[u8; 8] = b"ALKEYS01";
/// The format version this module writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes of the trailer at the end of every key file.
pub const TRAILER_BYTES: usize = 80;

const KEY_BYTES: usize = 16;
const CHECKSUM_BYTES: usize = 8;
/// The least a probe reads from the end of a file in its first round trip.
const TAIL_READ: u64 = 64 * 1024;
/// Bytes a scan asks for in one request (whole data blocks).
pub const SCAN_READ: u64 = 1024 * 1024;
/// Reads a scan keeps in flight ahead of the blocks it hands out.
pub const SCAN_AHEAD: usize = 2;
/// Largest records-per-block or entries-per-level-1-block value accepted
/// from a trailer.
const MAX_FANOUT: u32 = 1 << 20;

/// One entry of a key file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Record {
    /// The key (an event id's xxh3-128); records are sorted by it.
    pub key: u128,
    /// The content hash stored with the key.
    pub hash: i64,
    /// The date (days since the epoch) of the partition holding the event.
    pub date: i32,
}

impl Record {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.key.to_be_bytes());
        out.extend_from_slice(&self.hash.to_be_bytes());
        out.extend_from_slice(&self.date.to_be_bytes());
    }

    /// Decodes the record at index `i` of a data block's records.
    fn decode(records: &[u8], i: usize) -> Self {
        let at = i * RECORD_BYTES;
        Self {
            key: be_u128(records, at),
            hash: i64::from_be_bytes(records[at + 16..at + 24].try_into().expect("8 bytes")),
            date: i32::from_be_bytes(records[at + 24..at + 28].try_into().expect("4 bytes")),
        }
    }
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn be_u128(b: &[u8], at: usize) -> u128 {
    u128::from_be_bytes(b[at..at + 16].try_into().expect("16 bytes"))
}

/// Appends the checksum of `block`, seeded with its offset in the file.
fn seal(block: &mut Vec<u8>, offset: u64) {
    let sum = xxh3_64_with_seed(block, offset);
    block.extend_from_slice(&sum.to_be_bytes());
}

/// Writes a key file, streaming records in key order to the store.
///
/// Memory holds one data block, the upload buffer and the level-1 index
/// (16 bytes per 512 records). Nothing is visible at the path before
/// [`KeyFileWriter::finish`] returns; after an error, call
/// [`KeyFileWriter::abort`] (or drop the writer).
#[derive(Debug)]
pub struct KeyFileWriter {
    rel: String,
    sink: BufWriter,
    records_per_block: usize,
    entries_per_l1: usize,
    block: Vec<u8>,
    in_block: usize,
    first_keys: Vec<u128>,
    last: Option<u128>,
    count: u64,
    written: u64,
}

impl KeyFileWriter {
    /// A writer for a new key file at `rel` (a path inside the lake).
    pub fn create(lake: &Lake, rel: &str) -> Self {
        Self::with_fanout(lake, rel, RECORDS_PER_BLOCK, ENTRIES_PER_L1)
    }

    /// A writer with other block sizes (readers take them from the
    /// trailer), for tests of deep indexes on small files.
    fn with_fanout(
        lake: &Lake,
        rel: &str,
        records_per_block: usize,
        entries_per_l1: usize,
    ) -> Self {
        Self {
            rel: rel.to_string(),
            sink: BufWriter::with_capacity(
                Arc::clone(lake.store()),
                lake.path(rel),
                crate::writer::UPLOAD_BUFFER,
            ),
            records_per_block,
            entries_per_l1,
            block: Vec::with_capacity(records_per_block * RECORD_BYTES + CHECKSUM_BYTES),
            in_block: 0,
            first_keys: Vec::new(),
            last: None,
            count: 0,
            written: 0,
        }
    }

    /// Appends `record`; its key must be greater than every key pushed
    /// before (an error otherwise, and the record is not added).
    pub async fn push(&mut self, record: Record) -> Result<()> {
        if let Some(previous) = self.last
            && record.key <= previous
        {
            return Err(Error::KeyOrder {
                path: self.rel.clone(),
                previous,
                key: record.key,
            });
        }
        if self.in_block == 0 {
            self.first_keys.push(record.key);
        }
        record.encode(&mut self.block);
        self.in_block += 1;
        self.count += 1;
        self.last = Some(record.key);
        if self.in_block == self.records_per_block {
            self.end_block().await?;
        }
        Ok(())
    }

    /// Records pushed so far.
    pub fn records(&self) -> u64 {
        self.count
    }

    async fn put(&mut self, bytes: Vec<u8>) -> Result<()> {
        self.written += bytes.len() as u64;
        self.sink.put(Bytes::from(bytes)).await?;
        Ok(())
    }

    async fn end_block(&mut self) -> Result<()> {
        let mut block = std::mem::replace(
            &mut self.block,
            Vec::with_capacity(self.records_per_block * RECORD_BYTES + CHECKSUM_BYTES),
        );
        seal(&mut block, self.written);
        self.in_block = 0;
        self.put(block).await
    }

    /// Writes the indexes and the trailer and completes the upload; returns
    /// the file's size in bytes and its record count.
    pub async fn finish(mut self) -> Result<(u64, u64)> {
        if self.in_block > 0 {
            self.end_block().await?;
        }
        let l1_offset = self.written;
        let first_keys = std::mem::take(&mut self.first_keys);
        let mut top =
            Vec::with_capacity(first_keys.len().div_ceil(self.entries_per_l1) * KEY_BYTES);
        for entries in first_keys.chunks(self.entries_per_l1) {
            let mut block = Vec::with_capacity(entries.len() * KEY_BYTES + CHECKSUM_BYTES);
            for key in entries {
                block.extend_from_slice(&key.to_be_bytes());
            }
            seal(&mut block, self.written);
            top.extend_from_slice(&entries[0].to_be_bytes());
            self.put(block).await?;
        }
        let top_offset = self.written;
        let mut trailer = Vec::with_capacity(TRAILER_BYTES);
        trailer.extend_from_slice(MAGIC);
        trailer.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        trailer.extend_from_slice(&(self.records_per_block as u32).to_be_bytes());
        trailer.extend_from_slice(&(self.entries_per_l1 as u32).to_be_bytes());
        trailer.extend_from_slice(&0u32.to_be_bytes());
        trailer.extend_from_slice(&self.count.to_be_bytes());
        trailer.extend_from_slice(&l1_offset.to_be_bytes());
        trailer.extend_from_slice(&top_offset.to_be_bytes());
        trailer.extend_from_slice(&self.last.unwrap_or(0).to_be_bytes());
        trailer.extend_from_slice(&xxh3_64(&top).to_be_bytes());
        let sum = xxh3_64(&trailer);
        trailer.extend_from_slice(&sum.to_be_bytes());
        debug_assert_eq!(trailer.len(), TRAILER_BYTES);
        if !top.is_empty() {
            self.put(top).await?;
        }
        self.put(trailer).await?;
        self.sink.shutdown().await.map_err(|source| Error::Io {
            context: format!("cannot write key file {}", self.rel),
            source,
        })?;
        Ok((self.written, self.count))
    }

    /// Gives up on the file, cleaning up a multipart upload in progress.
    pub async fn abort(mut self) -> Result<()> {
        self.sink.abort().await?;
        Ok(())
    }
}

/// Writes `records` (strictly increasing keys) as a key file at `rel`;
/// returns its size in bytes and record count.
pub async fn write_all(lake: &Lake, rel: &str, records: &[Record]) -> Result<(u64, u64)> {
    let mut writer = KeyFileWriter::create(lake, rel);
    for record in records {
        if let Err(e) = writer.push(*record).await {
            let _ = writer.abort().await;
            return Err(e);
        }
    }
    writer.finish().await
}

/// Reads made by one call: sequential round trips and bytes.
#[derive(Debug, Default, Clone, Copy)]
struct Reads {
    round_trips: u32,
    bytes: u64,
}

/// One key file in the store, of the size the caller expects. Every read
/// of this module goes through it.
#[derive(Debug, Clone)]
struct Source {
    store: Arc<dyn ObjectStore>,
    path: Path,
    rel: String,
    size: u64,
}

impl Source {
    fn new(lake: &Lake, rel: &str, size: u64) -> Self {
        Self {
            store: Arc::clone(lake.store()),
            path: lake.path(rel),
            rel: rel.to_string(),
            size,
        }
    }

    fn corrupt(&self, reason: impl Into<String>) -> Error {
        Error::CorruptIndex {
            path: self.rel.clone(),
            reason: reason.into(),
        }
    }

    fn wrong_size(&self, actual: u64) -> Error {
        self.corrupt(format!(
            "the file is {actual} bytes where {} were expected (truncated or overwritten)",
            self.size
        ))
    }

    /// The error for a failed read: a file of another size than expected
    /// (a range past its end) is reported as such, other errors as they are.
    async fn read_failed(&self, e: object_store::Error) -> Error {
        if matches!(e, object_store::Error::NotFound { .. }) {
            return Error::Store(e);
        }
        match self.store.head(&self.path).await {
            Ok(meta) if meta.size != self.size => self.wrong_size(meta.size),
            _ => Error::Store(e),
        }
    }

    fn check_len(&self, range: &Range<u64>, bytes: &Bytes) -> Result<()> {
        if bytes.len() as u64 == range.end - range.start {
            Ok(())
        } else {
            Err(self.corrupt(format!(
                "reading bytes {}..{} returned {} bytes (truncated)",
                range.start,
                range.end,
                bytes.len()
            )))
        }
    }

    /// The last `len` bytes, checking that the file has the expected size.
    async fn read_tail(&self, len: u64, reads: &mut Reads) -> Result<Bytes> {
        let range = self.size - len..self.size;
        reads.round_trips += 1;
        reads.bytes += len;
        let opts = GetOptions::new().with_range(Some(range.clone()));
        let got = match self.store.get_opts(&self.path, opts).await {
            Ok(got) => got,
            Err(e) => return Err(self.read_failed(e).await),
        };
        if got.meta.size != self.size {
            return Err(self.wrong_size(got.meta.size));
        }
        let bytes = match got.bytes().await {
            Ok(bytes) => bytes,
            Err(e) => return Err(self.read_failed(e).await),
        };
        self.check_len(&range, &bytes)?;
        Ok(bytes)
    }

    /// `range` in one round trip.
    async fn read_range(&self, range: Range<u64>, reads: &mut Reads) -> Result<Bytes> {
        reads.round_trips += 1;
        reads.bytes += range.end - range.start;
        let bytes = match self.store.get_range(&self.path, range.clone()).await {
            Ok(bytes) => bytes,
            Err(e) => return Err(self.read_failed(e).await),
        };
        self.check_len(&range, &bytes)?;
        Ok(bytes)
    }

    /// `ranges` in one round trip.
    async fn read_ranges(&self, ranges: &[Range<u64>], reads: &mut Reads) -> Result<Vec<Bytes>> {
        reads.round_trips += 1;
        reads.bytes += ranges.iter().map(|r| r.end - r.start).sum::<u64>();
        let got = match self.store.get_ranges(&self.path, ranges).await {
            Ok(got) => got,
            Err(e) => return Err(self.read_failed(e).await),
        };
        if got.len() != ranges.len() {
            return Err(self.corrupt(format!(
                "asked the store for {} ranges and got {}",
                ranges.len(),
                got.len()
            )));
        }
        for (range, bytes) in ranges.iter().zip(&got) {
            self.check_len(range, bytes)?;
        }
        Ok(got)
    }
}

/// A file's trailer and top index, checked, and the tail bytes read with
/// them.
#[derive(Debug)]
struct Header {
    records_per_block: u64,
    entries_per_l1: u64,
    count: u64,
    blocks: u64,
    l1_offset: u64,
    last_key: u128,
    top: Vec<u128>,
    tail: Bytes,
    tail_start: u64,
}

impl Header {
    fn block_stride(&self) -> u64 {
        self.records_per_block * RECORD_BYTES as u64 + CHECKSUM_BYTES as u64
    }

    /// Bytes of data block `i`, checksum included.
    fn data_range(&self, i: u64) -> Range<u64> {
        let start = i * self.block_stride();
        let n = self
            .records_per_block
            .min(self.count - i * self.records_per_block);
        start..start + n * RECORD_BYTES as u64 + CHECKSUM_BYTES as u64
    }

    /// Bytes of level-1 block `j`, checksum included.
    fn l1_range(&self, j: u64) -> Range<u64> {
        let stride = self.entries_per_l1 * KEY_BYTES as u64 + CHECKSUM_BYTES as u64;
        let start = self.l1_offset + j * stride;
        let n = self
            .entries_per_l1
            .min(self.blocks - j * self.entries_per_l1);
        start..start + n * KEY_BYTES as u64 + CHECKSUM_BYTES as u64
    }

    /// The level-1 block `key` would be in, or `None` when it is outside
    /// the file's key range.
    fn l1_block_of(&self, key: u128) -> Option<u64> {
        if self.count == 0 || key < self.top[0] || key > self.last_key {
            return None;
        }
        Some((self.top.partition_point(|&t| t <= key) - 1) as u64)
    }

    /// Checks level-1 block `j` and returns its keys.
    fn decode_l1(&self, src: &Source, j: u64, bytes: &Bytes) -> Result<Vec<u128>> {
        let range = self.l1_range(j);
        let what = || {
            format!(
                "level-1 index block {j} (bytes {}..{})",
                range.start, range.end
            )
        };
        let entries = checked_payload(bytes, range.start)
            .ok_or_else(|| src.corrupt(format!("{}: checksum mismatch", what())))?;
        let keys: Vec<u128> = (0..entries.len() / KEY_BYTES)
            .map(|i| be_u128(entries, i * KEY_BYTES))
            .collect();
        if keys[0] != self.top[j as usize] {
            return Err(src.corrupt(format!(
                "{} starts with key {:032x} where the top index says {:032x}",
                what(),
                keys[0],
                self.top[j as usize]
            )));
        }
        if keys.windows(2).any(|w| w[0] >= w[1]) {
            return Err(src.corrupt(format!("{}: keys do not increase", what())));
        }
        Ok(keys)
    }

    /// Checks data block `i` (its checksum, key order, first key when the
    /// index says what it must be, last key when it is the file's last
    /// block) and returns its records' bytes.
    fn check_data(
        &self,
        src: &Source,
        i: u64,
        bytes: &Bytes,
        first: Option<u128>,
    ) -> Result<Bytes> {
        let range = self.data_range(i);
        let what = || format!("data block {i} (bytes {}..{})", range.start, range.end);
        if checked_payload(bytes, range.start).is_none() {
            return Err(src.corrupt(format!("{}: checksum mismatch", what())));
        }
        let records = bytes.slice(..bytes.len() - CHECKSUM_BYTES);
        let n = records.len() / RECORD_BYTES;
        let key = |r: usize| be_u128(&records, r * RECORD_BYTES);
        if let Some(first) = first
            && key(0) != first
        {
            return Err(src.corrupt(format!(
                "{} starts with key {:032x} where the index says {first:032x}",
                what(),
                key(0)
            )));
        }
        if i + 1 == self.blocks && key(n - 1) != self.last_key {
            return Err(src.corrupt(format!(
                "{} ends with key {:032x} where the trailer says {:032x}",
                what(),
                key(n - 1),
                self.last_key
            )));
        }
        if (1..n).any(|r| key(r - 1) >= key(r)) {
            return Err(src.corrupt(format!("{}: keys do not increase", what())));
        }
        Ok(records)
    }

    /// `ranges` of the file, from the tail already read where they lie in
    /// it, the others in one round trip.
    async fn fetch(
        &self,
        src: &Source,
        ranges: &[Range<u64>],
        reads: &mut Reads,
    ) -> Result<Vec<Bytes>> {
        let mut out = vec![Bytes::new(); ranges.len()];
        let mut missing = Vec::new();
        let mut missing_at = Vec::new();
        for (i, range) in ranges.iter().enumerate() {
            if range.start >= self.tail_start {
                let start = (range.start - self.tail_start) as usize;
                let end = (range.end - self.tail_start) as usize;
                out[i] = self.tail.slice(start..end);
            } else {
                missing.push(range.clone());
                missing_at.push(i);
            }
        }
        if !missing.is_empty() {
            for (i, bytes) in missing_at
                .into_iter()
                .zip(src.read_ranges(&missing, reads).await?)
            {
                out[i] = bytes;
            }
        }
        Ok(out)
    }
}

/// The payload of a sealed block at `offset`, if its checksum matches.
fn checked_payload(block: &[u8], offset: u64) -> Option<&[u8]> {
    let split = block.len().checked_sub(CHECKSUM_BYTES)?;
    let (payload, sum) = block.split_at(split);
    (xxh3_64_with_seed(payload, offset) == be_u64(sum, 0)).then_some(payload)
}

/// Reads and checks the trailer and top index of `src`: one round trip,
/// reading at least `min_tail` bytes of the tail.
async fn open(src: &Source, min_tail: u64, reads: &mut Reads) -> Result<Header> {
    let size = src.size;
    let trailer_bytes = TRAILER_BYTES as u64;
    if size < trailer_bytes {
        return Err(src.corrupt(format!(
            "the file is {size} bytes, too short for the {trailer_bytes}-byte trailer"
        )));
    }
    // The most top-index bytes a file of this size can have with the
    // default block sizes: reading them with the trailer saves a round trip.
    let records_bound = (size - trailer_bytes) / RECORD_BYTES as u64;
    let top_bound = records_bound
        .div_ceil(RECORDS_PER_BLOCK as u64)
        .div_ceil(ENTRIES_PER_L1 as u64)
        * KEY_BYTES as u64;
    let want = (trailer_bytes + top_bound).max(min_tail).min(size);
    let mut tail = src.read_tail(want, reads).await?;
    let mut tail_start = size - want;

    let t = tail.slice(tail.len() - TRAILER_BYTES..);
    if &t[0..8] != MAGIC {
        return Err(src.corrupt(format!(
            "no trailer: the last {TRAILER_BYTES} bytes do not start with {:?} (truncated, or not a key file)",
            String::from_utf8_lossy(MAGIC)
        )));
    }
    if xxh3_64(&t[..72]) != be_u64(&t, 72) {
        return Err(src.corrupt("trailer checksum mismatch (damaged trailer)"));
    }
    let version = be_u32(&t, 8);
    if version != FORMAT_VERSION {
        return Err(src.corrupt(format!(
            "key file format {version}; this agentledger reads format {FORMAT_VERSION}"
        )));
    }
    let records_per_block = be_u32(&t, 12);
    let entries_per_l1 = be_u32(&t, 16);
    if !(1..=MAX_FANOUT).contains(&records_per_block) || !(1..=MAX_FANOUT).contains(&entries_per_l1)
    {
        return Err(src.corrupt(format!(
            "trailer gives {records_per_block} records per block and {entries_per_l1} entries per level-1 block"
        )));
    }
    let count = be_u64(&t, 24);
    let l1_offset = be_u64(&t, 32);
    let top_offset = be_u64(&t, 40);
    let last_key = be_u128(&t, 48);

    // The trailer must describe exactly a file of this size.
    let (rpb, epl1) = (u128::from(records_per_block), u128::from(entries_per_l1));
    let blocks = u128::from(count).div_ceil(rpb);
    let l1_blocks = blocks.div_ceil(epl1);
    let data_len = u128::from(count) * RECORD_BYTES as u128 + blocks * CHECKSUM_BYTES as u128;
    let l1_len = blocks * KEY_BYTES as u128 + l1_blocks * CHECKSUM_BYTES as u128;
    let top_len = l1_blocks * KEY_BYTES as u128;
    let expected = data_len + l1_len + top_len + TRAILER_BYTES as u128;
    if u128::from(l1_offset) != data_len
        || u128::from(top_offset) != data_len + l1_len
        || expected != u128::from(size)
    {
        return Err(src.corrupt(format!(
            "the trailer ({count} records, level-1 index at {l1_offset}, top index at {top_offset}) \
             describes a {expected}-byte file, but it is {size} bytes"
        )));
    }
    // Only a file written with smaller blocks than ours has a top index
    // larger than the bound above.
    if top_offset < tail_start {
        let mut head = src
            .read_range(top_offset..tail_start, reads)
            .await?
            .to_vec();
        head.extend_from_slice(&tail);
        tail = Bytes::from(head);
        tail_start = top_offset;
    }
    let top_bytes = &tail[(top_offset - tail_start) as usize..tail.len() - TRAILER_BYTES];
    if xxh3_64(top_bytes) != be_u64(&t, 64) {
        return Err(src.corrupt("top index checksum mismatch (damaged top index)"));
    }
    let top: Vec<u128> = (0..top_bytes.len() / KEY_BYTES)
        .map(|i| be_u128(top_bytes, i * KEY_BYTES))
        .collect();
    if top.windows(2).any(|w| w[0] >= w[1]) || top.last().is_some_and(|&k| k > last_key) {
        return Err(src.corrupt("top index keys are out of order"));
    }
    Ok(Header {
        records_per_block: u64::from(records_per_block),
        entries_per_l1: u64::from(entries_per_l1),
        count,
        blocks: blocks as u64,
        l1_offset,
        last_key,
        top,
        tail,
        tail_start,
    })
}

/// Looks up `keys` in the key file at `rel` (of `size` bytes): the record
/// of each key, or `None` where the file has none, aligned with `keys`.
///
/// Keys are typically sorted ascending and may repeat (any order works).
/// At most three round trips to the store whatever the number of keys:
/// the tail (trailer and top index, and any level-1 or data blocks within
/// its last 64 KiB), the level-1 index blocks the keys fall in, the data
/// blocks they fall in. Keys outside the file's key range cost nothing past
/// the first.
pub async fn probe(
    lake: &Lake,
    rel: &str,
    size: u64,
    keys: &[u128],
) -> Result<Vec<Option<Record>>> {
    Ok(probe_with(lake, rel, size, keys, TAIL_READ).await?.0)
}

async fn probe_with(
    lake: &Lake,
    rel: &str,
    size: u64,
    keys: &[u128],
    min_tail: u64,
) -> Result<(Vec<Option<Record>>, Reads)> {
    let src = Source::new(lake, rel, size);
    let mut reads = Reads::default();
    let header = open(&src, min_tail, &mut reads).await?;
    let mut found = vec![None; keys.len()];

    // Round trip 2: the level-1 blocks.
    let l1_of: Vec<Option<u64>> = keys.iter().map(|&k| header.l1_block_of(k)).collect();
    let mut l1_needed: Vec<u64> = l1_of.iter().flatten().copied().collect();
    l1_needed.sort_unstable();
    l1_needed.dedup();
    if l1_needed.is_empty() {
        return Ok((found, reads));
    }
    let ranges: Vec<Range<u64>> = l1_needed.iter().map(|&j| header.l1_range(j)).collect();
    let l1: Vec<Vec<u128>> = l1_needed
        .iter()
        .zip(header.fetch(&src, &ranges, &mut reads).await?)
        .map(|(&j, bytes)| header.decode_l1(&src, j, &bytes))
        .collect::<Result<_>>()?;

    // Round trip 3: the data blocks, each with the first key the index
    // gives it.
    let mut block_of: Vec<Option<u64>> = Vec::with_capacity(keys.len());
    let mut blocks: Vec<(u64, u128)> = Vec::new();
    for (&key, j) in keys.iter().zip(&l1_of) {
        block_of.push(j.map(|j| {
            let entries = &l1[l1_needed.binary_search(&j).expect("fetched")];
            // entries[0] is the top-index key, <= key.
            let at = entries.partition_point(|&e| e <= key) - 1;
            let block = j * header.entries_per_l1 + at as u64;
            blocks.push((block, entries[at]));
            block
        }));
    }
    blocks.sort_unstable();
    blocks.dedup();
    let ranges: Vec<Range<u64>> = blocks.iter().map(|&(i, _)| header.data_range(i)).collect();
    let data: Vec<Bytes> = blocks
        .iter()
        .zip(header.fetch(&src, &ranges, &mut reads).await?)
        .map(|(&(i, first), bytes)| header.check_data(&src, i, &bytes, Some(first)))
        .collect::<Result<_>>()?;

    for ((slot, &key), block) in found.iter_mut().zip(keys).zip(&block_of) {
        let Some(block) = block else { continue };
        let records = &data[blocks.partition_point(|&(i, _)| i < *block)];
        let n = records.len() / RECORD_BYTES;
        let pos = partition(n, |r| be_u128(records, r * RECORD_BYTES) < key);
        if pos < n && be_u128(records, pos * RECORD_BYTES) == key {
            *slot = Some(Record::decode(records, pos));
        }
    }
    Ok((found, reads))
}

/// The first index in `0..n` for which `before` is false (`before` true
/// for a prefix).
fn partition(n: usize, before: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if before(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Streams the records of the key file at `rel` (of `size` bytes) in key
/// order, one data block per item.
///
/// Blocks are read [`SCAN_READ`] bytes at a time, [`SCAN_AHEAD`] reads
/// ahead of the block handed out, each checked and decoded in a spawned
/// task, so that reading and decoding progress while the caller works:
/// memory holds about `SCAN_AHEAD + 1` reads' worth of decoded records
/// (3.4 MiB). Every block is checked before it is handed out. Needs a
/// tokio runtime.
pub fn scan(
    lake: &Lake,
    rel: &str,
    size: u64,
) -> impl Stream<Item = Result<Vec<Record>>> + Send + 'static {
    let src = Source::new(lake, rel, size);
    stream::once(async move {
        let header = Arc::new(open(&src, 0, &mut Reads::default()).await?);
        Ok::<_, Error>(scan_blocks(src, header))
    })
    .try_flatten()
}

fn scan_blocks(
    src: Source,
    header: Arc<Header>,
) -> impl Stream<Item = Result<Vec<Record>>> + Send + 'static {
    let per_read = (SCAN_READ / header.block_stride()).max(1);
    let blocks = header.blocks;
    let reads =
        (0..blocks.div_ceil(per_read)).map(move |c| c * per_read..((c + 1) * per_read).min(blocks));
    let order_src = src.clone();
    let mut last: Option<u128> = None;
    stream::iter(reads)
        .map(move |blocks| {
            let (src, header) = (src.clone(), Arc::clone(&header));
            let read = tokio::spawn(async move {
                let start = header.data_range(blocks.start).start;
                let end = header.data_range(blocks.end - 1).end;
                let bytes = src.read_range(start..end, &mut Reads::default()).await?;
                // Checked and decoded here, on the runtime's threads, while
                // the caller works through the blocks before.
                let decoded: Vec<Result<Vec<Record>>> = blocks
                    .map(|i| {
                        let range = header.data_range(i);
                        let block = bytes
                            .slice((range.start - start) as usize..(range.end - start) as usize);
                        decode_block(&src, &header, i, &block)
                    })
                    .collect();
                Ok::<_, Error>(stream::iter(decoded))
            });
            joined(read, "key file read")
        })
        .buffered(SCAN_AHEAD)
        .try_flatten()
        .map(move |block: Result<Vec<Record>>| {
            let block = block?;
            if let (Some(previous), Some(first)) = (last, block.first())
                && first.key <= previous
            {
                return Err(order_src.corrupt(format!(
                    "a data block starts with key {:032x}, not after the previous block's last key {previous:032x}",
                    first.key
                )));
            }
            last = block.last().map(|r| r.key).or(last);
            Ok(block)
        })
}

/// Checks data block `i` and decodes its records.
fn decode_block(src: &Source, header: &Header, i: u64, block: &Bytes) -> Result<Vec<Record>> {
    // The first block of each level-1 block starts with its top-index key.
    let first = i
        .is_multiple_of(header.entries_per_l1)
        .then(|| header.top[(i / header.entries_per_l1) as usize]);
    let records = header.check_data(src, i, block, first)?;
    Ok((0..records.len() / RECORD_BYTES)
        .map(|r| Record::decode(&records, r))
        .collect())
}

/// One input of a merge: its stream and current block.
struct Cursor {
    blocks: BoxStream<'static, Result<Vec<Record>>>,
    block: Vec<Record>,
    at: usize,
}

impl Cursor {
    /// The current record, reading the next block when this one is done.
    async fn current(&mut self) -> Result<Option<Record>> {
        while self.at >= self.block.len() {
            match self.blocks.next().await {
                Some(block) => {
                    self.block = block?;
                    self.at = 0;
                }
                None => return Ok(None),
            }
        }
        Ok(Some(self.block[self.at]))
    }
}

/// The tournament of a merge: which input holds the smallest current key
/// (for one key, the input listed first), found again after the winner
/// moves on with one comparison per level, against the loser stored there
/// (Knuth, TAOCP 5.4.1). A binary heap pops and pushes instead, about
/// twice the comparisons and moves: at the end of a 20M-event ingest the
/// heap was half of the index merge's time. The nodes hold the losers'
/// keys themselves and a match is decided without a branch: merged keys
/// are random, so a branch on each match would be mispredicted half the
/// time.
#[derive(Debug)]
struct LoserTree {
    /// Node `n` (1..k) holds the loser of the match played there; input
    /// `i` is leaf `k + i`, and node `n`'s children are `2n` and `2n + 1`.
    nodes: Vec<Head>,
    winner: Head,
}

/// An input's current key and its place in the order of inputs, marked
/// [`Head::DONE`] once it is exhausted (last place).
#[derive(Debug, Clone, Copy)]
struct Head {
    key: u128,
    rank: u64,
}

impl Head {
    const DONE: u64 = 1 << 63;

    fn of(input: usize, key: Option<u128>) -> Self {
        match key {
            Some(key) => Self {
                key,
                rank: input as u64,
            },
            None => Self {
                key: u128::MAX,
                rank: Self::DONE | input as u64,
            },
        }
    }

    fn input(self) -> usize {
        (self.rank & !Self::DONE) as usize
    }

    /// Whether this head comes out before `other`: the smaller key, or for
    /// one key the input listed first; an exhausted input never.
    fn before(self, other: Self) -> bool {
        (self.key < other.key) | ((self.key == other.key) & (self.rank < other.rank))
    }
}

impl LoserTree {
    fn new(heads: &[Option<u128>]) -> Self {
        let k = heads.len();
        let mut nodes = vec![Head::of(0, None); k.max(1)];
        // Winners of each node, bottom up; the losers stay in the nodes.
        let mut winners = vec![Head::of(0, None); 2 * k];
        for (i, head) in heads.iter().enumerate() {
            winners[k + i] = Head::of(i, *head);
        }
        for n in (1..k).rev() {
            let (a, b) = (winners[2 * n], winners[2 * n + 1]);
            let (w, l) = if a.before(b) { (a, b) } else { (b, a) };
            winners[n] = w;
            nodes[n] = l;
        }
        // With one input, node 1 is its leaf.
        let winner = if k == 0 {
            Head::of(0, None)
        } else {
            winners[1]
        };
        Self { nodes, winner }
    }

    /// The winner's current key and input, `None` when all are exhausted.
    fn top(&self) -> Option<(u128, usize)> {
        (self.winner.rank & Head::DONE == 0).then_some((self.winner.key, self.winner.input()))
    }

    /// The winner moved on to `key`: replays its matches up to the root.
    fn advance(&mut self, key: Option<u128>) {
        let input = self.winner.input();
        let mut w = Head::of(input, key);
        let mut n = (self.nodes.len() + input) / 2;
        while n > 0 {
            let l = self.nodes[n];
            let swap = l.before(w);
            self.nodes[n] = if swap { w } else { l };
            w = if swap { l } else { w };
            n /= 2;
        }
        self.winner = w;
    }
}

/// Merges the key files `inputs` (path inside the lake, size) into one new
/// file at `out_rel`, keeping the records for which `keep` is true; returns
/// the new file's size and record count.
///
/// When several inputs hold a key, the record of the input listed first
/// wins and the others are dropped: callers list inputs newest first.
/// Streaming: memory holds what a [`scan`] holds per input (about 3.4 MiB)
/// and the output's writer.
pub async fn merge(
    lake: &Lake,
    inputs: &[(String, u64)],
    out_rel: &str,
    keep: impl Fn(&Record) -> bool,
) -> Result<(u64, u64)> {
    let mut writer = KeyFileWriter::create(lake, out_rel);
    match merge_into(lake, inputs, &mut writer, keep).await {
        Ok(()) => writer.finish().await,
        Err(e) => {
            let _ = writer.abort().await;
            Err(e)
        }
    }
}

async fn merge_into(
    lake: &Lake,
    inputs: &[(String, u64)],
    writer: &mut KeyFileWriter,
    keep: impl Fn(&Record) -> bool,
) -> Result<()> {
    let mut cursors: Vec<Cursor> = inputs
        .iter()
        .map(|(rel, size)| Cursor {
            blocks: scan(lake, rel, *size).boxed(),
            block: Vec::new(),
            at: 0,
        })
        .collect();
    let mut heads = Vec::with_capacity(cursors.len());
    for cursor in &mut cursors {
        heads.push(cursor.current().await?.map(|r| r.key));
    }
    let mut tree = LoserTree::new(&heads);
    let mut last: Option<u128> = None;
    while let Some((key, i)) = tree.top() {
        let cursor = &mut cursors[i];
        let record = cursor.block[cursor.at];
        cursor.at += 1;
        // The next block is awaited only when this one is done.
        let next = match cursor.block.get(cursor.at) {
            Some(next) => Some(next.key),
            None => cursor.current().await?.map(|r| r.key),
        };
        tree.advance(next);
        // For one key the input listed first comes out first: the same key
        // again is a later input's, dropped.
        if last == Some(key) {
            continue;
        }
        last = Some(key);
        if keep(&record) {
            writer.push(record).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// xorshift64*: deterministic pseudo-random numbers without a crate.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn key(&mut self) -> u128 {
            (u128::from(self.next()) << 64) | u128::from(self.next())
        }
    }

    fn record(key: u128, tag: i64) -> Record {
        Record {
            key,
            hash: (key as i64) ^ tag,
            date: (key >> 100) as i32 + tag as i32,
        }
    }

    /// `n` records with distinct random keys, sorted.
    fn random_records(seed: u64, n: usize) -> Vec<Record> {
        let mut keys = sorted_keys(&mut Rng(seed), n);
        keys.dedup();
        assert_eq!(keys.len(), n);
        keys.into_iter().map(|k| record(k, 7)).collect()
    }

    /// `n` random keys, sorted.
    fn sorted_keys(rng: &mut Rng, n: usize) -> Vec<u128> {
        let mut keys: Vec<u128> = (0..n).map(|_| rng.key()).collect();
        keys.sort_unstable();
        keys
    }

    async fn scan_all(lake: &Lake, rel: &str, size: u64) -> Result<Vec<Record>> {
        let blocks: Vec<Vec<Record>> = scan(lake, rel, size).try_collect().await?;
        Ok(blocks.concat())
    }

    async fn stored_size(lake: &Lake, rel: &str) -> u64 {
        lake.store().head(&lake.path(rel)).await.unwrap().size
    }

    /// Probes present, absent, below-minimum, above-maximum and repeated
    /// keys against a BTreeMap, with the default tail read and with the
    /// smallest one (so level-1 blocks need their own round trip).
    async fn check_round_trip(lake: &Lake, n: usize) {
        let rel = format!("index/keys-{n}.alk");
        let records = random_records(n as u64 + 1, n);
        let (size, count) = write_all(lake, &rel, &records).await.unwrap();
        assert_eq!(count, n as u64);
        assert_eq!(size, stored_size(lake, &rel).await);
        let reference: BTreeMap<u128, Record> = records.iter().map(|r| (r.key, *r)).collect();

        // Every present key (a sample of the large file), its neighbours,
        // the extremes, random absent keys, repeats.
        let step = if n > 10_000 { 97 } else { 1 };
        let mut keys: Vec<u128> = Vec::new();
        for r in records.iter().step_by(step) {
            keys.extend([r.key, r.key.wrapping_sub(1), r.key.wrapping_add(1)]);
        }
        if let (Some(first), Some(last)) = (records.first(), records.last()) {
            keys.extend([first.key, last.key, last.key, first.key]);
        }
        let mut rng = Rng(99);
        keys.extend((0..200).map(|_| rng.key()));
        keys.extend([0, 1, u128::MAX, u128::MAX - 1]);
        keys.sort_unstable();
        let expected: Vec<Option<Record>> =
            keys.iter().map(|k| reference.get(k).copied()).collect();

        for min_tail in [TAIL_READ, 0] {
            let (found, reads) = probe_with(lake, &rel, size, &keys, min_tail).await.unwrap();
            assert_eq!(found, expected, "n = {n}, tail {min_tail}");
            assert!(reads.round_trips <= 3, "{reads:?}");
            if n >= 600_000 && min_tail == 0 {
                // Tail, level-1 blocks, data blocks: each its own read.
                assert_eq!(reads.round_trips, 3, "{reads:?}");
            }
        }
        assert_eq!(probe(lake, &rel, size, &keys).await.unwrap(), expected);
        assert_eq!(probe(lake, &rel, size, &[]).await.unwrap(), vec![]);

        // Keys outside the file's range cost only the tail read.
        if let (Some(first), Some(last)) = (records.first(), records.last()) {
            let outside = [first.key.wrapping_sub(1), last.key.wrapping_add(1)];
            let outside: Vec<u128> = outside
                .into_iter()
                .filter(|k| !reference.contains_key(k))
                .collect();
            let (found, reads) = probe_with(lake, &rel, size, &outside, 0).await.unwrap();
            assert!(found.iter().all(Option::is_none));
            assert_eq!(reads.round_trips, 1);
        }

        assert_eq!(scan_all(lake, &rel, size).await.unwrap(), records);
    }

    #[tokio::test]
    async fn round_trips_on_a_local_lake() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap()).unwrap();
        for n in [0, 1, 511, 512, 513, 600_000] {
            check_round_trip(&lake, n).await;
        }
    }

    #[tokio::test]
    async fn round_trips_on_an_object_store() {
        let lake = Lake::open("memory://keyfile-round-trips").unwrap();
        for n in [0, 1, 511, 512, 513, 1025 * 512 + 3] {
            check_round_trip(&lake, n).await;
        }
    }

    #[tokio::test]
    async fn probes_read_what_the_keys_need_not_the_file() {
        let lake = Lake::open("memory://keyfile-reads").unwrap();
        let records = random_records(5, 600_000);
        let (size, _) = write_all(&lake, "k.alk", &records).await.unwrap();
        // 600k records: 1172 data blocks in two level-1 blocks.
        assert!(600_000usize.div_ceil(RECORDS_PER_BLOCK) > ENTRIES_PER_L1);
        let keys: Vec<u128> = records.iter().step_by(60_001).map(|r| r.key).collect();
        assert_eq!(keys.len(), 10);
        for min_tail in [TAIL_READ, 0] {
            let (found, reads) = probe_with(&lake, "k.alk", size, &keys, min_tail)
                .await
                .unwrap();
            assert!(found.iter().all(Option::is_some));
            assert!(reads.round_trips <= 3, "{reads:?}");
            let bound = min_tail.max(200)
                + 2 * (ENTRIES_PER_L1 * KEY_BYTES + CHECKSUM_BYTES) as u64
                + 10 * (RECORDS_PER_BLOCK * RECORD_BYTES + CHECKSUM_BYTES) as u64;
            assert!(reads.bytes <= bound, "{reads:?} of {size} bytes");
        }
        // All keys: still three round trips, every record checked.
        let all: Vec<u128> = records.iter().map(|r| r.key).collect();
        let (found, reads) = probe_with(&lake, "k.alk", size, &all, 0).await.unwrap();
        assert!(
            found
                .iter()
                .zip(&records)
                .all(|(f, r)| f.as_ref() == Some(r))
        );
        assert_eq!(reads.round_trips, 3);
    }

    #[tokio::test]
    async fn block_sizes_come_from_the_trailer() {
        // 4 records per block, 3 entries per level-1 block: 2500 data
        // blocks, 834 level-1 blocks, a 13 KB top index, more than the tail
        // read sized for our block sizes brings.
        let lake = Lake::open("memory://keyfile-fanout").unwrap();
        let records = random_records(23, 10_000);
        let mut writer = KeyFileWriter::with_fanout(&lake, "f.alk", 4, 3);
        for r in &records {
            writer.push(*r).await.unwrap();
        }
        let (size, count) = writer.finish().await.unwrap();
        assert_eq!(count, 10_000);
        let reference: BTreeMap<u128, Record> = records.iter().map(|r| (r.key, *r)).collect();
        let mut keys: Vec<u128> = records.iter().step_by(3).map(|r| r.key).collect();
        let mut rng = Rng(1);
        keys.extend((0..100).map(|_| rng.key()));
        keys.sort_unstable();
        let expected: Vec<Option<Record>> =
            keys.iter().map(|k| reference.get(k).copied()).collect();
        for (min_tail, round_trips) in [(TAIL_READ, 2), (0, 4)] {
            let (found, reads) = probe_with(&lake, "f.alk", size, &keys, min_tail)
                .await
                .unwrap();
            assert_eq!(found, expected);
            // With the 64 KiB tail the level-1 index comes with the top
            // index; without, the top index needs a read of its own.
            assert_eq!(reads.round_trips, round_trips, "{reads:?}");
        }
        assert_eq!(scan_all(&lake, "f.alk", size).await.unwrap(), records);
        let (merged, _) = merge(&lake, &[("f.alk".to_string(), size)], "g.alk", |_| true)
            .await
            .unwrap();
        assert_eq!(scan_all(&lake, "g.alk", merged).await.unwrap(), records);
    }

    #[tokio::test]
    async fn merge_keeps_the_first_inputs_record_and_honours_keep() {
        let lake = Lake::open("memory://keyfile-merge").unwrap();
        let mut rng = Rng(3);
        let universe = sorted_keys(&mut rng, 20_000);
        let mut inputs = Vec::new();
        let mut reference: BTreeMap<u128, Record> = BTreeMap::new();
        for tag in 0..3i64 {
            let records: Vec<Record> = universe
                .iter()
                .filter(|_| rng.next().is_multiple_of(2))
                .map(|&k| record(k, tag))
                .collect();
            let rel = format!("merge/in-{tag}.alk");
            let (size, _) = write_all(&lake, &rel, &records).await.unwrap();
            for r in &records {
                reference.entry(r.key).or_insert(*r);
            }
            inputs.push((rel, size));
        }
        let (empty, _) = write_all(&lake, "merge/empty.alk", &[]).await.unwrap();
        inputs.insert(1, ("merge/empty.alk".to_string(), empty));

        let keep = |r: &Record| !r.key.is_multiple_of(7);
        let (size, count) = merge(&lake, &inputs, "merge/out.alk", keep).await.unwrap();
        let expected: Vec<Record> = reference.values().copied().filter(keep).collect();
        assert!(expected.len() > 10_000);
        // Some keys are in several inputs and some are dropped by keep.
        assert!(expected.len() < reference.len());
        assert_eq!(count, expected.len() as u64);
        assert_eq!(size, stored_size(&lake, "merge/out.alk").await);
        let merged = scan_all(&lake, "merge/out.alk", size).await.unwrap();
        assert_eq!(merged, expected);
        let keys: Vec<u128> = universe.clone();
        let found = probe(&lake, "merge/out.alk", size, &keys).await.unwrap();
        for (key, found) in keys.iter().zip(found) {
            assert_eq!(found, reference.get(key).copied().filter(keep));
        }
    }

    /// Every number of inputs up to nine (the tournament's shape
    /// differs with each), inputs of random lengths (some empty, some
    /// exhausted long before the others) over a small universe of keys, so
    /// that most keys are in several inputs: the merge equals a map filled
    /// from the inputs in order, first record kept.
    #[tokio::test]
    async fn merges_of_up_to_nine_inputs_equal_a_map_filled_in_input_order() {
        let lake = Lake::open("memory://keyfile-merge-many").unwrap();
        let mut rng = Rng(17);
        let universe = sorted_keys(&mut rng, 3000);
        for k in 0..=9usize {
            let mut inputs = Vec::new();
            let mut reference: BTreeMap<u128, Record> = BTreeMap::new();
            for tag in 0..k {
                // Empty, short (a prefix of the universe) or a random subset.
                let records: Vec<Record> = match rng.next() % 4 {
                    0 => Vec::new(),
                    1 => universe[..(rng.next() % 600) as usize]
                        .iter()
                        .map(|&key| record(key, tag as i64))
                        .collect(),
                    _ => universe
                        .iter()
                        .filter(|_| rng.next().is_multiple_of(3))
                        .map(|&key| record(key, tag as i64))
                        .collect(),
                };
                let rel = format!("many/{k}-{tag}.alk");
                let (size, _) = write_all(&lake, &rel, &records).await.unwrap();
                for r in &records {
                    reference.entry(r.key).or_insert(*r);
                }
                inputs.push((rel, size));
            }
            let out = format!("many/{k}-out.alk");
            let (size, count) = merge(&lake, &inputs, &out, |_| true).await.unwrap();
            let expected: Vec<Record> = reference.into_values().collect();
            assert_eq!(count, expected.len() as u64, "{k} inputs");
            assert_eq!(
                scan_all(&lake, &out, size).await.unwrap(),
                expected,
                "{k} inputs"
            );
        }
    }

    #[tokio::test]
    async fn truncated_files_are_errors_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap()).unwrap();
        let records = random_records(11, 5000);
        let (size, _) = write_all(&lake, "idx/t.alk", &records).await.unwrap();
        let keys: Vec<u128> = records.iter().map(|r| r.key).collect();
        let file = dir.path().join("idx/t.alk");
        for cut in [1, 10, TRAILER_BYTES as u64, size - 100] {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&file)
                .unwrap()
                .set_len(size - cut)
                .unwrap();
            // Probed with the size the commit log recorded.
            let err = probe(&lake, "idx/t.alk", size, &keys)
                .await
                .unwrap_err()
                .to_string();
            let says = format!(
                "corrupt key file idx/t.alk: the file is {} bytes where {size} were expected",
                size - cut
            );
            assert!(err.starts_with(&says), "{err}");
            let err = scan_all(&lake, "idx/t.alk", size)
                .await
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("idx/t.alk") && err.contains("truncated"),
                "{err}"
            );
            // Probed with the size it now has.
            let err = probe(&lake, "idx/t.alk", size - cut, &keys)
                .await
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("corrupt key file idx/t.alk:"), "{err}");
            // Restore it for the next cut.
            write_all(&lake, "idx/t.alk", &records).await.unwrap();
        }
        // A longer file (overwritten, or appended to) is no better.
        let mut longer = std::fs::read(&file).unwrap();
        longer.extend_from_slice(&[0; 100]);
        std::fs::write(&file, longer).unwrap();
        let err = probe(&lake, "idx/t.alk", size, &keys)
            .await
            .unwrap_err()
            .to_string();
        let says = format!(
            "the file is {} bytes where {size} were expected",
            size + 100
        );
        assert!(err.contains(&says), "{err}");
        let err = probe(&lake, "idx/t.alk", size + 100, &keys)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("idx/t.alk: no trailer"), "{err}");

        let err = probe(&lake, "idx/missing.alk", size, &keys)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("idx/missing.alk"), "{err}");
    }

    /// Writes `bytes` with bit `bit` of byte `at` flipped.
    async fn put_flipped(lake: &Lake, rel: &str, bytes: &[u8], at: usize) {
        let mut damaged = bytes.to_vec();
        damaged[at] ^= 1 << (at % 8);
        lake.store()
            .put(&lake.path(rel), damaged.into())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn every_flipped_byte_is_an_error_never_a_wrong_answer() {
        let lake = Lake::open("memory://keyfile-flips").unwrap();
        // Two data blocks, one level-1 block: flip every byte.
        let records = random_records(13, 600);
        let (size, _) = write_all(&lake, "good.alk", &records).await.unwrap();
        let bytes = lake
            .store()
            .get(&lake.path("good.alk"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let keys: Vec<u128> = records.iter().map(|r| r.key).collect();
        for at in 0..bytes.len() {
            put_flipped(&lake, "bad.alk", &bytes, at).await;
            let err = probe(&lake, "bad.alk", size, &keys).await;
            let err = err.map(|_| ()).unwrap_err().to_string();
            assert!(
                err.starts_with("corrupt key file bad.alk: "),
                "byte {at}: {err}"
            );
            // A scan does not read the level-1 index; it must fail or be right.
            match scan_all(&lake, "bad.alk", size).await {
                Ok(scanned) => assert_eq!(scanned, records, "byte {at}"),
                Err(e) => assert!(e.to_string().contains("bad.alk"), "{e}"),
            }
        }

        // Two level-1 blocks: the tail, and bytes of each index and data block.
        let records = random_records(17, 600_000);
        let (size, _) = write_all(&lake, "big.alk", &records).await.unwrap();
        let bytes = lake
            .store()
            .get(&lake.path("big.alk"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        // A key in every data block.
        let keys: Vec<u128> = records.iter().step_by(300).map(|r| r.key).collect();
        let len = bytes.len();
        let l1 = 600_000 * RECORD_BYTES + 1172 * CHECKSUM_BYTES;
        let mut positions: Vec<usize> = (len - TRAILER_BYTES - 2 * KEY_BYTES..len).collect();
        positions.extend([
            l1,
            l1 + 5000,
            l1 + 16_391,
            l1 + 16_392,
            l1 + 18_000,
            l1 + 18_767,
        ]);
        positions.extend([0, 14_343, 14_344, 3_000_000, l1 - 9, l1 - 1]);
        for at in positions {
            put_flipped(&lake, "bad.alk", &bytes, at).await;
            let err = probe(&lake, "bad.alk", size, &keys).await;
            let err = err.map(|_| ()).unwrap_err().to_string();
            assert!(
                err.starts_with("corrupt key file bad.alk: "),
                "byte {at}: {err}"
            );
        }
        put_flipped(&lake, "bad.alk", &bytes, 0).await;
        let err = scan_all(&lake, "bad.alk", size)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("bad.alk") && err.contains("data block 0"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn the_writer_rejects_keys_out_of_order() {
        let lake = Lake::open("memory://keyfile-order").unwrap();
        let mut writer = KeyFileWriter::create(&lake, "w/o.alk");
        writer.push(record(5, 0)).await.unwrap();
        let err = writer.push(record(3, 0)).await.unwrap_err().to_string();
        assert!(
            err.contains("w/o.alk") && err.contains("strictly increasing"),
            "{err}"
        );
        // A repeated key too.
        assert!(writer.push(record(5, 1)).await.is_err());
        writer.push(record(6, 0)).await.unwrap();
        assert_eq!(writer.records(), 2);
        writer.abort().await.unwrap();
        let err = write_all(&lake, "w/o.alk", &[record(2, 0), record(1, 0)]).await;
        assert!(err.is_err());
        assert!(matches!(
            lake.store().head(&lake.path("w/o.alk")).await,
            Err(object_store::Error::NotFound { .. })
        ));
        // The records that were in order are readable.
        let (size, count) = write_all(&lake, "w/ok.alk", &[record(5, 0), record(6, 0)])
            .await
            .unwrap();
        assert_eq!(count, 2);
        assert_eq!(
            probe(&lake, "w/ok.alk", size, &[4, 5, 6, 7]).await.unwrap(),
            vec![None, Some(record(5, 0)), Some(record(6, 0)), None]
        );
    }
}
