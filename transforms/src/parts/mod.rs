//! Run parts computed while an ingest writes its events.
//!
//! `run_parts.sql` defines a part: the partial sums of a set of events per
//! run. Computing it after the commit means reading every new event back
//! from Parquet; for a large ingest that took as long as the ingest itself.
//! [`PartsObserver`] computes the same rows from the batches the ingest
//! stores, while they are in memory, and the ingest commits them with its
//! events in one commit (its summary says the parts cover the commit's own
//! events). The SQL stays the definition: sessions still use it for events
//! no part covers, and a test checks this code against it.
//!
//! Memory is bounded: at most [`OBSERVED_RUNS`] runs are held. When there
//! are more, the half seen least recently is written out. Events usually
//! arrive run by run or in time order, so a run written out is rarely seen
//! again; when one is, it has two rows and the parts are not marked
//! `unique` (the refresh after the ingest then merges them).
//!
//! This code mirrors `run_parts.sql` and `merge_parts.sql` for speed, so
//! it can disagree with them only by a mistake here, and tests look for
//! one: `queries/tests/observed.rs` on the sample, `queries/tests/runs_equal.rs`
//! on generated event sets, and every `.slt` case run in the mode where the
//! ingest computes its parts. A change to either SQL file must be followed
//! here, with [`PARTS_CODE_VERSION`] bumped. What this code cannot compute
//! as the SQL would (a sum that overflows) makes it give up: the events are
//! then not covered, and the refresh computes their parts with
//! `run_parts.sql`. Failing to write the parts file fails the ingest, like
//! failing to write its events.

//! The code is split by role: [`prices`] looks up prices as
//! `model_calls.sql` does, [`part`] accumulates one run's part and builds
//! `run_parts` rows, [`observer`] is the ingest's observer and [`merger`]
//! merges stored parts.

use std::collections::{HashMap, HashSet};

mod merger;
mod observer;
mod part;
mod prices;

pub(crate) use merger::PartsMerger;
pub use observer::PartsObserver;

/// The version of this module's arithmetic: [`PartsObserver`]'s mirror of
/// `run_parts.sql` (with `model_calls.sql`'s pricing) and [`PartsMerger`]'s
/// of `merge_parts.sql`. It is part of [`crate::definitions`], which every
/// parts commit records: bump it with any change to what this code
/// computes, so that parts the old code made are rebuilt (the SQL files'
/// own changes are noticed without it).
pub const PARTS_CODE_VERSION: u32 = 1;

/// Runs held in memory by a [`PartsObserver`] before the half seen least
/// recently is written out.
pub const OBSERVED_RUNS: usize = 65_536;

/// Rows of written-out parts gathered before they go to the Parquet writer.
const OUT_ROWS: usize = 16 * 1024;

const MICROS_PER_DAY: i64 = 86_400_000_000;

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
type FastSet<K> = HashSet<K, foldhash::fast::RandomState>;
