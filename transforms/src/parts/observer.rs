//! [`PartsObserver`]: the run parts of an ingest's events, computed from
//! the batches the ingest stores, while they are in memory.

use agentledger_lake::Lake;
use agentledger_lake::log::{FileEntry, RunPartsCover, Snapshot};
use agentledger_lake::observe::{EventObserver, Observed};
use agentledger_lake::schema::{EVENTS_SCHEMA, RUN_PARTS, RUN_PARTS_SCHEMA};
use agentledger_lake::writer::{Worker, open_file};
use arrow::array::{
    Array, AsArray, BooleanArray, Decimal128Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{Decimal128Type, Int64Type, TimestampMicrosecondType};
use futures::future::BoxFuture;
use object_store::buffered::BufWriter;
use parquet::arrow::AsyncArrowWriter;

use super::part::*;
use super::prices::{Prices, catalog_cost};
use super::{FastMap, FastSet, MICROS_PER_DAY, OBSERVED_RUNS, OUT_ROWS};

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

/// What a [`PartsObserver`] holds while an ingest runs.
struct Active {
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
    /// Rows of runs written out, gathered for the parts file.
    out: Rows,
    /// Encodes the gathered rows into the parts file on a thread of its
    /// own: on the ingest's thread, encoding each half of the runs written
    /// out kept the decoding threads waiting (BENCHMARKS.md).
    file: Worker<RecordBatch, Option<FileEntry>>,
}

/// The parts file of an ingest, written on the observer's [`Worker`]
/// thread.
struct PartsFile {
    lake: Lake,
    relative: String,
    handle: tokio::runtime::Handle,
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
            let file = PartsFile {
                lake: lake.clone(),
                relative: format!("{RUN_PARTS}/part-{ingest_id}-0001.parquet"),
                handle: tokio::runtime::Handle::current(),
                writer: None,
                rows: 0,
            };
            self.active = Some(Active {
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
                file: Worker::spawn(
                    "run-parts-writer".into(),
                    1,
                    file,
                    PartsFile::write,
                    PartsFile::finish,
                ),
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
            let Some(active) = self.active.take() else {
                return Ok(None);
            };
            let (first, unique) = (active.first, active.unique);
            // Off the runtime's threads: handing rows over waits for the
            // parts file's thread, which runs its writes on this runtime.
            let file = tokio::task::spawn_blocking(move || active.finish_file())
                .await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
            let Some(file) = file else {
                return Ok(None);
            };
            Ok(Some(Observed {
                files: vec![file],
                cover: RunPartsCover {
                    full: first,
                    covers: vec![],
                    own: true,
                    unique,
                    definitions: Some(crate::definitions().to_string()),
                },
            }))
        })
    }
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
                "run_started" => {
                    acc.offer_start(ts, event_id, opt(c.workflow, i), opt(c.agent_version, i));
                }
                "run_finished" => {
                    acc.run_finished_events += 1;
                    acc.offer_finish(ts, event_id, opt(c.outcome, i), opt(c.cap_hit, i));
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
        for (key, _) in old.iter().filter(|(_, a)| a.counts[EVENTS] > 0) {
            self.written_out
                .insert(std::hash::BuildHasher::hash_one(&self.hasher, &**key));
        }
        self.push(old.into_iter())
    }

    /// Writes out every run still held and closes the parts file: its
    /// entry, or `None` when no run had events.
    fn finish_file(mut self) -> agentledger_lake::Result<Option<FileEntry>> {
        let runs = std::mem::take(&mut self.runs);
        self.push(runs.into_iter())?;
        let last = self.out.finish()?;
        self.file.send(last)?;
        self.file.finish()
    }

    /// Gathers the parts of the runs that had events, handing every
    /// [`OUT_ROWS`] to the parts file's thread.
    fn push(
        &mut self,
        runs: impl Iterator<Item = (Box<[u8]>, Box<Acc>)>,
    ) -> agentledger_lake::Result<()> {
        for (key, acc) in runs.filter(|(_, a)| a.counts[EVENTS] > 0) {
            self.out.push(&key, &acc);
            if self.out.len() >= OUT_ROWS {
                let batch = self.out.finish()?;
                self.file.send(batch)?;
            }
        }
        Ok(())
    }
}

impl PartsFile {
    /// Writes `batch` to the file (created on first use).
    fn write(&mut self, batch: RecordBatch) -> agentledger_lake::Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let writer = match &mut self.writer {
            Some(writer) => writer,
            None => self
                .writer
                .insert(open_file(&self.lake, &self.relative, &RUN_PARTS_SCHEMA)?),
        };
        self.handle.block_on(writer.write(&batch))?;
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Closes the file: its entry, or `None` when no run had events.
    fn finish(mut self) -> agentledger_lake::Result<Option<FileEntry>> {
        let Some(mut writer) = self.writer.take() else {
            return Ok(None);
        };
        self.handle.block_on(writer.finish())?;
        Ok(Some(FileEntry {
            table: RUN_PARTS.to_string(),
            path: self.relative,
            size: writer.bytes_written() as u64,
            rows: self.rows,
            date: None,
        }))
    }
}
