//! What the log says, folded: the state of the lake at one version.
//!
//! Every question a reader asks of the log (which files a table has, which
//! events the run parts cover, which landing files were ingested, which
//! alerts were delivered, which reference file is in force) is answered from
//! a [`State`], built by applying each commit in version order
//! ([`State::apply`]). A checkpoint ([`crate::checkpoint`]) is a `State`
//! written down, so that opening a lake reads one checkpoint and the records
//! after it instead of every record since the first.
//!
//! The state keeps only what can still decide an answer: the live files of
//! each table (with the version that added each), the paths that a writer
//! must not take for orphans, and the folded run-parts coverage for every
//! definitions version that ever stated one. Facts about files that no
//! reader sees any more (the coverage of versions whose events files were
//! all compacted or retained away) are dropped when a checkpoint is written
//! ([`State::pruned`]); a test checks that a state rebuilt from a checkpoint
//! answers every question as the state folded from every record does.

use std::collections::{BTreeMap, BTreeSet};

use foldhash::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::log::{
    AlertsRecord, Commit, CommitKind, FileEntry, Format, LandedFile, ReferenceRecord, RunCoverage,
    RunPartsCover,
};
use crate::schema::{EVENTS, RUN_PARTS, index_of};

/// A data file a reader sees, with the version of the commit that added it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "LiveFileRow")]
pub struct LiveFile {
    /// The version that added the file.
    pub added_by: u64,
    /// Its rows' keys are in the key index (`events` and `quarantine`
    /// files only; see [`crate::log::IndexCover`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub indexed: bool,
    /// The file.
    #[serde(flatten)]
    pub entry: FileEntry,
}

/// A [`LiveFile`] as a checkpoint holds it: its entry's fields beside its
/// own. Read through this rather than serde's `flatten`, which buffers every
/// field of every file before reading it (a checkpoint lists every live
/// file, and every command reads the checkpoint).
#[derive(Deserialize)]
struct LiveFileRow {
    added_by: u64,
    #[serde(default)]
    indexed: bool,
    table: String,
    path: String,
    size: u64,
    rows: u64,
    #[serde(default)]
    date: Option<String>,
}

impl From<LiveFileRow> for LiveFile {
    fn from(r: LiveFileRow) -> Self {
        LiveFile {
            added_by: r.added_by,
            indexed: r.indexed,
            entry: FileEntry {
                table: r.table,
                path: r.path,
                size: r.size,
                rows: r.rows,
                date: r.date,
            },
        }
    }
}

/// A file an append table no longer has (retention, compaction, run-part
/// rebuilds): deleted once the removal is older than the grace period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removal {
    /// The version that removed it.
    pub version: u64,
    /// When that version was committed, RFC 3339 UTC.
    pub committed_at: String,
    /// Path relative to the lake root.
    pub path: String,
}

/// The removed files not yet known to be deleted ([`State::removals`]).
///
/// Those a checkpoint holds stay as it stored them (their compressed frame,
/// or in checkpoints of format 1 their JSON text) until a writer asks for
/// them ([`Removals::list`]): readers never do, and after a compaction of a
/// long history they are most of the checkpoint. A list that cannot be read
/// is an error then, naming the checkpoint; it is never skipped.
#[derive(Debug, Clone, Default)]
pub struct Removals {
    /// From the checkpoint the state was read from.
    stored: Option<std::sync::Arc<StoredRemovals>>,
    /// Folded in since, oldest first.
    added: Vec<Removal>,
}

#[derive(Debug)]
struct StoredRemovals {
    text: StoredText,
    /// The checkpoint's path, for the error if the list cannot be read.
    source: String,
    parsed: std::sync::OnceLock<std::result::Result<Vec<Removal>, String>>,
}

/// How a checkpoint holds its removals.
#[derive(Debug)]
enum StoredText {
    /// Format 1: the list's JSON, inside the state's.
    Json(Box<serde_json::value::RawValue>),
    /// Format 2: the list's JSON, zstd-compressed, in a frame of its own
    /// that readers do not decompress (or why it could not be found).
    Compressed(std::result::Result<bytes::Bytes, String>),
}

impl StoredText {
    fn parse(&self) -> std::result::Result<Vec<Removal>, String> {
        match self {
            StoredText::Json(json) => serde_json::from_str(json.get()).map_err(|e| e.to_string()),
            StoredText::Compressed(Err(reason)) => Err(reason.clone()),
            StoredText::Compressed(Ok(frame)) => {
                let json = crate::checkpoint::decompress(frame).map_err(|e| e.to_string())?;
                serde_json::from_slice(&json).map_err(|e| e.to_string())
            }
        }
    }
}

impl Removals {
    /// Every removal, oldest first; an error if those of the checkpoint do
    /// not parse.
    pub fn list(&self) -> crate::error::Result<impl Iterator<Item = &Removal>> {
        let stored: &[Removal] = match &self.stored {
            None => &[],
            Some(s) => s
                .parsed
                .get_or_init(|| s.text.parse())
                .as_ref()
                .map_err(|reason| crate::error::Error::CorruptLog {
                    path: s.source.clone(),
                    reason: format!("its list of removed files does not parse: {reason}"),
                })?,
        };
        Ok(stored.iter().chain(&self.added))
    }

    /// Names the checkpoint the stored removals were read from.
    pub(crate) fn read_from(&mut self, checkpoint: &str) {
        if let Some(stored) = self.stored.as_mut().and_then(std::sync::Arc::get_mut) {
            stored.source = checkpoint.to_string();
        }
    }

    /// Whether nothing was read into these removals: no list from a
    /// checkpoint's JSON and none folded in.
    pub(crate) fn is_unread(&self) -> bool {
        self.stored.is_none() && self.added.is_empty()
    }

    /// The removals of a checkpoint of format 2: its compressed frame of
    /// them, read when a writer asks, or why it could not be found.
    pub(crate) fn in_frame(
        checkpoint: &str,
        frame: std::result::Result<bytes::Bytes, String>,
    ) -> Self {
        Removals {
            stored: Some(std::sync::Arc::new(StoredRemovals {
                text: StoredText::Compressed(frame),
                source: checkpoint.to_string(),
                parsed: std::sync::OnceLock::new(),
            })),
            added: Vec::new(),
        }
    }

    /// The removals `keep` says yes to.
    fn filtered(&self, keep: impl Fn(&Removal) -> bool) -> crate::error::Result<Removals> {
        Ok(Removals {
            stored: None,
            added: self.list()?.filter(|r| keep(r)).cloned().collect(),
        })
    }
}

impl PartialEq for Removals {
    fn eq(&self, other: &Self) -> bool {
        match (self.list(), other.list()) {
            (Ok(a), Ok(b)) => a.eq(b),
            _ => false,
        }
    }
}

impl Serialize for Removals {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        let list = self.list().map_err(serde::ser::Error::custom)?;
        serializer.collect_seq(list)
    }
}

impl<'de> Deserialize<'de> for Removals {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        let json = Box::<serde_json::value::RawValue>::deserialize(deserializer)?;
        let stored = (json.get().trim() != "[]").then(|| {
            std::sync::Arc::new(StoredRemovals {
                text: StoredText::Json(json),
                source: "a checkpoint".to_string(),
                parsed: std::sync::OnceLock::new(),
            })
        });
        Ok(Removals {
            stored,
            added: Vec::new(),
        })
    }
}

/// A table replaced whole by reference loads: the newest load's files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replaced {
    /// The version of the newest commit that replaced the table.
    pub version: u64,
    /// Its files of the table.
    pub files: Vec<FileEntry>,
}

/// The run-parts coverage folded for one definitions version (see
/// [`crate::log::RunCoverage`] for what the covers mean). Versions are
/// 1-based; 0 means "no such commit".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoverFold {
    /// Every event committed up to this version is covered.
    pub full_through: u64,
    /// Versions whose events are covered.
    pub covered: BTreeSet<u64>,
    /// Versions whose parts files are current.
    pub current: BTreeSet<u64>,
    /// The version whose parts hold one row per run, while they are the
    /// only current parts.
    pub unique_in: Option<u64>,
    /// The newest version whose parts hold one row per run and were the only
    /// current parts when written, while they are current: a *base* that
    /// later parts add to. Readers merge only the runs later parts touch
    /// (merge on read); the base's other rows are final.
    #[serde(default)]
    pub base_in: Option<u64>,
}

impl CoverFold {
    /// Applies one commit. `ours` is the reader's definitions (`None`: a
    /// reader whose definitions no commit states). `added_by` tells the
    /// version that added a live events file; `removes_parts` whether the
    /// commit takes out live parts files.
    fn step(
        &mut self,
        c: &Commit,
        ours: Option<&str>,
        added_by: &HashMap<&str, u64>,
        removes_parts: bool,
    ) {
        let is_ours =
            |cover: &RunPartsCover| ours.is_some_and(|d| cover.definitions.as_deref() == Some(d));
        // What makes every earlier part stale and every earlier event
        // uncovered.
        let mut invalidates = matches!(c.kind, CommitKind::LoadPrices | CommitKind::Retain);
        if let Some(cover) = c.run_parts_cover() {
            if c.kind == CommitKind::Compact {
                // The same events in other files: covered as the files it
                // replaced were, by parts current for this reader. A
                // compaction by another binary that put events our parts
                // cover and events they do not into one file leaves no way
                // to tell them apart: start over.
                let was_covered: Vec<bool> = c
                    .removes
                    .iter()
                    .map(|path| {
                        added_by
                            .get(path.as_str())
                            .is_some_and(|v| *v <= self.full_through || self.covered.contains(v))
                    })
                    .collect();
                if cover.own && was_covered.iter().all(|b| *b) {
                    self.covered.insert(c.version);
                } else if was_covered.contains(&true) {
                    invalidates = true;
                }
            } else if !is_ours(cover) {
                // A rebuild or merge of other definitions took out every
                // part before it (or there was none: a first ingest), ours
                // too.
                invalidates = cover.full || removes_parts;
            } else {
                self.current.insert(c.version);
                if cover.full {
                    self.full_through = c.version;
                }
                // Only a commit with parts files says whether they are
                // unique.
                if c.files.iter().any(|f| f.table == RUN_PARTS) || cover.full {
                    self.unique_in = cover.unique.then_some(c.version);
                    if cover.unique {
                        self.base_in = Some(c.version);
                    }
                }
                self.covered.extend(&cover.covers);
                if cover.own {
                    self.covered.insert(c.version);
                }
            }
        }
        if invalidates {
            *self = CoverFold::default();
        }
    }
}

/// The lake at one version; see the module documentation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// The version folded through (0: no commit).
    pub version: u64,
    /// The highest format of any commit folded.
    pub format: Format,
    /// The first version whose writer format is `format.writer`.
    #[serde(default)]
    pub writer_format_at: u64,
    /// Live files of the tables that are appended to, in commit order.
    pub appended: Vec<LiveFile>,
    /// Tables replaced whole, by name.
    pub replaced: BTreeMap<String, Replaced>,
    /// Paths some commit named that no reader sees and that are kept on
    /// purpose (superseded reference versions, for replaying old reports).
    pub kept: BTreeSet<String>,
    /// Removed files not yet known to be deleted.
    pub removals: Removals,
    /// For `events` and `quarantine`: the version that last took each date
    /// partition's rows out of the lake (retention; compaction keeps the
    /// rows, so it does not count). A key index entry of that date from a
    /// file older than that version is no longer stored.
    #[serde(default)]
    pub retained: BTreeMap<String, BTreeMap<String, u64>>,
    /// Landing files ingested by the batch, by path (the newest record of
    /// a path wins).
    pub landed: BTreeMap<String, LandedFile>,
    /// Every alerts record, oldest first.
    pub alerts: Vec<AlertsRecord>,
    /// The newest reference load record of each kind (`load_prices`,
    /// `load_plans`, `load_policies`).
    pub references: BTreeMap<String, ReferenceRecord>,
    /// The run-parts coverage by definitions version.
    pub covers: BTreeMap<String, CoverFold>,
    /// The run-parts coverage for definitions no commit states.
    pub unseen: CoverFold,
    /// The newest version that changed each table's files (added, removed
    /// or replaced some), for the versions from `changed_from` on: what
    /// tells a Delta log sync that a table it last synced at an older
    /// version has not changed since ([`State::unchanged_after`]).
    #[serde(default)]
    pub changed: BTreeMap<String, u64>,
    /// The first version `changed` knows of: 0 for a state folded from the
    /// first record. A checkpoint written before `changed` existed is read
    /// with its own version here ([`crate::checkpoint::read_latest`]).
    #[serde(default = "changes_unknown")]
    pub changed_from: u64,
}

/// What a checkpoint written without `changed` deserializes to.
fn changes_unknown() -> u64 {
    u64::MAX
}

fn kind_name(kind: CommitKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .expect("commit kinds serialize as strings")
}

impl State {
    /// Folds one commit in; `commit.version` must be `self.version + 1`
    /// (the log's loader checks it).
    pub fn apply(&mut self, c: &Commit) {
        debug_assert_eq!(c.version, self.version + 1);
        // Coverage first: it reads the files as they were before the commit.
        let removes: HashSet<&str> = c.removes.iter().map(String::as_str).collect();
        let mut added_by: HashMap<&str, u64> = HashMap::default();
        let mut removes_parts = false;
        // Per keyed table: whether every file the commit removes was indexed.
        let mut removed_indexed: BTreeMap<&str, bool> = BTreeMap::new();
        let mut retained: Vec<(String, String)> = Vec::new();
        // Tables whose files the commit changes.
        let mut touched: BTreeSet<&str> = c.files.iter().map(|f| f.table.as_str()).collect();
        touched.extend(c.replaces.iter().map(String::as_str));
        if !removes.is_empty() {
            for f in &self.appended {
                if removes.contains(f.entry.path.as_str()) {
                    touched.insert(f.entry.table.as_str());
                    if f.entry.table == EVENTS {
                        added_by.insert(f.entry.path.as_str(), f.added_by);
                    } else if f.entry.table == RUN_PARTS {
                        removes_parts = true;
                    }
                    if index_of(&f.entry.table).is_some() {
                        *removed_indexed
                            .entry(f.entry.table.as_str())
                            .or_insert(true) &= f.indexed;
                        if c.kind != CommitKind::Compact
                            && let Some(date) = &f.entry.date
                        {
                            retained.push((f.entry.table.clone(), date.clone()));
                        }
                    }
                }
            }
        }
        let index = c.index_cover().cloned().unwrap_or_default();
        let indexed_of: BTreeMap<String, bool> = removed_indexed
            .into_iter()
            .map(|(t, all)| (t.to_string(), all && c.kind == CommitKind::Compact))
            .collect();
        if let Some(defs) = c.run_parts_cover().and_then(|c| c.definitions.as_ref())
            && !self.covers.contains_key(defs)
        {
            // Until a commit stated them, these definitions were like any
            // unseen ones.
            self.covers.insert(defs.clone(), self.unseen.clone());
        }
        for (defs, fold) in &mut self.covers {
            fold.step(c, Some(defs), &added_by, removes_parts);
        }
        self.unseen.step(c, None, &added_by, removes_parts);
        drop(added_by);
        for table in touched {
            self.changed.insert(table.to_string(), c.version);
        }

        // Files.
        if !removes.is_empty() {
            self.appended
                .retain(|f| !removes.contains(f.entry.path.as_str()));
            self.removals
                .added
                .extend(c.removes.iter().map(|path| Removal {
                    version: c.version,
                    committed_at: c.committed_at.clone(),
                    path: path.clone(),
                }));
        }
        for table in &c.replaces {
            let files: Vec<FileEntry> = c
                .files
                .iter()
                .filter(|f| &f.table == table)
                .cloned()
                .collect();
            let previous = self.replaced.insert(
                table.clone(),
                Replaced {
                    version: c.version,
                    files,
                },
            );
            // The superseded version stays in the lake, for replays.
            if let Some(previous) = previous {
                self.kept.extend(previous.files.into_iter().map(|f| f.path));
            }
            // Files appended before the table was first replaced are
            // superseded too.
            let (superseded, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.appended)
                .into_iter()
                .partition(|f| &f.entry.table == table);
            self.appended = rest;
            self.kept
                .extend(superseded.into_iter().map(|f| f.entry.path));
        }
        for f in &c.files {
            if c.replaces.contains(&f.table) {
                continue;
            }
            if self.replaced.contains_key(&f.table) {
                // Files added to a replaced table by a commit that does not
                // replace it count for no reader.
                self.kept.insert(f.path.clone());
            } else {
                let keyed = index_of(&f.table).is_some();
                self.appended.push(LiveFile {
                    added_by: c.version,
                    // A compaction's file holds the rows of the files it
                    // removed: indexed if they all were.
                    indexed: keyed
                        && (index.own || indexed_of.get(&f.table).copied().unwrap_or(false)),
                    entry: f.clone(),
                });
            }
        }

        for (table, date) in retained {
            self.retained
                .entry(table)
                .or_default()
                .insert(date, c.version);
        }
        if index.full {
            for f in &mut self.appended {
                f.indexed |= index_of(&f.entry.table).is_some();
            }
        }

        // Records.
        if let Some(landing) = c.landing() {
            for f in &landing.files {
                self.landed.insert(f.path.clone(), f.clone());
            }
        }
        if let Some(alerts) = c.alerts() {
            self.alerts.push(alerts.clone());
        }
        if let Some(reference) = c.reference() {
            self.references.insert(kind_name(c.kind), reference.clone());
        }
        if c.format.writer > self.format.writer {
            self.writer_format_at = c.version;
        }
        self.format = Format {
            reader: self.format.reader.max(c.format.reader),
            writer: self.format.writer.max(c.format.writer),
        };
        self.version = c.version;
    }

    /// Whether the state knows that no commit after `version` changed the
    /// files of `table` (false when it cannot tell: `version` is before
    /// what [`State::changed`] knows of).
    pub fn unchanged_after(&self, table: &str, version: u64) -> bool {
        version >= self.changed_from && self.changed.get(table).is_none_or(|v| *v <= version)
    }

    /// The files a reader of `table` sees.
    pub fn files(&self, table: &str) -> Vec<&FileEntry> {
        match self.replaced.get(table) {
            Some(replaced) => replaced.files.iter().collect(),
            None => self
                .appended
                .iter()
                .filter(|f| f.entry.table == table)
                .map(|f| &f.entry)
                .collect(),
        }
    }

    /// The state with only what [`State::files`] reads: the version, the
    /// appended and the replaced tables' files.
    pub fn files_only(&self) -> State {
        State {
            version: self.version,
            appended: self.appended.clone(),
            replaced: self.replaced.clone(),
            ..State::default()
        }
    }

    /// Every path a writer must not delete as an orphan: live files,
    /// removed files not yet deleted, and kept superseded versions.
    pub fn named_paths(&self) -> crate::error::Result<BTreeSet<&str>> {
        let mut out: BTreeSet<&str> = self.kept.iter().map(String::as_str).collect();
        out.extend(self.appended.iter().map(|f| f.entry.path.as_str()));
        out.extend(
            self.replaced
                .values()
                .flat_map(|r| r.files.iter().map(|f| f.path.as_str())),
        );
        out.extend(self.removals.list()?.map(|r| r.path.as_str()));
        Ok(out)
    }

    /// Which events the current run parts cover, for a reader whose
    /// definitions are `definitions`.
    pub fn run_coverage(&self, definitions: &str) -> RunCoverage<'_> {
        let fold = self.covers.get(definitions).unwrap_or(&self.unseen);
        let mut out = RunCoverage::default();
        let mut parts_versions = Vec::new();
        for f in &self.appended {
            if f.entry.table == EVENTS {
                out.events.push((f.added_by, &f.entry));
                if f.added_by > fold.full_through && !fold.covered.contains(&f.added_by) {
                    out.uncovered_events.push((f.added_by, &f.entry));
                }
            } else if f.entry.table == RUN_PARTS {
                if fold.current.contains(&f.added_by) {
                    out.parts.push(&f.entry);
                    parts_versions.push(f.added_by);
                    if Some(f.added_by) == fold.base_in {
                        out.base_parts.push(&f.entry);
                    } else {
                        out.newer_parts.push(&f.entry);
                    }
                } else {
                    out.stale_parts.push(&f.entry);
                }
            }
        }
        // Unique parts stay unique until another commit adds parts or events.
        out.unique = fold
            .unique_in
            .is_some_and(|v| out.uncovered_events.is_empty() && parts_versions.as_slice() == [v]);
        out
    }

    /// The same answers, with the facts no answer can depend on any more
    /// dropped: coverage of versions that no live file was added by, and
    /// removals committed before `removals_before` (their files are past
    /// every grace period: deleted, or orphans by age).
    pub fn pruned(
        &self,
        removals_before: chrono::DateTime<chrono::Utc>,
    ) -> crate::error::Result<State> {
        let mut out = self.clone();
        let events: BTreeSet<u64> = self
            .appended
            .iter()
            .filter(|f| f.entry.table == EVENTS)
            .map(|f| f.added_by)
            .collect();
        let parts: BTreeSet<u64> = self
            .appended
            .iter()
            .filter(|f| f.entry.table == RUN_PARTS)
            .map(|f| f.added_by)
            .collect();
        for fold in out
            .covers
            .values_mut()
            .chain(std::iter::once(&mut out.unseen))
        {
            fold.covered.retain(|v| events.contains(v));
            fold.current.retain(|v| parts.contains(v));
        }
        out.removals = self.removals.filtered(|r| {
            chrono::DateTime::parse_from_rfc3339(&r.committed_at)
                .map_or(true, |t| t.with_timezone(&chrono::Utc) >= removals_before)
        })?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A small deterministic generator (xorshift), so a failure names its seed.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
        fn pick<'a>(&mut self, from: &'a [String]) -> Option<&'a String> {
            (!from.is_empty()).then(|| &from[self.below(from.len() as u64) as usize])
        }
    }

    fn file(table: &str, path: String) -> FileEntry {
        FileEntry {
            table: table.into(),
            date: Some(format!("2026-01-{:02}", path.len() % 28 + 1)),
            path,
            size: 10,
            rows: 2,
        }
    }

    /// A history of every kind of commit, with covers of two definitions
    /// and of none, compactions and retentions that remove live files.
    fn history(seed: u64, n: u64) -> Vec<Commit> {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut events: Vec<String> = Vec::new();
        let mut parts: Vec<String> = Vec::new();
        let mut out = Vec::new();
        let defs = |rng: &mut Rng| match rng.below(3) {
            0 => json!("a"),
            1 => json!("b"),
            _ => serde_json::Value::Null,
        };
        for version in 1..=n {
            let roll = rng.below(100);
            let mut c;
            if roll < 4 {
                // A rebuild of the key index.
                c = Commit::record(CommitKind::Compact, json!({"index": {"full": true}}));
                c.files
                    .push(file("event_index", format!("event_index/k{version}")));
            } else if roll < 45 {
                c = Commit::record(CommitKind::Ingest, json!({}));
                for i in 0..=rng.below(2) {
                    let p = format!("events/e{version}-{i}");
                    events.push(p.clone());
                    c.files.push(file(EVENTS, p));
                }
                if rng.below(3) > 0 {
                    let p = format!("run_parts/p{version}");
                    parts.push(p.clone());
                    c.files.push(file(RUN_PARTS, p));
                    c.summary = json!({"run_parts": {"own": true, "unique": rng.below(2) == 0, "definitions": defs(&mut rng)}});
                }
                if rng.below(4) == 0 {
                    c.files
                        .push(file("quarantine", format!("quarantine/q{version}")));
                }
                if rng.below(2) == 0 {
                    c.summary["index"] = json!({"own": true});
                    c.files
                        .push(file("event_index", format!("event_index/k{version}")));
                }
            } else if roll < 60 {
                c = Commit::record(CommitKind::Runs, json!({}));
                let p = format!("run_parts/p{version}");
                let full = rng.below(3) == 0;
                let covers: Vec<u64> = (1..version).filter(|_| rng.below(3) == 0).collect();
                for _ in 0..rng.below(3) {
                    if let Some(r) = rng.pick(&parts).cloned() {
                        parts.retain(|x| *x != r);
                        c.removes.push(r);
                    }
                }
                parts.push(p.clone());
                c.files.push(file(RUN_PARTS, p));
                c.summary = json!({"run_parts": {"full": full, "covers": covers, "unique": rng.below(2) == 0, "definitions": defs(&mut rng)}});
            } else if roll < 72 {
                c = Commit::record(CommitKind::Compact, json!({}));
                for _ in 0..2 {
                    if let Some(r) = rng.pick(&events).cloned() {
                        events.retain(|x| *x != r);
                        c.removes.push(r);
                    }
                }
                let p = format!("events/c{version}");
                events.push(p.clone());
                c.files.push(file(EVENTS, p));
                c.summary = json!({"run_parts": {"own": true, "definitions": defs(&mut rng)}});
            } else if roll < 78 {
                c = Commit::record(CommitKind::Retain, json!({}));
                if let Some(r) = rng.pick(&events).cloned() {
                    events.retain(|x| *x != r);
                    c.removes.push(r);
                }
            } else if roll < 84 {
                c = Commit::record(
                    CommitKind::LoadPrices,
                    json!({"file": "p.csv", "rows": 1, "content_hash": format!("h{version}")}),
                );
                c.replaces = vec!["model_prices".into()];
                c.files
                    .push(file("model_prices", format!("model_prices/m{version}")));
            } else if roll < 92 {
                c = Commit::record(
                    CommitKind::Landing,
                    json!({"ingest_id": "i", "files": [{"path": format!("land/{}", rng.below(5)), "size": version, "hash": "x"}]}),
                );
            } else {
                c = Commit::record(
                    CommitKind::Alerts,
                    json!({"webhook_hash": "w", "deliveries": [{"tenant_id": "t", "iso_week": format!("2026-W{version:02}")}]}),
                );
            }
            c.version = version;
            c.parse_summary().unwrap();
            out.push(c);
        }
        out
    }

    fn fold(commits: &[Commit]) -> State {
        let mut s = State::default();
        for c in commits {
            s.apply(c);
        }
        s
    }

    /// Every answer a reader takes from a state, as comparable values.
    fn answers(s: &State) -> serde_json::Value {
        let coverage = |d: &str| {
            let c = s.run_coverage(d);
            let paths = |v: &[&FileEntry]| v.iter().map(|f| f.path.clone()).collect::<Vec<_>>();
            json!({
                "parts": paths(&c.parts),
                "stale": paths(&c.stale_parts),
                "uncovered": c.uncovered_events.iter().map(|(v, f)| (v, f.path.clone())).collect::<Vec<_>>(),
                "events": c.events.iter().map(|(v, f)| (v, f.path.clone())).collect::<Vec<_>>(),
                "unique": c.unique,
            })
        };
        let files = |t: &str| {
            s.files(t)
                .iter()
                .map(|f| f.path.clone())
                .collect::<Vec<_>>()
        };
        let unchanged = [EVENTS, RUN_PARTS, "quarantine", "model_prices"].map(|t| {
            (0..=s.version)
                .filter(|v| s.unchanged_after(t, *v))
                .collect::<Vec<_>>()
        });
        json!({
            "version": s.version,
            "files": [files(EVENTS), files(RUN_PARTS), files("quarantine"), files("model_prices")],
            "named": s.named_paths().unwrap(),
            "coverage": [coverage("a"), coverage("b"), coverage("never-stated")],
            "landed": s.landed,
            "alerts": s.alerts,
            "references": s.references,
            "format": [s.format.reader, s.format.writer, s.writer_format_at],
            "indexed": s.appended.iter().filter(|f| f.indexed).map(|f| f.entry.path.clone()).collect::<Vec<_>>(),
            "retained": s.retained,
            "unchanged": unchanged,
        })
    }

    #[test]
    fn a_table_said_unchanged_after_a_version_has_the_files_it_had_then() {
        let mut said = 0;
        for seed in 1..=60 {
            let commits = history(seed, 80);
            let whole = fold(&commits);
            for v in 0..=whole.version {
                let then = fold(&commits[..v as usize]);
                for table in [EVENTS, RUN_PARTS, "quarantine", "model_prices"] {
                    let paths = |s: &State| {
                        s.files(table)
                            .iter()
                            .map(|f| f.path.clone())
                            .collect::<Vec<_>>()
                    };
                    if whole.unchanged_after(table, v) {
                        said += 1;
                        assert_eq!(
                            paths(&then),
                            paths(&whole),
                            "seed {seed}, {table} after {v}"
                        );
                    }
                }
            }
            // The last version is always known to change nothing after it.
            assert!(whole.unchanged_after(EVENTS, whole.version));
        }
        assert!(
            said > 60 * 4,
            "only {said} unchanged answers: the test shows nothing"
        );
    }

    #[test]
    fn a_checkpoint_without_table_changes_knows_only_the_later_ones() {
        let commits = history(3, 40);
        let mut written = serde_json::to_value(fold(&commits[..20])).unwrap();
        let map = written.as_object_mut().unwrap();
        map.remove("changed");
        map.remove("changed_from");
        let mut old: State = serde_json::from_str(&written.to_string()).unwrap();
        assert_eq!(old.changed_from, u64::MAX);
        old.changed_from = old.version; // what checkpoint::read_latest does
        for c in &commits[20..] {
            old.apply(c);
        }
        for table in [EVENTS, RUN_PARTS, "model_prices"] {
            assert!(
                !old.unchanged_after(table, 19),
                "{table}: before the checkpoint is unknown"
            );
            for v in 20..=40 {
                assert_eq!(
                    old.unchanged_after(table, v),
                    fold(&commits).unchanged_after(table, v),
                    "{table} after {v}"
                );
            }
        }
    }

    #[test]
    fn a_state_resumed_from_a_checkpoint_answers_as_the_whole_log_does() {
        let long_ago = chrono::DateTime::parse_from_rfc3339("2000-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        for seed in 1..=60 {
            let commits = history(seed, 80);
            let whole = fold(&commits);
            for at in [1, 7, 20, 33, 50, 79] {
                // Written down (pruned and through JSON), read back, resumed.
                let written =
                    serde_json::to_string(&fold(&commits[..at]).pruned(long_ago).unwrap()).unwrap();
                let mut resumed: State = serde_json::from_str(&written).unwrap();
                for c in &commits[at..] {
                    resumed.apply(c);
                }
                assert_eq!(
                    answers(&resumed),
                    answers(&whole),
                    "seed {seed}, checkpoint at version {at}"
                );
            }
        }
    }

    #[test]
    fn pruning_forgets_only_old_removals_and_coverage_of_files_gone() {
        let future = chrono::Utc::now() + chrono::Duration::days(1);
        let total = |s: &State| s.covers.values().map(|f| f.covered.len()).sum::<usize>();
        let mut shrank = 0;
        for seed in 1..=20 {
            let s = fold(&history(seed, 120));
            assert!(
                s.removals.list().unwrap().next().is_some(),
                "the history removes files"
            );
            let pruned = s.pruned(future).unwrap();
            assert!(
                pruned.removals.list().unwrap().next().is_none(),
                "removals older than the cutoff go"
            );
            assert_eq!(pruned.appended, s.appended);
            let live: BTreeSet<u64> = s.appended.iter().map(|f| f.added_by).collect();
            for fold in pruned.covers.values() {
                assert!(fold.covered.iter().all(|v| live.contains(v)));
                assert!(fold.current.iter().all(|v| live.contains(v)));
            }
            if total(&pruned) < total(&s) {
                shrank += 1;
            }
        }
        assert!(
            shrank > 0,
            "some histories cover versions whose files are gone"
        );
    }
}
