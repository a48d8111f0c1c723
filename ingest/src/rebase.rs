//! Optimistic concurrency for ingests: what an ingest does when another
//! writer committed first.
//!
//! An ingest takes no lock. It reads a snapshot, decides every line against
//! it (stored, duplicate, quarantined), writes its files and commits with a
//! conditional put of the next log version. When another writer took that
//! version first, the ingest *rebases*: it looks at the commits made since
//! its snapshot and changes its own prepared commit so that the result is
//! exactly what running the ingests one after another, in commit order, would
//! have given (SPEC §1's duplicate rules across ingests):
//!
//! | committed since the snapshot | what the ingest does |
//! |---|---|
//! | another ingest | rows of ours whose `event_id` it stored: the same content becomes `duplicate` (the row leaves our files), other content means the ingest starts over; quarantine rows of ours that it quarantined already (same source, line and text) leave our files and no longer count as new |
//! | a price load | our own run parts were priced with the old prices: dropped (the events stay uncovered until the next refresh; answers are the same) |
//! | a retention | starts over: our duplicate decisions may have leaned on rows it took out |
//! | a compaction, run-parts refresh, plan load, landing or alerts record | nothing changes but the cover's `full` and `unique`, which no longer hold |
//!
//! Starting over deletes our files and runs the ingest again from the newest
//! snapshot; it happens only for a retention or a genuinely conflicting
//! duplicate racing us, and at most [`MAX_RESTARTS`] times.

use std::collections::{HashMap, HashSet};

use agentledger_lake::Lake;
use agentledger_lake::log::{Commit, CommitKind, FileEntry, RunPartsCover};
use agentledger_lake::parquet_io::{read_all, read_columns};
use agentledger_lake::schema::{
    EVENT_INDEX, EVENTS, EVENTS_SCHEMA, QUARANTINE, QUARANTINE_INDEX, QUARANTINE_SCHEMA, RUN_PARTS,
};
use agentledger_lake::writer::open_file;
use arrow::array::{AsArray, BooleanArray, RecordBatch};
use arrow::datatypes::Int64Type;
use futures::StreamExt;
use object_store::ObjectStoreExt;

use crate::error::Result;
use crate::ingest::IngestSummary;
use agentledger_lake::index::{event_key, quarantine_keys, runs_for};
use agentledger_lake::log::IndexCover;

fn is_index(table: &str) -> bool {
    table == EVENT_INDEX || table == QUARANTINE_INDEX
}

/// How often an ingest starts over before it gives up.
pub const MAX_RESTARTS: u32 = 5;

/// An ingest's commit, prepared but not yet in the log.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// The ingest's id (the prefix of its files).
    pub id: String,
    /// Its data files: events, quarantine and its own run parts.
    pub files: Vec<FileEntry>,
    /// What its run parts cover, if it wrote any.
    pub cover: Option<RunPartsCover>,
    /// Its counts.
    pub summary: IngestSummary,
}

/// What a rebase decided.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Rebased {
    /// The prepared commit now stands on the newest snapshot.
    Ready,
    /// It cannot: start over, for this reason.
    Restart(String),
}

impl Prepared {
    /// The commit record as it stands.
    pub fn commit(&self) -> Commit {
        let s = &self.summary;
        let mut record = serde_json::json!({
            "read": s.read,
            "stored": s.stored,
            "duplicate": s.duplicate,
            "quarantined": s.quarantined,
            "quarantined_new": s.quarantined_new,
            "sources": s.sources.iter().map(|s| &s.source).collect::<Vec<_>>(),
        });
        if let Some(cover) = &self.cover {
            record["run_parts"] = serde_json::json!(cover);
        }
        if self.files.iter().any(|f| is_index(&f.table)) {
            record["index"] = serde_json::json!(IndexCover {
                own: true,
                full: false
            });
        }
        let mut commit = Commit::record(CommitKind::Ingest, record);
        commit.id = self.id.clone();
        commit.files = self.files.clone();
        commit
    }

    /// Moves the prepared commit on top of `since` (the commits made after
    /// its snapshot); `round` names the rewritten files apart.
    pub async fn rebase(&mut self, lake: &Lake, since: &[Commit], round: u32) -> Result<Rebased> {
        if let Some(c) = since.iter().find(|c| c.kind == CommitKind::Retain) {
            return Ok(Rebased::Restart(format!(
                "retention (version {}) committed during the ingest",
                c.version
            )));
        }
        if since.iter().any(|c| c.kind == CommitKind::LoadPrices) {
            self.drop_parts(lake).await;
        }
        if since.iter().any(|c| {
            c.files
                .iter()
                .any(|f| f.table == EVENTS || f.table == RUN_PARTS)
        }) && let Some(cover) = self.cover.as_mut()
        {
            cover.full = false;
            cover.unique = false;
        }
        let theirs: Vec<&FileEntry> = since
            .iter()
            .filter(|c| c.kind == CommitKind::Ingest)
            .flat_map(|c| c.files.iter())
            .collect();
        if theirs.is_empty() {
            return Ok(Rebased::Ready);
        }

        // What they stored and quarantined.
        let mut their_ids: HashMap<u128, i64> = HashMap::new();
        for file in theirs.iter().filter(|f| f.table == EVENTS) {
            let mut stream = read_columns(lake, file, &["event_id", "content_hash"]).await?;
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                let ids = column(&batch, "event_id", file)?.as_string::<i32>();
                let hashes = column(&batch, "content_hash", file)?.as_primitive::<Int64Type>();
                for i in 0..batch.num_rows() {
                    their_ids.insert(event_key(ids.value(i)), hashes.value(i));
                }
            }
        }
        let mut their_quarantine: HashSet<u128> = HashSet::new();
        for file in theirs.iter().filter(|f| f.table == QUARANTINE) {
            their_quarantine.extend(quarantine_keys(lake, file).await?);
        }

        // Our rows they already hold.
        let mut now_duplicate: HashMap<String, u64> = HashMap::new();
        let mut drop_events: HashMap<String, Vec<bool>> = HashMap::new();
        for file in self.files.iter().filter(|f| f.table == EVENTS) {
            let mut keep = Vec::with_capacity(file.rows as usize);
            let mut stream =
                read_columns(lake, file, &["event_id", "content_hash", "source"]).await?;
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                let ids = column(&batch, "event_id", file)?.as_string::<i32>();
                let hashes = column(&batch, "content_hash", file)?.as_primitive::<Int64Type>();
                let sources = column(&batch, "source", file)?.as_string::<i32>();
                for i in 0..batch.num_rows() {
                    match their_ids.get(&event_key(ids.value(i))) {
                        None => keep.push(true),
                        Some(h) if *h == hashes.value(i) => {
                            keep.push(false);
                            *now_duplicate
                                .entry(sources.value(i).to_string())
                                .or_default() += 1;
                        }
                        Some(_) => {
                            return Ok(Rebased::Restart(format!(
                                "event_id {:?} was stored with other content by a concurrent ingest",
                                ids.value(i)
                            )));
                        }
                    }
                }
            }
            if keep.contains(&false) {
                drop_events.insert(file.path.clone(), keep);
            }
        }
        let mut drop_quarantine: HashMap<String, Vec<bool>> = HashMap::new();
        let mut no_longer_new = 0u64;
        for file in self.files.iter().filter(|f| f.table == QUARANTINE) {
            let keep: Vec<bool> = quarantine_keys(lake, file)
                .await?
                .iter()
                .map(|key| !their_quarantine.contains(key))
                .collect();
            let dropped = keep.iter().filter(|k| !**k).count() as u64;
            if dropped > 0 {
                no_longer_new += dropped;
                drop_quarantine.insert(file.path.clone(), keep);
            }
        }

        // Our parts summed rows that are no longer ours to store.
        if !drop_events.is_empty() {
            self.drop_parts(lake).await;
        }
        let rewriting = !drop_events.is_empty() || !drop_quarantine.is_empty();
        let mut files = Vec::with_capacity(self.files.len());
        for file in std::mem::take(&mut self.files) {
            let keep = match file.table.as_str() {
                EVENTS => drop_events.remove(&file.path),
                QUARANTINE => drop_quarantine.remove(&file.path),
                _ => None,
            };
            match keep {
                None => files.push(file),
                Some(keep) => {
                    if let Some(rewritten) = rewrite(lake, &file, &keep, round).await? {
                        files.push(rewritten);
                    }
                    delete(lake, &file.path).await?;
                }
            }
        }
        self.files = files;
        if rewriting {
            // The index runs name rows that left our files: write them anew.
            let old: Vec<FileEntry> = self
                .files
                .iter()
                .filter(|f| is_index(&f.table))
                .cloned()
                .collect();
            self.files.retain(|f| !is_index(&f.table));
            for f in old {
                delete(lake, &f.path).await?;
            }
            let runs = runs_for(lake, &format!("{}-r{round}", self.id), &self.files).await?;
            self.files.extend(runs);
        }

        // The counts, as if we had come after them.
        for (source, n) in now_duplicate {
            self.summary.stored -= n;
            self.summary.duplicate += n;
            if let Some(s) = self.summary.sources.iter_mut().find(|s| s.source == source) {
                s.stored -= n;
                s.duplicate += n;
            }
        }
        self.summary.quarantined_new -= no_longer_new;
        Ok(Rebased::Ready)
    }

    /// Leaves the commit without its own run parts (and deletes the file).
    async fn drop_parts(&mut self, lake: &Lake) {
        self.cover = None;
        let parts: Vec<FileEntry> = self
            .files
            .iter()
            .filter(|f| f.table == RUN_PARTS)
            .cloned()
            .collect();
        self.files.retain(|f| f.table != RUN_PARTS);
        for f in parts {
            // Not named by any commit: if this fails the file is an orphan,
            // deleted by a later writer once past the grace period.
            let _ = delete(lake, &f.path).await;
        }
    }

    /// Deletes every file of the prepared commit (before starting over).
    pub async fn discard(self, lake: &Lake) -> Result<()> {
        for f in &self.files {
            delete(lake, &f.path).await?;
        }
        Ok(())
    }
}

/// Writes the rows of `file` that `keep` marks as a new file beside it;
/// none when no row is kept.
async fn rewrite(
    lake: &Lake,
    file: &FileEntry,
    keep: &[bool],
    round: u32,
) -> Result<Option<FileEntry>> {
    let kept = keep.iter().filter(|k| **k).count() as u64;
    if kept == 0 {
        return Ok(None);
    }
    let schema = if file.table == EVENTS {
        &EVENTS_SCHEMA
    } else {
        &QUARANTINE_SCHEMA
    };
    let relative = match file.path.strip_suffix(".parquet") {
        Some(stem) => format!("{stem}-r{round}.parquet"),
        None => format!("{}-r{round}", file.path),
    };
    let mut writer = open_file(lake, &relative, schema)?;
    let mut stream = read_all(lake, file).await?;
    let mut at = 0usize;
    while let Some(batch) = stream.next().await {
        let batch: RecordBatch = batch?;
        let mask = BooleanArray::from(keep[at..at + batch.num_rows()].to_vec());
        at += batch.num_rows();
        let filtered = arrow::compute::filter_record_batch(&batch, &mask)?;
        if filtered.num_rows() > 0 {
            writer
                .write(&filtered)
                .await
                .map_err(agentledger_lake::Error::from)?;
        }
    }
    writer
        .finish()
        .await
        .map_err(agentledger_lake::Error::from)?;
    Ok(Some(FileEntry {
        table: file.table.clone(),
        path: relative,
        size: writer.bytes_written() as u64,
        rows: kept,
        date: file.date.clone(),
    }))
}

/// A column of a batch read with [`read_columns`], by name (a projection
/// keeps the file's column order, not the order asked for).
fn column<'b>(
    batch: &'b RecordBatch,
    name: &str,
    file: &FileEntry,
) -> Result<&'b arrow::array::ArrayRef> {
    batch.column_by_name(name).ok_or_else(|| {
        agentledger_lake::Error::CorruptData {
            path: file.path.clone(),
            reason: format!("the stored file has no column {name}"),
        }
        .into()
    })
}

async fn delete(lake: &Lake, relative: &str) -> Result<()> {
    match lake.store().delete(&lake.path(relative)).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(agentledger_lake::Error::from(e).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::{IngestOptions, prepare};
    use crate::source::expand;
    use agentledger_lake::log::Snapshot;

    fn event(id: &str, tokens: u32) -> String {
        format!(
            r#"{{"event_id":"{id}","event_type":"model_call","ts":"2026-10-05T10:00:00Z","tenant_id":"acme","run_id":"r1","model":"m","input_tokens":{tokens},"output_tokens":1}}"#
        )
    }

    async fn stored(lake: &Lake, table: &str, column: &str) -> Vec<String> {
        let snapshot = Snapshot::load(lake).await.unwrap();
        let mut out = Vec::new();
        for file in snapshot.files(table) {
            let mut stream = read_columns(lake, file, &[column]).await.unwrap();
            while let Some(batch) = stream.next().await {
                let batch = batch.unwrap();
                let col = arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Utf8)
                    .unwrap();
                let col = col.as_string::<i32>();
                out.extend((0..batch.num_rows()).map(|i| col.value(i).to_string()));
            }
        }
        out.sort();
        out
    }

    async fn prepared(lake: &Lake, sources: &[String]) -> (Prepared, Snapshot) {
        let files = expand(sources).await.unwrap();
        let (p, snapshot, ()) = prepare(lake, files, &IngestOptions::default(), None, ())
            .await
            .unwrap();
        (p.unwrap(), snapshot)
    }

    /// Two ingests prepared against the same snapshot, committed in turn:
    /// the second comes out exactly as if it had run after the first.
    #[tokio::test]
    async fn an_ingest_that_lost_the_race_counts_as_if_it_ran_second() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().join("lake").to_str().unwrap()).unwrap();
        let x = dir.path().join("x.ndjson");
        let y = dir.path().join("y.ndjson");
        std::fs::write(
            &x,
            format!("{}\n{}\nnot json\n", event("e1", 1), event("e2", 2)),
        )
        .unwrap();
        // e1 again, spelled differently (an exact repeat), and a new e3.
        std::fs::write(
            &y,
            format!(
                "{}\n{}\n",
                event("e1", 1).replace(',', ", "),
                event("e3", 3)
            ),
        )
        .unwrap();
        let (x, y) = (x.display().to_string(), y.display().to_string());

        let (first, mut at_first) = prepared(&lake, std::slice::from_ref(&x)).await;
        let (mut second, mut at_second) = prepared(&lake, &[x.clone(), y.clone()]).await;
        assert_eq!(second.summary.stored, 3, "{:?}", second.summary);
        at_first.commit(&lake, first.commit()).await.unwrap();
        let err = at_second.commit(&lake, second.commit()).await.unwrap_err();
        assert!(
            matches!(err, agentledger_lake::Error::CommitConflict { .. }),
            "{err}"
        );
        let newer = at_second.refreshed(&lake).await.unwrap();
        let since = newer.since(at_second.version()).to_vec();
        assert_eq!(
            second.rebase(&lake, &since, 1).await.unwrap(),
            Rebased::Ready
        );
        let mut at_newer = newer;
        at_newer.commit(&lake, second.commit()).await.unwrap();

        // The same counts as ingesting [x, y] after x.
        let s = &second.summary;
        assert_eq!(
            (
                s.read,
                s.stored,
                s.duplicate,
                s.quarantined,
                s.quarantined_new
            ),
            (5, 1, 3, 1, 0),
            "{s:?}"
        );
        assert_eq!(s.read, s.stored + s.duplicate + s.quarantined);
        let per_x = s.sources.iter().find(|t| t.source == x).unwrap();
        assert_eq!((per_x.stored, per_x.duplicate), (0, 2), "{per_x:?}");
        assert_eq!(stored(&lake, EVENTS, "event_id").await, ["e1", "e2", "e3"]);
        // The bad line is in the quarantine once.
        assert_eq!(stored(&lake, QUARANTINE, "line").await, ["3"]);
        // The replaced files are gone from storage, not only from the log.
        let named: HashSet<String> = Snapshot::load(&lake)
            .await
            .unwrap()
            .all_paths()
            .unwrap()
            .into_iter()
            .map(str::to_string)
            .collect();
        let mut on_disk = Vec::new();
        let mut stack = vec![
            dir.path().join("lake/events"),
            dir.path().join("lake/quarantine"),
        ];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.ends_with(agentledger_lake::delta::DELTA_LOG_DIR) {
                    continue;
                }
                if p.is_dir() {
                    stack.push(p);
                } else {
                    on_disk.push(p);
                }
            }
        }
        for p in on_disk {
            let rel = p.strip_prefix(dir.path().join("lake")).unwrap();
            assert!(
                named.contains(rel.to_str().unwrap()),
                "left behind: {rel:?}"
            );
        }
    }

    /// A concurrent ingest that stored an id with other content, or a
    /// retention, makes the loser start over; a price load drops its parts.
    #[tokio::test]
    async fn a_conflicting_duplicate_or_a_retention_makes_the_ingest_start_over() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().join("lake").to_str().unwrap()).unwrap();
        let a = dir.path().join("a.ndjson");
        let b = dir.path().join("b.ndjson");
        std::fs::write(&a, event("e1", 1) + "\n").unwrap();
        std::fs::write(&b, event("e1", 99) + "\n").unwrap();
        let (first, mut at_first) = prepared(&lake, &[a.display().to_string()]).await;
        let (mut second, at_second) = prepared(&lake, &[b.display().to_string()]).await;
        at_first.commit(&lake, first.commit()).await.unwrap();
        let newer = at_second.refreshed(&lake).await.unwrap();
        let since = newer.since(at_second.version()).to_vec();
        match second.rebase(&lake, &since, 1).await.unwrap() {
            Rebased::Restart(why) => assert!(why.contains("e1"), "{why}"),
            Rebased::Ready => panic!("a conflicting duplicate must not be stored"),
        }

        let mut retain = Commit::record(CommitKind::Retain, serde_json::json!({}));
        retain.version = 9;
        let mut parts = Prepared {
            id: "x".into(),
            files: vec![],
            cover: Some(RunPartsCover {
                own: true,
                full: true,
                unique: true,
                ..Default::default()
            }),
            summary: IngestSummary::default(),
        };
        assert!(matches!(
            parts.rebase(&lake, &[retain], 1).await.unwrap(),
            Rebased::Restart(_)
        ));
        let prices = Commit::record(CommitKind::LoadPrices, serde_json::json!({}));
        assert_eq!(
            parts.rebase(&lake, &[prices], 1).await.unwrap(),
            Rebased::Ready
        );
        assert!(
            parts.cover.is_none(),
            "parts priced with old prices are dropped"
        );
    }
}
