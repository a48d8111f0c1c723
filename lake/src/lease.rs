//! Leases: exclusive work on one lake across processes and hosts.
//!
//! A lease is a chain of records `_lock/<name>/<generation, 20 digits>.json`,
//! each created with a conditional put (`PutMode::Create`), which is atomic on
//! every store. The newest record is the lease's state: who holds it, until
//! when (`expires_at`, UTC), and whether it was released. Every change of the
//! lease, whatever it is, is the creation of the next generation:
//!
//! | change | who | when |
//! |---|---|---|
//! | take | anyone | the newest record is released or expired, or there is none |
//! | renew | the holder | every third of the lease, while it works |
//! | release | the holder | when its work is done |
//!
//! Two processes that both saw the same expired record race to create the
//! same next generation: exactly one create succeeds, so exactly one holds the
//! lease. Nothing is ever taken over by deleting: a holder on another host, a
//! pod that was rescheduled, a process that was PID 1 in its container: each
//! is judged by its record's expiry alone, never by host or process id, so a
//! killed holder delays the next one by at most one lease
//! (`AGENTLEDGER_LEASE_SECS`, default 60).
//!
//! The generation is the lease's fencing number. A lake opened through
//! [`Lease::fence`] carries the lease, and every commit made through it
//! first checks that the newest record is still this holder's, then records
//! the generation in the commit (`fences`). A holder that lost its lease
//! (paused past its expiry, then taken over) cannot commit. Between that check
//! and the commit's own conditional put there remains a window of one storage
//! request, which a holder can only hit if it went a whole lease without
//! renewing and then paused again exactly there.
//!
//! Judging expiry compares the taker's clock with the holder's `expires_at`:
//! hosts' clocks must agree to within a fraction of the lease (NTP does far
//! better). A holder also keeps a local, monotonic deadline a sixth of the
//! lease short of its record's expiry and refuses to commit past it.

use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::Lake;

/// Folder of the lease records, relative to the lake root.
pub const LEASE_DIR: &str = "_lock";

/// The lease every write (ingest, load, compact, retain, run parts) holds
/// while it prepares and commits.
pub const WRITER: &str = "writer";

/// The scheduled batch's lease: one `agentledger run` at a time per lake.
/// It is held for the whole run; the writes inside it hold [`WRITER`] too.
pub const BATCH: &str = "batch";

/// How long a lease lasts without renewal: `AGENTLEDGER_LEASE_SECS`,
/// default 60 seconds, at least 1.
pub fn lease_duration() -> Duration {
    crate::retry::env_secs("AGENTLEDGER_LEASE_SECS", 60).max(Duration::from_secs(1))
}

/// One record of a lease's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The lease's name (`writer`, `batch`).
    pub lease: String,
    /// This record's generation: the fencing number of whoever holds it.
    pub generation: u64,
    /// A token unique to the holding process (not its pid: pids repeat
    /// across hosts and containers).
    pub holder: String,
    /// The holder's host name, for people reading the record.
    pub host: String,
    /// The holder's process id on that host, for people reading the record.
    pub pid: u32,
    /// What the holder is doing (`ingest`, `agentledger run`, ...).
    pub purpose: String,
    /// When the holder first took the lease, RFC 3339 UTC.
    pub acquired_at: String,
    /// When the lease ends unless renewed, RFC 3339 UTC.
    pub expires_at: String,
    /// The holder gave the lease up.
    #[serde(default)]
    pub released: bool,
}

impl LeaseRecord {
    fn expiry(&self, path: &str) -> Result<chrono::DateTime<chrono::Utc>> {
        chrono::DateTime::parse_from_rfc3339(&self.expires_at)
            .map(|t| t.with_timezone(&chrono::Utc))
            .map_err(|e| Error::CorruptLease {
                path: path.to_string(),
                reason: format!("expires_at {:?}: {e}", self.expires_at),
            })
    }

    fn describe(&self) -> String {
        format!(
            "pid {} on {} for '{}' since {}, until {}",
            self.pid, self.host, self.purpose, self.acquired_at, self.expires_at
        )
    }
}

/// A fencing entry of a commit: the lease it was made under and the
/// generation the holder had when it checked, right before committing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fence {
    /// The lease's name.
    pub lease: String,
    /// Its generation at the check.
    pub generation: u64,
}

/// How to wait while another process holds the lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    /// Wait up to this long for the holder to release it or for its lease
    /// to expire (writers: two ingests started together both complete).
    Patiently(Duration),
    /// Wait only while the holder looks dead: refuse at once when the lease
    /// is seen renewed (a live holder), take it over when it expires (a
    /// killed one). The batch: a second live `run` is refused, a crashed one
    /// delays the next by at most one lease.
    WhileStale,
}

#[derive(Debug)]
struct State {
    generation: u64,
    /// Local deadline: the lease is ours until then unless taken over.
    valid_until: Instant,
    /// Why the lease is no longer ours, once we know it is not.
    lost: Option<String>,
}

/// What a lease's holder shares with its renewer and with the lakes it
/// fences.
#[derive(Debug)]
pub struct Held {
    lake: Lake,
    name: String,
    record: LeaseRecord,
    duration: Duration,
    state: Mutex<State>,
}

impl Held {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Checks that the lease is still this holder's, reading its newest
    /// record, and returns the fencing entry for a commit.
    pub async fn check(&self) -> Result<Fence> {
        let (generation, valid_until, lost) = {
            let s = self.state();
            (s.generation, s.valid_until, s.lost.clone())
        };
        let lost_because = |reason: String| Error::LeaseLost {
            lease: self.name.clone(),
            reason,
        };
        if let Some(reason) = lost {
            return Err(lost_because(reason));
        }
        if Instant::now() > valid_until {
            return Err(lost_because(format!(
                "it was not renewed in time (generation {generation}; storage unreachable or the process paused)"
            )));
        }
        match newest(&self.lake, &self.name).await? {
            Some((_, r)) if r.holder == self.record.holder && !r.released => Ok(Fence {
                lease: self.name.clone(),
                generation: r.generation,
            }),
            Some((_, r)) => {
                let reason = format!(
                    "taken over at generation {} by {}",
                    r.generation,
                    r.describe()
                );
                self.state().lost = Some(reason.clone());
                Err(lost_because(reason))
            }
            None => Err(lost_because("its records are gone".into())),
        }
    }

    /// Creates the next generation as this holder: a renewal, or with
    /// `released` a release. Returns whether the lease is still this
    /// holder's (after a renewal) or was given up by it (after a release).
    async fn advance(&self, released: bool) -> Result<bool> {
        loop {
            let generation = {
                let s = self.state();
                if !released && s.lost.is_some() {
                    return Ok(false);
                }
                s.generation + 1
            };
            let started = Instant::now();
            let mut record = self.record.clone();
            record.generation = generation;
            record.released = released;
            let expires = if released {
                Duration::ZERO
            } else {
                self.duration
            };
            record.expires_at = rfc3339(chrono::Utc::now() + expires);
            match create(&self.lake, &self.name, &record).await? {
                Created::Mine => {
                    {
                        let mut s = self.state();
                        s.generation = s.generation.max(generation);
                        s.valid_until = started + self.duration - self.duration / 6;
                    }
                    delete_before(&self.lake, &self.name, generation.saturating_sub(1)).await;
                    return Ok(true);
                }
                // This process's other task (renewal, release) took that
                // generation: go on from it.
                Created::Theirs(r) if r.holder == self.record.holder => {
                    let mut s = self.state();
                    s.generation = s.generation.max(r.generation);
                    drop(s);
                }
                Created::Theirs(r) => {
                    self.state().lost = Some(format!(
                        "taken over at generation {} by {}",
                        r.generation,
                        r.describe()
                    ));
                    return Ok(false);
                }
            }
        }
    }
}

/// A held lease. Call [`Lease::release`] when done; a lease that is dropped
/// without it stops being renewed and ends at its expiry (on a local lake it
/// is released at once).
#[derive(Debug)]
pub struct Lease {
    held: Arc<Held>,
    renewer: Option<tokio::task::JoinHandle<()>>,
    released: bool,
}

impl Lease {
    /// Takes the writer lease for `purpose`, waiting for a live holder up to
    /// `AGENTLEDGER_LOCK_WAIT_SECS` (default 120), so that writers started
    /// together all complete, one after the other.
    pub async fn writer(lake: &Lake, purpose: &str) -> Result<Self> {
        let wait = crate::retry::env_secs("AGENTLEDGER_LOCK_WAIT_SECS", 120);
        Self::acquire(lake, WRITER, purpose, Waiting::Patiently(wait)).await
    }

    /// Takes the batch lease: refused while a live batch holds it, taken
    /// over once a dead one's lease expires.
    pub async fn batch(lake: &Lake, purpose: &str) -> Result<Self> {
        Self::acquire(lake, BATCH, purpose, Waiting::WhileStale).await
    }

    /// Takes the lease `name`, waiting as `waiting` says.
    pub async fn acquire(lake: &Lake, name: &str, purpose: &str, waiting: Waiting) -> Result<Self> {
        Self::acquire_for(lake, name, purpose, waiting, lease_duration()).await
    }

    /// [`Lease::acquire`] with a lease of `duration` (tests use short ones).
    pub async fn acquire_for(
        lake: &Lake,
        name: &str,
        purpose: &str,
        waiting: Waiting,
        duration: Duration,
    ) -> Result<Self> {
        let now = chrono::Utc::now();
        let mut mine = LeaseRecord {
            lease: name.to_string(),
            generation: 0,
            holder: holder_token(),
            host: hostname(),
            pid: std::process::id(),
            purpose: purpose.to_string(),
            acquired_at: rfc3339(now),
            expires_at: String::new(),
            released: false,
        };
        let started = Instant::now();
        let deadline = match waiting {
            Waiting::Patiently(wait) => started + wait,
            // Long enough for any record to expire, with a margin for clocks.
            Waiting::WhileStale => started + duration + duration / 6 + Duration::from_secs(1),
        };
        let mut pause = Duration::from_millis(50);
        let mut first_seen: Option<LeaseRecord> = None;
        loop {
            let current = newest(lake, name).await?;
            let now = chrono::Utc::now();
            let free = match &current {
                None => true,
                Some((path, r)) => r.released || r.expiry(path)? <= now,
            };
            if free {
                mine.generation = current.as_ref().map_or(0, |(_, r)| r.generation) + 1;
                let attempt = Instant::now();
                mine.expires_at = rfc3339(chrono::Utc::now() + duration);
                match create(lake, name, &mine).await? {
                    Created::Mine => {
                        delete_before(lake, name, mine.generation.saturating_sub(1)).await;
                        return Ok(Self::start(lake, mine, duration, attempt));
                    }
                    // Another process took that generation first: look again.
                    Created::Theirs(_) => continue,
                }
            }
            let (path, holder) = current.expect("a held lease has a record");
            let locked = || Error::Locked {
                lease: name.to_string(),
                holder: holder.describe(),
                path: path.clone(),
            };
            if waiting == Waiting::WhileStale {
                match &first_seen {
                    // Renewed while we watched: its holder is alive.
                    Some(seen) if seen.holder == holder.holder => {
                        if holder.generation > seen.generation {
                            return Err(locked());
                        }
                    }
                    _ => first_seen = Some(holder.clone()),
                }
            }
            if Instant::now() >= deadline {
                return Err(locked());
            }
            // Wake at its expiry at the latest, jittered so that waiters do
            // not poll in step.
            let until_expiry = (holder.expiry(&path)? - chrono::Utc::now())
                .to_std()
                .unwrap_or_default()
                + Duration::from_millis(10);
            let sleep = crate::retry::jittered(pause)
                .min(until_expiry)
                .min(deadline.saturating_duration_since(Instant::now()));
            tokio::time::sleep(sleep).await;
            pause = (pause * 2).min(Duration::from_secs(2)).min(duration / 3);
        }
    }

    fn start(lake: &Lake, record: LeaseRecord, duration: Duration, taken: Instant) -> Self {
        let held: Arc<Held> = Arc::new(Held {
            lake: lake.clone(),
            name: record.lease.clone(),
            state: Mutex::new(State {
                generation: record.generation,
                valid_until: taken + duration - duration / 6,
                lost: None,
            }),
            record,
            duration,
        });
        let renewer = {
            let held = Arc::clone(&held);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(held.duration / 3).await;
                    match held.advance(false).await {
                        Ok(true) => {}
                        // Taken over: nothing more to renew.
                        Ok(false) => break,
                        // Storage trouble: try again next time; past the
                        // local deadline the holder refuses to commit.
                        Err(_) => {}
                    }
                }
            })
        };
        registry().push(Arc::downgrade(&held));
        Self {
            held,
            renewer: Some(renewer),
            released: false,
        }
    }

    /// The lease's current generation (its fencing number).
    pub fn generation(&self) -> u64 {
        self.held.state().generation
    }

    /// Checks that the lease is still held; see [`Held::check`].
    pub async fn check(&self) -> Result<Fence> {
        self.held.check().await
    }

    /// `lake`, fenced by this lease: every commit made through the returned
    /// lake first checks that the lease is still held and records its
    /// generation.
    pub fn fence(&self, lake: &Lake) -> Lake {
        lake.with_fence(Arc::clone(&self.held))
    }

    /// Gives the lease up: the next taker need not wait for its expiry.
    pub async fn release(mut self) -> Result<()> {
        self.released = true;
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
            let _ = renewer.await;
        }
        if self.held.state().lost.is_some() {
            return Ok(());
        }
        self.held.advance(true).await.map(|_| ())
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
        }
        if self.released {
            return;
        }
        // An error path dropped the lease. On a local lake release it now,
        // with the same atomic create as every other change; elsewhere it
        // ends at its expiry.
        if let Some(root) = self.held.lake.local_root() {
            let s = self.held.state();
            if s.lost.is_some() {
                return;
            }
            let mut record = self.held.record.clone();
            record.generation = s.generation + 1;
            record.released = true;
            record.expires_at = rfc3339(chrono::Utc::now());
            let dir = root.join(LEASE_DIR).join(&self.held.name);
            let tmp = dir.join(format!(".release-{}", record.holder));
            let body = serde_json::to_vec_pretty(&record).expect("lease record serializes");
            if std::fs::write(&tmp, body).is_ok() {
                // A hard link fails when the name exists: the create is
                // conditional, as on every store.
                let _ = std::fs::hard_link(&tmp, dir.join(record_name(record.generation)));
                let _ = std::fs::remove_file(&tmp);
            }
        }
    }
}

/// Every lease this process took, for [`release_all`].
fn registry() -> std::sync::MutexGuard<'static, Vec<std::sync::Weak<Held>>> {
    static HELD: Mutex<Vec<std::sync::Weak<Held>>> = Mutex::new(Vec::new());
    let mut held = HELD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    held.retain(|h| h.strong_count() > 0);
    held
}

/// Releases every lease this process still holds: for a process that was
/// asked to stop (SIGTERM, SIGINT) and exits without finishing its work, so
/// the next process need not wait for the leases to expire. Its uncommitted
/// files are orphans, deleted once past the orphan grace period.
pub async fn release_all() {
    let held: Vec<Arc<Held>> = registry()
        .iter()
        .filter_map(std::sync::Weak::upgrade)
        .collect();
    for h in held {
        let live = {
            let mut s = h.state();
            let live = s.lost.is_none();
            // Nothing may commit under it from now on.
            s.lost = Some("this process is stopping".into());
            live
        };
        if live {
            let _ = h.advance(true).await;
        }
    }
}

enum Created {
    Mine,
    Theirs(LeaseRecord),
}

/// A record's path as a person finds it: the lake as given, then the path
/// inside it.
fn shown(lake: &Lake, path: &Path) -> String {
    let inside = lake.relative(path).unwrap_or_else(|| path.to_string());
    format!("{}/{inside}", lake.display().trim_end_matches('/'))
}

fn record_name(generation: u64) -> String {
    format!("{generation:020}.json")
}

fn record_path(lake: &Lake, name: &str, generation: u64) -> Path {
    lake.path(&format!("{LEASE_DIR}/{name}/{}", record_name(generation)))
}

/// Creates `record` as its generation, if no one has.
async fn create(lake: &Lake, name: &str, record: &LeaseRecord) -> Result<Created> {
    let path = record_path(lake, name, record.generation);
    let body = serde_json::to_vec_pretty(record).expect("lease record serializes");
    match crate::retry::create_if_absent(lake, &path, body).await {
        Ok(_) => Ok(Created::Mine),
        Err(object_store::Error::AlreadyExists { .. }) => {
            let theirs = read(lake, &path).await?;
            // A retried create whose first attempt landed finds its own record.
            if theirs.holder == record.holder && theirs.released == record.released {
                Ok(Created::Mine)
            } else {
                Ok(Created::Theirs(theirs))
            }
        }
        Err(e) => Err(e.into()),
    }
}

async fn read(lake: &Lake, path: &Path) -> Result<LeaseRecord> {
    let bytes = crate::retry::retrying(lake, || async {
        lake.store().get(path).await?.bytes().await
    })
    .await?;
    serde_json::from_slice(&bytes).map_err(|e| Error::CorruptLease {
        path: shown(lake, path),
        reason: e.to_string(),
    })
}

/// Generations of the records under the lease's folder, ascending.
async fn generations(lake: &Lake, name: &str) -> Result<Vec<u64>> {
    let prefix = lake.path(&format!("{LEASE_DIR}/{name}"));
    let listed: Vec<_> = lake.store().list(Some(&prefix)).try_collect().await?;
    let mut out: Vec<u64> = listed
        .iter()
        .filter_map(|m| {
            let file = m.location.filename()?;
            let digits = file.strip_suffix(".json")?;
            (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
                .then(|| digits.parse().ok())
                .flatten()
        })
        .collect();
    out.sort_unstable();
    Ok(out)
}

/// The newest record of the lease, with its path, if it has any.
pub async fn newest(lake: &Lake, name: &str) -> Result<Option<(String, LeaseRecord)>> {
    // A holder deletes records two generations behind its own, so a record
    // listed may be gone when read: list again.
    for _ in 0..5 {
        let Some(&generation) = generations(lake, name).await?.last() else {
            return Ok(None);
        };
        let path = record_path(lake, name, generation);
        match read(lake, &path).await {
            Ok(record) => {
                if record.generation != generation || record.lease != name {
                    return Err(Error::CorruptLease {
                        path: shown(lake, &path),
                        reason: format!(
                            "it says lease {:?} generation {}",
                            record.lease, record.generation
                        ),
                    });
                }
                return Ok(Some((shown(lake, &path), record)));
            }
            Err(Error::Store(object_store::Error::NotFound { .. })) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Error::CorruptLease {
        path: format!("{LEASE_DIR}/{name}"),
        reason: "its newest record kept disappearing while being read".into(),
    })
}

/// Deletes the records older than `keep_from`: they decide nothing once a
/// newer one exists. Best effort: a record left behind costs a few bytes
/// and is deleted by the next change of the lease.
async fn delete_before(lake: &Lake, name: &str, keep_from: u64) {
    let Ok(all) = generations(lake, name).await else {
        return;
    };
    for generation in all.into_iter().filter(|g| *g < keep_from) {
        let _ = lake
            .store()
            .delete(&record_path(lake, name, generation))
            .await;
    }
}

/// A token unique to this process among all hosts: time, pid and a random
/// number from the standard library's hasher keys.
fn holder_token() -> String {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!("{}-{random:016x}", crate::log::new_id())
}

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown-host".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHORT: Duration = Duration::from_millis(600);

    /// Takes the writer lease with a short duration, without waiting.
    async fn at_once(lake: &Lake, purpose: &str) -> Result<Lease> {
        Lease::acquire_for(
            lake,
            WRITER,
            purpose,
            Waiting::Patiently(Duration::ZERO),
            SHORT,
        )
        .await
    }

    async fn put_record(lake: &Lake, name: &str, record: &LeaseRecord) {
        lake.store()
            .put(
                &record_path(lake, name, record.generation),
                serde_json::to_vec(record).unwrap().into(),
            )
            .await
            .unwrap();
    }

    fn foreign(generation: u64, host: &str, pid: u32, expires_in: chrono::Duration) -> LeaseRecord {
        LeaseRecord {
            lease: BATCH.into(),
            generation,
            holder: format!("{host}-{pid}-token"),
            host: host.into(),
            pid,
            purpose: "agentledger run".into(),
            acquired_at: "2026-11-24T02:00:00Z".into(),
            expires_at: rfc3339(chrono::Utc::now() + expires_in),
            released: false,
        }
    }

    #[tokio::test]
    async fn a_held_lease_refuses_others_until_released() {
        let lake = Lake::open("memory://lease-held").unwrap();
        let first = at_once(&lake, "ingest").await.unwrap();
        let err = at_once(&lake, "load").await.unwrap_err().to_string();
        assert!(err.contains("locked by another writer"), "{err}");
        assert!(err.contains("'ingest'"), "{err}");
        // Held past several of its own lease durations: renewal keeps it.
        let started = Instant::now();
        let err = Lease::acquire_for(&lake, WRITER, "load", Waiting::Patiently(SHORT * 3), SHORT)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("locked by another writer"), "{err}");
        assert!(started.elapsed() >= SHORT * 3);
        let fence = first.check().await.unwrap();
        assert!(fence.generation > 1, "renewed: {fence:?}");
        first.release().await.unwrap();
        let second = at_once(&lake, "load").await.unwrap();
        assert!(
            second.generation() > fence.generation,
            "fencing numbers only grow"
        );
        second.release().await.unwrap();
    }

    #[tokio::test]
    async fn a_lease_of_another_host_or_pid_1_is_taken_over_once_it_expires() {
        for (i, (host, pid)) in [("node-7f3a", 4242), (hostname().as_str(), 1)]
            .into_iter()
            .enumerate()
        {
            let lake = Lake::open(&format!("memory://lease-foreign-{i}")).unwrap();
            // Expired already: taken at once.
            put_record(
                &lake,
                BATCH,
                &foreign(3, host, pid, chrono::Duration::seconds(-5)),
            )
            .await;
            let lease = Lease::acquire_for(&lake, BATCH, "run", Waiting::WhileStale, SHORT)
                .await
                .unwrap();
            assert_eq!(lease.generation(), 4);
            lease.release().await.unwrap();
            // Still valid but never renewed (its holder was killed): the
            // batch waits for its expiry, then takes it.
            let next = newest(&lake, BATCH).await.unwrap().unwrap().1.generation + 1;
            put_record(
                &lake,
                BATCH,
                &foreign(next, host, pid, chrono::Duration::milliseconds(800)),
            )
            .await;
            let started = Instant::now();
            let lease = Lease::acquire_for(&lake, BATCH, "run", Waiting::WhileStale, SHORT)
                .await
                .unwrap();
            let waited = started.elapsed();
            assert!(waited >= Duration::from_millis(700), "{waited:?}");
            assert!(waited < Duration::from_secs(3), "{waited:?}");
            lease.release().await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_live_batch_is_refused_without_waiting_out_its_lease() {
        let lake = Lake::open("memory://lease-live-batch").unwrap();
        let live = Lease::acquire_for(&lake, BATCH, "agentledger run", Waiting::WhileStale, SHORT)
            .await
            .unwrap();
        let started = Instant::now();
        let err = Lease::acquire_for(&lake, BATCH, "agentledger run", Waiting::WhileStale, SHORT)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("locked by another"), "{err}");
        // Refused once a renewal was seen, before the lease could expire.
        assert!(started.elapsed() < SHORT, "{:?}", started.elapsed());
        live.release().await.unwrap();
    }

    #[tokio::test]
    async fn of_two_racing_takers_one_wins_and_the_loser_of_the_lease_cannot_commit() {
        let lake = Lake::open("memory://lease-race").unwrap();
        put_record(&lake, WRITER, &{
            let mut r = foreign(9, "gone-node", 1, chrono::Duration::seconds(-1));
            r.lease = WRITER.into();
            r
        })
        .await;
        let take = || at_once(&lake, "ingest");
        let (a, b) = tokio::join!(take(), take());
        let (winner, loser) = match (a, b) {
            (Ok(w), Err(e)) | (Err(e), Ok(w)) => (w, e.to_string()),
            (a, b) => panic!("exactly one must win: {a:?} {b:?}"),
        };
        assert!(loser.contains("locked by another writer"), "{loser}");
        assert_eq!(winner.generation(), 10);

        // The winner stalls (no renewal) past its lease; another takes over.
        winner.renewer.as_ref().unwrap().abort();
        tokio::time::sleep(SHORT + Duration::from_millis(100)).await;
        let usurper = at_once(&lake, "ingest").await.unwrap();
        // The stalled holder's commit is refused by the fence.
        let fenced = winner.fence(&lake);
        let mut snapshot = crate::log::Snapshot::load(&fenced).await.unwrap();
        let err = snapshot
            .commit(
                &fenced,
                crate::log::Commit::record(crate::log::CommitKind::Retain, serde_json::json!({})),
            )
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("lost the writer lease"), "{err}");
        assert_eq!(
            crate::log::Snapshot::load(&lake).await.unwrap().version(),
            0
        );
        // Its local deadline alone refuses too, even before reading storage.
        let err = winner.check().await.unwrap_err().to_string();
        assert!(err.contains("lost the writer lease"), "{err}");
        // The new holder commits, with its fencing number in the record.
        let fenced = usurper.fence(&lake);
        let mut snapshot = crate::log::Snapshot::load(&fenced).await.unwrap();
        snapshot
            .commit(
                &fenced,
                crate::log::Commit::record(crate::log::CommitKind::Retain, serde_json::json!({})),
            )
            .await
            .unwrap();
        let log = crate::log::Snapshot::load(&lake).await.unwrap();
        assert_eq!(
            log.tail()[0].fences,
            [Fence {
                lease: WRITER.into(),
                generation: usurper.generation()
            }]
        );
        usurper.release().await.unwrap();
        winner.release().await.unwrap();
    }

    #[tokio::test]
    async fn an_unreadable_record_is_an_error_naming_it() {
        let lake = Lake::open("memory://lease-corrupt").unwrap();
        lake.store()
            .put(&record_path(&lake, WRITER, 2), b"{not json".to_vec().into())
            .await
            .unwrap();
        let err = at_once(&lake, "ingest").await.unwrap_err().to_string();
        assert!(err.contains("00000000000000000002.json"), "{err}");
    }

    #[tokio::test]
    async fn a_dropped_lease_on_a_local_lake_is_released_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap()).unwrap();
        let lease = Lease::acquire_for(
            &lake,
            WRITER,
            "ingest",
            Waiting::Patiently(Duration::ZERO),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
        drop(lease);
        let (_, record) = newest(&lake, WRITER).await.unwrap().unwrap();
        assert!(record.released, "{record:?}");
        Lease::acquire_for(
            &lake,
            WRITER,
            "ingest",
            Waiting::Patiently(Duration::ZERO),
            Duration::from_secs(60),
        )
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
    }
}
