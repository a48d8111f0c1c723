//! The sample as OTLP/JSON (`agentledger sample --otlp`): the same runs as
//! the NDJSON sample, written as the spans an agent instrumented with the
//! OpenTelemetry GenAI conventions would export (SPEC section 7), so that
//! ingesting either gives the same metrics.
//!
//! Each run is one trace: an `invoke_agent` span from `run_started` to the
//! first `run_finished` (its outcome and cap as `agentledger.run.*`), a
//! `chat` span per model call and an `execute_tool` span per tool call under
//! it, and the other events (policy blocks, approvals, overrides, feedback,
//! a later `run_finished`) as `agentledger.*` span events of the run span.
//! Only valid, distinct events are converted: the bad lines and repeats of
//! the NDJSON sample have no span form.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, TracesData, span, status::StatusCode,
};
use serde_json::{Map, Value};
use xxhash_rust::xxh3::{xxh3_64, xxh3_128};

use crate::validate::{parse_ts, validate};

/// Runs written per OTLP/JSON line (one export batch).
const RUNS_PER_LINE: usize = 25;

/// Converts the valid, distinct events of the NDJSON sample `events` into
/// OTLP/JSON at `out`. Returns the number of spans written.
pub fn write_otlp(events: &Path, out: &Path) -> std::io::Result<u64> {
    let input = BufReader::new(std::fs::File::open(events)?);
    let mut output = BufWriter::new(std::fs::File::create(out)?);
    let mut seen = std::collections::HashSet::new();
    let mut run: Vec<Map<String, Value>> = Vec::new();
    let mut batch: Vec<ResourceSpans> = Vec::new();
    let mut spans = 0u64;
    let flush = |batch: &mut Vec<ResourceSpans>, output: &mut BufWriter<std::fs::File>| {
        if batch.is_empty() {
            return Ok::<_, std::io::Error>(());
        }
        let data = TracesData {
            resource_spans: std::mem::take(batch),
        };
        serde_json::to_writer(&mut *output, &data)?;
        output.write_all(b"\n")
    };
    for line in input.lines() {
        let line = line?;
        let Ok(valid) = validate(line.as_bytes()) else {
            continue;
        };
        if !seen.insert(valid.event_id.to_string()) {
            continue; // an exact or conflicting repeat
        }
        let Ok(Value::Object(event)) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let same_run = run.first().is_some_and(|first| {
            first["tenant_id"] == event["tenant_id"] && first["run_id"] == event["run_id"]
        });
        if !same_run && !run.is_empty() {
            let rs = trace_of(&std::mem::take(&mut run));
            spans += rs.scope_spans[0].spans.len() as u64;
            batch.push(rs);
            if batch.len() >= RUNS_PER_LINE {
                flush(&mut batch, &mut output)?;
            }
        }
        run.push(event);
    }
    if !run.is_empty() {
        let rs = trace_of(&run);
        spans += rs.scope_spans[0].spans.len() as u64;
        batch.push(rs);
    }
    flush(&mut batch, &mut output)?;
    output.flush()?;
    Ok(spans)
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn string(key: &str, value: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(value.to_string()))
}

/// A JSON value as an attribute value: numbers that are integers as
/// integers, decimal numbers as their text (money stays exact).
fn any(value: &Value) -> any_value::Value {
    match value {
        Value::String(s) => any_value::Value::StringValue(s.clone()),
        Value::Bool(b) => any_value::Value::BoolValue(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => any_value::Value::IntValue(i),
            None => any_value::Value::StringValue(n.to_string()),
        },
        Value::Array(a) => any_value::Value::ArrayValue(ArrayValue {
            values: a
                .iter()
                .map(|v| AnyValue {
                    value: Some(any(v)),
                })
                .collect(),
        }),
        Value::Object(o) => any_value::Value::KvlistValue(KeyValueList {
            values: o.iter().map(|(k, v)| kv(k, any(v))).collect(),
        }),
        Value::Null => any_value::Value::StringValue(String::new()),
    }
}

fn nanos(event: &Map<String, Value>) -> u64 {
    let micros = event["ts"].as_str().and_then(parse_ts).unwrap_or(0);
    u64::try_from(micros).unwrap_or(0) * 1_000
}

fn field<'a>(event: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    event.get(name).filter(|v| !v.is_null())
}

/// Each of the event's fields `from` that is set, as the span attribute
/// `to`.
fn copy_fields(event: &Map<String, Value>, attributes: &mut Vec<KeyValue>, names: &[(&str, &str)]) {
    for (from, to) in names {
        if let Some(v) = field(event, from) {
            attributes.push(kv(to, any(v)));
        }
    }
}

/// The event's own `attributes`, as span attributes.
fn own_attributes(event: &Map<String, Value>) -> Vec<KeyValue> {
    match event.get("attributes") {
        Some(Value::Object(a)) => a.iter().map(|(k, v)| kv(k, any(v))).collect(),
        _ => Vec::new(),
    }
}

fn status(error: bool) -> Option<Status> {
    error.then(|| Status {
        code: StatusCode::Error as i32,
        ..Default::default()
    })
}

/// One run's events (in order) as one trace under its resource.
fn trace_of(run: &[Map<String, Value>]) -> ResourceSpans {
    let tenant = run[0]["tenant_id"].as_str().unwrap_or_default();
    let run_id = run[0]["run_id"].as_str().unwrap_or_default();
    let key = format!("{tenant}/{run_id}");
    let trace_id = (xxh3_128(key.as_bytes()) | 1).to_be_bytes().to_vec();
    let span_id = |n: u64| {
        (xxh3_64(format!("{key}/{n}").as_bytes()) | 1)
            .to_be_bytes()
            .to_vec()
    };
    let root_id = span_id(0);
    let mut root = Span {
        trace_id: trace_id.clone(),
        span_id: root_id.clone(),
        name: "invoke_agent".into(),
        kind: span::SpanKind::Internal as i32,
        attributes: vec![
            string("gen_ai.operation.name", "invoke_agent"),
            string("agentledger.run_id", run_id),
        ],
        ..Default::default()
    };
    let mut children = Vec::new();
    let mut finished = false;
    let mut last = 0u64;
    for (n, event) in run.iter().enumerate() {
        let at = nanos(event);
        last = last.max(at);
        let get = |name: &str| field(event, name);
        let event_type = event["event_type"].as_str().unwrap_or_default();
        let child = |name: &str, op: &str, latency: Option<&Value>| Span {
            trace_id: trace_id.clone(),
            span_id: span_id(n as u64 + 1),
            parent_span_id: root_id.clone(),
            name: name.to_string(),
            kind: span::SpanKind::Client as i32,
            start_time_unix_nano: at,
            end_time_unix_nano: at + latency.and_then(Value::as_u64).unwrap_or(0) * 1_000_000,
            // On every span, as a team's span processor would set it: a
            // span without it belongs to the run named by its trace id.
            attributes: vec![
                string("gen_ai.operation.name", op),
                string("agentledger.run_id", run_id),
            ],
            ..Default::default()
        };
        match event_type {
            "run_started" => {
                root.start_time_unix_nano = at;
                copy_fields(
                    event,
                    &mut root.attributes,
                    &[
                        ("workflow", "agentledger.workflow"),
                        ("agent_version", "gen_ai.agent.version"),
                        ("prompt_version", "agentledger.prompt_version"),
                    ],
                );
                root.attributes.extend(own_attributes(event));
            }
            "model_call" => {
                let model = get("model").and_then(Value::as_str).unwrap_or_default();
                let mut s = child(&format!("chat {model}"), "chat", get("latency_ms"));
                copy_fields(
                    event,
                    &mut s.attributes,
                    &[
                        ("model", "gen_ai.request.model"),
                        ("provider", "gen_ai.provider.name"),
                        ("input_tokens", "gen_ai.usage.input_tokens"),
                        (
                            "cached_input_tokens",
                            "gen_ai.usage.cache_read.input_tokens",
                        ),
                        ("output_tokens", "gen_ai.usage.output_tokens"),
                        ("reasoning_tokens", "gen_ai.usage.reasoning.output_tokens"),
                        ("cost_usd", "agentledger.cost_usd"),
                        ("cache_hit", "agentledger.cache_hit"),
                    ],
                );
                s.attributes.extend(own_attributes(event));
                s.status = status(get("status").and_then(Value::as_str) == Some("error"));
                children.push(s);
            }
            "tool_call" => {
                let tool = get("tool").and_then(Value::as_str).unwrap_or_default();
                let mut s = child(
                    &format!("execute_tool {tool}"),
                    "execute_tool",
                    get("latency_ms"),
                );
                copy_fields(
                    event,
                    &mut s.attributes,
                    &[
                        ("tool", "gen_ai.tool.name"),
                        ("access", "agentledger.tool.access"),
                        ("cost_usd", "agentledger.cost_usd"),
                        ("idempotency_key", "agentledger.tool.idempotency_key"),
                    ],
                );
                match get("status").and_then(Value::as_str) {
                    Some("timeout") => {
                        s.attributes.push(string("error.type", "timeout"));
                        s.status = status(true);
                    }
                    Some("error") => {
                        s.attributes.push(string("error.type", "tool_error"));
                        s.status = status(true);
                    }
                    _ => {}
                }
                s.attributes.extend(own_attributes(event));
                children.push(s);
            }
            "run_finished" if !finished => {
                finished = true;
                root.end_time_unix_nano = at;
                copy_fields(
                    event,
                    &mut root.attributes,
                    &[
                        ("outcome", "agentledger.run.outcome"),
                        ("cap_hit", "agentledger.run.cap_hit"),
                    ],
                );
            }
            _ => {
                // A span event of the run span, its fields as attributes.
                let attributes = event
                    .iter()
                    .filter(|(k, v)| {
                        !v.is_null()
                            && !["event_id", "event_type", "ts", "tenant_id", "run_id"]
                                .contains(&k.as_str())
                    })
                    .map(|(k, v)| kv(k, any(v)))
                    .collect();
                root.events.push(span::Event {
                    time_unix_nano: at,
                    name: format!("agentledger.{event_type}"),
                    attributes,
                    ..Default::default()
                });
            }
        }
    }
    if !finished {
        // An open run: the span ends with its last event, and says nothing
        // of an outcome.
        root.end_time_unix_nano = last.max(root.start_time_unix_nano);
    }
    let mut spans = vec![root];
    spans.extend(children);
    ResourceSpans {
        resource: Some(Resource {
            attributes: vec![
                string("service.name", "agentledger-sample"),
                string("tenant.id", tenant),
            ],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            scope: Some(InstrumentationScope {
                name: "agentledger.sample".into(),
                ..Default::default()
            }),
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }
}
