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

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use agentledger_lake::Lake;
use agentledger_lake::log::{FileEntry, RunPartsCover, Snapshot};
use agentledger_lake::observe::{EventObserver, Observed};
use agentledger_lake::parquet_io::read_all;
use agentledger_lake::schema::{
    EVENTS_SCHEMA, MODEL_PRICES, MONEY_PRECISION, MONEY_SCALE, RUN_PARTS, RUN_PARTS_SCHEMA,
};
use agentledger_lake::writer::open_file;
use arrow::array::{
    Array, ArrayBuilder, ArrayRef, AsArray, BooleanArray, Date32Array, Decimal128Array,
    Decimal128Builder, Int64Array, Int64Builder, RecordBatch, StringArray, StringBuilder,
    TimestampMicrosecondArray, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{Decimal128Type, Int64Type, TimestampMicrosecondType};
use futures::StreamExt;
use futures::future::BoxFuture;
use object_store::buffered::BufWriter;
use parquet::arrow::AsyncArrowWriter;

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

/// Prices as `model_calls.sql` uses them: per model, by `effective_from`,
/// at scale 6.
#[derive(Debug, Default)]
struct Prices {
    by_model: HashMap<String, Vec<Price>>,
}

#[derive(Debug, Clone, Copy)]
struct Price {
    /// `effective_from` as days since 1970-01-01.
    from: i32,
    input: i128,
    cached: i128,
    output: i128,
}

impl Prices {
    /// The current `model_prices` of a snapshot; `None` when a price has
    /// more than 6 fractional digits (the loader refuses those, so only a
    /// lake written by something else has them).
    async fn load(lake: &Lake, snapshot: &Snapshot) -> agentledger_lake::Result<Option<Self>> {
        let mut prices = Prices::default();
        for file in snapshot.files(MODEL_PRICES) {
            let mut stream = read_all(lake, file).await?;
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                let col = |name: &str| batch.column_by_name(name).map(Arc::clone);
                let (Some(model), Some(from), Some(input), Some(cached), Some(output)) = (
                    col("model"),
                    col("effective_from"),
                    col("input_usd_per_mtok"),
                    col("cached_input_usd_per_mtok"),
                    col("output_usd_per_mtok"),
                ) else {
                    return Ok(None);
                };
                let model = model.as_string::<i32>();
                let from = from.as_any().downcast_ref::<Date32Array>();
                let input = input.as_primitive_opt::<Decimal128Type>();
                let cached = cached.as_primitive_opt::<Decimal128Type>();
                let output = output.as_primitive_opt::<Decimal128Type>();
                let (Some(from), Some(input), Some(cached), Some(output)) =
                    (from, input, cached, output)
                else {
                    return Ok(None);
                };
                for i in 0..batch.num_rows() {
                    let at_6 = |v: i128| (v % 1_000_000 == 0).then_some(v / 1_000_000);
                    let input_price = at_6(input.value(i));
                    let cached_price = if cached.is_null(i) {
                        input_price
                    } else {
                        at_6(cached.value(i))
                    };
                    let (Some(input), Some(cached), Some(output)) =
                        (input_price, cached_price, at_6(output.value(i)))
                    else {
                        return Ok(None);
                    };
                    prices
                        .by_model
                        .entry(model.value(i).to_string())
                        .or_default()
                        .push(Price {
                            from: from.value(i),
                            input,
                            cached,
                            output,
                        });
                }
            }
        }
        for list in prices.by_model.values_mut() {
            list.sort_by_key(|p| p.from);
        }
        Ok(Some(prices))
    }

    /// The price in force on `day` (the latest `effective_from` on or
    /// before it).
    fn find(&self, model: &str, day: i32) -> Option<&Price> {
        let list = self.by_model.get(model)?;
        let after = list.partition_point(|p| p.from <= day);
        after.checked_sub(1).map(|i| &list[i])
    }
}

/// The earliest `run_started` or the latest `run_finished` of a run: its
/// time, event id and two text columns (workflow and agent version, or
/// outcome and cap hit).
#[derive(Debug, Clone)]
struct Pick {
    ts: i64,
    event_id: Box<str>,
    a: Option<Box<str>>,
    b: Option<Box<str>>,
}

impl Pick {
    fn new(ts: i64, event_id: &str, a: Option<&str>, b: Option<&str>) -> Self {
        Self {
            ts,
            event_id: event_id.into(),
            a: a.map(Into::into),
            b: b.map(Into::into),
        }
    }
}

/// Whether a start at (`ts`, `event_id`) is earlier than the current pick
/// (ties on time go to the smaller event id, compared byte-wise).
fn earlier(ts: i64, event_id: &str, current: &Option<Pick>) -> bool {
    current
        .as_ref()
        .is_none_or(|p| (ts, event_id) < (p.ts, &*p.event_id))
}

/// Whether a finish at (`ts`, `event_id`) is later than the current pick
/// (ties on time go to the greater event id).
fn later(ts: i64, event_id: &str, current: &Option<Pick>) -> bool {
    current
        .as_ref()
        .is_none_or(|p| (ts, event_id) > (p.ts, &*p.event_id))
}

// Counters, in the order of RUN_PARTS_SCHEMA from `model_calls` on.
const MODEL_CALLS: usize = 0;
const INPUT_TOKENS: usize = 1;
const CACHED_INPUT_TOKENS: usize = 2;
const OUTPUT_TOKENS: usize = 3;
const REASONING_TOKENS: usize = 4;
const CACHE_HITS: usize = 5;
const MODEL_ERRORS: usize = 6;
const UNPRICED_MODEL_CALLS: usize = 7;
const TOOL_CALLS: usize = 8;
const TOOL_ERRORS: usize = 9;
const POLICY_BLOCKS: usize = 10;
const APPROVALS_REQUESTED: usize = 11;
const APPROVALS_APPROVED: usize = 12;
const APPROVALS_REJECTED: usize = 13;
const HUMAN_OVERRIDES: usize = 14;
const BAD_RUN_REPORTS: usize = 15;
const EVENTS: usize = 16;
const COUNTERS: usize = 17;

/// The partial sums of one run.
#[derive(Debug, Clone)]
struct Acc {
    /// Kept in memory until released: an event of the run may come later.
    held: bool,
    /// When the run was last seen (batches observed so far).
    seen: u64,
    started: Option<Pick>,
    finished: Option<Pick>,
    run_finished_events: i64,
    model_cost: i128,
    tool_cost: i128,
    counts: [i64; COUNTERS],
    first: i64,
    last: i64,
}

impl Acc {
    /// No events yet (a run held for a suspect starts so).
    fn new(seen: u64) -> Self {
        Self {
            held: false,
            seen,
            started: None,
            finished: None,
            run_finished_events: 0,
            model_cost: 0,
            tool_cost: 0,
            counts: [0; COUNTERS],
            first: i64::MAX,
            last: i64::MIN,
        }
    }
}

/// The columns of an events batch this code reads.
struct Columns<'a> {
    event_id: &'a StringArray,
    event_type: &'a StringArray,
    ts: &'a TimestampMicrosecondArray,
    tenant_id: &'a StringArray,
    run_id: &'a StringArray,
    workflow: &'a StringArray,
    agent_version: &'a StringArray,
    model: &'a StringArray,
    input_tokens: &'a Int64Array,
    output_tokens: &'a Int64Array,
    cached_input_tokens: &'a Int64Array,
    reasoning_tokens: &'a Int64Array,
    cost_usd: &'a Decimal128Array,
    status: &'a StringArray,
    cache_hit: &'a BooleanArray,
    decision: &'a StringArray,
    kind: &'a StringArray,
    outcome: &'a StringArray,
    cap_hit: &'a StringArray,
}

impl<'a> Columns<'a> {
    fn of(batch: &'a RecordBatch) -> Option<Self> {
        let col = |name: &str| batch.column_by_name(name);
        let text = |name: &str| col(name)?.as_string_opt::<i32>();
        let int = |name: &str| col(name)?.as_primitive_opt::<Int64Type>();
        Some(Self {
            event_id: text("event_id")?,
            event_type: text("event_type")?,
            ts: col("ts")?.as_primitive_opt::<TimestampMicrosecondType>()?,
            tenant_id: text("tenant_id")?,
            run_id: text("run_id")?,
            workflow: text("workflow")?,
            agent_version: text("agent_version")?,
            model: text("model")?,
            input_tokens: int("input_tokens")?,
            output_tokens: int("output_tokens")?,
            cached_input_tokens: int("cached_input_tokens")?,
            reasoning_tokens: int("reasoning_tokens")?,
            cost_usd: col("cost_usd")?.as_primitive_opt::<Decimal128Type>()?,
            status: text("status")?,
            cache_hit: col("cache_hit")?.as_boolean_opt()?,
            decision: text("decision")?,
            kind: text("kind")?,
            outcome: text("outcome")?,
            cap_hit: text("cap_hit")?,
        })
    }
}

fn opt(a: &StringArray, i: usize) -> Option<&str> {
    a.is_valid(i).then(|| a.value(i))
}

fn opt_i64(a: &Int64Array, i: usize) -> Option<i64> {
    a.is_valid(i).then(|| a.value(i))
}

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
type FastSet<K> = HashSet<K, foldhash::fast::RandomState>;

/// What a [`PartsObserver`] holds while an ingest runs.
struct Active {
    lake: Lake,
    relative: String,
    handle: tokio::runtime::Handle,
    prices: Prices,
    runs: FastMap<Box<[u8]>, Box<Acc>>,
    /// Hashes of the keys of runs written out.
    written_out: FastSet<u64>,
    /// Keys of the runs held.
    held: Vec<Box<[u8]>>,
    hasher: foldhash::fast::FixedState,
    /// No run has two rows so far, and the lake had no events before.
    unique: bool,
    /// The lake had no events before this ingest.
    first: bool,
    batches: u64,
    key: Vec<u8>,
    out: Rows,
    writer: Option<AsyncArrowWriter<BufWriter>>,
    rows: u64,
}

/// Computes the run parts of an ingest's events as it stores them; pass it
/// to the ingest's `ingest_observed`. See the module docs.
pub struct PartsObserver {
    max_runs: usize,
    active: Option<Active>,
    /// Why the parts were given up, if they were.
    gave_up: Option<String>,
}

impl std::fmt::Debug for PartsObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartsObserver")
            .field("max_runs", &self.max_runs)
            .field("runs", &self.active.as_ref().map(|a| a.runs.len()))
            .field("gave_up", &self.gave_up)
            .finish()
    }
}

impl Default for PartsObserver {
    /// Holds [`OBSERVED_RUNS`] runs, or `AGENTLEDGER_INGEST_RUNS` when set.
    fn default() -> Self {
        let runs = agentledger_lake::retry::env_count(
            "AGENTLEDGER_INGEST_RUNS",
            "runs",
            1,
            OBSERVED_RUNS as u64,
        );
        Self::new(usize::try_from(runs).unwrap_or(usize::MAX))
    }
}

impl PartsObserver {
    /// An observer holding at most `max_runs` runs in memory.
    pub fn new(max_runs: usize) -> Self {
        Self {
            max_runs: max_runs.max(1),
            active: None,
            gave_up: None,
        }
    }

    /// Why the parts of the ingest were not computed here (then the
    /// refresh after the ingest computes them from the stored events).
    pub fn gave_up(&self) -> Option<&str> {
        self.gave_up.as_deref()
    }

    fn give_up(&mut self, why: String) {
        self.gave_up = Some(why);
        self.active = None;
    }
}

impl EventObserver for PartsObserver {
    fn begin<'a>(
        &'a mut self,
        lake: &'a Lake,
        snapshot: &'a Snapshot,
        ingest_id: &'a str,
    ) -> BoxFuture<'a, agentledger_lake::Result<()>> {
        Box::pin(async move {
            let Some(prices) = Prices::load(lake, snapshot).await? else {
                self.give_up("a stored price has more than 6 fractional digits".into());
                return Ok(());
            };
            let first = snapshot
                .run_coverage(crate::definitions())
                .events
                .is_empty();
            self.active = Some(Active {
                lake: lake.clone(),
                relative: format!("{RUN_PARTS}/part-{ingest_id}-0001.parquet"),
                handle: tokio::runtime::Handle::current(),
                prices,
                runs: FastMap::default(),
                written_out: FastSet::default(),
                held: Vec::new(),
                hasher: foldhash::fast::FixedState::with_seed(0x5eed),
                unique: first,
                first,
                batches: 0,
                key: Vec::with_capacity(64),
                out: Rows::new(),
                writer: None,
                rows: 0,
            });
            Ok(())
        })
    }

    fn observe(&mut self, batch: &RecordBatch) -> agentledger_lake::Result<()> {
        let Some(active) = self.active.as_mut() else {
            return Ok(());
        };
        let added = match Columns::of(batch) {
            Some(columns) => active.add(&columns),
            None => Err(format!(
                "an events batch does not have the stored columns ({} expected)",
                EVENTS_SCHEMA.fields().len()
            )),
        };
        if let Err(why) = added {
            self.give_up(why);
            return Ok(());
        }
        if active.runs.len() > self.max_runs {
            active.write_out_oldest_half()?;
        }
        Ok(())
    }

    fn hold(&mut self, tenant_id: &str, run_id: &str) {
        if let Some(active) = self.active.as_mut() {
            active.hold(tenant_id, run_id);
        }
    }

    fn release(&mut self) {
        if let Some(active) = self.active.as_mut() {
            for key in std::mem::take(&mut active.held) {
                if let Some(acc) = active.runs.get_mut(&key) {
                    acc.held = false;
                }
            }
        }
    }

    fn finish(&mut self) -> BoxFuture<'_, agentledger_lake::Result<Option<Observed>>> {
        Box::pin(async move {
            let Some(mut active) = self.active.take() else {
                return Ok(None);
            };
            let runs = std::mem::take(&mut active.runs);
            for (key, acc) in runs.into_iter().filter(|(_, a)| a.counts[EVENTS] > 0) {
                active.out.push(&key, &acc);
                if active.out.len() >= OUT_ROWS {
                    active.flush().await?;
                }
            }
            active.flush().await?;
            let Some(writer) = active.writer.take() else {
                return Ok(None);
            };
            let size = writer_finish(writer).await?;
            Ok(Some(Observed {
                files: vec![FileEntry {
                    table: RUN_PARTS.to_string(),
                    path: active.relative.clone(),
                    size,
                    rows: active.rows,
                    date: None,
                }],
                cover: RunPartsCover {
                    full: active.first,
                    covers: vec![],
                    own: true,
                    unique: active.unique,
                    definitions: Some(crate::definitions().to_string()),
                },
            }))
        })
    }
}

async fn writer_finish(mut writer: AsyncArrowWriter<BufWriter>) -> agentledger_lake::Result<u64> {
    writer.finish().await?;
    Ok(writer.bytes_written() as u64)
}

impl Active {
    fn set_key(&mut self, tenant_id: &str, run_id: &str) {
        run_key(&mut self.key, tenant_id, run_id);
    }

    /// Keeps a run in memory until released (see [`EventObserver::hold`]):
    /// an event held aside as a suspect and stored at the end of the ingest
    /// then joins the run's row instead of making a second one.
    fn hold(&mut self, tenant_id: &str, run_id: &str) {
        self.set_key(tenant_id, run_id);
        let seen = self.batches;
        let acc = match self.runs.get_mut(self.key.as_slice()) {
            Some(acc) => acc,
            None => self
                .runs
                .entry(self.key.clone().into_boxed_slice())
                .or_insert_with(|| Box::new(Acc::new(seen))),
        };
        if !acc.held {
            acc.held = true;
            self.held.push(self.key.clone().into_boxed_slice());
        }
    }

    /// Adds one batch of events; an error says why the parts are given up.
    fn add(&mut self, c: &Columns<'_>) -> Result<(), String> {
        self.batches += 1;
        let seen = self.batches;
        for i in 0..c.event_id.len() {
            let ts = c.ts.value(i);
            self.set_key(c.tenant_id.value(i), c.run_id.value(i));
            let acc = match self.runs.get_mut(self.key.as_slice()) {
                Some(acc) => acc,
                None => self
                    .runs
                    .entry(self.key.clone().into_boxed_slice())
                    .or_insert_with(|| Box::new(Acc::new(seen))),
            };
            if acc.counts[EVENTS] == 0
                && self.unique
                && self
                    .written_out
                    .contains(&std::hash::BuildHasher::hash_one(&self.hasher, &self.key))
            {
                // A run written out before: it will have two rows.
                self.unique = false;
            }
            acc.seen = seen;
            acc.first = acc.first.min(ts);
            acc.last = acc.last.max(ts);
            acc.counts[EVENTS] += 1;
            let event_id = c.event_id.value(i);
            match c.event_type.value(i) {
                "run_started" if earlier(ts, event_id, &acc.started) => {
                    acc.started = Some(Pick::new(
                        ts,
                        event_id,
                        opt(c.workflow, i),
                        opt(c.agent_version, i),
                    ));
                }
                "run_finished" => {
                    acc.run_finished_events += 1;
                    if later(ts, event_id, &acc.finished) {
                        acc.finished = Some(Pick::new(
                            ts,
                            event_id,
                            opt(c.outcome, i),
                            opt(c.cap_hit, i),
                        ));
                    }
                }
                "model_call" => {
                    let n = &mut acc.counts;
                    n[MODEL_CALLS] += 1;
                    let input = opt_i64(c.input_tokens, i);
                    let cached = opt_i64(c.cached_input_tokens, i);
                    let output = opt_i64(c.output_tokens, i);
                    let reasoning = opt_i64(c.reasoning_tokens, i);
                    for (slot, value) in [
                        (INPUT_TOKENS, input),
                        (CACHED_INPUT_TOKENS, cached),
                        (OUTPUT_TOKENS, output),
                        (REASONING_TOKENS, reasoning),
                    ] {
                        n[slot] = n[slot]
                            .checked_add(value.unwrap_or(0))
                            .ok_or_else(|| "a run's token count overflows".to_string())?;
                    }
                    if c.cache_hit.is_valid(i) && c.cache_hit.value(i) {
                        n[CACHE_HITS] += 1;
                    }
                    if opt(c.status, i) == Some("error") {
                        n[MODEL_ERRORS] += 1;
                    }
                    // model_calls.sql: the event's own cost, else the price
                    // in force on the call's UTC date, else 0 and unpriced.
                    let day = ts.div_euclid(MICROS_PER_DAY) as i32;
                    let cost = if c.cost_usd.is_valid(i) {
                        Some(c.cost_usd.value(i))
                    } else if let Some(p) = opt(c.model, i).and_then(|m| self.prices.find(m, day)) {
                        catalog_cost(p, input, cached, output).ok_or_else(|| {
                            format!("the cost of model call '{event_id}' overflows")
                        })?
                    } else {
                        n[UNPRICED_MODEL_CALLS] += 1;
                        None
                    };
                    if let Some(cost) = cost {
                        acc.model_cost = acc
                            .model_cost
                            .checked_add(cost)
                            .ok_or_else(|| "a run's model cost overflows".to_string())?;
                    }
                }
                "tool_call" => {
                    acc.counts[TOOL_CALLS] += 1;
                    if matches!(opt(c.status, i), Some("error" | "timeout")) {
                        acc.counts[TOOL_ERRORS] += 1;
                    }
                    if c.cost_usd.is_valid(i) {
                        acc.tool_cost = acc
                            .tool_cost
                            .checked_add(c.cost_usd.value(i))
                            .ok_or_else(|| "a run's tool cost overflows".to_string())?;
                    }
                }
                "policy_block" => acc.counts[POLICY_BLOCKS] += 1,
                "approval" => match opt(c.decision, i) {
                    Some("requested") => acc.counts[APPROVALS_REQUESTED] += 1,
                    Some("approved") => acc.counts[APPROVALS_APPROVED] += 1,
                    Some("rejected") => acc.counts[APPROVALS_REJECTED] += 1,
                    _ => {}
                },
                "human_override" => acc.counts[HUMAN_OVERRIDES] += 1,
                "feedback" if opt(c.kind, i) == Some("bad_run_report") => {
                    acc.counts[BAD_RUN_REPORTS] += 1;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Writes out the half of the runs seen least recently, but never a
    /// run of the batch just added (its next events are likely in the next
    /// batch).
    fn write_out_oldest_half(&mut self) -> agentledger_lake::Result<()> {
        let mut seen: Vec<u64> = self.runs.values().map(|a| a.seen).collect();
        let middle = seen.len() / 2;
        let (_, cut, _) = seen.select_nth_unstable(middle);
        let cut = (*cut).min(self.batches - 1);
        let old: Vec<(Box<[u8]>, Box<Acc>)> = self
            .runs
            .extract_if(|_, a| a.seen <= cut && !a.held)
            .collect();
        for (key, acc) in old.into_iter().filter(|(_, a)| a.counts[EVENTS] > 0) {
            self.written_out
                .insert(std::hash::BuildHasher::hash_one(&self.hasher, &*key));
            self.out.push(&key, &acc);
            if self.out.len() >= OUT_ROWS {
                let handle = self.handle.clone();
                handle.block_on(self.flush())?;
            }
        }
        Ok(())
    }

    /// Writes the gathered rows to the parts file (created on first use).
    async fn flush(&mut self) -> agentledger_lake::Result<()> {
        if self.out.len() == 0 {
            return Ok(());
        }
        let batch = self.out.finish()?;
        if self.writer.is_none() {
            self.writer = Some(open_file(&self.lake, &self.relative, &RUN_PARTS_SCHEMA)?);
        }
        self.rows += batch.num_rows() as u64;
        self.writer
            .as_mut()
            .expect("created above")
            .write(&batch)
            .await?;
        Ok(())
    }
}

/// `model_calls.sql`'s catalog price: `((input - cached) × input price +
/// cached × cached price + output × output price) / 1e6`, with prices at
/// scale 6, which is the integer of the scale-12 result. `Some(None)` when a
/// token count is missing (SQL's NULL, which SUM skips); `None` on overflow.
fn catalog_cost(
    p: &Price,
    input: Option<i64>,
    cached: Option<i64>,
    output: Option<i64>,
) -> Option<Option<i128>> {
    let (Some(input), Some(cached), Some(output)) = (input, cached, output) else {
        return Some(None);
    };
    let uncached = i128::from(input) - i128::from(cached);
    let cost = uncached
        .checked_mul(p.input)?
        .checked_add(i128::from(cached).checked_mul(p.cached)?)?
        .checked_add(i128::from(output).checked_mul(p.output)?)?;
    // DECIMAL(38, 12) holds at most 38 digits.
    (cost.unsigned_abs() < 10u128.pow(38)).then_some(Some(cost))
}

/// The map key of a run: tenant id, 0xff, run id (0xff never occurs in
/// UTF-8, so the pair is unambiguous; [`utf8`] splits it back).
fn run_key(key: &mut Vec<u8>, tenant_id: &str, run_id: &str) {
    key.clear();
    key.extend_from_slice(tenant_id.as_bytes());
    key.push(0xff);
    key.extend_from_slice(run_id.as_bytes());
}

fn utf8(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).expect("keys are made of UTF-8 text")
}

/// Builders of `run_parts` rows.
struct Rows {
    tenant_id: StringBuilder,
    run_id: StringBuilder,
    started_at: TimestampMicrosecondBuilder,
    started_event_id: StringBuilder,
    workflow: StringBuilder,
    agent_version: StringBuilder,
    finished_at: TimestampMicrosecondBuilder,
    finished_event_id: StringBuilder,
    outcome: StringBuilder,
    cap_hit: StringBuilder,
    run_finished_events: Int64Builder,
    model_cost: Decimal128Builder,
    tool_cost: Decimal128Builder,
    counts: Vec<Int64Builder>,
    first: TimestampMicrosecondBuilder,
    last: TimestampMicrosecondBuilder,
}

impl Rows {
    fn new() -> Self {
        let ts = || TimestampMicrosecondBuilder::new().with_timezone("UTC");
        let money = || {
            Decimal128Builder::new()
                .with_precision_and_scale(MONEY_PRECISION, MONEY_SCALE)
                .expect("valid money type")
        };
        Self {
            tenant_id: StringBuilder::new(),
            run_id: StringBuilder::new(),
            started_at: ts(),
            started_event_id: StringBuilder::new(),
            workflow: StringBuilder::new(),
            agent_version: StringBuilder::new(),
            finished_at: ts(),
            finished_event_id: StringBuilder::new(),
            outcome: StringBuilder::new(),
            cap_hit: StringBuilder::new(),
            run_finished_events: Int64Builder::new(),
            model_cost: money(),
            tool_cost: money(),
            counts: (0..COUNTERS).map(|_| Int64Builder::new()).collect(),
            first: ts(),
            last: ts(),
        }
    }

    fn len(&self) -> usize {
        self.tenant_id.len()
    }

    fn push(&mut self, key: &[u8], acc: &Acc) {
        let split = key
            .iter()
            .position(|b| *b == 0xff)
            .expect("keys are tenant 0xff run");
        self.tenant_id.append_value(utf8(&key[..split]));
        self.run_id.append_value(utf8(&key[split + 1..]));
        let pick = |p: &Option<Pick>,
                    at: &mut TimestampMicrosecondBuilder,
                    id: &mut StringBuilder,
                    a: &mut StringBuilder,
                    b: &mut StringBuilder| {
            at.append_option(p.as_ref().map(|p| p.ts));
            id.append_option(p.as_ref().map(|p| &*p.event_id));
            a.append_option(p.as_ref().and_then(|p| p.a.as_deref()));
            b.append_option(p.as_ref().and_then(|p| p.b.as_deref()));
        };
        pick(
            &acc.started,
            &mut self.started_at,
            &mut self.started_event_id,
            &mut self.workflow,
            &mut self.agent_version,
        );
        pick(
            &acc.finished,
            &mut self.finished_at,
            &mut self.finished_event_id,
            &mut self.outcome,
            &mut self.cap_hit,
        );
        self.run_finished_events
            .append_value(acc.run_finished_events);
        self.model_cost.append_value(acc.model_cost);
        self.tool_cost.append_value(acc.tool_cost);
        for (builder, n) in self.counts.iter_mut().zip(acc.counts) {
            builder.append_value(n);
        }
        self.first.append_value(acc.first);
        self.last.append_value(acc.last);
    }

    fn finish(&mut self) -> agentledger_lake::Result<RecordBatch> {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.tenant_id.finish()),
            Arc::new(self.run_id.finish()),
            Arc::new(self.started_at.finish()),
            Arc::new(self.started_event_id.finish()),
            Arc::new(self.workflow.finish()),
            Arc::new(self.agent_version.finish()),
            Arc::new(self.finished_at.finish()),
            Arc::new(self.finished_event_id.finish()),
            Arc::new(self.outcome.finish()),
            Arc::new(self.cap_hit.finish()),
            Arc::new(self.run_finished_events.finish()),
            Arc::new(self.model_cost.finish()),
            Arc::new(self.tool_cost.finish()),
        ];
        columns.extend(
            self.counts
                .iter_mut()
                .map(|b| Arc::new(b.finish()) as ArrayRef),
        );
        columns.push(Arc::new(self.first.finish()));
        columns.push(Arc::new(self.last.finish()));
        Ok(RecordBatch::try_new(
            Arc::clone(&RUN_PARTS_SCHEMA),
            columns,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price(from: i32, input: i128) -> Price {
        Price {
            from,
            input,
            cached: input / 2,
            output: input * 4,
        }
    }

    #[test]
    fn the_price_in_force_is_the_latest_on_or_before_the_day() {
        let mut prices = Prices::default();
        prices
            .by_model
            .insert("m".into(), vec![price(10, 1), price(20, 2)]);
        assert!(prices.find("m", 9).is_none());
        assert_eq!(prices.find("m", 10).map(|p| p.input), Some(1));
        assert_eq!(prices.find("m", 19).map(|p| p.input), Some(1));
        assert_eq!(prices.find("m", 20).map(|p| p.input), Some(2));
        assert_eq!(prices.find("m", 10_000).map(|p| p.input), Some(2));
        assert!(prices.find("other", 20).is_none());
    }

    #[test]
    fn catalog_cost_is_exact_and_null_without_tokens() {
        // $3 / Mtok input, $1.5 cached, $15 output, at scale 6.
        let p = Price {
            from: 0,
            input: 3_000_000,
            cached: 1_500_000,
            output: 15_000_000,
        };
        // (1000 - 200) × 3 + 200 × 1.5 + 500 × 15 = 10,200 micro-dollars
        // per Mtok → $0.0102, i.e. 10_200_000_000 at scale 12.
        assert_eq!(
            catalog_cost(&p, Some(1000), Some(200), Some(500)),
            Some(Some(10_200_000_000))
        );
        assert_eq!(catalog_cost(&p, None, Some(0), Some(1)), Some(None));
        let huge = Price {
            input: i128::MAX / 2,
            ..p
        };
        assert_eq!(catalog_cost(&huge, Some(i64::MAX), Some(0), Some(0)), None);
    }
}

/// The columns of a `run_parts` batch.
struct PartColumns<'a> {
    tenant_id: &'a StringArray,
    run_id: &'a StringArray,
    started_at: &'a TimestampMicrosecondArray,
    started_event_id: &'a StringArray,
    workflow: &'a StringArray,
    agent_version: &'a StringArray,
    finished_at: &'a TimestampMicrosecondArray,
    finished_event_id: &'a StringArray,
    outcome: &'a StringArray,
    cap_hit: &'a StringArray,
    run_finished_events: &'a Int64Array,
    model_cost: &'a Decimal128Array,
    tool_cost: &'a Decimal128Array,
    counts: Vec<&'a Int64Array>,
    first: &'a TimestampMicrosecondArray,
    last: &'a TimestampMicrosecondArray,
}

impl<'a> PartColumns<'a> {
    /// By position, in [`RUN_PARTS_SCHEMA`] order.
    fn of(batch: &'a RecordBatch) -> Option<Self> {
        if batch.num_columns() != RUN_PARTS_SCHEMA.fields().len() {
            return None;
        }
        let c = batch.columns();
        let text = |i: usize| c[i].as_string_opt::<i32>();
        let ts = |i: usize| c[i].as_primitive_opt::<TimestampMicrosecondType>();
        let int = |i: usize| c[i].as_primitive_opt::<Int64Type>();
        let money = |i: usize| c[i].as_primitive_opt::<Decimal128Type>();
        Some(Self {
            tenant_id: text(0)?,
            run_id: text(1)?,
            started_at: ts(2)?,
            started_event_id: text(3)?,
            workflow: text(4)?,
            agent_version: text(5)?,
            finished_at: ts(6)?,
            finished_event_id: text(7)?,
            outcome: text(8)?,
            cap_hit: text(9)?,
            run_finished_events: int(10)?,
            model_cost: money(11)?,
            tool_cost: money(12)?,
            counts: (13..13 + COUNTERS).map(int).collect::<Option<Vec<_>>>()?,
            first: ts(13 + COUNTERS)?,
            last: ts(14 + COUNTERS)?,
        })
    }
}

/// A part's start or finish at row `i`, as (ts, event id), when it has one.
fn pick_at<'a>(
    ts: &TimestampMicrosecondArray,
    id: &'a StringArray,
    i: usize,
) -> Option<(i64, &'a str)> {
    (ts.is_valid(i) && id.is_valid(i)).then(|| (ts.value(i), id.value(i)))
}

/// Merges rows of `run_parts` into one row per run, as `merge_parts.sql`
/// defines it (the earliest start and the latest finish by (ts, event id),
/// sums, the first and last event times), in bounded buckets of runs.
#[derive(Default)]
pub(crate) struct PartsMerger {
    runs: FastMap<Box<[u8]>, Box<Acc>>,
    key: Vec<u8>,
}

impl PartsMerger {
    /// Adds the rows of a parts batch whose run falls in `bucket` of
    /// `buckets`; an error says why the merge is given up.
    pub(crate) fn add(
        &mut self,
        batch: &RecordBatch,
        bucket: u64,
        buckets: u64,
    ) -> Result<(), String> {
        let c = PartColumns::of(batch).ok_or("a run_parts file has other columns")?;
        let overflow = || "a merged sum overflows".to_string();
        for i in 0..batch.num_rows() {
            let (tenant, run) = (c.tenant_id.value(i), c.run_id.value(i));
            if buckets > 1 && crate::udf::run_bucket(tenant, run, buckets) != bucket {
                continue;
            }
            run_key(&mut self.key, tenant, run);
            let acc = match self.runs.get_mut(self.key.as_slice()) {
                Some(acc) => acc,
                None => self
                    .runs
                    .entry(self.key.clone().into_boxed_slice())
                    .or_insert_with(|| Box::new(Acc::new(0))),
            };
            // The text columns are copied only when a start or finish wins.
            if let Some((ts, id)) = pick_at(c.started_at, c.started_event_id, i)
                && earlier(ts, id, &acc.started)
            {
                acc.started = Some(Pick::new(
                    ts,
                    id,
                    opt(c.workflow, i),
                    opt(c.agent_version, i),
                ));
            }
            if let Some((ts, id)) = pick_at(c.finished_at, c.finished_event_id, i)
                && later(ts, id, &acc.finished)
            {
                acc.finished = Some(Pick::new(ts, id, opt(c.outcome, i), opt(c.cap_hit, i)));
            }
            let int = |a: &Int64Array| if a.is_valid(i) { a.value(i) } else { 0 };
            let money = |a: &Decimal128Array| if a.is_valid(i) { a.value(i) } else { 0 };
            acc.run_finished_events = acc
                .run_finished_events
                .checked_add(int(c.run_finished_events))
                .ok_or_else(overflow)?;
            acc.model_cost = acc
                .model_cost
                .checked_add(money(c.model_cost))
                .ok_or_else(overflow)?;
            acc.tool_cost = acc
                .tool_cost
                .checked_add(money(c.tool_cost))
                .ok_or_else(overflow)?;
            for (n, column) in acc.counts.iter_mut().zip(&c.counts) {
                *n = n.checked_add(int(column)).ok_or_else(overflow)?;
            }
            if c.first.is_valid(i) {
                acc.first = acc.first.min(c.first.value(i));
            }
            if c.last.is_valid(i) {
                acc.last = acc.last.max(c.last.value(i));
            }
        }
        Ok(())
    }

    /// The merged rows so far, in batches, leaving the merger empty.
    pub(crate) fn drain(&mut self) -> agentledger_lake::Result<Vec<RecordBatch>> {
        let mut rows = Rows::new();
        let mut out = Vec::new();
        for (key, acc) in self.runs.drain() {
            rows.push(&key, &acc);
            if rows.len() >= OUT_ROWS {
                out.push(rows.finish()?);
            }
        }
        if rows.len() > 0 {
            out.push(rows.finish()?);
        }
        Ok(out)
    }
}
