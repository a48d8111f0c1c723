//! The commit log: which data files the lake holds.
//!
//! Each commit is one JSON object at `_log/<version, 20 digits>.json`, created
//! with `PutMode::Create`, so two writers can never both create the same
//! version and a reader sees a commit whole or not at all. A table is either
//! appended to (events, quarantine: every committed file counts) or replaced
//! whole (reference tables: the files of the newest commit that replaces it
//! count; older versions stay in the lake so past reports can be replayed).

use std::collections::BTreeSet;

use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::state::State;
use crate::store::Lake;

/// Folder of the commit records, relative to the lake root.
pub const LOG_DIR: &str = "_log";

/// What a commit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommitKind {
    /// Events and quarantined lines appended by `agentledger ingest`.
    Ingest,
    /// A new version of `model_prices`.
    LoadPrices,
    /// A new version of `customer_plans`.
    LoadPlans,
    /// A new version of `workflow_policies`.
    LoadPolicies,
    /// Landing files the scheduled batch has ingested (no data files; the
    /// summary lists path, size and content hash of each).
    Landing,
    /// Alerts delivered to a webhook (no data files; the summary lists them),
    /// so a re-run of the same week sends nothing twice.
    Alerts,
    /// Partitions older than the retention period taken out of the lake.
    Retain,
    /// New `run_parts` files for events that had none, or a rebuild of all
    /// of them (after a price load or retention); see [`RunCoverage`].
    Runs,
    /// Small files merged into larger ones (`agentledger compact`): the
    /// commit removes the small files and adds the merged ones, with the
    /// same rows.
    Compact,
}

/// One data file named by a commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// The table the file belongs to.
    pub table: String,
    /// Path relative to the lake root.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Number of rows.
    pub rows: u64,
    /// The Hive partition value (`YYYY-MM-DD`) for partitioned tables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
}

/// One commit record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Commit {
    /// Version number: 1 for the first commit, then one more each time.
    pub version: u64,
    /// What the commit did.
    pub kind: CommitKind,
    /// Unique id of the operation (also the data files' name prefix).
    pub id: String,
    /// When it was committed, RFC 3339 UTC.
    pub committed_at: String,
    /// Tables this commit replaces whole (reference loads).
    #[serde(default)]
    pub replaces: Vec<String>,
    /// Files of append tables this commit takes out of the lake (retention).
    /// Readers stop seeing them at this version; the files themselves are
    /// deleted after a grace period, so a query that started earlier can
    /// still read them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removes: Vec<String>,
    /// Data files added.
    pub files: Vec<FileEntry>,
    /// Free-form facts about the operation (ingest counts, source file...).
    #[serde(default)]
    pub summary: serde_json::Value,
    /// The leases the commit was made under, with the generation each had
    /// when it was checked right before this commit (fencing numbers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fences: Vec<crate::lease::Fence>,
    /// The lake format this commit was written in; see [`Format`]. Records
    /// from before formats were recorded have none (reader 1, writer 1).
    #[serde(default)]
    pub format: Format,
    /// The summary's facts that decide answers, parsed when the commit is
    /// read or made (see [`Commit::parse_summary`]).
    #[serde(skip)]
    parsed: Parsed,
}

/// The lake's format versions, as Delta Lake's protocol has them: a reader
/// older than `reader` would misread the lake, a writer older than `writer`
/// would break what newer writers rely on. The lake's format is the highest
/// of its commits'.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Format {
    /// The lowest reader version that reads the lake right.
    pub reader: u32,
    /// The lowest writer version that may write to it.
    pub writer: u32,
}

impl Default for Format {
    /// What records from before formats were recorded are.
    fn default() -> Self {
        Self {
            reader: 1,
            writer: 1,
        }
    }
}

/// The format this binary reads and writes. Writer 2: writers hold leases
/// (`_lock/<lease>/`) and fence their commits; a writer of format 1 took a
/// lock file that format 2 writers do not see.
pub const FORMAT: Format = Format {
    reader: 1,
    writer: 2,
};

/// What a `landing` commit records: the landing files `agentledger run`
/// ingested, by the ingest that stored them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LandingRecord {
    /// The ingest's id.
    pub ingest_id: String,
    /// Each file ingested.
    pub files: Vec<LandedFile>,
}

/// One landing file as it was when ingested.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LandedFile {
    /// Its path or URL.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its content hash.
    pub hash: String,
}

/// What an `alerts` commit records: alerts a webhook took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertsRecord {
    /// A hash of the webhook URL (the URL itself may hold a secret).
    pub webhook_hash: String,
    /// The alerts delivered.
    pub deliveries: Vec<AlertDelivery>,
}

/// One delivered alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertDelivery {
    /// The tenant alerted about.
    pub tenant_id: String,
    /// Its ISO week, `YYYY-Www`.
    pub iso_week: String,
}

/// What a reference load records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferenceRecord {
    /// The file loaded, as named.
    pub file: String,
    /// Rows loaded.
    pub rows: u64,
    /// The file's content hash (the batch reloads a file whose hash changed).
    pub content_hash: String,
}

/// What a commit's summary says about the key index (`"index": {…}`): the
/// `event_index` and `quarantine_index` files that let an ingest look up
/// stored event ids and quarantined lines without reading every file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexCover {
    /// The index files this commit adds hold the keys of the events and
    /// quarantine rows it adds.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub own: bool,
    /// After this commit, the index holds the keys of every live events and
    /// quarantine row (a rebuild).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub full: bool,
}

#[derive(Debug, Clone, Default)]
struct Parsed {
    cover: Option<RunPartsCover>,
    index: Option<IndexCover>,
    landing: Option<LandingRecord>,
    alerts: Option<AlertsRecord>,
    reference: Option<ReferenceRecord>,
}

impl Commit {
    /// A commit of `kind` that adds no data: a record in the log (landing
    /// files, delivered alerts, removals).
    pub fn record(kind: CommitKind, summary: serde_json::Value) -> Self {
        Self {
            version: 0,
            kind,
            id: new_id(),
            committed_at: now_rfc3339(),
            replaces: vec![],
            removes: vec![],
            files: vec![],
            summary,
            fences: vec![],
            format: FORMAT,
            parsed: Parsed::default(),
        }
    }

    /// Parses the facts of the summary that decide answers: the run-parts
    /// cover of any commit that states one, and the whole summary of landing,
    /// alerts and reference-load commits. A fact that does not parse is an
    /// error naming it: it is never skipped, since skipping it could count
    /// runs twice, ingest a landing file again or send an alert twice.
    pub fn parse_summary(&mut self) -> std::result::Result<(), String> {
        fn typed<T: serde::de::DeserializeOwned>(
            what: &str,
            v: &serde_json::Value,
        ) -> std::result::Result<T, String> {
            serde_json::from_value(v.clone()).map_err(|e| format!("{what}: {e}"))
        }
        let mut parsed = Parsed::default();
        if let Some(cover) = self.summary.get("run_parts") {
            parsed.cover = Some(typed("summary.run_parts", cover)?);
        }
        if let Some(index) = self.summary.get("index") {
            parsed.index = Some(typed("summary.index", index)?);
        }
        match self.kind {
            CommitKind::Landing => parsed.landing = Some(typed("landing summary", &self.summary)?),
            CommitKind::Alerts => parsed.alerts = Some(typed("alerts summary", &self.summary)?),
            CommitKind::LoadPrices | CommitKind::LoadPlans | CommitKind::LoadPolicies => {
                parsed.reference = Some(typed("reference load summary", &self.summary)?);
            }
            _ => {}
        }
        self.parsed = parsed;
        Ok(())
    }

    /// What its `run_parts` cover, if it states one.
    pub fn run_parts_cover(&self) -> Option<&RunPartsCover> {
        self.parsed.cover.as_ref()
    }

    /// Which of its events and quarantine rows are in the key index, if it
    /// says.
    pub fn index_cover(&self) -> Option<&IndexCover> {
        self.parsed.index.as_ref()
    }

    /// The landing files a `landing` commit records.
    pub fn landing(&self) -> Option<&LandingRecord> {
        self.parsed.landing.as_ref()
    }

    /// The deliveries an `alerts` commit records.
    pub fn alerts(&self) -> Option<&AlertsRecord> {
        self.parsed.alerts.as_ref()
    }

    /// What a reference load records.
    pub fn reference(&self) -> Option<&ReferenceRecord> {
        self.parsed.reference.as_ref()
    }
}

/// A unique operation id: the UTC time to the microsecond and the process
/// id (also the prefix of the data files an operation writes).
pub fn new_id() -> String {
    format!(
        "{}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%6fZ"),
        std::process::id()
    )
}

/// Appends `commit` as the next version under the writer lease.
pub async fn append_locked(lake: &Lake, purpose: &str, commit: Commit) -> Result<u64> {
    let lock = crate::lease::Lease::writer(lake, purpose).await?;
    let result = async {
        let lake = &lock.fence(lake);
        let mut snapshot = Snapshot::load(lake).await?;
        snapshot.commit_over_ingests(lake, commit).await
    }
    .await;
    lock.release().await?;
    result
}

/// The lake as of one version: the folded state of every commit up to it
/// ([`State`]), read from the newest checkpoint and the records after it.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    state: State,
    /// The files of the checkpoint it was read from (empty: none): its
    /// state with only the file lists kept ([`State::files_only`]).
    base_state: std::sync::Arc<State>,
    /// The version of the checkpoint it was read from (0: none).
    base: u64,
    /// The commits after `base`, oldest first.
    tail: Vec<Commit>,
    /// The newest checkpoint this snapshot read or wrote (0: none).
    checkpointed: u64,
}

impl Snapshot {
    /// Reads the lake's newest version: the newest checkpoint, if any, and
    /// every commit record after it.
    pub async fn load(lake: &Lake) -> Result<Self> {
        let state = crate::checkpoint::read_latest(lake)
            .await?
            .unwrap_or_default();
        let mut snapshot = Self {
            base: state.version,
            checkpointed: state.version,
            base_state: std::sync::Arc::new(state.files_only()),
            state,
            tail: Vec::new(),
        };
        snapshot.read_newer(lake).await?;
        Ok(snapshot)
    }

    /// Reads every commit record of the lake, ignoring checkpoints: what a
    /// test compares a checkpointed snapshot with.
    pub async fn load_every_record(lake: &Lake) -> Result<Self> {
        let mut snapshot = Self::default();
        snapshot.read_newer(lake).await?;
        Ok(snapshot)
    }

    /// This snapshot brought up to the lake's newest version: only the
    /// records after it are read. [`Snapshot::since`] of the result then
    /// gives what other writers committed meanwhile.
    pub async fn refreshed(&self, lake: &Lake) -> Result<Self> {
        let mut newer = self.clone();
        newer.read_newer(lake).await?;
        Ok(newer)
    }

    async fn read_newer(&mut self, lake: &Lake) -> Result<()> {
        for commit in read_records_after(lake, self.version()).await? {
            if commit.version != self.version() + 1 {
                return Err(Error::CorruptLog {
                    path: format!("{}/{}", lake.display(), LOG_DIR),
                    reason: format!(
                        "expected version {} but found {}",
                        self.version() + 1,
                        commit.version
                    ),
                });
            }
            self.push(commit);
        }
        Ok(())
    }

    fn push(&mut self, commit: Commit) {
        self.state.apply(&commit);
        self.tail.push(commit);
    }

    /// The newest version (0 for an empty lake).
    pub fn version(&self) -> u64 {
        self.state.version
    }

    /// The folded state: the log's records (landing files, alerts,
    /// reference loads, removals) as of this version.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The version of the checkpoint this snapshot was read from (0: none).
    pub fn base_version(&self) -> u64 {
        self.base
    }

    /// The files of the checkpoint this snapshot was read from: with
    /// [`Snapshot::tail`] applied to them, the snapshot's files. Only the
    /// file lists are kept ([`State::files_only`]): copying the rest
    /// (removals, landing files, coverage) cost every reader a second copy
    /// of the checkpoint.
    pub fn base_state(&self) -> &State {
        &self.base_state
    }

    /// The commits read after the checkpoint this snapshot started from,
    /// oldest first (every commit when the lake has no checkpoint).
    pub fn tail(&self) -> &[Commit] {
        &self.tail
    }

    /// The commits after `version`, oldest first. `version` must not be
    /// older than the checkpoint this snapshot was read from: ask a
    /// snapshot made by [`Snapshot::refreshed`] from the one at `version`.
    pub fn since(&self, version: u64) -> &[Commit] {
        assert!(
            version >= self.base && version <= self.version(),
            "commits since version {version} asked of a snapshot holding {}..={}",
            self.base + 1,
            self.version()
        );
        &self.tail[(version - self.base) as usize..]
    }

    /// The files a reader of `table` sees at this version.
    pub fn files(&self, table: &str) -> Vec<&FileEntry> {
        self.state.files(table)
    }

    /// Every file path a writer must not take for an orphan: live files,
    /// removed files not yet past their grace period, and superseded
    /// reference versions.
    pub fn all_paths(&self) -> Result<BTreeSet<&str>> {
        self.state.named_paths()
    }

    /// Which events the current `run_parts` files cover, for a reader whose
    /// definitions are `definitions` (see [`RunCoverage`]).
    pub fn run_coverage(&self, definitions: &str) -> RunCoverage<'_> {
        self.state.run_coverage(definitions)
    }

    /// Deletes the files under `tables` that no commit names and that are
    /// older than the orphan grace period ([`orphan_grace`]): what a killed
    /// or failed writer left. Age decides, never a lock: a file younger than
    /// the grace period may belong to a writer still preparing its commit,
    /// on this host or another. On a local lake the folders are walked
    /// directly, which also finds the partial uploads (`name#N`) that the
    /// object store's listing hides. A table's Delta log (`_delta_log/`,
    /// see [`crate::delta`]) is never touched.
    pub async fn remove_orphans(&self, lake: &Lake, tables: &[&str]) -> Result<Vec<String>> {
        self.remove_orphans_older_than(lake, tables, orphan_grace())
            .await
    }

    /// [`Snapshot::remove_orphans`] when no writer walked the tables for a
    /// quarter of the orphan grace period, else nothing. A walk lists every
    /// file of the tables, which an hourly ingest into a lake of years need
    /// not pay each time: an orphan (which no reader reads) is then deleted
    /// at most a quarter of the grace period later than it could be. The
    /// time of the newest walk is the modification time of
    /// [`ORPHAN_WALK_MARK`], written after each walk.
    pub async fn remove_orphans_if_due(&self, lake: &Lake, tables: &[&str]) -> Result<Vec<String>> {
        let grace = orphan_grace();
        let mark = lake.path(ORPHAN_WALK_MARK);
        match lake.store().head(&mark).await {
            Ok(meta) => {
                let age = chrono::Utc::now()
                    .signed_duration_since(meta.last_modified)
                    .to_std()
                    .unwrap_or_default();
                if age < grace / 4 {
                    return Ok(Vec::new());
                }
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let removed = self.remove_orphans(lake, tables).await?;
        // object_store retries an overwrite itself.
        lake.store()
            .put(&mark, object_store::PutPayload::new())
            .await?;
        Ok(removed)
    }

    /// [`Snapshot::remove_orphans`] with the grace period given.
    pub async fn remove_orphans_older_than(
        &self,
        lake: &Lake,
        tables: &[&str],
        grace: std::time::Duration,
    ) -> Result<Vec<String>> {
        let known = self.all_paths()?;
        let now = std::time::SystemTime::now();
        let old_enough = |modified: std::time::SystemTime| {
            now.duration_since(modified).unwrap_or_default() >= grace
        };
        let mut removed = Vec::new();
        for table in tables {
            if let Some(root) = lake.local_root() {
                let mut stack = vec![root.join(table)];
                while let Some(dir) = stack.pop() {
                    let Ok(entries) = std::fs::read_dir(&dir) else {
                        continue;
                    };
                    for entry in entries.flatten() {
                        let path = entry.path();
                        if path.is_dir() {
                            // A table's Delta log names no data file of its own.
                            if entry.file_name() != crate::delta::DELTA_LOG_DIR {
                                stack.push(path);
                            }
                            continue;
                        }
                        let Ok(rel) = path.strip_prefix(&root) else {
                            continue;
                        };
                        let rel = rel.to_string_lossy().replace('\\', "/");
                        let modified = entry.metadata().and_then(|m| m.modified()).unwrap_or(now);
                        if !known.contains(rel.as_str()) && old_enough(modified) {
                            match std::fs::remove_file(&path) {
                                Ok(()) => removed.push(rel),
                                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                                Err(source) => {
                                    return Err(Error::Io {
                                        context: format!(
                                            "cannot remove orphan file {}",
                                            path.display()
                                        ),
                                        source,
                                    });
                                }
                            }
                        }
                    }
                }
                continue;
            }
            let listed: Vec<_> = lake
                .store()
                .list(Some(&lake.path(table)))
                .try_collect()
                .await?;
            for meta in listed {
                let Some(rel) = lake.relative(&meta.location) else {
                    continue;
                };
                if rel
                    .split('/')
                    .any(|part| part == crate::delta::DELTA_LOG_DIR)
                {
                    continue;
                }
                if !known.contains(rel.as_str()) && old_enough(meta.last_modified.into()) {
                    match lake.store().delete(&meta.location).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => removed.push(rel),
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        Ok(removed)
    }

    /// Appends `commit` as the next version, moving it over commits that
    /// writers holding no lease (ingests) made since this snapshot: for a
    /// writer that holds the writer lease (loads, compaction, the run-parts
    /// refresh, landing and alerts records), what an ingest adds changes
    /// nothing it decided. A commit of any other kind since the snapshot is a
    /// conflict ([`Error::CommitConflict`]).
    pub async fn commit_over_ingests(&mut self, lake: &Lake, commit: Commit) -> Result<u64> {
        loop {
            match self.commit(lake, commit.clone()).await {
                Err(Error::CommitConflict { version }) => {
                    let newer = self.refreshed(lake).await?;
                    if newer.since(self.version()).iter().any(|c| {
                        !matches!(
                            c.kind,
                            CommitKind::Ingest | CommitKind::Landing | CommitKind::Alerts
                        )
                    }) {
                        return Err(Error::CommitConflict { version });
                    }
                    *self = newer;
                }
                other => return other,
            }
        }
    }

    /// Whether the committer of the newest version writes a checkpoint:
    /// every [`crate::checkpoint::interval`]-th version, and any version
    /// after which the records since the last checkpoint name at least
    /// [`crate::checkpoint::file_budget`] files (a compaction or retention
    /// names every file it replaces: folding it costs each reader more than
    /// reading a checkpoint does).
    fn checkpoint_due(&self) -> bool {
        let version = self.version();
        if version.is_multiple_of(crate::checkpoint::interval()) {
            return true;
        }
        let named: usize = self
            .tail
            .iter()
            .filter(|c| c.version > self.checkpointed)
            .map(|c| c.files.len() + c.removes.len())
            .sum();
        named >= crate::checkpoint::file_budget()
    }

    /// Appends `commit` as the next version. Fails with
    /// [`Error::CommitConflict`] if another writer took that version first.
    ///
    /// Through a lake fenced by leases ([`crate::lease::Lease::fence`]), each
    /// lease is checked first: one that is no longer held refuses the commit
    /// with [`Error::LeaseLost`]; each held one's generation is recorded.
    ///
    /// The committer writes a checkpoint after it when one is due
    /// ([`Snapshot::checkpoint_due`]).
    pub async fn commit(&mut self, lake: &Lake, mut commit: Commit) -> Result<u64> {
        let version = self.version() + 1;
        commit.version = version;
        if self.state.format.writer > FORMAT.writer {
            return Err(Error::NewerFormat {
                path: format!("{LOG_DIR}/{:020}.json", self.state.writer_format_at),
                what: "writer",
                needed: self.state.format.writer,
                supported: FORMAT.writer,
            });
        }
        commit.format = FORMAT;
        commit.parse_summary().map_err(|reason| Error::CorruptLog {
            path: format!("{LOG_DIR}/{version:020}.json (not written)"),
            reason,
        })?;
        commit.fences.clear();
        for held in lake.fences() {
            commit.fences.push(held.check().await?);
        }
        let path = lake.path(&format!("{LOG_DIR}/{version:020}.json"));
        let body = serde_json::to_vec_pretty(&commit).expect("commit serializes");
        match crate::retry::create_if_absent(lake, &path, body).await {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                // A retried create whose first attempt did land finds its own
                // record: that is success, not a conflict.
                let existing = crate::retry::retrying(lake, || async {
                    lake.store().get(&path).await?.bytes().await
                })
                .await?;
                match serde_json::from_slice::<Commit>(&existing) {
                    Ok(c) if c.id == commit.id && c.kind == commit.kind => {}
                    _ => return Err(Error::CommitConflict { version }),
                }
            }
            Err(e) => return Err(e.into()),
        }
        self.push(commit);
        if self.checkpoint_due() {
            match crate::checkpoint::write(lake, &self.state).await {
                Ok(_) => self.checkpointed = version,
                // The commit stands; only readers' speed suffers.
                Err(e) => tracing::warn!(
                    "version {version} is committed, but its checkpoint could not be written ({e}); readers read more records until the next one"
                ),
            }
        }
        // The commit landed: a failure here says so (Error::DeltaSync).
        crate::delta::sync(lake, self).await?;
        Ok(version)
    }
}

/// The commit records after `version`, in version order, each parsed and
/// checked. On a local lake the records are read one after another until
/// the next is missing (the log has no gaps: each version is created only
/// once the one before exists); on object storage they are listed from
/// `version` on and fetched concurrently.
pub async fn read_records_after(lake: &Lake, version: u64) -> Result<Vec<Commit>> {
    let records: Vec<(String, bytes::Bytes)> = match lake.local_root() {
        Some(root) => {
            let mut out = Vec::new();
            let mut next = version + 1;
            loop {
                let path = root.join(format!("{LOG_DIR}/{next:020}.json"));
                match std::fs::read(&path) {
                    Ok(b) => out.push((path.display().to_string(), bytes::Bytes::from(b))),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(source) => {
                        return Err(Error::Io {
                            context: format!("cannot read commit record {}", path.display()),
                            source,
                        });
                    }
                }
                next += 1;
            }
            out
        }
        None => {
            let prefix = lake.path(LOG_DIR);
            let listing = if version == 0 {
                lake.store().list(Some(&prefix))
            } else {
                let offset = lake.path(&format!("{LOG_DIR}/{version:020}.json"));
                lake.store().list_with_offset(Some(&prefix), &offset)
            };
            let mut metas: Vec<_> = listing.try_collect().await?;
            metas.retain(|m| m.location.filename().is_some_and(|f| f.ends_with(".json")));
            metas.sort_by(|a, b| a.location.cmp(&b.location));
            let fetches: Vec<_> = metas
                .into_iter()
                .map(|meta| {
                    let store = std::sync::Arc::clone(lake.store());
                    async move {
                        let bytes = store.get(&meta.location).await?.bytes().await?;
                        Ok::<_, Error>((meta.location.to_string(), bytes))
                    }
                })
                .collect();
            futures::stream::iter(fetches)
                .buffered(32)
                .try_collect()
                .await?
        }
    };
    let mut commits = Vec::with_capacity(records.len());
    for (path, bytes) in records {
        let mut commit: Commit = serde_json::from_slice(&bytes).map_err(|e| Error::CorruptLog {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if commit.format.reader > FORMAT.reader {
            return Err(Error::NewerFormat {
                path,
                what: "reader",
                needed: commit.format.reader,
                supported: FORMAT.reader,
            });
        }
        commit
            .parse_summary()
            .map_err(|reason| Error::CorruptLog { path, reason })?;
        commits.push(commit);
    }
    Ok(commits)
}

/// The object whose modification time is when a writer last walked the
/// tables for orphans ([`Snapshot::remove_orphans_if_due`]); its content is
/// empty and means nothing.
pub const ORPHAN_WALK_MARK: &str = "_orphans_walked";

/// How old a file that no commit names must be before a writer deletes it
/// as an orphan: `AGENTLEDGER_ORPHAN_GRACE_SECS`, default one hour. It must
/// be longer than any writer takes between writing a file and committing.
pub fn orphan_grace() -> std::time::Duration {
    crate::retry::env_secs("AGENTLEDGER_ORPHAN_GRACE_SECS", 3600)
}

/// Which events the stored `run_parts` cover at one snapshot, for a reader
/// of given definitions.
///
/// Run parts are priced with the prices in force when they were made, and
/// sum the events that existed then; a price load or a retention commit makes
/// every earlier part stale. A `runs`, `ingest` or `compact` commit says in
/// its summary (`"run_parts": {"full": bool, "covers": [versions], "own":
/// bool, "unique": bool, "definitions": "…"}`, see [`RunPartsCover`]) which
/// events its parts cover: all events committed up to it (`full`), those of
/// the listed commits, or the events the commit itself adds (`own`), and
/// the version of the definitions that computed them. Parts of other
/// definitions than the reader's (or of none: written before definitions
/// were recorded) are stale too, and cover nothing. A refresh of other
/// definitions that rebuilt or merged parts (a `full` cover, or one that
/// removes parts files) took out every earlier part, ours too, so for this
/// reader it is like a price load: nothing before it is covered. A
/// compaction adds no parts: its events are covered when the files it
/// replaced were. Readers merge the current parts with parts
/// computed on the fly from the uncovered events, so the answer never
/// depends on whether parts are up to date, only the speed does.
#[derive(Debug, Default)]
pub struct RunCoverage<'a> {
    /// Current parts: made after the last price load and retention, with
    /// the reader's definitions.
    pub parts: Vec<&'a FileEntry>,
    /// Parts older than the last price load or retention, or made with
    /// other definitions: to be ignored by readers and replaced by the next
    /// rebuild.
    pub stale_parts: Vec<&'a FileEntry>,
    /// Events files no current part covers, with the version that added each.
    pub uncovered_events: Vec<(u64, &'a FileEntry)>,
    /// Every events file a reader sees, with the version that added each.
    pub events: Vec<(u64, &'a FileEntry)>,
    /// The current parts hold one row per run and cover every event, so
    /// `runs` can read them without merging.
    pub unique: bool,
    /// Of `parts`: those of the newest commit whose parts held one row per
    /// run and were the only current parts when written (a rebuild or a
    /// merge). Every run has at most one row here.
    pub base_parts: Vec<&'a FileEntry>,
    /// Of `parts`: the others, written after the base. Only the runs these
    /// (and the uncovered events) touch need merging with the base.
    pub newer_parts: Vec<&'a FileEntry>,
}

/// What a commit's summary says its `run_parts` files cover: a `runs`
/// commit's, or an ingest's that computed the parts of its own events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunPartsCover {
    /// The parts cover every event committed up to this commit.
    #[serde(default)]
    pub full: bool,
    /// The parts cover the events added by these versions.
    #[serde(default)]
    pub covers: Vec<u64>,
    /// The parts cover the events this same commit adds (an ingest that
    /// computed the parts of what it stored as it wrote it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub own: bool,
    /// The commit's parts hold one row per run and are the only current
    /// parts when written.
    #[serde(default)]
    pub unique: bool,
    /// The version of the definitions that made the parts (a hash of the
    /// SQL that defines a part and of the Rust that mirrors it; see
    /// `agentledger_transforms::definitions`). `None` in records written
    /// before definitions were recorded: such parts are stale for every
    /// reader. A compaction records the definitions it compacted under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definitions: Option<String>,
}

impl RunPartsCover {
    /// The cover a commit's summary states, if any (parsed, and refused
    /// if it does not parse, when the commit was read).
    pub fn of(commit: &Commit) -> Option<Self> {
        commit.run_parts_cover().cloned()
    }
}

/// The current time as RFC 3339 UTC with microseconds.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(kind: CommitKind, table: &str, path: &str, replaces: bool) -> Commit {
        let summary = match kind {
            CommitKind::LoadPrices | CommitKind::LoadPlans => serde_json::json!({
                "file": "f.csv", "rows": 1, "content_hash": "h"
            }),
            _ => serde_json::Value::Null,
        };
        let mut c = Commit::record(kind, summary);
        c.id = path.to_string();
        if replaces {
            c.replaces = vec![table.to_string()];
        }
        c.files = vec![FileEntry {
            table: table.into(),
            path: path.into(),
            size: 1,
            rows: 1,
            date: None,
        }];
        c
    }

    #[tokio::test]
    async fn run_parts_cover_what_their_commits_say_until_prices_change() {
        let lake = Lake::open("memory://coverage-test").unwrap();
        let mut snap = Snapshot::load(&lake).await.unwrap();
        let runs = |path: &str, mut cover: serde_json::Value, removes: &[&str]| {
            let mut c = commit(CommitKind::Runs, "run_parts", path, false);
            cover["definitions"] = "d".into();
            c.summary = serde_json::json!({ "run_parts": cover });
            c.removes = removes.iter().map(|r| r.to_string()).collect();
            c
        };
        let paths = |files: Vec<&FileEntry>| -> Vec<String> {
            files.iter().map(|f| f.path.clone()).collect()
        };
        let uncovered = |s: &Snapshot| -> Vec<(u64, String)> {
            s.run_coverage("d")
                .uncovered_events
                .iter()
                .map(|(v, f)| (*v, f.path.clone()))
                .collect()
        };
        // v1 events, v2 parts covering v1, v3 more events.
        snap.commit(&lake, commit(CommitKind::Ingest, "events", "e1", false))
            .await
            .unwrap();
        snap.commit(&lake, runs("r2", serde_json::json!({"covers": [1]}), &[]))
            .await
            .unwrap();
        snap.commit(&lake, commit(CommitKind::Ingest, "events", "e3", false))
            .await
            .unwrap();
        assert_eq!(paths(snap.run_coverage("d").parts), ["r2"]);
        assert_eq!(uncovered(&snap), [(3, "e3".to_string())]);
        // A price load: r2 is stale, every event uncovered.
        snap.commit(
            &lake,
            commit(CommitKind::LoadPrices, "model_prices", "p4", true),
        )
        .await
        .unwrap();
        let cov = snap.run_coverage("d");
        assert!(cov.parts.is_empty());
        assert_eq!(paths(cov.stale_parts), ["r2"]);
        assert_eq!(uncovered(&snap).len(), 2);
        // A full rebuild covers everything before it and removes r2.
        snap.commit(
            &lake,
            runs("r5", serde_json::json!({"full": true}), &["r2"]),
        )
        .await
        .unwrap();
        let cov = snap.run_coverage("d");
        assert_eq!(paths(cov.parts), ["r5"]);
        assert!(cov.stale_parts.is_empty() && cov.uncovered_events.is_empty());
        assert_eq!(cov.events.len(), 2);
        // Plans do not touch runs; a later ingest is uncovered until covered.
        snap.commit(
            &lake,
            commit(CommitKind::LoadPlans, "customer_plans", "c6", true),
        )
        .await
        .unwrap();
        snap.commit(&lake, commit(CommitKind::Ingest, "events", "e7", false))
            .await
            .unwrap();
        assert_eq!(uncovered(&snap), [(7, "e7".to_string())]);
        snap.commit(&lake, runs("r8", serde_json::json!({"covers": [7]}), &[]))
            .await
            .unwrap();
        let reread = Snapshot::load(&lake).await.unwrap();
        assert_eq!(paths(reread.run_coverage("d").parts), ["r5", "r8"]);
        assert!(uncovered(&reread).is_empty());
    }

    /// A commit of `kind` adding `files` (`(table, path)`), with a run-parts
    /// cover and removals.
    /// An ingest of one events file with its own parts of `defs`.
    fn ingest(e: &str, p: &str, defs: &str) -> Commit {
        covering(
            CommitKind::Ingest,
            &[("events", e), ("run_parts", p)],
            serde_json::json!({"own": true, "definitions": defs}),
            &[],
        )
    }

    fn covering(
        kind: CommitKind,
        files: &[(&str, &str)],
        cover: serde_json::Value,
        removes: &[&str],
    ) -> Commit {
        let mut c = Commit::record(kind, serde_json::json!({ "run_parts": cover }));
        c.files = files
            .iter()
            .map(|(table, path)| FileEntry {
                table: table.to_string(),
                path: path.to_string(),
                size: 1,
                rows: 1,
                date: None,
            })
            .collect();
        c.removes = removes.iter().map(|r| r.to_string()).collect();
        c
    }

    /// Current parts, stale parts and uncovered events files, by path.
    fn coverage_of(snap: &Snapshot, definitions: &str) -> [Vec<String>; 3] {
        let cov = snap.run_coverage(definitions);
        let paths = |files: &[&FileEntry]| files.iter().map(|f| f.path.clone()).collect();
        let uncovered: Vec<&FileEntry> = cov.uncovered_events.iter().map(|(_, f)| *f).collect();
        [
            paths(&cov.parts),
            paths(&cov.stale_parts),
            paths(&uncovered),
        ]
    }

    #[tokio::test]
    async fn parts_of_other_definitions_or_none_are_stale() {
        use serde_json::json;
        let lake = Lake::open("memory://coverage-definitions").unwrap();
        let mut snap = Snapshot::load(&lake).await.unwrap();
        // v1: an ingest whose own parts were made with "old".
        snap.commit(&lake, ingest("e1", "p1", "old")).await.unwrap();
        assert_eq!(coverage_of(&snap, "old"), [vec!["p1"], vec![], vec![]]);
        assert_eq!(coverage_of(&snap, "new"), [vec![], vec!["p1"], vec!["e1"]]);
        // v2: parts from before definitions were recorded: stale for all.
        let runs = covering(
            CommitKind::Runs,
            &[("run_parts", "r2")],
            json!({"covers": [1]}),
            &[],
        );
        snap.commit(&lake, runs).await.unwrap();
        assert_eq!(coverage_of(&snap, "old"), [vec!["p1"], vec!["r2"], vec![]]);
        assert_eq!(
            coverage_of(&snap, "new"),
            [vec![], vec!["p1", "r2"], vec!["e1"]]
        );
        // v3, v4: "new" ingests, then rebuilds everything, removing the rest.
        snap.commit(&lake, ingest("e3", "p3", "new")).await.unwrap();
        assert_eq!(
            coverage_of(&snap, "new"),
            [vec!["p3"], vec!["p1", "r2"], vec!["e1"]]
        );
        let rebuild = |p: &str, defs: &str, removes: &[&str]| {
            covering(
                CommitKind::Runs,
                &[("run_parts", p)],
                json!({"full": true, "unique": true, "definitions": defs}),
                removes,
            )
        };
        snap.commit(&lake, rebuild("r4", "new", &["p1", "r2", "p3"]))
            .await
            .unwrap();
        assert_eq!(coverage_of(&snap, "new"), [vec!["r4"], vec![], vec![]]);
        assert!(snap.run_coverage("new").unique);
        // For "old", the rebuild took its parts out: nothing is covered.
        assert_eq!(
            coverage_of(&snap, "old"),
            [vec![], vec!["r4"], vec!["e1", "e3"]]
        );
        // v5, v6: "new" ingests; then a binary of "old" rebuilds, removing
        // the ingest's parts with the others. For "new", the ingest's cover
        // no longer holds: its parts are gone.
        snap.commit(&lake, ingest("e5", "p5", "new")).await.unwrap();
        snap.commit(&lake, rebuild("r6", "old", &["r4", "p5"]))
            .await
            .unwrap();
        assert_eq!(
            coverage_of(&snap, "new"),
            [vec![], vec!["r6"], vec!["e1", "e3", "e5"]]
        );
        assert_eq!(coverage_of(&snap, "old"), [vec!["r6"], vec![], vec![]]);
        // The same when a rebuild of other definitions is not `full` (one
        // moved over a concurrent ingest covers the versions it read).
        snap.commit(&lake, ingest("e7", "p7", "new")).await.unwrap();
        let moved = covering(
            CommitKind::Runs,
            &[("run_parts", "r8")],
            json!({"covers": [1, 3, 5], "definitions": "old"}),
            &["r6", "p7"],
        );
        snap.commit(&lake, moved).await.unwrap();
        assert_eq!(
            coverage_of(&snap, "new"),
            [vec![], vec!["r8"], vec!["e1", "e3", "e5", "e7"]]
        );
        // Records read back: the definitions are kept, and absent in v2.
        let reread = Snapshot::load(&lake).await.unwrap();
        let defs: Vec<Option<String>> = reread
            .tail()
            .iter()
            .map(|c| RunPartsCover::of(c).unwrap().definitions)
            .collect();
        assert_eq!(defs[0].as_deref(), Some("old"));
        assert_eq!(defs[1], None);
        assert_eq!(
            coverage_of(&reread, "new"),
            coverage_of(&snap, "new"),
            "the same after reading the log"
        );
    }

    #[tokio::test]
    async fn a_compaction_covers_what_the_files_it_replaced_covered() {
        use serde_json::json;
        let lake = Lake::open("memory://coverage-compaction").unwrap();
        let mut snap = Snapshot::load(&lake).await.unwrap();
        // A compaction by a binary that predates definitions (its cover
        // has none) of events that parts of "new" cover: still covered.
        snap.commit(&lake, ingest("e1", "p1", "new")).await.unwrap();
        snap.commit(&lake, ingest("e2", "p2", "new")).await.unwrap();
        let compact = |e: &str, removes: &[&str]| {
            covering(
                CommitKind::Compact,
                &[("events", e)],
                json!({"own": true}),
                removes,
            )
        };
        snap.commit(&lake, compact("c3", &["e1", "e2"]))
            .await
            .unwrap();
        assert_eq!(
            coverage_of(&snap, "new"),
            [vec!["p1", "p2"], vec![], vec![]]
        );
        // Events that only parts of "old" cover, compacted: uncovered.
        snap.commit(&lake, ingest("e4", "p4", "old")).await.unwrap();
        snap.commit(&lake, ingest("e5", "p5", "old")).await.unwrap();
        snap.commit(&lake, compact("c6", &["e4", "e5"]))
            .await
            .unwrap();
        assert_eq!(
            coverage_of(&snap, "new"),
            [vec!["p1", "p2"], vec!["p4", "p5"], vec!["c6"]]
        );
        // Both in one file: no telling which events p7 holds, so nothing
        // before is covered for "new" (no runs counted twice or lost).
        snap.commit(&lake, ingest("e7", "p7", "new")).await.unwrap();
        snap.commit(&lake, ingest("e8", "p8", "old")).await.unwrap();
        snap.commit(&lake, compact("c9", &["e7", "e8"]))
            .await
            .unwrap();
        assert_eq!(
            coverage_of(&snap, "new"),
            [
                vec![],
                vec!["p1", "p2", "p4", "p5", "p7", "p8"],
                vec!["c3", "c6", "c9"]
            ]
        );
    }

    #[tokio::test]
    async fn appends_accumulate_and_replacements_supersede() {
        let lake = Lake::open("memory://log-test").unwrap();
        let mut snap = Snapshot::load(&lake).await.unwrap();
        snap.commit(&lake, commit(CommitKind::Ingest, "events", "e1", false))
            .await
            .unwrap();
        snap.commit(
            &lake,
            commit(CommitKind::LoadPrices, "model_prices", "p1", true),
        )
        .await
        .unwrap();
        snap.commit(&lake, commit(CommitKind::Ingest, "events", "e2", false))
            .await
            .unwrap();
        snap.commit(
            &lake,
            commit(CommitKind::LoadPrices, "model_prices", "p2", true),
        )
        .await
        .unwrap();

        let reread = Snapshot::load(&lake).await.unwrap();
        assert_eq!(reread.version(), 4);
        let events: Vec<_> = reread
            .files("events")
            .iter()
            .map(|f| f.path.clone())
            .collect();
        assert_eq!(events, ["e1", "e2"]);
        let prices: Vec<_> = reread
            .files("model_prices")
            .iter()
            .map(|f| f.path.clone())
            .collect();
        assert_eq!(prices, ["p2"]);
        assert!(
            reread.all_paths().unwrap().contains("p1"),
            "old versions stay"
        );
    }

    #[tokio::test]
    async fn orphans_are_removed_and_committed_files_kept() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap()).unwrap();
        let mut snap = Snapshot::load(&lake).await.unwrap();
        snap.commit(
            &lake,
            commit(
                CommitKind::Ingest,
                "events",
                "events/date=2026-10-05/a.parquet",
                false,
            ),
        )
        .await
        .unwrap();
        let day = dir.path().join("events/date=2026-10-05");
        std::fs::create_dir_all(&day).unwrap();
        for f in ["a.parquet", "b.parquet", "c.parquet#3"] {
            std::fs::write(day.join(f), b"x").unwrap();
        }
        // Young files may be a live writer's: kept.
        let kept = snap.remove_orphans(&lake, &["events"]).await.unwrap();
        assert!(kept.is_empty(), "{kept:?}");
        assert!(day.join("b.parquet").exists());
        let mut removed = snap
            .remove_orphans_older_than(&lake, &["events"], std::time::Duration::ZERO)
            .await
            .unwrap();
        removed.sort();
        assert_eq!(
            removed,
            [
                "events/date=2026-10-05/b.parquet",
                "events/date=2026-10-05/c.parquet#3"
            ]
        );
        assert!(day.join("a.parquet").exists());
    }

    /// The stored bytes at `path`.
    async fn stored_bytes(lake: &Lake, path: &object_store::path::Path) -> bytes::Bytes {
        lake.store().get(path).await.unwrap().bytes().await.unwrap()
    }

    /// Rewrites record `version` of `lake` through `edit`.
    async fn hand_edit(lake: &Lake, version: u64, edit: impl FnOnce(&mut serde_json::Value)) {
        let path = lake.path(&format!("{LOG_DIR}/{version:020}.json"));
        let bytes = stored_bytes(lake, &path).await;
        let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        edit(&mut v);
        lake.store()
            .put(&path, serde_json::to_vec(&v).unwrap().into())
            .await
            .unwrap();
    }

    /// Opens a lake from its checkpoint and the records after it, on a
    /// local lake (records read one by one) and on object storage (listed
    /// from the checkpoint on).
    async fn opening_from_a_checkpoint(lake: Lake) {
        let mut snap = Snapshot::load(&lake).await.unwrap();
        for i in 1..=12 {
            let mut c = commit(CommitKind::Ingest, "events", &format!("events/e{i}"), false);
            // Partitioned, as the Delta log of a local lake needs.
            c.files[0].date = Some("2026-01-05".into());
            if i % 3 == 0 {
                c.summary = serde_json::json!({"run_parts": {"own": true, "definitions": "d"}});
                c.files.push(FileEntry {
                    table: "run_parts".into(),
                    path: format!("run_parts/p{i}"),
                    size: 1,
                    rows: 1,
                    date: None,
                });
            }
            if i == 8 {
                c.kind = CommitKind::Retain;
                c.files.clear();
                c.removes = vec!["events/e2".into()];
            }
            snap.commit(&lake, c).await.unwrap();
        }
        let last = crate::checkpoint::write(&lake, snap.state()).await.unwrap();
        assert_eq!(last.version, 12);
        for i in 13..=15 {
            let mut c = commit(CommitKind::Ingest, "events", &format!("events/e{i}"), false);
            c.files[0].date = Some("2026-01-05".into());
            snap.commit(&lake, c).await.unwrap();
        }
        let answers = |s: &Snapshot| {
            (
                s.version(),
                s.files("events").into_iter().cloned().collect::<Vec<_>>(),
                s.all_paths()
                    .unwrap()
                    .into_iter()
                    .map(String::from)
                    .collect::<Vec<_>>(),
                coverage_of(s, "d"),
            )
        };
        let from_checkpoint = Snapshot::load(&lake).await.unwrap();
        assert_eq!(from_checkpoint.tail().len(), 3, "only the records after it");
        assert_eq!(
            answers(&from_checkpoint),
            answers(&Snapshot::load_every_record(&lake).await.unwrap())
        );
        assert_eq!(answers(&from_checkpoint), answers(&snap));
        // Records before the checkpoint are not read: damage one and only
        // the reader of every record notices.
        hand_edit(&lake, 5, |v| v["files"] = "not a list".into()).await;
        Snapshot::load(&lake).await.unwrap();
        let err = Snapshot::load_every_record(&lake)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("00000000000000000005.json"), "{err}");
        // A damaged checkpoint or hint is an error naming it, not skipped.
        let ckpt = lake.path(&crate::checkpoint::path_of(12));
        lake.store()
            .put(&ckpt, b"garbage".to_vec().into())
            .await
            .unwrap();
        let err = Snapshot::load(&lake).await.unwrap_err().to_string();
        assert!(
            err.contains("_checkpoints/00000000000000000012.json.zst"),
            "{err}"
        );
        let hint = lake.path(crate::checkpoint::LAST);
        lake.store()
            .put(&hint, b"{}".to_vec().into())
            .await
            .unwrap();
        let err = Snapshot::load(&lake).await.unwrap_err().to_string();
        assert!(err.contains("_checkpoints/_last.json"), "{err}");
    }

    #[tokio::test]
    async fn a_local_lake_opens_from_its_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        opening_from_a_checkpoint(Lake::open(dir.path().to_str().unwrap()).unwrap()).await;
    }

    #[tokio::test]
    async fn a_checkpoints_removals_are_read_when_a_writer_needs_them() {
        let lake = Lake::open("memory://log-lazy-removals").unwrap();
        let mut snap = Snapshot::load(&lake).await.unwrap();
        for i in 1..=3 {
            let mut c = commit(CommitKind::Ingest, "events", &format!("events/e{i}"), false);
            c.files[0].date = Some("2026-01-05".into());
            snap.commit(&lake, c).await.unwrap();
        }
        let mut c = commit(CommitKind::Retain, "events", "events/unused", false);
        c.files.clear();
        c.removes = vec!["events/e1".into()];
        snap.commit(&lake, c).await.unwrap();
        let last = crate::checkpoint::write(&lake, snap.state()).await.unwrap();
        let read = Snapshot::load(&lake).await.unwrap();
        assert_eq!(read.base_version(), 4);
        assert_eq!(read.all_paths().unwrap(), snap.all_paths().unwrap());
        assert!(
            read.all_paths().unwrap().contains("events/e1"),
            "removed, not deleted"
        );
        // The state's JSON lists no removals: they follow it in a frame of
        // their own, which a zstd tool skips.
        let path = lake.path(&last.path);
        let body = stored_bytes(&lake, &path).await;
        let first = zstd::zstd_safe::find_frame_compressed_size(&body).unwrap();
        assert!(first < body.len());
        let state: serde_json::Value =
            serde_json::from_slice(&zstd::decode_all(body.as_ref()).unwrap()).unwrap();
        assert_eq!(state["checkpoint_format"], 2);
        assert_eq!(state["state"]["removals"], serde_json::json!([]));
        let put = |bytes: Vec<u8>| {
            let (lake, path) = (lake.clone(), path.clone());
            async move { lake.store().put(&path, bytes.into()).await.unwrap() }
        };
        let frame_of = |magic: u32, payload: &[u8]| {
            let mut out = body[..first].to_vec();
            out.extend_from_slice(&magic.to_le_bytes());
            out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            out.extend_from_slice(payload);
            out
        };
        let frame = |payload: &[u8]| frame_of(0x184D_2A5A, payload);
        assert_eq!(frame(&body[first + 8..]), body.to_vec());
        // A checkpoint of format 1, with the removals inside the state,
        // reads the same.
        let mut old = state.clone();
        old["checkpoint_format"] = 1.into();
        old["state"]["removals"] =
            serde_json::to_value(snap.state().removals.list().unwrap().collect::<Vec<_>>())
                .unwrap();
        put(zstd::encode_all(old.to_string().as_bytes(), 3).unwrap()).await;
        let read = Snapshot::load(&lake).await.unwrap();
        assert_eq!(read.all_paths().unwrap(), snap.all_paths().unwrap());
        // Damaged removals: readers still open the lake and see its files;
        // a writer asking for them gets an error naming the checkpoint.
        let not_a_list = zstd::encode_all(&b"{\"not\": \"a list\"}"[..], 3).unwrap();
        let cut = frame(&not_a_list);
        for damaged in [
            frame(&not_a_list),
            frame(b"not zstd"),
            // Another skippable frame: not ours, whatever it holds.
            frame_of(0x184D_2A50, &body[first + 8..]),
            cut[..cut.len() - 2].to_vec(),
            body[..first].to_vec(),
        ] {
            put(damaged).await;
            let read = Snapshot::load(&lake).await.unwrap();
            assert_eq!(read.files("events"), snap.files("events"));
            let err = read.all_paths().unwrap_err().to_string();
            assert!(
                err.contains(&last.path) && err.contains("removed files"),
                "{err}"
            );
            let err = crate::retain::delete_due(&lake, &read, std::time::Duration::ZERO)
                .await
                .unwrap_err()
                .to_string();
            assert!(err.contains(&last.path), "{err}");
        }
        // Removals inside the state of a format-2 checkpoint: it is not
        // one this binary wrote.
        let mut both = state.clone();
        both["state"]["removals"] = old["state"]["removals"].clone();
        let mut body2 = zstd::bulk::compress(both.to_string().as_bytes(), 3).unwrap();
        body2.extend_from_slice(&body[first..]);
        put(body2).await;
        let err = Snapshot::load(&lake).await.unwrap_err().to_string();
        assert!(err.contains(&last.path), "{err}");
    }

    #[tokio::test]
    async fn a_commit_naming_many_files_writes_a_checkpoint_early() {
        let lake = Lake::open("memory://log-early-checkpoint").unwrap();
        let mut snap = Snapshot::load(&lake).await.unwrap();
        let ingest = |first: usize, n: usize| {
            let mut c = commit(CommitKind::Ingest, "events", "events/unused", false);
            c.files = (first..first + n)
                .map(|i| FileEntry {
                    table: "events".into(),
                    path: format!("events/date=2026-01-05/e{i}"),
                    size: 1,
                    rows: 1,
                    date: Some("2026-01-05".into()),
                })
                .collect();
            c
        };
        let budget = crate::checkpoint::file_budget();
        snap.commit(&lake, ingest(0, 1)).await.unwrap();
        assert_eq!(crate::checkpoint::last(&lake).await.unwrap(), None);
        snap.commit(&lake, ingest(1, budget - 2)).await.unwrap();
        assert_eq!(
            crate::checkpoint::last(&lake).await.unwrap(),
            None,
            "one file short of the budget"
        );
        snap.commit(&lake, ingest(budget, 1)).await.unwrap();
        let last = crate::checkpoint::last(&lake).await.unwrap().unwrap();
        assert_eq!(last.version, 3, "the records since none name the budget");
        // The count starts again from the checkpoint written.
        snap.commit(&lake, ingest(budget + 1, 1)).await.unwrap();
        assert_eq!(
            crate::checkpoint::last(&lake)
                .await
                .unwrap()
                .unwrap()
                .version,
            3
        );
        let read = Snapshot::load(&lake).await.unwrap();
        assert_eq!((read.base_version(), read.tail().len()), (3, 1));
        assert_eq!(read.files("events").len(), budget + 1);
        assert_eq!(
            read.state().files("events"),
            Snapshot::load_every_record(&lake)
                .await
                .unwrap()
                .state()
                .files("events")
        );
    }

    #[tokio::test]
    async fn a_lake_on_object_storage_opens_from_its_checkpoint() {
        opening_from_a_checkpoint(Lake::open("memory://log-checkpoint").unwrap()).await;
    }

    #[tokio::test]
    async fn a_lake_of_a_newer_format_is_refused_naming_both_versions() {
        let lake = Lake::open("memory://log-format").unwrap();
        let mut snap = Snapshot::load(&lake).await.unwrap();
        snap.commit(&lake, commit(CommitKind::Ingest, "events", "e1", false))
            .await
            .unwrap();
        snap.commit(&lake, commit(CommitKind::Ingest, "events", "e2", false))
            .await
            .unwrap();
        let written = Snapshot::load(&lake).await.unwrap();
        assert_eq!(
            written.tail()[0].format,
            FORMAT,
            "commits record the format"
        );
        // A newer writer: this binary still reads, but refuses to write.
        hand_edit(&lake, 2, |v| {
            v["format"]["writer"] = (FORMAT.writer + 1).into()
        })
        .await;
        let mut snap = Snapshot::load(&lake).await.unwrap();
        let err = snap
            .commit(&lake, commit(CommitKind::Ingest, "events", "e3", false))
            .await
            .unwrap_err()
            .to_string();
        let both = [
            format!("writer of format {}", FORMAT.writer + 1),
            format!("writer of format {}", FORMAT.writer),
        ];
        assert!(both.iter().all(|b| err.contains(b.as_str())), "{err}");
        assert!(err.contains("00000000000000000002.json"), "{err}");
        // A newer reader: nothing reads it.
        hand_edit(&lake, 1, |v| {
            v["format"]["reader"] = (FORMAT.reader + 1).into()
        })
        .await;
        let err = Snapshot::load(&lake).await.unwrap_err().to_string();
        assert!(
            err.contains(&format!("reader of format {}", FORMAT.reader + 1))
                && err.contains(&format!("reader of format {}", FORMAT.reader)),
            "{err}"
        );
    }

    #[tokio::test]
    async fn critical_metadata_that_does_not_parse_is_an_error_naming_the_record() {
        let lake = Lake::open("memory://log-typed").unwrap();
        let mut snap = Snapshot::load(&lake).await.unwrap();
        let mut runs = commit(CommitKind::Runs, "run_parts", "r1", false);
        runs.summary = serde_json::json!({"run_parts": {"covers": [1], "unique": true}});
        snap.commit(&lake, runs).await.unwrap();
        let landing = Commit::record(
            CommitKind::Landing,
            serde_json::json!({"ingest_id": "i", "files": [{"path": "a", "size": 1, "hash": "h"}]}),
        );
        snap.commit(&lake, landing).await.unwrap();
        let read = Snapshot::load(&lake).await.unwrap();
        assert_eq!(read.tail()[1].landing().unwrap().files[0].size, 1);
        assert_eq!(RunPartsCover::of(&read.tail()[0]).unwrap().covers, [1]);

        hand_edit(&lake, 1, |v| {
            v["summary"]["run_parts"]["covers"] = "all".into()
        })
        .await;
        let err = Snapshot::load(&lake).await.unwrap_err().to_string();
        assert!(
            err.contains("00000000000000000001.json") && err.contains("run_parts"),
            "{err}"
        );
        hand_edit(&lake, 1, |v| {
            v["summary"]["run_parts"]["covers"] = serde_json::json!([1])
        })
        .await;
        hand_edit(&lake, 2, |v| {
            v["summary"]["files"][0]["size"] = "big".into()
        })
        .await;
        let err = Snapshot::load(&lake).await.unwrap_err().to_string();
        assert!(
            err.contains("00000000000000000002.json") && err.contains("landing"),
            "{err}"
        );
        // A commit that would write such a record is refused before it is.
        let mut snap = Snapshot::default();
        let bad = Commit::record(CommitKind::Alerts, serde_json::json!({"deliveries": []}));
        let err = snap.commit(&lake, bad).await.unwrap_err().to_string();
        assert!(err.contains("webhook_hash"), "{err}");
    }

    #[tokio::test]
    async fn a_second_writer_of_the_same_version_conflicts() {
        let lake = Lake::open("memory://log-conflict").unwrap();
        let mut a = Snapshot::load(&lake).await.unwrap();
        let mut b = Snapshot::load(&lake).await.unwrap();
        a.commit(&lake, commit(CommitKind::Ingest, "events", "a", false))
            .await
            .unwrap();
        let err = b
            .commit(&lake, commit(CommitKind::Ingest, "events", "b", false))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::CommitConflict { version: 1 }), "{err}");
    }
}
