//! One run's part as it is accumulated (the earliest start, the latest
//! finish, the sums) and the builders that turn parts into `run_parts` rows.
//! Both the observer and the merger accumulate into [`Acc`].

use std::sync::Arc;

use agentledger_lake::schema::{MONEY_PRECISION, MONEY_SCALE, RUN_PARTS_SCHEMA};
use arrow::array::{
    Array, ArrayBuilder, ArrayRef, Decimal128Builder, Int64Array, Int64Builder, RecordBatch,
    StringArray, StringBuilder, TimestampMicrosecondBuilder,
};

/// The earliest `run_started` of a run: its time, event id, workflow and
/// agent version.
#[derive(Debug, Clone)]
pub(super) struct Start {
    pub(super) ts: i64,
    pub(super) event_id: Box<str>,
    pub(super) workflow: Option<Box<str>>,
    pub(super) agent_version: Option<Box<str>>,
}

/// The latest `run_finished` of a run: its time, event id, outcome and cap
/// hit.
#[derive(Debug, Clone)]
pub(super) struct Finish {
    pub(super) ts: i64,
    pub(super) event_id: Box<str>,
    pub(super) outcome: Option<Box<str>>,
    pub(super) cap_hit: Option<Box<str>>,
}

impl Start {
    fn new(ts: i64, event_id: &str, workflow: Option<&str>, agent_version: Option<&str>) -> Self {
        Self {
            ts,
            event_id: event_id.into(),
            workflow: workflow.map(Into::into),
            agent_version: agent_version.map(Into::into),
        }
    }

    /// Whether a start at (`ts`, `event_id`) is earlier than `current`
    /// (ties on time go to the smaller event id, compared byte-wise).
    fn earlier(ts: i64, event_id: &str, current: &Option<Start>) -> bool {
        current
            .as_ref()
            .is_none_or(|p| (ts, event_id) < (p.ts, &*p.event_id))
    }
}

impl Finish {
    pub(super) fn new(
        ts: i64,
        event_id: &str,
        outcome: Option<&str>,
        cap_hit: Option<&str>,
    ) -> Self {
        Self {
            ts,
            event_id: event_id.into(),
            outcome: outcome.map(Into::into),
            cap_hit: cap_hit.map(Into::into),
        }
    }

    /// Whether a finish at (`ts`, `event_id`) is later than `current` (ties
    /// on time go to the greater event id).
    fn later(ts: i64, event_id: &str, current: &Option<Finish>) -> bool {
        current
            .as_ref()
            .is_none_or(|p| (ts, event_id) > (p.ts, &*p.event_id))
    }
}

// Counters, in the order of RUN_PARTS_SCHEMA from `model_calls` on.
pub(super) const MODEL_CALLS: usize = 0;
pub(super) const INPUT_TOKENS: usize = 1;
pub(super) const CACHED_INPUT_TOKENS: usize = 2;
pub(super) const OUTPUT_TOKENS: usize = 3;
pub(super) const REASONING_TOKENS: usize = 4;
pub(super) const CACHE_HITS: usize = 5;
pub(super) const MODEL_ERRORS: usize = 6;
pub(super) const UNPRICED_MODEL_CALLS: usize = 7;
pub(super) const TOOL_CALLS: usize = 8;
pub(super) const TOOL_ERRORS: usize = 9;
pub(super) const POLICY_BLOCKS: usize = 10;
pub(super) const APPROVALS_REQUESTED: usize = 11;
pub(super) const APPROVALS_APPROVED: usize = 12;
pub(super) const APPROVALS_REJECTED: usize = 13;
pub(super) const HUMAN_OVERRIDES: usize = 14;
pub(super) const BAD_RUN_REPORTS: usize = 15;
pub(super) const EVENTS: usize = 16;
pub(super) const COUNTERS: usize = 17;

/// The partial sums of one run.
#[derive(Debug, Clone)]
pub(super) struct Acc {
    /// Kept in memory until released: an event of the run may come later.
    pub(super) held: bool,
    /// When the run was last seen (batches observed so far).
    pub(super) seen: u64,
    pub(super) started: Option<Start>,
    pub(super) finished: Option<Finish>,
    pub(super) run_finished_events: i64,
    pub(super) model_cost: i128,
    pub(super) tool_cost: i128,
    pub(super) counts: [i64; COUNTERS],
    pub(super) first: i64,
    pub(super) last: i64,
}

impl Acc {
    /// No events yet (a run held for a suspect starts so).
    pub(super) fn new(seen: u64) -> Self {
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

    /// Takes a `run_started` (or a part's start) if it is earlier than the
    /// run's start so far: the one rule the observer and the merger share.
    pub(super) fn offer_start(
        &mut self,
        ts: i64,
        event_id: &str,
        workflow: Option<&str>,
        agent_version: Option<&str>,
    ) {
        if Start::earlier(ts, event_id, &self.started) {
            self.started = Some(Start::new(ts, event_id, workflow, agent_version));
        }
    }

    /// Takes a `run_finished` (or a part's finish) if it is later than the
    /// run's finish so far.
    pub(super) fn offer_finish(
        &mut self,
        ts: i64,
        event_id: &str,
        outcome: Option<&str>,
        cap_hit: Option<&str>,
    ) {
        if Finish::later(ts, event_id, &self.finished) {
            self.finished = Some(Finish::new(ts, event_id, outcome, cap_hit));
        }
    }
}

/// The map key of a run: tenant id, 0xff, run id (0xff never occurs in
/// UTF-8, so the pair is unambiguous; [`utf8`] splits it back).
pub(super) fn run_key(key: &mut Vec<u8>, tenant_id: &str, run_id: &str) {
    key.clear();
    key.extend_from_slice(tenant_id.as_bytes());
    key.push(0xff);
    key.extend_from_slice(run_id.as_bytes());
}

fn utf8(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).expect("keys are made of UTF-8 text")
}

/// Builders of `run_parts` rows.
pub(super) struct Rows {
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
    pub(super) fn new() -> Self {
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

    pub(super) fn len(&self) -> usize {
        self.tenant_id.len()
    }

    pub(super) fn push(&mut self, key: &[u8], acc: &Acc) {
        let split = key
            .iter()
            .position(|b| *b == 0xff)
            .expect("keys are tenant 0xff run");
        self.tenant_id.append_value(utf8(&key[..split]));
        self.run_id.append_value(utf8(&key[split + 1..]));
        let start = acc.started.as_ref();
        self.started_at.append_option(start.map(|s| s.ts));
        self.started_event_id
            .append_option(start.map(|s| &*s.event_id));
        self.workflow
            .append_option(start.and_then(|s| s.workflow.as_deref()));
        self.agent_version
            .append_option(start.and_then(|s| s.agent_version.as_deref()));
        let finish = acc.finished.as_ref();
        self.finished_at.append_option(finish.map(|f| f.ts));
        self.finished_event_id
            .append_option(finish.map(|f| &*f.event_id));
        self.outcome
            .append_option(finish.and_then(|f| f.outcome.as_deref()));
        self.cap_hit
            .append_option(finish.and_then(|f| f.cap_hit.as_deref()));
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

    pub(super) fn finish(&mut self) -> agentledger_lake::Result<RecordBatch> {
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

pub(super) fn opt(a: &StringArray, i: usize) -> Option<&str> {
    a.is_valid(i).then(|| a.value(i))
}

pub(super) fn opt_i64(a: &Int64Array, i: usize) -> Option<i64> {
    a.is_valid(i).then(|| a.value(i))
}
