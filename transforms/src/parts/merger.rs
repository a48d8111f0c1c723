//! [`PartsMerger`]: rows of `run_parts` merged into one row per run, as
//! `merge_parts.sql` defines it.

use agentledger_lake::schema::RUN_PARTS_SCHEMA;
use arrow::array::{
    Array, AsArray, Decimal128Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{Decimal128Type, Int64Type, TimestampMicrosecondType};

use super::part::*;
use super::{FastMap, OUT_ROWS};

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
            if let Some((ts, id)) = pick_at(c.started_at, c.started_event_id, i) {
                acc.offer_start(ts, id, opt(c.workflow, i), opt(c.agent_version, i));
            }
            if let Some((ts, id)) = pick_at(c.finished_at, c.finished_event_id, i) {
                acc.offer_finish(ts, id, opt(c.outcome, i), opt(c.cap_hit, i));
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
