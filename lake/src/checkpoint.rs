//! Checkpoints: the folded log ([`State`]) written down every so often, so
//! that opening a lake reads one checkpoint and the records after it, not
//! every record since the first (Delta Lake's checkpoints and
//! `_last_checkpoint`, in agentledger's own format).
//!
//! - `_checkpoints/<version, 20 digits>.json.zst`: the state as of that
//!   version, zstd-compressed JSON, created with put-if-absent. It is a pure
//!   function of the records up to its version, so two writers that both
//!   write one write the same facts, and the loser of the create has nothing
//!   to do.
//! - `_checkpoints/_last.json`: which checkpoint is newest. A hint only: it
//!   is overwritten, and only ever with a newer version; a reader that finds
//!   none reads the whole log, which stays complete (checkpoints never
//!   replace records).
//!
//! The committer of every [`interval`]-th version writes one, and so does
//! the committer of a version after which the records since the last
//! checkpoint name [`file_budget`] files or more (a compaction or retention
//! of a long history: folding its record costs more than reading a
//! checkpoint). A checkpoint
//! that fails to write costs speed, never an answer: the commit stands, and
//! the failure is reported on stderr. A checkpoint or hint that does not
//! parse is an error naming it: it is never skipped, since a reader that
//! silently fell back would hide a lake that is being damaged.

use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::state::State;
use crate::store::Lake;

/// Folder of the checkpoints, relative to the lake root.
pub const CHECKPOINT_DIR: &str = "_checkpoints";
/// The hint naming the newest checkpoint.
pub const LAST: &str = "_checkpoints/_last.json";
/// The checkpoint format this binary reads and writes.
pub const CHECKPOINT_FORMAT: u32 = 1;

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
/// `AGENTLEDGER_CHECKPOINT_INTERVAL`, default 100.
pub fn interval() -> u64 {
    crate::retry::env_count("AGENTLEDGER_CHECKPOINT_INTERVAL", "commits", 1, 100)
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
fn decompress(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
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
    let json = decompress(&bytes).map_err(|e| corrupt(e.to_string()))?;
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
    state.removals.read_from(&last.path);
    if state.changed_from == u64::MAX {
        // Written before the state tracked table changes: it knows of the
        // changes after the checkpoint only.
        state.changed_from = state.version;
    }
    Ok(Some(state))
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
    let pruned = state.pruned(chrono::Utc::now() - removal_memory())?;
    let json = serde_json::to_vec(&Written {
        checkpoint_format: CHECKPOINT_FORMAT,
        state: pruned,
    })
    .expect("a state serializes");
    // One-shot compression: the frame records its content size, so a
    // reader decompresses into a buffer of the right size at once.
    let body = zstd::bulk::compress(json.as_slice(), 3).map_err(|source| Error::Io {
        context: "cannot compress a checkpoint".into(),
        source,
    })?;
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
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

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
