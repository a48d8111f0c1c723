//! Checkpoints: the folded log ([`State`]) written down every so often, so
//! that opening a lake reads one checkpoint and the records after it, not
//! every record since the first (Delta Lake's checkpoints and
//! `_last_checkpoint`, in agentledger's own format).
//!
//! - `_checkpoints/<version, 20 digits>.json.zst`: the state as of that
//!   version, zstd-compressed JSON, created with put-if-absent. It is a pure
//!   function of the records up to its version, so two writers that both
//!   write one write the same facts, and the loser of the create has nothing
//!   to do. Since format 2 the removed files not yet deleted (most of the
//!   state after a compaction of a long history, and read by writers only)
//!   are not in that JSON but follow it in a zstd skippable frame, itself
//!   holding their compressed JSON: a reader decompresses and parses only
//!   the first frame, and a zstd tool sees just the state.
//! - `_checkpoints/_last.json`: which checkpoint is newest. A hint only: it
//!   is overwritten, and only ever with a newer version; a reader that finds
//!   none reads the whole log, which stays complete (checkpoints never
//!   replace records).
//!
//! The committer of every [`interval`]-th version writes one, and so does
//! the committer of a version after which the records since the last
//! checkpoint name [`file_budget`] files or more (a compaction or retention
//! of a long history: folding its record costs more than reading a
//! checkpoint). Each writer of a checkpoint then deletes the ones that were
//! superseded more than the orphan grace period ago, keeping the two newest
//! ([`prune`]). A checkpoint that fails to write costs speed, never an
//! answer: the commit stands, and the failure is reported on stderr. A
//! checkpoint or hint that does not parse is an error naming it: it is
//! never skipped, since a reader that silently fell back would hide a lake
//! that is being damaged.

use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::state::{Removals, State};
use crate::store::Lake;

/// Folder of the checkpoints, relative to the lake root.
pub const CHECKPOINT_DIR: &str = "_checkpoints";
/// The hint naming the newest checkpoint.
pub const LAST: &str = "_checkpoints/_last.json";
/// The checkpoint format this binary writes, and the newest it reads:
/// 1, the state in one frame; 2, its removals in a frame of their own.
pub const CHECKPOINT_FORMAT: u32 = 2;

/// The magic number of the skippable frame holding a checkpoint's removals
/// (RFC 8878: `0x184D2A50` to `0x184D2A5F` mark skippable frames).
const REMOVALS_FRAME: u32 = 0x184D_2A5A;

/// What `_checkpoints/_last.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Last {
    /// The version of the newest checkpoint.
    pub version: u64,
    /// Its path relative to the lake root.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
}

#[derive(Serialize, Deserialize)]
struct Written {
    checkpoint_format: u32,
    state: State,
}

/// Every how many versions a checkpoint is written:
/// `AGENTLEDGER_CHECKPOINT_INTERVAL`, default 10 (as Delta Lake's
/// `checkpointInterval`): on object storage each record after the
/// checkpoint is one more request for every command, and old checkpoints
/// are pruned, so a short interval costs writers little.
pub fn interval() -> u64 {
    crate::retry::env_count("AGENTLEDGER_CHECKPOINT_INTERVAL", "commits", 1, 10)
}

/// How many files the records since the last checkpoint may name before
/// a commit writes one early: `AGENTLEDGER_CHECKPOINT_FILES`, default
/// 2,000 (a day of hourly ingests names a few hundred).
pub fn file_budget() -> usize {
    let n = crate::retry::env_count("AGENTLEDGER_CHECKPOINT_FILES", "files", 1, 2000);
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// The path of the checkpoint of `version`.
pub fn path_of(version: u64) -> String {
    format!("{CHECKPOINT_DIR}/{version:020}.json.zst")
}

async fn get_optional(lake: &Lake, rel: &str) -> Result<Option<bytes::Bytes>> {
    let path = lake.path(rel);
    let got = crate::retry::retrying(lake, || async {
        match lake.store().get(&path).await {
            Ok(r) => r.bytes().await.map(Some),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    })
    .await?;
    Ok(got)
}

/// The newest checkpoint hint, if any.
pub async fn last(lake: &Lake) -> Result<Option<Last>> {
    let Some(bytes) = get_optional(lake, LAST).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::CorruptLog {
            path: LAST.to_string(),
            reason: e.to_string(),
        })
}

/// The JSON of a checkpoint: into a buffer of the size its frame states
/// (every checkpoint this binary writes), or else streamed into one sized
/// from the compressed length (checkpoints written before), without the
/// doubling and copying of a growing buffer.
pub(crate) fn decompress(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let stated = zstd::zstd_safe::get_frame_content_size(bytes).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not a zstd frame: {e:?}"),
        )
    })?;
    if let Some(size) = stated {
        return zstd::bulk::decompress(bytes, usize::try_from(size).unwrap_or(usize::MAX));
    }
    let mut out = Vec::with_capacity(bytes.len().saturating_mul(12));
    zstd::stream::read::Decoder::new(bytes)?.read_to_end(&mut out)?;
    Ok(out)
}

/// Reads the newest checkpoint, if the lake has one.
pub async fn read_latest(lake: &Lake) -> Result<Option<State>> {
    let Some(last) = last(lake).await? else {
        return Ok(None);
    };
    let corrupt = |reason: String| Error::CorruptLog {
        path: last.path.clone(),
        reason: format!(
            "{reason} (named by {LAST}; the records in _log/ are complete: moving {CHECKPOINT_DIR}/ away makes readers read all of them)"
        ),
    };
    let Some(bytes) = get_optional(lake, &last.path).await? else {
        return Err(corrupt("the checkpoint is missing".into()));
    };
    let first = zstd::zstd_safe::find_frame_compressed_size(&bytes)
        .map_err(|code| corrupt(format!("not a zstd frame: {code}")))?;
    let json = decompress(&bytes[..first]).map_err(|e| corrupt(e.to_string()))?;
    let written: Written = serde_json::from_slice(&json).map_err(|e| corrupt(e.to_string()))?;
    if written.checkpoint_format > CHECKPOINT_FORMAT {
        return Err(Error::NewerFormat {
            path: last.path.clone(),
            what: "checkpoint",
            needed: written.checkpoint_format,
            supported: CHECKPOINT_FORMAT,
        });
    }
    if written.state.version != last.version {
        return Err(corrupt(format!(
            "it holds version {} where {LAST} says {}",
            written.state.version, last.version
        )));
    }
    let mut state = written.state;
    if written.checkpoint_format >= 2 {
        if !state.removals.is_unread() {
            return Err(corrupt(
                "it is of format 2 but lists removed files in its state".into(),
            ));
        }
        state.removals = Removals::in_frame(&last.path, removals_frame(&bytes.slice(first..)));
    } else {
        state.removals.read_from(&last.path);
    }
    if state.changed_from == u64::MAX {
        // Written before the state tracked table changes: it knows of the
        // changes after the checkpoint only.
        state.changed_from = state.version;
    }
    Ok(Some(state))
}

/// The compressed removals in the skippable frame that follows a
/// checkpoint's state (format 2), or why they are not there.
fn removals_frame(rest: &bytes::Bytes) -> std::result::Result<bytes::Bytes, String> {
    let missing = || "its frame of removed files is missing or cut short".to_string();
    let header = rest.get(..8).ok_or_else(missing)?;
    let magic = u32::from_le_bytes(header[..4].try_into().expect("four bytes"));
    if magic != REMOVALS_FRAME {
        return Err(format!(
            "its state is followed by {magic:#010x}, not the frame of removed files"
        ));
    }
    let length = u32::from_le_bytes(header[4..].try_into().expect("four bytes")) as usize;
    if rest.len() != 8 + length {
        return Err(format!(
            "its frame of removed files states {length} bytes but {} follow",
            rest.len() - 8
        ));
    }
    Ok(rest.slice(8..))
}

/// How long a removal is remembered in a checkpoint: longer than both
/// grace periods after which its file is deleted (by retention's deletion
/// of removed files, or as an orphan by age), plus a day.
fn removal_memory() -> chrono::Duration {
    let longest = crate::retain::grace_period().max(crate::log::orphan_grace());
    chrono::Duration::from_std(longest).unwrap_or(chrono::Duration::MAX / 2)
        + chrono::Duration::days(1)
}

/// Writes the checkpoint of `state` and points the hint at it, unless a
/// newer one is already named.
pub async fn write(lake: &Lake, state: &State) -> Result<Last> {
    let mut pruned = state.pruned(chrono::Utc::now() - removal_memory())?;
    let removals = serde_json::to_vec(&pruned.removals).expect("removals serialize");
    pruned.removals = Removals::default();
    let json = serde_json::to_vec(&Written {
        checkpoint_format: CHECKPOINT_FORMAT,
        state: pruned,
    })
    .expect("a state serializes");
    let compress = |json: &[u8]| {
        // One-shot compression: the frame records its content size, so a
        // reader decompresses into a buffer of the right size at once.
        zstd::bulk::compress(json, 3).map_err(|source| Error::Io {
            context: "cannot compress a checkpoint".into(),
            source,
        })
    };
    let mut body = compress(&json)?;
    let removals = compress(&removals)?;
    let length = u32::try_from(removals.len()).map_err(|_| Error::Io {
        context: "cannot write a checkpoint".into(),
        source: std::io::Error::other("its removals compress to 4 GiB or more"),
    })?;
    body.extend_from_slice(&REMOVALS_FRAME.to_le_bytes());
    body.extend_from_slice(&length.to_le_bytes());
    body.extend_from_slice(&removals);
    let rel = path_of(state.version);
    let written = Last {
        version: state.version,
        path: rel.clone(),
        size: body.len() as u64,
    };
    match crate::retry::create_if_absent(lake, &lake.path(&rel), body).await {
        // Another writer wrote the same facts first.
        Ok(()) | Err(object_store::Error::AlreadyExists { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    // Point the hint at it unless a newer checkpoint is named already. Two
    // writers racing here may leave the older one named: readers then read
    // a few more records, and the next checkpoint puts it right.
    if last(lake).await?.is_none_or(|l| l.version < state.version) {
        let hint = serde_json::to_vec_pretty(&written).expect("a hint serializes");
        let path = lake.path(LAST);
        crate::retry::retrying(lake, || {
            lake.store()
                .put(&path, object_store::PutPayload::from(hint.clone()))
        })
        .await?;
    }
    // Space only: a failure leaves old checkpoints for the next writer.
    if let Err(e) = prune(lake, chrono::Utc::now(), crate::log::orphan_grace()).await {
        tracing::warn!("old checkpoints were not deleted ({e}); the next checkpoint tries again");
    }
    Ok(written)
}

/// How many of the newest checkpoints [`prune`] always keeps.
const KEPT: usize = 2;

/// Deletes the checkpoints no reader needs: every one but the [`KEPT`]
/// newest that a newer checkpoint superseded at least `grace` before `now`
/// (a reader that read the hint before then has fetched its checkpoint
/// long since). Without this a lake keeps every checkpoint it ever wrote,
/// each the size of its whole state. Returns how many were deleted.
pub async fn prune(
    lake: &Lake,
    now: chrono::DateTime<chrono::Utc>,
    grace: std::time::Duration,
) -> Result<usize> {
    use futures::TryStreamExt;
    let listed: Vec<object_store::ObjectMeta> = lake
        .store()
        .list(Some(&lake.path(CHECKPOINT_DIR)))
        .try_collect()
        .await?;
    // (version, written at, location), newest first.
    let mut checkpoints: Vec<(u64, chrono::DateTime<chrono::Utc>, object_store::path::Path)> =
        listed
            .into_iter()
            .filter_map(|m| {
                let version = m
                    .location
                    .filename()?
                    .strip_suffix(".json.zst")?
                    .parse::<u64>()
                    .ok()?;
                Some((version, m.last_modified, m.location))
            })
            .collect();
    checkpoints.sort_by_key(|c| std::cmp::Reverse(c.0));
    let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX / 2);
    let mut deleted = 0;
    // A checkpoint was superseded when the oldest newer one was written.
    let mut superseded_at: Option<chrono::DateTime<chrono::Utc>> = None;
    for (i, (_, written_at, location)) in checkpoints.iter().enumerate() {
        if i >= KEPT && superseded_at.is_some_and(|at| now - at >= grace) {
            match lake.store().delete(location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => deleted += 1,
                Err(e) => return Err(e.into()),
            }
        }
        superseded_at = Some(*written_at);
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_checkpoints_superseded_for_the_grace_period_are_deleted() {
        let lake = Lake::open("memory://checkpoint-prune").unwrap();
        for version in [100, 200, 300, 400, 500] {
            let state = State {
                version,
                ..State::default()
            };
            write(&lake, &state).await.unwrap();
        }
        // Something else in the folder is not a checkpoint.
        let other = lake.path(&format!("{CHECKPOINT_DIR}/notes.txt"));
        lake.store()
            .put(&other, b"x".to_vec().into())
            .await
            .unwrap();
        let names = || async {
            let listed: Vec<_> = futures::TryStreamExt::try_collect(
                lake.store().list(Some(&lake.path(CHECKPOINT_DIR))),
            )
            .await
            .unwrap();
            let mut names: Vec<String> = listed
                .into_iter()
                .map(|m| m.location.filename().unwrap().to_string())
                .collect();
            names.sort();
            names
        };
        let hour = std::time::Duration::from_secs(3600);
        let now = chrono::Utc::now();
        // Written just now (each write pruned too): none superseded long enough.
        assert_eq!(names().await.len(), 7);
        assert_eq!(prune(&lake, now, hour).await.unwrap(), 0);
        // An hour on, all but the two newest go; the hint and others stay.
        let later = now + chrono::Duration::hours(1);
        assert_eq!(prune(&lake, later, hour).await.unwrap(), 3);
        assert_eq!(
            names().await,
            [
                "00000000000000000400.json.zst",
                "00000000000000000500.json.zst",
                "_last.json",
                "notes.txt"
            ]
        );
        assert_eq!(read_latest(&lake).await.unwrap().unwrap().version, 500);
    }

    #[test]
    fn checkpoints_decompress_with_and_without_a_stated_size() {
        let json: Vec<u8> = (0..50_000u32)
            .flat_map(|i| format!("{{\"path\":\"events/e{i}\"}},").into_bytes())
            .collect();
        // As this binary writes them (the frame states its size), and as
        // earlier binaries did (streamed: it does not).
        let stated = zstd::bulk::compress(&json, 3).unwrap();
        let streamed = zstd::encode_all(json.as_slice(), 3).unwrap();
        assert_eq!(
            zstd::zstd_safe::get_frame_content_size(&streamed).unwrap(),
            None
        );
        assert_eq!(decompress(&stated).unwrap(), json);
        assert_eq!(decompress(&streamed).unwrap(), json);
        assert!(decompress(b"garbage").is_err());
        assert!(decompress(&stated[..stated.len() / 2]).is_err());
    }
}
