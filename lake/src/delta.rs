//! Delta Lake transaction logs, kept in step with the commit log.
//!
//! agentledger decides what a table holds with its own commit log
//! ([`crate::log`]). An engine that globs `events/**/*.parquet` instead also
//! sees the files of an unfinished or killed write and, until the grace
//! period is over, the files a compaction or retention took out. So every
//! table also carries a Delta Lake transaction log,
//! `<table>/_delta_log/<version, 20 digits>.json`, which any Delta reader
//! (Spark, delta-rs and the `deltalake` package, Polars' `scan_delta`,
//! DuckDB's `delta_scan`) reads to get exactly the committed rows.
//!
//! The commit log stays the only source of truth: the Delta logs are
//! derived from it by [`sync`], which [`Snapshot::commit`] calls after every
//! commit. Version 0 holds the table's files when its Delta log was created
//! (a new lake's first commit, or an older lake's first write by a binary
//! that keeps Delta logs); each later version holds the adds and removes of
//! one agentledger commit that changed the table, and says in its
//! `commitInfo` (`agentledgerVersion`), and as a `txn` of app `agentledger`,
//! which lake version it brings the table to. A sync reads where the newest
//! Delta version stands and creates the versions of the commits after it,
//! each with a conditional create, as commit records are made: of two
//! processes syncing at once, one creates a version and the other reads it
//! and goes on from there. A process killed between its commit and its
//! Delta write leaves the Delta log behind by that commit; the next sync,
//! after any later write, writes it.
//!
//! Left out: Delta checkpoints (Parquet files under `_delta_log/`, which
//! users globbing `**/*.parquet` would read as data) and version checksum
//! files, so Delta readers replay the JSON versions. To find the newest
//! version without listing the whole `_delta_log` every time, a sync lists
//! from a hint, `_delta_hints/<table>.json` at the lake root: a lower bound
//! on the newest version, rewritten every hundred versions. It is kept
//! outside the Delta log because the protocol's `_last_checkpoint` may only
//! point to a checkpoint.

use std::collections::{BTreeMap, BTreeSet};

use arrow::datatypes::{DataType, Schema, TimeUnit};
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStoreExt};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::statistics::Statistics;
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::log::{Commit, CommitKind, FileEntry, Snapshot};
use crate::schema::{
    CUSTOMER_PLANS, EVENTS, MODEL_PRICES, QUARANTINE, RUN_PARTS, WORKFLOW_POLICIES, is_partitioned,
    partition_field, table_schema,
};
use crate::store::Lake;

/// Folder of a table's Delta log, inside the table's folder.
pub const DELTA_LOG_DIR: &str = "_delta_log";
/// Folder of the listing hints, at the lake root.
pub const HINTS_DIR: &str = "_delta_hints";
/// The tables that carry a Delta log.
pub const TABLES: [&str; 6] = [
    EVENTS,
    QUARANTINE,
    RUN_PARTS,
    MODEL_PRICES,
    CUSTOMER_PLANS,
    WORKFLOW_POLICIES,
];
/// The `appId` of the `txn` action each Delta version carries; its
/// `version` is the lake version the Delta version brings the table to.
pub const APP_ID: &str = "agentledger";

/// A hint is rewritten once the newest version is this far past it.
const HINT_EVERY: u64 = 100;
/// Versions created by others while this sync tried to create its own.
const ATTEMPTS: usize = 100;
/// Bytes read from the head of a Delta version to find its `commitInfo`
/// (agentledger writes it first).
const HEAD_BYTES: u64 = 16 * 1024;

/// Brings the Delta log of every table up to `snapshot`: creates the Delta
/// versions of the commits made since the newest Delta version (or version
/// 0, with every live file, where a table has none yet). A table whose
/// Delta log is already at `snapshot` or past it is left alone.
///
/// In-memory lakes (tests) get no Delta log: no other engine can read them.
pub async fn sync(lake: &Lake, snapshot: &Snapshot) -> Result<()> {
    if lake.store_url().scheme() == "memory" {
        return Ok(());
    }
    let results =
        futures::future::join_all(TABLES.iter().map(|table| sync_table(lake, snapshot, table)))
            .await;
    let mut failed = TABLES
        .iter()
        .zip(results)
        .filter_map(|(table, result)| result.err().map(|e| (*table, e)));
    match failed.next() {
        None => Ok(()),
        Some(first) => {
            let all: Vec<(&str, Error)> = std::iter::once(first).chain(failed).collect();
            let tables = all.iter().map(|(t, _)| *t).collect::<Vec<_>>().join(", ");
            let reason = match all.as_slice() {
                [(_, e)] => e.to_string(),
                _ => all
                    .iter()
                    .map(|(t, e)| format!("{t}: {e}"))
                    .collect::<Vec<_>>()
                    .join("; "),
            };
            Err(Error::DeltaSync {
                version: snapshot.version(),
                table: tables,
                reason,
            })
        }
    }
}

/// Brings the Delta log of `table` up to `snapshot`; returns the Delta
/// versions this call created.
async fn sync_table(lake: &Lake, snapshot: &Snapshot, table: &str) -> Result<Vec<u64>> {
    let mut created = Vec::new();
    for _ in 0..ATTEMPTS {
        let head = head(lake, table).await?;
        let lost = match head {
            Some(head) if head.agentledger_version >= snapshot.version() => return Ok(created),
            None => {
                let replay = Replay::of(snapshot, table, snapshot.version())?;
                let body = version_zero(lake, snapshot, table, &replay).await?;
                let won = create(lake, table, 0, body).await?;
                if won {
                    created.push(0);
                }
                !won
            }
            Some(head) => {
                let every_record;
                let source = if head.agentledger_version < snapshot.base_version() {
                    if snapshot
                        .state()
                        .unchanged_after(table, head.agentledger_version)
                    {
                        // The table's files are as they were at the Delta
                        // log's head (a reference table loaded long ago).
                        return Ok(created);
                    }
                    // The log is behind the checkpoint this snapshot was
                    // read from (a sync that failed, then a hundred commits
                    // by binaries without Delta logs): replay every record.
                    every_record = Snapshot::load_every_record(lake).await?;
                    &every_record
                } else {
                    snapshot
                };
                let replay = Replay::of(source, table, head.agentledger_version)?;
                let mut lost = false;
                for (version, step) in (head.version + 1..).zip(&replay.steps) {
                    let body = step_version(lake, table, step).await?;
                    if !create(lake, table, version, body).await? {
                        lost = true;
                        break;
                    }
                    created.push(version);
                }
                lost
            }
        };
        if !lost {
            return Ok(created);
        }
        // Another process created that version: read where it left the
        // log and go on from there.
    }
    Err(Error::DeltaLog {
        path: format!("{table}/{DELTA_LOG_DIR}"),
        reason: format!("other writers created the version this sync meant to, {ATTEMPTS} times"),
    })
}

/// Creates Delta version `version` of `table` unless it exists: false when
/// another process created it first.
async fn create(lake: &Lake, table: &str, version: u64, actions: Vec<Value>) -> Result<bool> {
    let mut body = Vec::new();
    for action in &actions {
        serde_json::to_writer(&mut body, action).expect("actions serialize");
        body.push(b'\n');
    }
    match crate::retry::create_if_absent(lake, &version_path(lake, table, version), body).await {
        Ok(()) => Ok(true),
        // Also what a retried create whose first attempt landed finds: the
        // caller reads the log again and sees its own version.
        Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn version_path(lake: &Lake, table: &str, version: u64) -> Path {
    lake.path(&format!("{table}/{DELTA_LOG_DIR}/{version:020}.json"))
}

/// Where a table's Delta log stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    /// Its newest Delta version.
    version: u64,
    /// The lake version that Delta version brings the table to.
    agentledger_version: u64,
}

/// The newest Delta version of `table` and the lake version it reflects, or
/// none when the table has no Delta log.
async fn head(lake: &Lake, table: &str) -> Result<Option<Head>> {
    let hint = read_hint(lake, table).await;
    let mut newest = newest_listed(lake, table, hint).await?;
    if newest.is_none()
        && let Some(hinted) = hint
    {
        match lake.store().head(&version_path(lake, table, hinted)).await {
            Ok(meta) => newest = Some((hinted, meta)),
            // The Delta log was moved away since: list it all.
            Err(object_store::Error::NotFound { .. }) => {
                newest = newest_listed(lake, table, None).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let Some((version, meta)) = newest else {
        return Ok(None);
    };
    let agentledger_version = agentledger_version(lake, &meta).await?;
    if version >= hint.unwrap_or(0) + HINT_EVERY {
        write_hint(lake, table, version).await;
    }
    Ok(Some(Head {
        version,
        agentledger_version,
    }))
}

/// The newest Delta version file of `table` listed after version `after`
/// (all of them when none).
async fn newest_listed(
    lake: &Lake,
    table: &str,
    after: Option<u64>,
) -> Result<Option<(u64, ObjectMeta)>> {
    let dir = lake.path(&format!("{table}/{DELTA_LOG_DIR}"));
    let mut listing = match after {
        Some(v) => lake
            .store()
            .list_with_offset(Some(&dir), &version_path(lake, table, v)),
        None => lake.store().list(Some(&dir)),
    };
    let mut newest: Option<(u64, ObjectMeta)> = None;
    while let Some(meta) = listing.next().await {
        let meta = match meta {
            Ok(meta) => meta,
            Err(object_store::Error::NotFound { .. }) => break,
            Err(e) => return Err(e.into()),
        };
        // Only `<20 digits>.json` directly in `_delta_log`: not a store's
        // temporary `….json#N`, nor anything in a subfolder.
        let Some(mut rest) = meta.location.prefix_match(&dir) else {
            continue;
        };
        let (Some(name), None) = (rest.next(), rest.next()) else {
            continue;
        };
        let Some(version) = parse_version(name.as_ref()) else {
            continue;
        };
        drop(rest);
        if newest.as_ref().is_none_or(|(n, _)| version > *n) {
            newest = Some((version, meta));
        }
    }
    Ok(newest)
}

fn parse_version(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".json")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The `agentledgerVersion` of a Delta version's `commitInfo`.
async fn agentledger_version(lake: &Lake, meta: &ObjectMeta) -> Result<u64> {
    let path = lake
        .relative(&meta.location)
        .unwrap_or_else(|| meta.location.to_string());
    let not_ours = || Error::DeltaLog {
        path: path.clone(),
        reason: "it has no commitInfo with an agentledgerVersion, so agentledger did not write \
                 it; agentledger keeps this Delta log and other engines may only read it: move \
                 the _delta_log folder away and the next agentledger write builds it anew"
            .to_string(),
    };
    if meta.size == 0 {
        return Err(not_ours());
    }
    let read = meta.size.min(HEAD_BYTES);
    let head = lake.store().get_range(&meta.location, 0..read).await?;
    if let Some(v) = head.split(|b| *b == b'\n').next().and_then(version_in) {
        return Ok(v);
    }
    let all = if read == meta.size {
        head
    } else {
        lake.store().get(&meta.location).await?.bytes().await?
    };
    all.split(|b| *b == b'\n')
        .find_map(version_in)
        .ok_or_else(not_ours)
}

fn version_in(line: &[u8]) -> Option<u64> {
    let action: Value = serde_json::from_slice(line).ok()?;
    action
        .get("commitInfo")?
        .get("agentledgerVersion")?
        .as_u64()
}

fn hint_path(lake: &Lake, table: &str) -> Path {
    lake.path(&format!("{HINTS_DIR}/{table}.json"))
}

/// A Delta version of `table` known to exist, if a hint says one.
async fn read_hint(lake: &Lake, table: &str) -> Option<u64> {
    // No hint, or one that does not read: list from the start.
    let bytes = lake
        .store()
        .get(&hint_path(lake, table))
        .await
        .ok()?
        .bytes()
        .await
        .ok()?;
    serde_json::from_slice::<Value>(&bytes)
        .ok()?
        .get("version")?
        .as_u64()
}

async fn write_hint(lake: &Lake, table: &str, version: u64) {
    let body = json!({ "table": table, "version": version }).to_string();
    // Any version that exists is a right hint, so racing writers may
    // overwrite each other; one that cannot be written only makes the next
    // listing longer.
    let _ = lake
        .store()
        .put(&hint_path(lake, table), body.into_bytes().into())
        .await;
}

/// A live file of a table and when the commit that added it was made
/// (unknown for files from a checkpoint: the sync's own time is used).
#[derive(Debug, Clone, Copy)]
struct Live<'a> {
    file: &'a FileEntry,
    added_at: Option<&'a str>,
}

/// What one commit changed in a table.
#[derive(Debug)]
struct Step<'a> {
    commit: &'a Commit,
    adds: Vec<Live<'a>>,
    removes: Vec<Live<'a>>,
}

/// A table's files, replayed from the commit log as [`Snapshot::files`]
/// reads them, with the changes of each commit after a version.
#[derive(Debug)]
struct Replay<'a> {
    /// The live files at the snapshot, by path.
    live: BTreeMap<&'a str, Live<'a>>,
    /// The commits after the version asked for that changed the table.
    steps: Vec<Step<'a>>,
}

impl<'a> Replay<'a> {
    /// `after` must not be older than the checkpoint `snapshot` was read
    /// from (see [`Snapshot::base_version`]).
    fn of(snapshot: &'a Snapshot, table: &str, after: u64) -> Result<Self> {
        // The table at the checkpoint, then each commit after it.
        let base = snapshot.base_state();
        let mut live: BTreeMap<&'a str, Live<'a>> = base
            .files(table)
            .into_iter()
            .map(|file| {
                (
                    file.path.as_str(),
                    Live {
                        file,
                        added_at: None,
                    },
                )
            })
            .collect();
        // Once a commit replaced the table, the newest replacing commit's
        // files are the table (see `Snapshot::files`).
        let mut replaced = base.replaced.contains_key(table);
        let mut steps = Vec::new();
        for commit in snapshot.tail() {
            let mut adds = Vec::new();
            let mut removes = Vec::new();
            let ours = commit.files.iter().filter(|f| f.table == table);
            if commit.replaces.iter().any(|t| t == table) {
                let new: BTreeMap<&str, Live> = ours
                    .clone()
                    .map(|file| {
                        (
                            file.path.as_str(),
                            Live {
                                file,
                                added_at: Some(commit.committed_at.as_str()),
                            },
                        )
                    })
                    .collect();
                removes.extend(
                    live.iter()
                        .filter(|(path, _)| !new.contains_key(*path))
                        .map(|(_, l)| *l),
                );
                adds.extend(
                    ours.filter(|f| !live.contains_key(f.path.as_str()))
                        .map(|file| Live {
                            file,
                            added_at: Some(commit.committed_at.as_str()),
                        }),
                );
                live = new;
                replaced = true;
            } else if !replaced {
                for file in ours {
                    let l = Live {
                        file,
                        added_at: Some(commit.committed_at.as_str()),
                    };
                    if live.insert(file.path.as_str(), l).is_none() {
                        adds.push(l);
                    }
                }
                for path in &commit.removes {
                    if let Some(l) = live.remove(path.as_str()) {
                        match adds.iter().position(|a| a.file.path == *path) {
                            // Added and removed by the same commit: never seen.
                            Some(i) => {
                                adds.remove(i);
                            }
                            None => removes.push(l),
                        }
                    }
                }
            }
            if commit.version > after && !(adds.is_empty() && removes.is_empty()) {
                steps.push(Step {
                    commit,
                    adds,
                    removes,
                });
            }
        }
        // The Delta log must say what agentledger's readers read.
        let expected: BTreeSet<&str> = snapshot
            .files(table)
            .iter()
            .map(|f| f.path.as_str())
            .collect();
        if !live.keys().copied().eq(expected.iter().copied()) {
            return Err(Error::DeltaLog {
                path: format!("{table}/{DELTA_LOG_DIR}"),
                reason: format!(
                    "the files replayed from the commit log ({}) are not the snapshot's ({}); nothing was written",
                    live.len(),
                    expected.len()
                ),
            });
        }
        Ok(Self { live, steps })
    }
}

/// Version 0 of `table`'s Delta log: the table as of `snapshot`.
async fn version_zero(
    lake: &Lake,
    snapshot: &Snapshot,
    table: &str,
    replay: &Replay<'_>,
) -> Result<Vec<Value>> {
    let now = now_millis();
    let partition_columns: Vec<&str> = if is_partitioned(table) {
        vec!["date"]
    } else {
        vec![]
    };
    let mut actions = vec![
        json!({"commitInfo": {
            "timestamp": now,
            "operation": "CREATE TABLE",
            "operationParameters": {},
            "engineInfo": engine(),
            "agentledgerVersion": snapshot.version(),
        }}),
        json!({"protocol": {"minReaderVersion": 1, "minWriterVersion": 2}}),
        json!({"metaData": {
            "id": new_table_id(),
            "format": {"provider": "parquet", "options": {}},
            "schemaString": schema_string(table)?,
            "partitionColumns": partition_columns,
            "configuration": {},
            "createdTime": now,
        }}),
        txn(snapshot.version(), now),
    ];
    let live: Vec<Live> = replay.live.values().copied().collect();
    actions.extend(adds(lake, table, &live, true).await?);
    Ok(actions)
}

/// The Delta version of one commit's changes to `table`.
async fn step_version(lake: &Lake, table: &str, step: &Step<'_>) -> Result<Vec<Value>> {
    let now = now_millis();
    let commit = step.commit;
    // A compaction rewrites rows without changing them: streaming readers
    // skip such versions.
    let data_change = commit.kind != CommitKind::Compact;
    let replaces = commit.replaces.iter().any(|t| t == table);
    let (operation, parameters) = match commit.kind {
        CommitKind::Compact => ("OPTIMIZE", json!({})),
        CommitKind::Retain => ("DELETE", json!({})),
        _ if replaces => ("WRITE", json!({"mode": "Overwrite"})),
        _ => ("WRITE", json!({"mode": "Append"})),
    };
    let mut actions = vec![
        json!({"commitInfo": {
            "timestamp": now,
            "operation": operation,
            "operationParameters": parameters,
            "isBlindAppend": step.removes.is_empty(),
            "engineInfo": engine(),
            "agentledgerVersion": commit.version,
            "agentledgerCommit": {
                "kind": commit.kind,
                "id": commit.id,
                "committedAt": commit.committed_at,
            },
        }}),
        txn(commit.version, now),
    ];
    let deleted_at = millis(&commit.committed_at);
    for l in &step.removes {
        actions.push(json!({"remove": {
            "path": delta_path(lake, table, l.file),
            "deletionTimestamp": deleted_at,
            "dataChange": data_change,
            "extendedFileMetadata": true,
            "partitionValues": partition_values(table, l.file)?,
            "size": l.file.size,
        }}));
    }
    actions.extend(adds(lake, table, &step.adds, data_change).await?);
    Ok(actions)
}

fn txn(agentledger_version: u64, now: i64) -> Value {
    json!({"txn": {"appId": APP_ID, "version": agentledger_version, "lastUpdated": now}})
}

fn engine() -> String {
    format!("agentledger/{}", env!("CARGO_PKG_VERSION"))
}

/// `add` actions for `files`, with the statistics of each file's footer.
async fn adds(
    lake: &Lake,
    table: &str,
    files: &[Live<'_>],
    data_change: bool,
) -> Result<Vec<Value>> {
    let schema = table_schema(table).ok_or_else(|| Error::DeltaLog {
        path: format!("{table}/{DELTA_LOG_DIR}"),
        reason: format!("no schema for table {table}"),
    })?;
    // Futures collected first: a stream mapping through a closure makes
    // the caller's future not provably `Send`.
    let reads: Vec<_> = files
        .iter()
        .map(|l| file_stats(lake, l.file, &schema))
        .collect();
    let stats: Vec<String> = futures::stream::iter(reads).buffered(16).collect().await;
    files
        .iter()
        .zip(stats)
        .map(|(l, stats)| {
            Ok(json!({"add": {
                "path": delta_path(lake, table, l.file),
                "partitionValues": partition_values(table, l.file)?,
                "size": l.file.size,
                "modificationTime": l.added_at.map_or_else(now_millis, millis),
                "dataChange": data_change,
                "stats": stats,
            }}))
        })
        .collect()
}

/// A file's path in the Delta log: relative to the table's folder, as a URI
/// path; a file outside it (never written so) by its absolute URI.
fn delta_path(lake: &Lake, table: &str, file: &FileEntry) -> String {
    match file
        .path
        .strip_prefix(table)
        .and_then(|p| p.strip_prefix('/'))
    {
        Some(relative) => uri_escape(relative),
        None => format!(
            "{}/{}",
            lake.store_url().as_str().trim_end_matches('/'),
            uri_escape(lake.path(&file.path).as_ref())
        ),
    }
}

/// Percent-encodes every byte of `path` but unreserved characters, `/`
/// and `=` (RFC 2396 path characters that Hive folders use).
fn uri_escape(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/=".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `{"date": "YYYY-MM-DD"}` for a partitioned table's file (from its
/// commit entry, or its Hive folder), `{}` for the others.
fn partition_values(table: &str, file: &FileEntry) -> Result<Value> {
    if !is_partitioned(table) {
        return Ok(json!({}));
    }
    let date = file.date.clone().or_else(|| {
        file.path
            .split('/')
            .find_map(|part| part.strip_prefix("date="))
            .map(str::to_string)
    });
    match date {
        Some(date) => Ok(json!({ "date": date })),
        None => Err(Error::DeltaLog {
            path: format!("{table}/{DELTA_LOG_DIR}"),
            reason: format!("file {} has no date partition", file.path),
        }),
    }
}

/// The Delta `stats` of one file: the row count, and from its Parquet
/// footer the null count of every column and the bounds of the columns
/// whose bounds are exact and that every Delta reader compares the way
/// Parquet orders them (long, date, and strings not truncated). Timestamp
/// bounds (Delta keeps milliseconds), decimals and booleans are left out.
/// A footer that cannot be read leaves the row count alone.
async fn file_stats(lake: &Lake, file: &FileEntry, schema: &Schema) -> String {
    let metadata = crate::parquet_io::read_metadata(lake, file).await.ok();
    stats_of(file.rows, metadata.as_ref(), schema).to_string()
}

/// One bound of a column chunk, ordered as Parquet and Delta order them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Bound {
    Long(i64),
    Date(i32),
    Text(Vec<u8>),
}

impl Bound {
    fn to_json(&self) -> Option<Value> {
        match self {
            Bound::Long(v) => Some(json!(v)),
            Bound::Date(days) => {
                // 719,163 days from 0001-01-01 to 1970-01-01.
                let date =
                    chrono::NaiveDate::from_num_days_from_ce_opt(days.checked_add(719_163)?)?;
                Some(json!(date.format("%Y-%m-%d").to_string()))
            }
            Bound::Text(bytes) => Some(json!(std::str::from_utf8(bytes).ok()?)),
        }
    }
}

/// The exact bounds of one column chunk, where Delta can use them.
fn chunk_bounds(data_type: &DataType, stats: &Statistics) -> Option<(Bound, Bound)> {
    if !(stats.min_is_exact() && stats.max_is_exact()) {
        return None;
    }
    match (data_type, stats) {
        (DataType::Int64, Statistics::Int64(s)) => {
            Some((Bound::Long(*s.min_opt()?), Bound::Long(*s.max_opt()?)))
        }
        (DataType::Date32, Statistics::Int32(s)) => {
            Some((Bound::Date(*s.min_opt()?), Bound::Date(*s.max_opt()?)))
        }
        (DataType::Utf8, Statistics::ByteArray(s)) => Some((
            Bound::Text(s.min_opt()?.data().to_vec()),
            Bound::Text(s.max_opt()?.data().to_vec()),
        )),
        _ => None,
    }
}

fn stats_of(rows: u64, metadata: Option<&ParquetMetaData>, schema: &Schema) -> Value {
    let Some(metadata) = metadata else {
        return json!({ "numRecords": rows });
    };
    let mut mins = serde_json::Map::new();
    let mut maxs = serde_json::Map::new();
    let mut nulls = serde_json::Map::new();
    for (i, column) in metadata
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .enumerate()
    {
        if column.path().parts().len() != 1 {
            continue;
        }
        let Ok(field) = schema.field_with_name(column.name()) else {
            continue;
        };
        let mut null_count = Some(0u64);
        // None once a chunk with values has no usable bounds.
        let mut bounds: Option<Option<(Bound, Bound)>> = Some(None);
        for group in metadata.row_groups() {
            let stats = group.column(i).statistics();
            let chunk_nulls = stats.and_then(Statistics::null_count_opt);
            null_count = null_count.zip(chunk_nulls).map(|(a, b)| a + b);
            if chunk_nulls == Some(group.num_rows() as u64) {
                continue; // all null: no bounds to take
            }
            let chunk = stats.and_then(|s| chunk_bounds(field.data_type(), s));
            bounds = match (bounds, chunk) {
                (Some(None), Some(chunk)) => Some(Some(chunk)),
                (Some(Some((lo, hi))), Some((clo, chi))) => Some(Some((lo.min(clo), hi.max(chi)))),
                _ => None,
            };
        }
        if let Some(n) = null_count {
            nulls.insert(field.name().clone(), json!(n));
        }
        if let Some(Some((lo, hi))) = bounds
            && let (Some(lo), Some(hi)) = (lo.to_json(), hi.to_json())
        {
            mins.insert(field.name().clone(), lo);
            maxs.insert(field.name().clone(), hi);
        }
    }
    let mut stats = serde_json::Map::new();
    let num_rows = u64::try_from(metadata.file_metadata().num_rows()).unwrap_or(rows);
    stats.insert("numRecords".into(), json!(num_rows));
    if !mins.is_empty() {
        stats.insert("minValues".into(), Value::Object(mins));
        stats.insert("maxValues".into(), Value::Object(maxs));
    }
    stats.insert("nullCount".into(), Value::Object(nulls));
    Value::Object(stats)
}

/// The Delta `schemaString` of `table`: its file schema, and for a
/// partitioned table the `date` partition column.
pub fn schema_string(table: &str) -> Result<String> {
    let unsupported = |reason: String| Error::DeltaLog {
        path: format!("{table}/{DELTA_LOG_DIR}"),
        reason,
    };
    let schema = table_schema(table).ok_or_else(|| unsupported(format!("no table {table}")))?;
    let mut fields = schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect::<Vec<_>>();
    if is_partitioned(table) {
        fields.push(partition_field());
    }
    let fields = fields
        .iter()
        .map(|f| {
            let delta_type = delta_type(f.data_type()).ok_or_else(|| {
                unsupported(format!(
                    "column {} has type {}, which has no Delta type here",
                    f.name(),
                    f.data_type()
                ))
            })?;
            Ok(json!({
                "name": f.name(),
                "type": delta_type,
                "nullable": f.is_nullable(),
                "metadata": {},
            }))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(json!({ "type": "struct", "fields": fields }).to_string())
}

/// The Delta type of an Arrow type the lake stores.
fn delta_type(data_type: &DataType) -> Option<String> {
    Some(match data_type {
        DataType::Utf8 => "string".into(),
        DataType::Int64 => "long".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Date32 => "date".into(),
        DataType::Timestamp(TimeUnit::Microsecond, Some(tz)) if tz.as_ref() == "UTC" => {
            "timestamp".into()
        }
        DataType::Decimal128(precision, scale) if *precision <= 38 && *scale >= 0 => {
            format!("decimal({precision},{scale})")
        }
        _ => return None,
    })
}

/// A random (version 4) UUID for a new Delta table's `metaData.id`, fixed
/// at the table's creation.
fn new_table_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut bytes = [0u8; 16];
    for (i, half) in bytes.chunks_mut(8).enumerate() {
        // Each RandomState has its own random keys.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(nanos);
        hasher.write_u32(std::process::id());
        hasher.write_usize(i);
        half.copy_from_slice(&hasher.finish().to_be_bytes());
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Milliseconds since the epoch of an RFC 3339 time (a commit's).
fn millis(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.timestamp_millis())
        .unwrap_or_else(|_| now_millis())
}

#[cfg(test)]
mod tests {
    use std::path::Path as FsPath;
    use std::sync::Arc;

    use arrow::array::{
        ArrayRef, Decimal128Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
        new_null_array,
    };

    use super::*;
    use crate::schema::EVENTS_SCHEMA;

    fn local() -> (tempfile::TempDir, Lake) {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap()).unwrap();
        (dir, lake)
    }

    /// Events rows, one per id, of `tenant`, costs 1, 2, … with the last
    /// one null; `columns` replace columns by name.
    fn events_batch(tenant: &str, ids: &[&str], columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        let n = ids.len();
        let mut columns: BTreeMap<&str, ArrayRef> = columns.into_iter().collect();
        let arrays: Vec<ArrayRef> = EVENTS_SCHEMA
            .fields()
            .iter()
            .map(|f| -> ArrayRef {
                if let Some(given) = columns.remove(f.name().as_str()) {
                    return given;
                }
                match f.name().as_str() {
                    "event_id" => Arc::new(StringArray::from(ids.to_vec())),
                    "tenant_id" => Arc::new(StringArray::from(vec![tenant; n])),
                    "ts" | "ingested_at" => Arc::new(
                        TimestampMicrosecondArray::from(vec![1_767_571_200_000_123; n])
                            .with_timezone("UTC"),
                    ),
                    "line" | "content_hash" => {
                        Arc::new(Int64Array::from((1..=n as i64).collect::<Vec<_>>()))
                    }
                    "cost_usd" => Arc::new(
                        (1..=n as i128)
                            .map(|i| (i < n as i128).then_some(i * 1_000_000_000_000))
                            .collect::<Decimal128Array>()
                            .with_precision_and_scale(38, 12)
                            .unwrap(),
                    ),
                    _ if !f.is_nullable() => Arc::new(StringArray::from(vec!["x"; n])),
                    _ => new_null_array(f.data_type(), n),
                }
            })
            .collect();
        RecordBatch::try_new(Arc::clone(&EVENTS_SCHEMA), arrays).unwrap()
    }

    /// A real events file at `events/date=<date>/part-<name>.parquet`.
    async fn events_file(
        lake: &Lake,
        name: &str,
        date: &str,
        tenant: &str,
        ids: &[&str],
    ) -> FileEntry {
        let batch = events_batch(tenant, ids, vec![]);
        let relative = format!("{EVENTS}/date={date}/part-{name}.parquet");
        let mut file = crate::writer::write_file(lake, EVENTS, &relative, &batch)
            .await
            .unwrap();
        file.date = Some(date.to_string());
        file
    }

    /// A file of `table` whose bytes are not Parquet: its Delta stats are
    /// the row count of its entry alone.
    fn fake(root: &FsPath, table: &str, path: &str, rows: u64) -> FileEntry {
        let on_disk = root.join(path);
        std::fs::create_dir_all(on_disk.parent().unwrap()).unwrap();
        std::fs::write(&on_disk, b"not parquet").unwrap();
        FileEntry {
            table: table.to_string(),
            path: path.to_string(),
            size: 11,
            rows,
            date: path
                .split('/')
                .find_map(|p| p.strip_prefix("date="))
                .map(str::to_string),
        }
    }

    fn commit(kind: CommitKind, files: Vec<FileEntry>, removes: &[&str]) -> Commit {
        let summary = match kind {
            CommitKind::LoadPrices | CommitKind::LoadPlans | CommitKind::LoadPolicies => {
                json!({"file": "f.csv", "rows": 1, "content_hash": "h"})
            }
            CommitKind::Landing => json!({"ingest_id": "i", "files": []}),
            _ => Value::Null,
        };
        let mut c = Commit::record(kind, summary);
        if matches!(
            kind,
            CommitKind::LoadPrices | CommitKind::LoadPlans | CommitKind::LoadPolicies
        ) {
            c.replaces = files.iter().map(|f| f.table.clone()).take(1).collect();
        }
        c.files = files;
        c.removes = removes.iter().map(|r| r.to_string()).collect();
        c
    }

    /// Every version of a table's Delta log, in order (they must run from 0
    /// without a gap), as its actions.
    fn versions(root: &FsPath, table: &str) -> Vec<Vec<Value>> {
        let dir = root.join(table).join(DELTA_LOG_DIR);
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| parse_version(n).is_some())
            .collect();
        names.sort();
        names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                assert_eq!(parse_version(name), Some(i as u64), "{table}: {names:?}");
                std::fs::read_to_string(dir.join(name))
                    .unwrap()
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect()
            })
            .collect()
    }

    /// The actions of one kind (`add`, `remove`, …) of a version.
    fn of<'a>(version: &'a [Value], kind: &str) -> Vec<&'a Value> {
        version.iter().filter_map(|a| a.get(kind)).collect()
    }

    fn kinds(version: &[Value]) -> Vec<&str> {
        version
            .iter()
            .map(|a| a.as_object().unwrap().keys().next().unwrap().as_str())
            .collect()
    }

    fn stats(add: &Value) -> Value {
        serde_json::from_str(add["stats"].as_str().unwrap()).unwrap()
    }

    /// The files a Delta reader sees (lake-relative path to its add),
    /// replaying the log as the protocol says.
    fn delta_files(root: &FsPath, table: &str) -> BTreeMap<String, Value> {
        let mut files = BTreeMap::new();
        for version in versions(root, table) {
            for action in version {
                if let Some(add) = action.get("add") {
                    let path = format!("{table}/{}", add["path"].as_str().unwrap());
                    files.insert(path, add.clone());
                } else if let Some(remove) = action.get("remove") {
                    let path = format!("{table}/{}", remove["path"].as_str().unwrap());
                    assert!(
                        files.remove(&path).is_some(),
                        "{path} removed but not there"
                    );
                }
            }
        }
        files
    }

    /// Every table's Delta log says exactly what `snapshot` reads, each
    /// version brings the table to a newer lake version than the one before,
    /// and version 0 says what the table is.
    fn assert_in_step(root: &FsPath, snapshot: &Snapshot) {
        for table in TABLES {
            let versions = versions(root, table);
            let zero = &versions[0];
            assert_eq!(
                kinds(zero)[..4],
                ["commitInfo", "protocol", "metaData", "txn"]
            );
            assert_eq!(
                of(zero, "protocol")[0],
                &json!({"minReaderVersion": 1, "minWriterVersion": 2})
            );
            let meta = of(zero, "metaData")[0];
            assert_eq!(meta["schemaString"], json!(schema_string(table).unwrap()));
            let partitions = if is_partitioned(table) {
                json!(["date"])
            } else {
                json!([])
            };
            assert_eq!(meta["partitionColumns"], partitions, "{table}");
            let reflected: Vec<u64> = versions
                .iter()
                .map(|v| {
                    let info = of(v, "commitInfo")[0]["agentledgerVersion"]
                        .as_u64()
                        .unwrap();
                    let txn = of(v, "txn")[0];
                    assert_eq!(txn["appId"], APP_ID);
                    assert_eq!(txn["version"].as_u64(), Some(info));
                    info
                })
                .collect();
            assert!(
                reflected.windows(2).all(|w| w[0] < w[1]),
                "{table}: each version moves the table on: {reflected:?}"
            );
            assert!(*reflected.last().unwrap() <= snapshot.version());
            let files = delta_files(root, table);
            let expected: BTreeMap<String, &FileEntry> = snapshot
                .files(table)
                .into_iter()
                .map(|f| (f.path.clone(), f))
                .collect();
            assert_eq!(
                files.keys().collect::<Vec<_>>(),
                expected.keys().collect::<Vec<_>>(),
                "{table}"
            );
            for (path, add) in &files {
                let entry = expected[path];
                assert_eq!(add["size"].as_u64(), Some(entry.size), "{path}");
                assert_eq!(
                    stats(add)["numRecords"].as_u64(),
                    Some(entry.rows),
                    "{path}"
                );
                let values = match &entry.date {
                    Some(d) if is_partitioned(table) => json!({ "date": d }),
                    _ => json!({}),
                };
                assert_eq!(add["partitionValues"], values, "{path}");
            }
        }
    }

    fn delta_log_files(root: &FsPath) -> usize {
        TABLES
            .iter()
            .map(|t| std::fs::read_dir(root.join(t).join(DELTA_LOG_DIR)).map_or(0, |d| d.count()))
            .sum()
    }

    #[tokio::test]
    async fn every_kind_of_commit_becomes_the_delta_version_of_its_changes() {
        let (dir, lake) = local();
        let root = dir.path();
        let mut snap = Snapshot::load(&lake).await.unwrap();

        // v1, an ingest: the first commit creates every table's log.
        let a = events_file(&lake, "a", "2026-01-05", "acme", &["a1", "a2", "a3"]).await;
        let a2 = events_file(&lake, "a2", "2026-01-05", "acme", &["a4"]).await;
        let q = fake(root, QUARANTINE, "quarantine/date=2026-01-05/q.parquet", 2);
        let p1 = fake(root, RUN_PARTS, "run_parts/p1.parquet", 1);
        let first = vec![a.clone(), a2.clone(), q.clone(), p1.clone()];
        snap.commit(&lake, commit(CommitKind::Ingest, first, &[]))
            .await
            .unwrap();
        assert_in_step(root, &snap);
        let events = versions(root, EVENTS);
        assert_eq!(events.len(), 1);
        assert_eq!(of(&events[0], "commitInfo")[0]["agentledgerVersion"], 1);
        let paths: Vec<&Value> = of(&events[0], "add").iter().map(|a| &a["path"]).collect();
        assert_eq!(
            paths,
            [
                "date=2026-01-05/part-a.parquet",
                "date=2026-01-05/part-a2.parquet"
            ]
        );
        assert!(of(&versions(root, MODEL_PRICES)[0], "add").is_empty());

        // v2, another ingest: one version with its add, stats from the footer.
        let b = events_file(&lake, "b", "2026-01-06", "globex", &["b1", "b2", "b3"]).await;
        snap.commit(&lake, commit(CommitKind::Ingest, vec![b.clone()], &[]))
            .await
            .unwrap();
        assert_in_step(root, &snap);
        let events = versions(root, EVENTS);
        assert_eq!(events.len(), 2);
        let v1 = &events[1];
        assert_eq!(kinds(v1), ["commitInfo", "txn", "add"]);
        let info = of(v1, "commitInfo")[0];
        assert_eq!(info["agentledgerVersion"], 2);
        assert_eq!(info["operation"], "WRITE");
        assert_eq!(info["agentledgerCommit"]["kind"], "ingest");
        let add = of(v1, "add")[0];
        assert_eq!(add["path"], "date=2026-01-06/part-b.parquet");
        assert_eq!(add["partitionValues"], json!({"date": "2026-01-06"}));
        assert_eq!(add["size"].as_u64(), Some(b.size));
        assert_eq!(add["dataChange"], true);
        assert_eq!(
            add["modificationTime"].as_i64(),
            Some(millis(&snap.tail()[1].committed_at))
        );
        let s = stats(add);
        assert_eq!(s["numRecords"], 3);
        assert_eq!(s["minValues"]["event_id"], "b1");
        assert_eq!(s["maxValues"]["event_id"], "b3");
        assert_eq!(s["minValues"]["tenant_id"], "globex");
        assert_eq!(
            (&s["minValues"]["line"], &s["maxValues"]["line"]),
            (&json!(1), &json!(3))
        );
        assert_eq!(s["nullCount"]["cost_usd"], 1);
        assert_eq!(s["nullCount"]["event_id"], 0);
        assert_eq!(s["nullCount"]["model"], 3);
        // No bounds where they would not be exact or comparable.
        for column in ["ts", "cost_usd", "model", "date"] {
            assert!(s["minValues"].get(column).is_none(), "{column}: {s}");
            assert!(s["maxValues"].get(column).is_none(), "{column}: {s}");
        }
        for table in [
            QUARANTINE,
            RUN_PARTS,
            MODEL_PRICES,
            CUSTOMER_PLANS,
            WORKFLOW_POLICIES,
        ] {
            assert_eq!(versions(root, table).len(), 1, "{table} did not change");
        }

        // v3, v4: prices loaded twice; the second load removes the first's file.
        let m1 = fake(root, MODEL_PRICES, "model_prices/version=3/m1.parquet", 4);
        snap.commit(&lake, commit(CommitKind::LoadPrices, vec![m1.clone()], &[]))
            .await
            .unwrap();
        let m2 = fake(root, MODEL_PRICES, "model_prices/version=4/m2.parquet", 5);
        snap.commit(&lake, commit(CommitKind::LoadPrices, vec![m2], &[]))
            .await
            .unwrap();
        assert_in_step(root, &snap);
        let prices = versions(root, MODEL_PRICES);
        assert_eq!(prices.len(), 3);
        let v2 = &prices[2];
        assert_eq!(kinds(v2), ["commitInfo", "txn", "remove", "add"]);
        assert_eq!(
            of(v2, "commitInfo")[0]["operationParameters"]["mode"],
            "Overwrite"
        );
        let remove = of(v2, "remove")[0];
        assert_eq!(
            (&remove["path"], &remove["dataChange"], &remove["size"]),
            (
                &json!("version=3/m1.parquet"),
                &json!(true),
                &json!(m1.size)
            )
        );
        assert_eq!(remove["partitionValues"], json!({}));
        assert_eq!(remove["extendedFileMetadata"], true);
        assert_eq!(
            remove["deletionTimestamp"].as_i64(),
            Some(millis(&snap.tail()[3].committed_at))
        );
        // Not Parquet: the entry's row count alone.
        assert_eq!(stats(of(v2, "add")[0]), json!({"numRecords": 5}));

        // v5, a compaction: the same rows in one file; no data change.
        let c = events_file(&lake, "c", "2026-01-05", "acme", &["a1", "a2", "a3", "a4"]).await;
        snap.commit(
            &lake,
            commit(CommitKind::Compact, vec![c.clone()], &[&a.path, &a2.path]),
        )
        .await
        .unwrap();
        assert_in_step(root, &snap);
        let v2 = &versions(root, EVENTS)[2];
        assert_eq!(kinds(v2), ["commitInfo", "txn", "remove", "remove", "add"]);
        assert_eq!(of(v2, "commitInfo")[0]["operation"], "OPTIMIZE");
        assert!(
            of(v2, "remove")
                .iter()
                .chain(&of(v2, "add"))
                .all(|a| a["dataChange"] == false)
        );

        // v6, a retention: the day's events and quarantine go.
        snap.commit(
            &lake,
            commit(CommitKind::Retain, vec![], &[&c.path, &q.path]),
        )
        .await
        .unwrap();
        assert_in_step(root, &snap);
        let v3 = &versions(root, EVENTS)[3];
        assert_eq!(kinds(v3), ["commitInfo", "txn", "remove"]);
        assert_eq!(of(v3, "commitInfo")[0]["operation"], "DELETE");
        let remove = of(v3, "remove")[0];
        assert_eq!(remove["path"], "date=2026-01-05/part-c.parquet");
        assert_eq!(remove["partitionValues"], json!({"date": "2026-01-05"}));
        assert_eq!(remove["dataChange"], true);
        assert_eq!(
            of(&versions(root, QUARANTINE)[1], "remove")[0]["path"],
            "date=2026-01-05/q.parquet"
        );

        // v7, a run-parts rebuild; v8, a record that changes no table.
        let p2 = fake(root, RUN_PARTS, "run_parts/p2.parquet", 7);
        snap.commit(&lake, commit(CommitKind::Runs, vec![p2], &[&p1.path]))
            .await
            .unwrap();
        let before = delta_log_files(root);
        snap.commit(&lake, commit(CommitKind::Landing, vec![], &[]))
            .await
            .unwrap();
        assert_in_step(root, &snap);
        assert_eq!(delta_log_files(root), before);
        let parts = versions(root, RUN_PARTS);
        assert_eq!(kinds(&parts[1]), ["commitInfo", "txn", "remove", "add"]);

        // Syncing again changes nothing.
        sync(&lake, &snap).await.unwrap();
        sync(&lake, &Snapshot::load(&lake).await.unwrap())
            .await
            .unwrap();
        assert_eq!(delta_log_files(root), before);
        assert_in_step(root, &snap);
    }

    #[tokio::test]
    async fn a_delta_log_left_behind_is_caught_up_by_the_next_write() {
        let (dir, lake) = local();
        let root = dir.path();
        let mut snap = Snapshot::load(&lake).await.unwrap();
        for (i, day) in ["2026-02-01", "2026-02-02", "2026-02-03"]
            .iter()
            .enumerate()
        {
            let file = events_file(&lake, &format!("e{i}"), day, "acme", &[&format!("e{i}")]).await;
            let q = fake(
                root,
                QUARANTINE,
                &format!("quarantine/date={day}/q{i}.parquet"),
                1,
            );
            snap.commit(&lake, commit(CommitKind::Ingest, vec![file, q], &[]))
                .await
                .unwrap();
        }
        let old = Snapshot::load(&lake).await.unwrap();
        // A process killed after commit 3 landed, before its Delta write;
        // and a lake whose quarantine has no Delta log at all (older lakes).
        std::fs::remove_file(root.join("events/_delta_log/00000000000000000002.json")).unwrap();
        std::fs::remove_dir_all(root.join("quarantine/_delta_log")).unwrap();
        // The next write brings both up to date.
        let file = events_file(&lake, "e3", "2026-02-04", "acme", &["e3"]).await;
        snap.commit(&lake, commit(CommitKind::Ingest, vec![file], &[]))
            .await
            .unwrap();
        assert_in_step(root, &snap);
        let reflected: Vec<u64> = versions(root, EVENTS)
            .iter()
            .map(|v| {
                of(v, "commitInfo")[0]["agentledgerVersion"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(reflected, [1, 2, 3, 4]);
        let quarantine = versions(root, QUARANTINE);
        assert_eq!(quarantine.len(), 1);
        assert_eq!(of(&quarantine[0], "commitInfo")[0]["agentledgerVersion"], 4);
        assert_eq!(of(&quarantine[0], "add").len(), 3);
        // A process with an older snapshot finds the log ahead: no change.
        let before = delta_log_files(root);
        sync(&lake, &old).await.unwrap();
        assert_eq!(delta_log_files(root), before);
    }

    /// A lake of six commits, and snapshots after its third and its last.
    async fn six_commits(lake: &Lake, root: &FsPath) -> (Snapshot, Snapshot) {
        let mut snap = Snapshot::load(lake).await.unwrap();
        let mut old = None;
        let mut days = Vec::new();
        for i in 0..4 {
            let file = events_file(
                lake,
                &format!("e{i}"),
                "2026-03-01",
                "acme",
                &[&format!("e{i}")],
            )
            .await;
            days.push(file.path.clone());
            let parts = fake(root, RUN_PARTS, &format!("run_parts/p{i}.parquet"), 1);
            snap.commit(lake, commit(CommitKind::Ingest, vec![file, parts], &[]))
                .await
                .unwrap();
            if i == 1 {
                let prices = fake(root, MODEL_PRICES, "model_prices/version=3/m.parquet", 2);
                snap.commit(lake, commit(CommitKind::LoadPrices, vec![prices], &[]))
                    .await
                    .unwrap();
                old = Some(snap.clone());
            }
        }
        let all = events_file(lake, "c", "2026-03-01", "acme", &["e0", "e1", "e2", "e3"]).await;
        let removes: Vec<&str> = days.iter().map(String::as_str).collect();
        snap.commit(lake, commit(CommitKind::Compact, vec![all], &removes))
            .await
            .unwrap();
        (old.unwrap(), snap)
    }

    fn remove_delta_logs(root: &FsPath) {
        for table in TABLES {
            let _ = std::fs::remove_dir_all(root.join(table).join(DELTA_LOG_DIR));
        }
        let _ = std::fs::remove_dir_all(root.join(HINTS_DIR));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_syncs_apply_each_commit_once() {
        let (dir, lake) = local();
        let root = dir.path();
        let (old, new) = six_commits(&lake, root).await;
        assert_eq!((old.version(), new.version()), (3, 6));
        for round in 0..24 {
            remove_delta_logs(root);
            if round % 2 == 1 {
                // Racers that catch up from a log behind, not create it.
                sync(&lake, &old).await.unwrap();
            }
            let racers: Vec<_> = [&old, &old, &new, &new, &old, &new, &new, &old]
                .into_iter()
                .map(|snapshot| {
                    let (lake, snapshot) = (lake.clone(), snapshot.clone());
                    tokio::spawn(async move {
                        let mut created = BTreeMap::new();
                        for table in TABLES {
                            let versions = sync_table(&lake, &snapshot, table).await.unwrap();
                            created.insert(table, versions);
                        }
                        created
                    })
                })
                .collect();
            let mut created: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
            for racer in racers {
                for (table, versions) in racer.await.unwrap() {
                    created.entry(table).or_default().extend(versions);
                }
            }
            assert_in_step(root, &new);
            // Every version was created by exactly one racer.
            for table in TABLES {
                let mut versions = created[table].clone();
                versions.sort();
                let all: Vec<u64> = (0..self::tests::versions(root, table).len() as u64).collect();
                // In odd rounds, version 0 was there before the race.
                let before = round % 2;
                assert_eq!(versions, all[before..], "{table}, round {round}");
            }
        }
    }

    #[tokio::test]
    async fn a_delta_log_that_cannot_be_written_fails_the_command_saying_the_commit_landed() {
        let (dir, lake) = local();
        let root = dir.path();
        let mut snap = Snapshot::load(&lake).await.unwrap();
        let a = events_file(&lake, "a", "2026-04-01", "acme", &["a"]).await;
        snap.commit(&lake, commit(CommitKind::Ingest, vec![a], &[]))
            .await
            .unwrap();
        // Nothing can be created in events' Delta log.
        let log = root.join("events").join(DELTA_LOG_DIR);
        std::fs::remove_dir_all(&log).unwrap();
        std::fs::write(&log, b"in the way").unwrap();
        let b = events_file(&lake, "b", "2026-04-02", "acme", &["b"]).await;
        let err = snap
            .commit(&lake, commit(CommitKind::Ingest, vec![b], &[]))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::DeltaSync { version: 2, table, .. } if table == EVENTS),
            "{err:?}"
        );
        let message = err.to_string();
        for needed in [
            "commit landed at version 2",
            "Delta log of table events",
            "next agentledger write",
        ] {
            assert!(message.contains(needed), "{message}");
        }
        // It did land, and the other tables' logs are current.
        assert_eq!(Snapshot::load(&lake).await.unwrap().version(), 2);
        assert_eq!(snap.version(), 2);
        assert_eq!(
            of(&versions(root, QUARANTINE)[0], "commitInfo")[0]["agentledgerVersion"],
            1
        );
        // Once the way is clear, the next write brings it up to date.
        std::fs::remove_file(&log).unwrap();
        let c = events_file(&lake, "c", "2026-04-03", "acme", &["c"]).await;
        snap.commit(&lake, commit(CommitKind::Ingest, vec![c], &[]))
            .await
            .unwrap();
        assert_in_step(root, &snap);
        assert_eq!(delta_files(root, EVENTS).len(), 3);
    }

    #[tokio::test]
    async fn a_delta_version_agentledger_did_not_write_is_refused() {
        let (dir, lake) = local();
        let root = dir.path();
        let mut snap = Snapshot::load(&lake).await.unwrap();
        let a = events_file(&lake, "a", "2026-04-01", "acme", &["a"]).await;
        snap.commit(&lake, commit(CommitKind::Ingest, vec![a], &[]))
            .await
            .unwrap();
        std::fs::write(
            root.join("events/_delta_log/00000000000000000001.json"),
            "{\"commitInfo\":{\"operation\":\"OPTIMIZE\"}}\n",
        )
        .unwrap();
        let b = events_file(&lake, "b", "2026-04-02", "acme", &["b"]).await;
        let err = snap
            .commit(&lake, commit(CommitKind::Ingest, vec![b], &[]))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("00000000000000000001.json")
                && err.contains("agentledger did not write it"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn the_newest_version_is_found_from_the_hint_or_without_it() {
        let (dir, lake) = local();
        let root = dir.path();
        let log = root.join("events").join(DELTA_LOG_DIR);
        std::fs::create_dir_all(&log).unwrap();
        let write = |v: u64| {
            let line = json!({"commitInfo": {"agentledgerVersion": v * 2}});
            std::fs::write(log.join(format!("{v:020}.json")), format!("{line}\n")).unwrap();
        };
        (0..=250).for_each(write);
        // Neither a store's temporary file nor a subfolder counts.
        std::fs::write(log.join("00000000000000000999.json#1"), "x").unwrap();
        std::fs::create_dir_all(log.join("_staged_commits")).unwrap();
        std::fs::write(log.join("_staged_commits/00000000000000000998.json"), "x").unwrap();
        let at = |version: u64| {
            Some(Head {
                version,
                agentledger_version: version * 2,
            })
        };
        assert_eq!(head(&lake, EVENTS).await.unwrap(), at(250));
        let hint = root.join(HINTS_DIR).join("events.json");
        assert_eq!(
            read_hint(&lake, EVENTS).await,
            Some(250),
            "written once 100 past none"
        );
        (251..=260).for_each(write);
        assert_eq!(head(&lake, EVENTS).await.unwrap(), at(260));
        assert_eq!(
            read_hint(&lake, EVENTS).await,
            Some(250),
            "not rewritten so soon"
        );
        // Listed from the hint: versions before it are not looked at.
        for v in 0..250 {
            std::fs::remove_file(log.join(format!("{v:020}.json"))).unwrap();
        }
        assert_eq!(head(&lake, EVENTS).await.unwrap(), at(260));
        // The hinted version itself is the newest.
        std::fs::write(&hint, r#"{"version": 260}"#).unwrap();
        assert_eq!(head(&lake, EVENTS).await.unwrap(), at(260));
        // A hint past the log (it was moved away and begun anew), or one
        // that does not read: listed from the start.
        for bad in [r#"{"version": 10000}"#, "garbage"] {
            std::fs::write(&hint, bad).unwrap();
            assert_eq!(head(&lake, EVENTS).await.unwrap(), at(260), "{bad}");
        }
        assert_eq!(head(&lake, QUARANTINE).await.unwrap(), None);
    }

    #[tokio::test]
    async fn orphan_removal_leaves_delta_logs_alone() {
        let (dir, lake) = local();
        let root = dir.path();
        let mut snap = Snapshot::load(&lake).await.unwrap();
        let a = events_file(&lake, "a", "2026-05-01", "acme", &["a"]).await;
        snap.commit(&lake, commit(CommitKind::Ingest, vec![a], &[]))
            .await
            .unwrap();
        let orphan = fake(
            root,
            EVENTS,
            "events/date=2026-05-01/part-killed.parquet",
            1,
        );
        let removed = snap
            .remove_orphans_older_than(&lake, &TABLES, std::time::Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(removed, [orphan.path]);
        assert_in_step(root, &snap);
        assert_eq!(delta_log_files(root), TABLES.len());

        // The same through an object store's listing (S3, GCS, Azure).
        let lake = Lake::open("memory://delta-orphans").unwrap();
        for path in [
            "events/_delta_log/00000000000000000000.json",
            "events/date=2026-05-01/killed.parquet",
        ] {
            lake.store()
                .put(&lake.path(path), b"x".to_vec().into())
                .await
                .unwrap();
        }
        let removed = Snapshot::load(&lake)
            .await
            .unwrap()
            .remove_orphans_older_than(&lake, &TABLES, std::time::Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(removed, ["events/date=2026-05-01/killed.parquet"]);
    }

    #[tokio::test]
    async fn stats_span_row_groups_and_leave_out_bounds_that_are_not_exact() {
        let (dir, lake) = local();
        let text = |values: Vec<Option<&str>>| -> ArrayRef { Arc::new(StringArray::from(values)) };
        let long = "x".repeat(100);
        let batch = events_batch(
            "acme",
            &["e3", "e1", "e5", "e2", "e4"],
            vec![
                // Row groups of two rows: the first all null.
                (
                    "model",
                    text(vec![None, None, Some("m-b"), Some("m-a"), None]),
                ),
                (
                    "cost_usd",
                    Arc::new(
                        [Some(1), None, None, Some(4), Some(5)]
                            .into_iter()
                            .collect::<Decimal128Array>()
                            .with_precision_and_scale(38, 12)
                            .unwrap(),
                    ),
                ),
                // Longer than Parquet keeps exact in its statistics.
                (
                    "attributes",
                    text(vec![Some("{}"), Some(&long), None, None, Some("{}")]),
                ),
                ("line", Arc::new(Int64Array::from(vec![9, 2, 7, 4, 5]))),
            ],
        );
        let relative = "events/date=2026-06-01/part-groups.parquet";
        let props = parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(Some(2))
            .build();
        let mut buffer = Vec::new();
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(&mut buffer, batch.schema(), Some(props)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let on_disk = dir.path().join(relative);
        std::fs::create_dir_all(on_disk.parent().unwrap()).unwrap();
        std::fs::write(&on_disk, &buffer).unwrap();
        let file = FileEntry {
            table: EVENTS.into(),
            path: relative.into(),
            size: buffer.len() as u64,
            rows: 5,
            date: Some("2026-06-01".into()),
        };
        let metadata = crate::parquet_io::read_metadata(&lake, &file)
            .await
            .unwrap();
        assert_eq!(metadata.num_row_groups(), 3);
        let s = stats_of(file.rows, Some(&metadata), &EVENTS_SCHEMA);
        assert_eq!(s["numRecords"], 5);
        assert_eq!(
            (&s["minValues"]["event_id"], &s["maxValues"]["event_id"]),
            (&json!("e1"), &json!("e5"))
        );
        assert_eq!(
            (&s["minValues"]["model"], &s["maxValues"]["model"]),
            (&json!("m-a"), &json!("m-b"))
        );
        assert_eq!(
            (&s["minValues"]["line"], &s["maxValues"]["line"]),
            (&json!(2), &json!(9))
        );
        assert_eq!(s["nullCount"]["model"], 3);
        assert_eq!(s["nullCount"]["cost_usd"], 2);
        assert_eq!(s["nullCount"]["attributes"], 2);
        assert!(s["minValues"].get("attributes").is_none(), "{s}");
        assert!(s["maxValues"].get("attributes").is_none(), "{s}");
        // A footer that cannot be read: the commit's row count alone.
        assert_eq!(stats_of(5, None, &EVENTS_SCHEMA), json!({"numRecords": 5}));
    }

    #[test]
    fn every_table_has_a_delta_schema() {
        for table in TABLES {
            let schema: Value = serde_json::from_str(&schema_string(table).unwrap()).unwrap();
            let names: Vec<&str> = schema["fields"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["name"].as_str().unwrap())
                .collect();
            let mut expected: Vec<String> = table_schema(table)
                .unwrap()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            if is_partitioned(table) {
                expected.push("date".into());
            }
            assert_eq!(names, expected, "{table}");
        }
        let events: Value = serde_json::from_str(&schema_string(EVENTS).unwrap()).unwrap();
        let field = |name: &str| {
            events["fields"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["name"] == name)
                .unwrap()
                .clone()
        };
        let ty = |name: &str| (field(name)["type"].clone(), field(name)["nullable"].clone());
        assert_eq!(ty("event_id"), (json!("string"), json!(false)));
        assert_eq!(ty("ts"), (json!("timestamp"), json!(false)));
        assert_eq!(ty("cost_usd"), (json!("decimal(38,12)"), json!(true)));
        assert_eq!(ty("input_tokens"), (json!("long"), json!(true)));
        assert_eq!(ty("cache_hit"), (json!("boolean"), json!(true)));
        assert_eq!(ty("date"), (json!("date"), json!(false)));
        assert_eq!(delta_type(&DataType::Utf8View), None);
        assert_eq!(
            delta_type(&DataType::Timestamp(
                TimeUnit::Millisecond,
                Some("UTC".into())
            )),
            None
        );
        assert_eq!(
            delta_type(&DataType::Timestamp(TimeUnit::Microsecond, None)),
            None
        );
    }

    #[test]
    fn paths_are_relative_to_the_table_and_escaped() {
        let lake = Lake::open("memory://delta-paths").unwrap();
        let file = |path: &str| FileEntry {
            table: EVENTS.into(),
            path: path.into(),
            size: 1,
            rows: 1,
            date: None,
        };
        assert_eq!(
            delta_path(
                &lake,
                EVENTS,
                &file("events/date=2026-01-05/part-1.parquet")
            ),
            "date=2026-01-05/part-1.parquet"
        );
        assert_eq!(
            delta_path(&lake, EVENTS, &file("events/a b#.parquet")),
            "a%20b%23.parquet"
        );
        assert_eq!(
            delta_path(&lake, EVENTS, &file("eventsx/a.parquet")),
            "memory://delta-paths/eventsx/a.parquet"
        );
        assert_eq!(
            partition_values(EVENTS, &file("events/date=2026-01-05/x.parquet")).unwrap(),
            json!({"date": "2026-01-05"})
        );
        assert!(partition_values(EVENTS, &file("events/x.parquet")).is_err());
        assert_eq!(
            partition_values(MODEL_PRICES, &file("model_prices/version=1/x.parquet")).unwrap(),
            json!({})
        );
        let id = new_table_id();
        assert_eq!((id.len(), &id[14..15]), (36, "4"));
        assert_ne!(id, new_table_id());
    }

    #[tokio::test]
    async fn an_in_memory_lake_gets_no_delta_log() {
        use futures::TryStreamExt;
        let lake = Lake::open("memory://delta-none").unwrap();
        let mut snap = Snapshot::load(&lake).await.unwrap();
        snap.commit(&lake, commit(CommitKind::Landing, vec![], &[]))
            .await
            .unwrap();
        let listed: Vec<_> = lake.store().list(None).try_collect().await.unwrap();
        assert!(
            listed
                .iter()
                .all(|m| !m.location.as_ref().contains(DELTA_LOG_DIR)),
            "{listed:?}"
        );
    }
}
