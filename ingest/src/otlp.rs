//! SPEC section 7: OpenTelemetry GenAI spans as the events of section 1.
//!
//! One OTLP/JSON line (a `TracesData` or `ExportTraceServiceRequest` object,
//! as the OpenTelemetry file exporter and the Collector's `file` exporter
//! write them) becomes the events its spans map to. Each derived event is a
//! section-1 JSON object that the ingest then validates, deduplicates and
//! stores (or quarantines) exactly like an NDJSON line, so every promise of
//! section 1 holds for spans too. The OTLP types are `opentelemetry-proto`'s;
//! the receiver decodes protobuf requests into the same types.
//!
//! The mapping decides each span from the span itself, its resource and the
//! other spans of the same line, never from what an earlier line held: the
//! same spans give the same events however an exporter batched them (with
//! one exception, documented in docs/otel.md: the outermost-span rule).

use std::collections::HashMap;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{Span, TracesData, status::StatusCode};
use serde_json::{Map, Number, Value};

/// What the mapping may keep.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OtlpOptions {
    /// Keep message contents (prompts, completions, system instructions,
    /// tool arguments and results) in `attributes`. Off by default
    /// (SPEC section 7).
    pub keep_messages: bool,
}

/// One event derived from a span: a section-1 JSON object, and the span it
/// came from (named in a quarantine message in place of a line number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DerivedEvent {
    /// The event as one line of JSON.
    pub json: Vec<u8>,
    /// The span's trace id, lowercase hex.
    pub trace_id: String,
    /// The span's id, lowercase hex.
    pub span_id: String,
}

/// What one OTLP object gave.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mapped {
    /// Spans read.
    pub spans: u64,
    /// Spans that gave no event (not GenAI, or a GenAI operation that maps
    /// to nothing).
    pub skipped: u64,
    /// The events, in span order (a span's own event or events first, then
    /// its span events in their order).
    pub events: Vec<DerivedEvent>,
}

/// `gen_ai.operation.name` values that are model calls.
const MODEL_OPERATIONS: &[&str] = &["chat", "text_completion", "generate_content", "embeddings"];
/// `gen_ai.operation.name` values whose outermost span is a run.
const RUN_OPERATIONS: &[&str] = &["invoke_agent", "invoke_workflow"];
/// Span event names that are events of section 1, and their event types.
const SPAN_EVENTS: &[(&str, &str)] = &[
    ("agentledger.policy_block", "policy_block"),
    ("agentledger.approval", "approval"),
    ("agentledger.human_override", "human_override"),
    ("agentledger.feedback", "feedback"),
    ("agentledger.run_finished", "run_finished"),
];

/// Attributes that hold message contents, by exact name...
const MESSAGE_ATTRIBUTES: &[&str] = &[
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.tool.call.arguments",
    "gen_ai.tool.call.result",
    "gen_ai.prompt",
    "gen_ai.completion",
    "input.value",
    "output.value",
    "traceloop.entity.input",
    "traceloop.entity.output",
];
/// ... and by prefix (OpenLLMetry's `gen_ai.prompt.0.content`,
/// OpenInference's `llm.input_messages.0.message.content`).
const MESSAGE_PREFIXES: &[&str] = &[
    "gen_ai.prompt.",
    "gen_ai.completion.",
    "llm.input_messages",
    "llm.output_messages",
    "llm.prompts",
    "llm.prompt_template",
];

/// Whether an attribute holds message contents.
pub fn is_message_attribute(key: &str) -> bool {
    MESSAGE_ATTRIBUTES.contains(&key) || MESSAGE_PREFIXES.iter().any(|p| key.starts_with(p))
}

/// Reads one OTLP/JSON line. `ExportTraceServiceRequest` and `TracesData`
/// have the same JSON form (`{"resourceSpans": [...]}`).
pub fn parse_line(line: &[u8]) -> Result<TracesData, String> {
    let text = std::str::from_utf8(line).map_err(|e| {
        format!(
            "line is not valid UTF-8 (invalid byte at offset {})",
            e.valid_up_to()
        )
    })?;
    serde_json::from_str::<TracesData>(text)
        .map_err(|e| format!("line is not an OTLP/JSON TracesData object: {e}"))
}

/// Whether the start of a (decompressed) file is OTLP/JSON: its first JSON
/// object's first member is `resourceSpans`.
pub fn looks_like_otlp(start: &[u8]) -> bool {
    let mut rest = start.trim_ascii_start();
    let Some(after) = rest.strip_prefix(b"{") else {
        return false;
    };
    rest = after.trim_ascii_start();
    rest.starts_with(b"\"resourceSpans\"")
}

/// Lowercase hex of an id.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

/// An attribute value as JSON: strings, booleans, integers and arrays as
/// themselves, a key-value list as an object, a double as the shortest
/// decimal that reads back to it (so `0.0123` stays `0.0123`), bytes as
/// lowercase hex, an empty value as null.
pub fn to_json(value: &AnyValue) -> Value {
    match &value.value {
        None | Some(any_value::Value::StringValueStrindex(_)) => Value::Null,
        Some(any_value::Value::StringValue(s)) => Value::String(s.clone()),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(*b),
        Some(any_value::Value::IntValue(i)) => Value::Number((*i).into()),
        Some(any_value::Value::DoubleValue(d)) => match Number::from_f64(*d) {
            Some(n) => Value::Number(n),
            // Not a number a JSON document can hold: kept as its text, so
            // a field that needs a number rejects it with that text.
            None => Value::String(d.to_string()),
        },
        Some(any_value::Value::ArrayValue(a)) => {
            Value::Array(a.values.iter().map(to_json).collect())
        }
        Some(any_value::Value::KvlistValue(kv)) => Value::Object(
            kv.values
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        kv.value.as_ref().map_or(Value::Null, to_json),
                    )
                })
                .collect(),
        ),
        Some(any_value::Value::BytesValue(b)) => Value::String(hex(b)),
    }
}

/// The first attribute named `key`.
fn find<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .filter(|v| v.value.is_some())
}

/// A string attribute's text.
fn text(value: &AnyValue) -> Option<&str> {
    match &value.value {
        Some(any_value::Value::StringValue(s)) => Some(s),
        _ => None,
    }
}

/// Nanoseconds since the epoch as RFC 3339 UTC with microseconds (digits
/// past the microsecond dropped); none for 0, OTLP's "not set".
fn timestamp(nanos: u64) -> Option<Value> {
    if nanos == 0 {
        return None;
    }
    let micros = i64::try_from(nanos / 1_000).ok()?;
    let at = chrono::DateTime::<chrono::Utc>::from_timestamp_micros(micros)?;
    Some(Value::String(
        at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    ))
}

/// Whole milliseconds from start to end, rounded down (negative when the
/// span ends before it starts, which validation rejects); none when either
/// time is not set.
fn latency_ms(span: &Span) -> Option<Value> {
    if span.start_time_unix_nano == 0 || span.end_time_unix_nano == 0 {
        return None;
    }
    let nanos = i128::from(span.end_time_unix_nano) - i128::from(span.start_time_unix_nano);
    let ms = i64::try_from(nanos.div_euclid(1_000_000)).ok()?;
    Some(Value::Number(ms.into()))
}

/// Whether an `error.type` names a timeout (`TimeoutError`, `timeout`,
/// `ReadTimeout`, `DEADLINE_EXCEEDED`, `timed_out` ...).
fn is_timeout(error_type: &str) -> bool {
    let lower = error_type.to_ascii_lowercase();
    lower.contains("timeout")
        || lower.contains("timed_out")
        || lower.contains("timedout")
        || lower.contains("timed out")
        || lower.contains("deadline_exceeded")
}

fn is_error(span: &Span) -> bool {
    span.status
        .as_ref()
        .is_some_and(|s| s.code == StatusCode::Error as i32)
}

/// One span being mapped: its attributes, its resource's, and the
/// attributes that gave a field (left out of the stored `attributes`).
struct SpanView<'a> {
    span: &'a Span,
    resource: &'a [KeyValue],
    used: Vec<&'a str>,
}

impl<'a> SpanView<'a> {
    /// The first of `keys` on the span, else on its resource; a span
    /// attribute that answers is marked used.
    fn get(&mut self, keys: &[&'a str]) -> Option<Value> {
        for key in keys {
            if let Some(v) = find(&self.span.attributes, key) {
                self.used.push(key);
                return Some(to_json(v));
            }
        }
        keys.iter()
            .find_map(|key| find(self.resource, key))
            .map(to_json)
    }

    fn text(&self, key: &str) -> Option<&'a str> {
        find(&self.span.attributes, key)
            .or_else(|| find(self.resource, key))
            .and_then(text)
    }

    /// The span's attributes that gave no field, message contents left out
    /// unless kept.
    fn rest(&self, options: OtlpOptions) -> Map<String, Value> {
        let mut out = Map::new();
        for kv in &self.span.attributes {
            if self.used.contains(&kv.key.as_str())
                || (!options.keep_messages && is_message_attribute(&kv.key))
            {
                continue;
            }
            out.insert(
                kv.key.clone(),
                kv.value.as_ref().map_or(Value::Null, to_json),
            );
        }
        out
    }
}

/// The fields every event of a span has.
struct Common {
    trace_id: String,
    span_id: String,
    tenant_id: Option<Value>,
    run_id: Value,
}

impl Common {
    fn event(
        &self,
        suffix: &str,
        event_type: &str,
        ts: Option<Value>,
        fields: Vec<(&str, Option<Value>)>,
        attributes: Map<String, Value>,
    ) -> DerivedEvent {
        let mut m = Map::new();
        m.insert(
            "event_id".into(),
            Value::String(format!("otel-{}-{}{suffix}", self.trace_id, self.span_id)),
        );
        m.insert("event_type".into(), Value::String(event_type.into()));
        if let Some(ts) = ts {
            m.insert("ts".into(), ts);
        }
        if let Some(t) = &self.tenant_id {
            m.insert("tenant_id".into(), t.clone());
        }
        m.insert("run_id".into(), self.run_id.clone());
        for (name, value) in fields {
            if let Some(v) = value {
                m.insert(name.into(), v);
            }
        }
        if !attributes.is_empty() {
            m.insert("attributes".into(), Value::Object(attributes));
        }
        DerivedEvent {
            json: serde_json::to_vec(&Value::Object(m)).expect("a JSON value serialises"),
            trace_id: self.trace_id.clone(),
            span_id: self.span_id.clone(),
        }
    }
}

/// A span's (trace id, span id).
type SpanKey<'a> = (&'a [u8], &'a [u8]);

/// Maps the spans of one OTLP object to events (SPEC section 7).
pub fn map_traces(data: &TracesData, options: OtlpOptions) -> Mapped {
    // Every span of the object by (trace, span id): its operation and its
    // parent, to tell the outermost run span of a trace.
    let mut tree: HashMap<SpanKey<'_>, (Option<&str>, &[u8])> = HashMap::new();
    for rs in &data.resource_spans {
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                let op = find(&span.attributes, "gen_ai.operation.name").and_then(text);
                tree.insert((&span.trace_id, &span.span_id), (op, &span.parent_span_id));
            }
        }
    }
    let encloses_a_run = |span: &Span| {
        let mut parent: &[u8] = &span.parent_span_id;
        // At most one step per span: ids that form a cycle end the walk.
        for _ in 0..tree.len() {
            if parent.is_empty() {
                return false;
            }
            match tree.get(&(span.trace_id.as_slice(), parent)) {
                None => return false,
                Some((op, grand)) => {
                    if op.is_some_and(|op| RUN_OPERATIONS.contains(&op)) {
                        return true;
                    }
                    parent = grand;
                }
            }
        }
        false
    };

    let mut out = Mapped::default();
    for rs in &data.resource_spans {
        let resource = rs
            .resource
            .as_ref()
            .map_or(&[][..], |r| r.attributes.as_slice());
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                out.spans += 1;
                let before = out.events.len();
                map_span(span, resource, options, &encloses_a_run, &mut out.events);
                if out.events.len() == before {
                    out.skipped += 1;
                }
            }
        }
    }
    out
}

fn map_span(
    span: &Span,
    resource: &[KeyValue],
    options: OtlpOptions,
    encloses_a_run: &dyn Fn(&Span) -> bool,
    out: &mut Vec<DerivedEvent>,
) {
    let mut v = SpanView {
        span,
        resource,
        used: Vec::new(),
    };
    let trace_id = hex(&span.trace_id);
    let common = Common {
        span_id: hex(&span.span_id),
        tenant_id: v.get(&["agentledger.tenant_id", "tenant.id"]),
        run_id: v
            .get(&["agentledger.run_id"])
            .unwrap_or_else(|| Value::String(trace_id.clone())),
        trace_id,
    };
    let op = find(&span.attributes, "gen_ai.operation.name").and_then(text);
    let start = timestamp(span.start_time_unix_nano);
    match op {
        Some(op) if MODEL_OPERATIONS.contains(&op) => {
            let fields = vec![
                (
                    "model",
                    v.get(&["gen_ai.response.model", "gen_ai.request.model"]),
                ),
                (
                    "provider",
                    v.get(&["gen_ai.provider.name", "gen_ai.system"]),
                ),
                (
                    "input_tokens",
                    v.get(&[
                        "gen_ai.usage.input_tokens",
                        "gen_ai.usage.prompt_tokens",
                        "llm.token_count.prompt",
                    ]),
                ),
                (
                    "cached_input_tokens",
                    v.get(&["gen_ai.usage.cache_read.input_tokens"]),
                ),
                (
                    "output_tokens",
                    v.get(&[
                        "gen_ai.usage.output_tokens",
                        "gen_ai.usage.completion_tokens",
                        "llm.token_count.completion",
                    ]),
                ),
                (
                    "reasoning_tokens",
                    v.get(&["gen_ai.usage.reasoning.output_tokens"]),
                ),
                (
                    "cost_usd",
                    v.get(&[
                        "agentledger.cost_usd",
                        "gen_ai.usage.cost",
                        "llm.cost.total",
                    ]),
                ),
                ("latency_ms", latency_ms(span)),
                ("status", is_error(span).then(|| Value::from("error"))),
                ("cache_hit", v.get(&["agentledger.cache_hit"])),
            ];
            let attributes = v.rest(options);
            out.push(common.event("", "model_call", start.clone(), fields, attributes));
        }
        Some("execute_tool") => {
            let status = if v.text("error.type").is_some_and(is_timeout) {
                "timeout"
            } else if is_error(span) {
                "error"
            } else {
                "ok"
            };
            let fields = vec![
                ("tool", v.get(&["gen_ai.tool.name"])),
                (
                    "access",
                    Some(
                        v.get(&["agentledger.tool.access"])
                            .unwrap_or_else(|| Value::from("unknown")),
                    ),
                ),
                ("status", Some(Value::from(status))),
                ("latency_ms", latency_ms(span)),
                ("cost_usd", v.get(&["agentledger.cost_usd"])),
                (
                    "idempotency_key",
                    v.get(&["agentledger.tool.idempotency_key"]),
                ),
            ];
            let attributes = v.rest(options);
            out.push(common.event("", "tool_call", start.clone(), fields, attributes));
        }
        Some(op) if RUN_OPERATIONS.contains(&op) && !encloses_a_run(span) => {
            let outcome = v.get(&["agentledger.run.outcome"]);
            let cap_hit = v.get(&["agentledger.run.cap_hit"]);
            let fields = vec![
                (
                    "workflow",
                    v.get(&[
                        "agentledger.workflow",
                        "gen_ai.workflow.name",
                        "gen_ai.agent.name",
                    ]),
                ),
                (
                    "agent_version",
                    v.get(&["gen_ai.agent.version", "service.version"]),
                ),
                ("prompt_version", v.get(&["agentledger.prompt_version"])),
            ];
            let attributes = v.rest(options);
            out.push(common.event("-start", "run_started", start.clone(), fields, attributes));
            let outcome = match outcome {
                Some(outcome) => Some(outcome),
                None if is_error(span) => Some(Value::from("failure")),
                None => None,
            };
            if let Some(outcome) = outcome {
                let fields = vec![("outcome", Some(outcome)), ("cap_hit", cap_hit)];
                let end = timestamp(span.end_time_unix_nano);
                out.push(common.event("-end", "run_finished", end, fields, Map::new()));
            }
        }
        _ => {}
    }
    for (i, event) in span.events.iter().enumerate() {
        let Some((_, event_type)) = SPAN_EVENTS.iter().find(|(name, _)| *name == event.name) else {
            continue;
        };
        // The span event's attributes are the event's fields, by their
        // section-1 names; the validation that follows tells which belong.
        let mut fields = Map::new();
        for kv in &event.attributes {
            if !options.keep_messages && is_message_attribute(&kv.key) {
                continue;
            }
            fields.insert(
                kv.key.clone(),
                kv.value.as_ref().map_or(Value::Null, to_json),
            );
        }
        // Common fields come from the span: a span event cannot move an
        // event to another tenant or run, or rename it.
        for name in ["event_id", "event_type", "ts", "tenant_id", "run_id"] {
            fields.remove(name);
        }
        let attributes = match fields.remove("attributes") {
            Some(Value::Object(a)) => a,
            Some(other) => {
                // Kept as given: validation names its wrong type.
                fields.insert("attributes".into(), other);
                Map::new()
            }
            None => Map::new(),
        };
        let fields: Vec<(&str, Option<Value>)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), Some(v.clone())))
            .collect();
        out.push(common.event(
            &format!("-{i}"),
            event_type,
            timestamp(event.time_unix_nano),
            fields,
            attributes,
        ));
    }
}

#[cfg(test)]
mod tests;
