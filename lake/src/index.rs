//! The key index: which event ids are stored (with their content hash), and
//! which lines are quarantined, looked up without reading the lake.
//!
//! An ingest must tell, for each of its k events, whether its `event_id` is
//! stored already and with what content (SPEC §1: an exact repeat is a
//! duplicate, other content a conflicting duplicate, and the event stored
//! first stays). Reading every stored id for that costs the whole lake at
//! every ingest. Instead every commit that adds `events` or `quarantine`
//! rows also adds *index runs*: sorted key files ([`crate::keyfile`]) of
//! the rows it adds, in the tables `event_index` and `quarantine_index`,
//! committed in the same commit, so the index is exactly as current as the
//! data. A lookup probes each run with three ranged reads whatever its
//! size, so it reads data that grows with k and the number of runs, not
//! with the lake. Apache Hudi's record-level index is the model.
//!
//! - **Events**: key = xxh3-128 of the `event_id`, with its `content_hash`
//!   and its partition date.
//! - **Quarantine**: key = xxh3-128 of source, line number and raw text
//!   ([`quarantine_key`]), with the partition date (of the ingest).
//! - **Retention** takes whole date partitions out; the log remembers the
//!   version that last did so for each date ([`crate::state::State::retained`]).
//!   An entry of a run added before that version is no longer stored, so
//!   nothing needs rewriting; the next merge drops it.
//! - **Compaction** keeps the rows, so it keeps their entries; `compact`
//!   also merges the runs when there are more than [`MAX_RUNS`].
//! - **Files the index does not cover** (written by binaries from before the
//!   index, or an index lost and not yet rebuilt) are read the old way: the
//!   state says which ([`crate::state::LiveFile::indexed`]), and
//!   `agentledger rebuild` indexes everything again.

use std::collections::HashMap;

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use futures::stream::{self, Stream, StreamExt};
use object_store::ObjectStoreExt;
use xxhash_rust::xxh3::xxh3_128;

use crate::error::{Error, Result, joined};
use crate::keyfile::{self, Record};
use crate::log::{FileEntry, Snapshot};
use crate::parquet_io::read_columns;
use crate::schema::{EVENTS, QUARANTINE, index_of};
use crate::store::Lake;

/// More runs than this and `compact` merges them into one.
pub const MAX_RUNS: usize = 8;

/// At most this many entries are sorted in memory for one run (about 28
/// bytes each); a bigger commit writes several runs.
pub const RUN_RECORDS: usize = 2_000_000;

/// The key of an event id.
pub fn event_key(event_id: &str) -> u128 {
    xxh3_128(event_id.as_bytes())
}

/// The key of a quarantined line: its source, line number and raw text (the
/// same line of the same file quarantined again is not a new row).
pub fn quarantine_key(source: &str, line: i64, raw: &str) -> u128 {
    let mut key = Vec::with_capacity(source.len() + raw.len() + 10);
    key.extend_from_slice(source.as_bytes());
    key.push(0);
    key.extend_from_slice(&line.to_le_bytes());
    key.extend_from_slice(raw.as_bytes());
    xxh3_128(&key)
}

/// Days since 1970-01-01 of a partition date `YYYY-MM-DD`; `path` names
/// where the date comes from, for the error.
pub fn day_of(date: &str, path: &str) -> Result<i32> {
    let d = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").map_err(|e| Error::CorruptLog {
        path: path.to_string(),
        reason: format!("the partition date {date:?} does not parse: {e}"),
    })?;
    Ok((d - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32)
}

#[derive(Debug, Clone)]
struct Run {
    path: String,
    size: u64,
    added_by: u64,
}

/// The index of one table (`events` or `quarantine`) at a snapshot.
#[derive(Debug, Clone)]
pub struct KeyIndex {
    /// Newest first.
    runs: Vec<Run>,
    /// Day → the version that last retained that date partition.
    retained: HashMap<i32, u64>,
    /// Live files of the table whose keys are not in the index.
    unindexed: Vec<FileEntry>,
}

impl KeyIndex {
    /// The index of `table` as `snapshot` has it.
    pub fn of(snapshot: &Snapshot, table: &str) -> Result<Self> {
        let index_table = index_of(table).expect("events and quarantine have an index");
        let state = snapshot.state();
        let mut runs: Vec<Run> = state
            .appended
            .iter()
            .filter(|f| f.entry.table == index_table)
            .map(|f| Run {
                path: f.entry.path.clone(),
                size: f.entry.size,
                added_by: f.added_by,
            })
            .collect();
        runs.reverse();
        let mut retained = HashMap::new();
        if let Some(dates) = state.retained.get(table) {
            for (date, version) in dates {
                retained.insert(day_of(date, &format!("_log/{version:020}.json"))?, *version);
            }
        }
        let unindexed = state
            .appended
            .iter()
            .filter(|f| f.entry.table == table && !f.indexed)
            .map(|f| f.entry.clone())
            .collect();
        Ok(Self {
            runs,
            retained,
            unindexed,
        })
    }

    /// Live files of the table whose rows the index does not hold: to be
    /// read the old way.
    pub fn unindexed(&self) -> &[FileEntry] {
        &self.unindexed
    }

    /// How many runs a lookup probes.
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    /// The stored entry of each key that has one. Every run is probed (all
    /// at once); an entry whose date partition was retained after its run
    /// was added is not stored any more; the newest run's entry wins.
    pub async fn lookup(&self, lake: &Lake, keys: &[u128]) -> Result<HashMap<u128, Record>> {
        let mut out = HashMap::new();
        if self.runs.is_empty() || keys.is_empty() {
            return Ok(out);
        }
        let mut sorted = keys.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let probes = self.runs.iter().map(|run| {
            let sorted = &sorted;
            async move { keyfile::probe(lake, &run.path, run.size, sorted).await }
        });
        let results: Vec<Result<Vec<Option<Record>>>> =
            futures::stream::iter(probes).buffered(16).collect().await;
        for (run, found) in self.runs.iter().zip(results) {
            let found = found.map_err(|e| Error::CorruptData {
                path: run.path.clone(),
                reason: format!(
                    "the key index cannot be read ({e}); `agentledger rebuild` writes it anew from the stored events"
                ),
            })?;
            for (key, record) in sorted.iter().zip(found) {
                if let Some(record) = record
                    && self.live(run.added_by, &record)
                {
                    out.entry(*key).or_insert(record);
                }
            }
        }
        Ok(out)
    }

    fn live(&self, added_by: u64, record: &Record) -> bool {
        self.retained
            .get(&record.date)
            .is_none_or(|retained_at| *retained_at < added_by)
    }

    /// Merges runs, dropping entries no longer stored, when there are more
    /// than `max_runs`: the file written (named
    /// `<index table>/<id>-merged.keys`) and the runs it replaces. Size
    /// tiered, so that a lake's index is not rewritten every few ingests:
    /// the largest run stays as it is while it holds more than four times
    /// the rest together, and the others are merged into one; otherwise
    /// all are merged.
    pub async fn merge(
        &self,
        lake: &Lake,
        table: &str,
        id: &str,
        max_runs: usize,
    ) -> Result<Option<(FileEntry, Vec<String>)>> {
        if self.runs.len() <= max_runs {
            return Ok(None);
        }
        let index_table = index_of(table).expect("events and quarantine have an index");
        let path = format!("{index_table}/{id}-merged.keys");
        let largest = self
            .runs
            .iter()
            .enumerate()
            .max_by_key(|(_, r)| r.size)
            .map(|(i, r)| (i, r.size))
            .expect("more than max_runs runs");
        let rest: u64 = self.runs.iter().map(|r| r.size).sum::<u64>() - largest.1;
        // Newest first, as the lookup reads them.
        let chosen: Vec<&Run> = self
            .runs
            .iter()
            .enumerate()
            .filter(|(i, _)| largest.1 <= rest.saturating_mul(4) || *i != largest.0)
            .map(|(_, r)| r)
            .collect();
        let (size, rows) = merge_runs(lake, self, &chosen, &path).await?;
        let removed: Vec<String> = chosen.iter().map(|r| r.path.clone()).collect();
        let entry = FileEntry {
            table: index_table.to_string(),
            path,
            size,
            rows,
            date: None,
        };
        Ok(Some((entry, removed)))
    }
}

/// Merges the runs of `index` into `out`, keeping each key's entry from the
/// newest run where it is live.
async fn merge_runs(lake: &Lake, index: &KeyIndex, runs: &[&Run], out: &str) -> Result<(u64, u64)> {
    // Liveness depends on the run an entry comes from, which a merge of
    // sorted streams does not tell the `keep` callback; so each run is
    // first filtered to its live entries (streaming) and the filtered runs
    // merged. Runs with nothing retained since they were added need no
    // filtering.
    let mut filtered: Vec<(String, u64)> = Vec::new();
    let mut temporary: Vec<String> = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let (path, size) = (&run.path, &run.size);
        let stale = index.retained.values().any(|v| *v >= run.added_by);
        if !stale {
            filtered.push((path.clone(), *size));
            continue;
        }
        let tmp = format!("{out}.{i}.tmp");
        let added_by = run.added_by;
        let (size, _) = keyfile::merge(lake, &[(path.clone(), *size)], &tmp, |r| {
            index.live(added_by, r)
        })
        .await?;
        filtered.push((tmp.clone(), size));
        temporary.push(tmp);
    }
    let result = keyfile::merge(lake, &filtered, out, |_| true).await;
    for tmp in temporary {
        let _ = lake.store().delete(&lake.path(&tmp)).await;
    }
    result
}

/// Writes the index runs of `files` (the `events` and `quarantine` files a
/// commit adds), named `<index table>/<id>-<n>.keys`: the files to add to
/// the commit, which then states `"index": {"own": true}`.
pub async fn runs_for(lake: &Lake, id: &str, files: &[FileEntry]) -> Result<Vec<FileEntry>> {
    let mut out = Vec::new();
    for table in [EVENTS, QUARANTINE] {
        let index_table = index_of(table).expect("keyed table");
        // Room for a whole run at once: growing by doubling would copy the
        // records and hold both copies for a moment.
        let rows: u64 = files
            .iter()
            .filter(|f| f.table == table)
            .map(|f| f.rows)
            .sum();
        let largest = files
            .iter()
            .filter(|f| f.table == table)
            .map(|f| f.rows)
            .max();
        let room = (rows as usize).min(RUN_RECORDS + largest.unwrap_or(0) as usize);
        let mut records: Vec<Record> = Vec::with_capacity(room);
        let mut n = 0;
        let mut each = records_of_each(
            lake,
            files.iter().filter(|f| f.table == table).cloned().collect(),
        );
        while let Some(part) = each.next().await {
            records.extend_from_slice(&part?);
            if records.len() >= RUN_RECORDS {
                out.push(write_run(lake, index_table, id, &mut n, &mut records).await?);
            }
        }
        if !records.is_empty() {
            out.push(write_run(lake, index_table, id, &mut n, &mut records).await?);
        }
    }
    Ok(out)
}

/// Files read at once for their index entries. Reading one is CPU work
/// (zstd, decoding, a hash of every id), and at the end of a large ingest it
/// is all that runs: one file on each of two cores halves that wait.
pub const READ_AHEAD: usize = 2;

/// The index entries of each of `files`, in their order, read
/// [`READ_AHEAD`] files at once in spawned tasks. Memory holds the entries
/// of at most that many files besides the caller's.
fn records_of_each(
    lake: &Lake,
    files: Vec<FileEntry>,
) -> impl Stream<Item = Result<Vec<Record>>> + Send + 'static {
    let lake = lake.clone();
    stream::iter(files)
        .map(move |file| {
            let lake = lake.clone();
            joined(
                tokio::spawn(async move {
                    let mut out = Vec::new();
                    push_records_of(&lake, &file, &mut out).await?;
                    Ok(out)
                }),
                "reading index entries",
            )
        })
        .buffered(READ_AHEAD)
}

/// Runs of more records than this are sorted on two threads.
const PARALLEL_SORT: usize = 1 << 16;

/// Sorts `records` by key. A large run is split on the top bit of the key
/// (keys are xxh3-128 hashes, so the halves are about equal) and the two
/// halves are sorted on two threads: the sort of a 2M-record run is a fifth
/// of a second that nothing else overlaps.
fn sort_by_key(records: &mut [Record]) {
    if records.len() < PARALLEL_SORT {
        records.sort_unstable_by_key(|r| r.key);
        return;
    }
    // Keys with the top bit clear to the front, in place.
    let (mut low, mut high) = (0, records.len());
    while low < high {
        if records[low].key >> 127 == 0 {
            low += 1;
        } else {
            high -= 1;
            records.swap(low, high);
        }
    }
    let (front, back) = records.split_at_mut(low);
    std::thread::scope(|s| {
        s.spawn(|| back.sort_unstable_by_key(|r| r.key));
        front.sort_unstable_by_key(|r| r.key);
    });
}

/// Sorts `records` and writes them as the run `<index_table>/<id>-<n>.keys`
/// (`n` counts the runs of `id`, from 1), leaving `records` empty: the file
/// to add to the commit. Two records with one key are an error: one commit
/// never stores a key twice.
pub async fn write_run(
    lake: &Lake,
    index_table: &str,
    id: &str,
    n: &mut u32,
    records: &mut Vec<Record>,
) -> Result<FileEntry> {
    sort_by_key(records);
    if let Some(w) = records.windows(2).find(|w| w[0].key == w[1].key) {
        return Err(Error::CorruptData {
            path: format!("{index_table}/{id}"),
            reason: format!(
                "two rows of one commit have the same key {:032x}; nothing was committed",
                w[0].key
            ),
        });
    }
    *n += 1;
    let path = format!("{index_table}/{id}-{n:04}.keys");
    let (size, rows) = keyfile::write_all(lake, &path, records).await?;
    records.clear();
    Ok(FileEntry {
        table: index_table.to_string(),
        path,
        size,
        rows,
        date: None,
    })
}

/// Appends the index entries of one `events` or `quarantine` file to
/// `out`, in file order.
pub async fn push_records_of(lake: &Lake, file: &FileEntry, out: &mut Vec<Record>) -> Result<()> {
    let date = match &file.date {
        Some(d) => day_of(d, &file.path)?,
        None => {
            return Err(Error::CorruptLog {
                path: file.path.clone(),
                reason: "a partitioned file without a date in the log".into(),
            });
        }
    };
    out.reserve(file.rows as usize);
    if file.table == EVENTS {
        for_each_event(lake, file, |key, hash| out.push(Record { key, hash, date })).await?;
    } else {
        for key in quarantine_keys(lake, file).await? {
            out.push(Record { key, hash: 0, date });
        }
    }
    Ok(())
}

/// Calls `f` with the key and content hash of every row of an `events`
/// file, in file order.
pub async fn for_each_event(
    lake: &Lake,
    file: &FileEntry,
    mut f: impl FnMut(u128, i64),
) -> Result<()> {
    let mut stream = read_columns(lake, file, &["event_id", "content_hash"]).await?;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let ids = batch.column(0).as_string::<i32>();
        let hashes = batch.column(1).as_primitive::<Int64Type>();
        for i in 0..batch.num_rows() {
            f(event_key(ids.value(i)), hashes.value(i));
        }
    }
    Ok(())
}

/// The key of every row of a quarantine file, in file order.
pub async fn quarantine_keys(lake: &Lake, file: &FileEntry) -> Result<Vec<u128>> {
    let mut keys = Vec::with_capacity(file.rows as usize);
    let mut stream = read_columns(lake, file, &["source", "line", "raw_line"]).await?;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        // A projection keeps the file's column order: source, line, raw_line.
        let sources = batch.column(0).as_string::<i32>();
        let lines = batch.column(1).as_primitive::<Int64Type>();
        let raws = batch.column(2).as_string::<i32>();
        for i in 0..batch.num_rows() {
            keys.push(quarantine_key(
                sources.value(i),
                lines.value(i),
                raws.value(i),
            ));
        }
    }
    Ok(keys)
}

/// Counts of a rebuilt index.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RebuiltIndex {
    /// Entries of `event_index`.
    pub event_keys: u64,
    /// Entries of `quarantine_index`.
    pub quarantine_keys: u64,
    /// Runs it replaced.
    pub removed_runs: usize,
}

/// Writes a new index of every live `events` and `quarantine` file of
/// `snapshot` (one merged run per table): the files to add, the runs to
/// remove, and counts. The caller commits them with `"index": {"full":
/// true}`, which marks every live file indexed.
pub async fn rebuild_files(
    lake: &Lake,
    snapshot: &Snapshot,
    id: &str,
) -> Result<(Vec<FileEntry>, Vec<String>, RebuiltIndex)> {
    let mut add = Vec::new();
    let mut counts = RebuiltIndex::default();
    for table in [EVENTS, QUARANTINE] {
        let files: Vec<FileEntry> = snapshot.files(table).into_iter().cloned().collect();
        let runs = runs_for(lake, &format!("{id}-part"), &files).await?;
        if runs.is_empty() {
            continue;
        }
        let index_table = index_of(table).expect("keyed table");
        let path = format!("{index_table}/{id}-rebuilt.keys");
        let inputs: Vec<(String, u64)> = runs.iter().map(|r| (r.path.clone(), r.size)).collect();
        let (size, rows) = keyfile::merge(lake, &inputs, &path, |_| true).await?;
        for r in &runs {
            let _ = lake.store().delete(&lake.path(&r.path)).await;
        }
        if table == EVENTS {
            counts.event_keys = rows;
        } else {
            counts.quarantine_keys = rows;
        }
        add.push(FileEntry {
            table: index_table.to_string(),
            path,
            size,
            rows,
            date: None,
        });
    }
    let removes: Vec<String> = snapshot
        .state()
        .appended
        .iter()
        .filter(|f| {
            [EVENTS, QUARANTINE]
                .iter()
                .any(|t| index_of(t) == Some(f.entry.table.as_str()))
        })
        .map(|f| f.entry.path.clone())
        .collect();
    counts.removed_runs = removes.len();
    Ok((add, removes, counts))
}

/// `agentledger rebuild`'s part: a new index of every live `events` and
/// `quarantine` file, committed under the writer lease with `"index":
/// {"full": true}`, removing every earlier run. What to run when index files
/// were lost (an ingest then fails naming the missing file), or to index
/// files written before the index existed.
pub async fn rebuild(lake: &Lake) -> Result<RebuiltIndex> {
    let lock = crate::lease::Lease::writer(lake, "rebuild the key index").await?;
    let result = async {
        let lake = &lock.fence(lake);
        let mut snapshot = Snapshot::load(lake).await?;
        let id = crate::log::new_id();
        let (files, removes, counts) = rebuild_files(lake, &snapshot, &id).await?;
        if files.is_empty() && removes.is_empty() {
            return Ok(counts);
        }
        let mut commit = crate::log::Commit::record(
            crate::log::CommitKind::Compact,
            serde_json::json!({
                "table": "index",
                "index": crate::log::IndexCover { own: false, full: true },
                "event_keys": counts.event_keys,
                "quarantine_keys": counts.quarantine_keys,
            }),
        );
        commit.id = id;
        commit.files = files.clone();
        commit.removes = removes;
        // Not over concurrent ingests: "full" would also mark files of an
        // ingest by an older binary (which writes no runs) as indexed.
        match snapshot.commit(lake, commit).await {
            Ok(_) => Ok(counts),
            Err(e) => {
                for f in &files {
                    let _ = lake.store().delete(&lake.path(&f.path)).await;
                }
                Err(e)
            }
        }
    }
    .await;
    lock.release().await?;
    result
}

/// Merges the key index runs of `events` and of `quarantine` when a table
/// has more than [`MAX_RUNS`], in a commit of its own (a compaction with no
/// run-parts cover: it touches no events), on `snapshot`. Returns the runs
/// merged. `compact` calls it, and every ingest after its commit (through
/// [`merge_if_due`]), so an hourly pipeline probes a bounded number of runs
/// whether or not it compacts.
pub async fn merge_due(lake: &Lake, snapshot: &mut Snapshot) -> Result<usize> {
    let id = crate::log::new_id();
    let mut files = Vec::new();
    let mut removes = Vec::new();
    for table in [EVENTS, QUARANTINE] {
        let index = KeyIndex::of(snapshot, table)?;
        if let Some((file, runs)) = index.merge(lake, table, &id, MAX_RUNS).await? {
            files.push(file);
            removes.extend(runs);
        }
    }
    if files.is_empty() {
        return Ok(0);
    }
    let merged = removes.len();
    let mut commit = crate::log::Commit::record(
        crate::log::CommitKind::Compact,
        serde_json::json!({"table": "index", "runs_merged": merged}),
    );
    commit.id = id;
    commit.files = files;
    commit.removes = removes;
    snapshot.commit_over_ingests(lake, commit).await?;
    Ok(merged)
}

/// [`merge_due`] under the writer lease, unless another writer holds it
/// (then it is left to that writer or the next ingest: lookups are exact
/// with any number of runs, only slower). Returns the runs merged.
pub async fn merge_if_due(lake: &Lake) -> Result<usize> {
    let snapshot = Snapshot::load(lake).await?;
    let due = [EVENTS, QUARANTINE].iter().any(|t| {
        let runs = index_of(t).expect("keyed table");
        snapshot.files(runs).len() > MAX_RUNS
    });
    if !due {
        return Ok(0);
    }
    let lock = match crate::lease::Lease::acquire(
        lake,
        crate::lease::WRITER,
        "merge the key index",
        crate::lease::Waiting::Patiently(std::time::Duration::ZERO),
    )
    .await
    {
        Ok(lock) => lock,
        Err(Error::Locked { .. }) => return Ok(0),
        Err(e) => return Err(e),
    };
    let result = async {
        let lake = &lock.fence(lake);
        let mut snapshot = snapshot.refreshed(lake).await?;
        merge_due(lake, &mut snapshot).await
    }
    .await;
    lock.release().await?;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records with keys from a simple generator; `top` forces the top bit
    /// of every key (`Some`) or leaves it random (`None`).
    fn records(n: usize, seed: u64, top: Option<bool>) -> Vec<Record> {
        let mut state = seed;
        (0..n)
            .map(|i| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let mut key = xxh3_128(&state.to_le_bytes());
                match top {
                    Some(true) => key |= 1 << 127,
                    Some(false) => key &= !(1 << 127),
                    None => {}
                }
                Record {
                    key,
                    hash: i as i64,
                    date: (i % 31) as i32,
                }
            })
            .collect()
    }

    #[test]
    fn the_split_sort_sorts_as_one_sort_does() {
        let sizes = [
            0,
            1,
            2,
            PARALLEL_SORT - 1,
            PARALLEL_SORT,
            3 * PARALLEL_SORT + 7,
        ];
        for (i, n) in sizes.into_iter().enumerate() {
            for top in [None, Some(true), Some(false)] {
                let mut split = records(n, i as u64 + 1, top);
                // Repeated keys too, which the run writer then refuses.
                if n > 10 {
                    split[n / 2] = split[3];
                    split[n - 1] = split[n / 3];
                }
                let mut one = split.clone();
                one.sort_unstable_by_key(|r| r.key);
                sort_by_key(&mut split);
                assert!(
                    split.windows(2).all(|w| w[0].key <= w[1].key),
                    "{n} records, top bit {top:?}: out of order"
                );
                // Same records, not only the same keys.
                let mut a = one.clone();
                let mut b = split.clone();
                a.sort_unstable_by_key(|r| (r.key, r.hash));
                b.sort_unstable_by_key(|r| (r.key, r.hash));
                assert_eq!(a, b, "{n} records, top bit {top:?}");
            }
        }
    }
}
