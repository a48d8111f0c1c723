use super::*;

const TRACE: &str = "5b8efff798038103d269b633813fc60c";

/// An OTLP/JSON line with one resource (`resource` attributes) and the
/// given spans.
fn line(resource: &str, spans: &[String]) -> String {
    format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{resource}]}},"scopeSpans":[{{"scope":{{"name":"t"}},"spans":[{}]}}]}}]}}"#,
        spans.join(",")
    )
}

fn s(key: &str, value: &str) -> String {
    format!(r#"{{"key":"{key}","value":{{"stringValue":"{value}"}}}}"#)
}

fn i(key: &str, value: i64) -> String {
    // As the OTLP/JSON encoding writes 64-bit integers: a string.
    format!(r#"{{"key":"{key}","value":{{"intValue":"{value}"}}}}"#)
}

fn d(key: &str, value: f64) -> String {
    format!(r#"{{"key":"{key}","value":{{"doubleValue":{value}}}}}"#)
}

fn b(key: &str, value: bool) -> String {
    format!(r#"{{"key":"{key}","value":{{"boolValue":{value}}}}}"#)
}

/// A span of `TRACE`: id, parent ("" for a root), start and end in
/// nanoseconds, status code, attributes and span events.
fn span(
    id: &str,
    parent: &str,
    start: u64,
    end: u64,
    status: u8,
    attrs: &[String],
    events: &str,
) -> String {
    format!(
        r#"{{"traceId":"{TRACE}","spanId":"{id}","parentSpanId":"{parent}","name":"n","kind":3,"startTimeUnixNano":"{start}","endTimeUnixNano":"{end}","attributes":[{}],"events":[{events}],"status":{{"code":{status}}}}}"#,
        attrs.join(",")
    )
}

fn events(line: &str, options: OtlpOptions) -> (Mapped, Vec<serde_json::Value>) {
    let data = parse_line(line.as_bytes()).expect("an OTLP line");
    let mapped = map_traces(&data, options);
    let values = mapped
        .events
        .iter()
        .map(|e| serde_json::from_slice(&e.json).unwrap())
        .collect();
    (mapped, values)
}

const T0: u64 = 1_791_194_400_000_000_000; // 2026-10-05T10:00:00Z

#[test]
fn a_chat_span_is_a_model_call_with_every_field_and_no_message_contents() {
    let attrs = vec![
        s("gen_ai.operation.name", "chat"),
        s("gen_ai.request.model", "gpt-4o"),
        s("gen_ai.response.model", "gpt-4o-2024-08-06"),
        s("gen_ai.system", "openai"),
        i("gen_ai.usage.input_tokens", 1200),
        i("gen_ai.usage.cache_read.input_tokens", 200),
        i("gen_ai.usage.output_tokens", 300),
        i("gen_ai.usage.reasoning.output_tokens", 100),
        d("gen_ai.usage.cost", 0.0123),
        b("agentledger.cache_hit", true),
        s("gen_ai.input.messages", "secret prompt"),
        s("gen_ai.prompt.0.content", "secret too"),
        s("server.address", "api.openai.com"),
    ];
    let l = line(
        &[s("tenant.id", "acme"), s("service.name", "bot")].join(","),
        &[span(
            "00f067aa0ba902b7",
            "",
            T0 + 999,
            T0 + 1_999_999_999,
            2,
            &attrs,
            "",
        )],
    );
    let (mapped, ev) = events(&l, OtlpOptions::default());
    assert_eq!((mapped.spans, mapped.skipped), (1, 0));
    assert_eq!(
        ev[0],
        serde_json::json!({
            "event_id": format!("otel-{TRACE}-00f067aa0ba902b7"),
            "event_type": "model_call",
            "ts": "2026-10-05T10:00:00.000000Z",
            "tenant_id": "acme",
            "run_id": TRACE,
            "model": "gpt-4o-2024-08-06",
            "provider": "openai",
            "input_tokens": 1200,
            "cached_input_tokens": 200,
            "output_tokens": 300,
            "reasoning_tokens": 100,
            "cost_usd": 0.0123,
            // 1.999999 s rounded down.
            "latency_ms": 1999,
            "status": "error",
            "cache_hit": true,
            "attributes": {
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "gpt-4o",
                "server.address": "api.openai.com",
            },
        })
    );
    // The cost is written as the shortest decimal of the double, which is
    // what the sender wrote.
    assert!(String::from_utf8_lossy(&mapped.events[0].json).contains(r#""cost_usd":0.0123"#));

    let (_, kept) = events(
        &l,
        OtlpOptions {
            keep_messages: true,
        },
    );
    let attributes = kept[0]["attributes"].as_object().unwrap();
    assert_eq!(attributes["gen_ai.input.messages"], "secret prompt");
    assert_eq!(attributes["gen_ai.prompt.0.content"], "secret too");
}

#[test]
fn current_names_win_and_older_spellings_are_read_when_they_are_absent() {
    let old = vec![
        s("gen_ai.operation.name", "text_completion"),
        s("gen_ai.request.model", "m"),
        s("gen_ai.provider.name", "anthropic"),
        s("gen_ai.system", "ignored"),
        i("gen_ai.usage.prompt_tokens", 10),
        i("gen_ai.usage.completion_tokens", 5),
        s("agentledger.cost_usd", "0.000000000001"),
        d("llm.cost.total", 9.0),
    ];
    let inference = vec![
        s("gen_ai.operation.name", "embeddings"),
        s("gen_ai.request.model", "e"),
        i("llm.token_count.prompt", 7),
        i("llm.token_count.completion", 0),
        i("gen_ai.usage.input_tokens", 8),
    ];
    let l = line(
        &s("agentledger.tenant_id", "acme"),
        &[
            span("0000000000000001", "", T0, T0, 0, &old, ""),
            span("0000000000000002", "", T0, T0, 0, &inference, ""),
        ],
    );
    let (_, ev) = events(&l, OtlpOptions::default());
    assert_eq!(ev[0]["provider"], "anthropic");
    assert_eq!(
        (
            ev[0]["input_tokens"].as_i64(),
            ev[0]["output_tokens"].as_i64()
        ),
        (Some(10), Some(5))
    );
    assert_eq!(
        ev[0]["cost_usd"], "0.000000000001",
        "a decimal string stays a string"
    );
    assert_eq!(
        ev[0]["attributes"]["llm.cost.total"], 9.0,
        "the unused fallback is kept"
    );
    assert!(
        ev[0].get("status").is_none(),
        "OK and UNSET spans take the default"
    );
    assert_eq!(ev[0]["latency_ms"], 0);
    assert_eq!(ev[1]["input_tokens"], 8, "the current name wins");
    assert_eq!(ev[1]["output_tokens"], 0);
}

#[test]
fn tool_spans_say_unknown_access_and_timeouts_come_from_error_type() {
    let tool = |id: &str, status: u8, extra: Vec<String>| {
        let mut attrs = vec![
            s("gen_ai.operation.name", "execute_tool"),
            s("gen_ai.tool.name", "search"),
            s("gen_ai.tool.call.arguments", "{\\\"q\\\":1}"),
        ];
        attrs.extend(extra);
        span(
            id,
            "0000000000000009",
            T0,
            T0 + 5_000_000,
            status,
            &attrs,
            "",
        )
    };
    let l = line(
        &s("tenant.id", "acme"),
        &[
            tool("0000000000000001", 0, vec![]),
            tool(
                "0000000000000002",
                2,
                vec![
                    s("error.type", "ReadTimeout"),
                    s("agentledger.tool.access", "write"),
                ],
            ),
            tool(
                "0000000000000003",
                2,
                vec![
                    s("error.type", "ValueError"),
                    s("agentledger.tool.idempotency_key", "k1"),
                    s("agentledger.cost_usd", "0.5"),
                ],
            ),
        ],
    );
    let (_, ev) = events(&l, OtlpOptions::default());
    assert_eq!(ev[0]["access"], "unknown");
    assert_eq!(ev[0]["status"], "ok");
    assert_eq!(ev[0]["latency_ms"], 5);
    assert!(
        ev[0]
            .get("attributes")
            .is_some_and(|a| a.get("gen_ai.tool.call.arguments").is_none())
    );
    assert_eq!(
        (ev[1]["access"].as_str(), ev[1]["status"].as_str()),
        (Some("write"), Some("timeout"))
    );
    assert_eq!(ev[2]["status"], "error");
    assert_eq!(ev[2]["idempotency_key"], "k1");
    assert_eq!(ev[2]["cost_usd"], "0.5");
    assert_eq!(ev[2]["attributes"]["error.type"], "ValueError");
}

#[test]
fn the_outermost_agent_span_is_the_run_and_nested_ones_are_skipped() {
    let root = span(
        "00000000000000aa",
        "",
        T0,
        T0 + 60_000_000_000,
        0,
        &[
            s("gen_ai.operation.name", "invoke_agent"),
            s("gen_ai.agent.name", "support-bot"),
            s("agentledger.prompt_version", "p7"),
            s("agentledger.run.outcome", "success"),
            s("agentledger.run.cap_hit", "cost"),
            s("agentledger.run_id", "run-1"),
        ],
        "",
    );
    // A sub-agent under a plain span under the root: not a run.
    let middle = span(
        "00000000000000bb",
        "00000000000000aa",
        T0,
        T0,
        0,
        &[s("http.method", "GET")],
        "",
    );
    let nested = span(
        "00000000000000cc",
        "00000000000000bb",
        T0,
        T0,
        2,
        &[
            s("gen_ai.operation.name", "invoke_agent"),
            s("gen_ai.agent.name", "sub"),
        ],
        "",
    );
    let l = line(
        &[s("tenant.id", "acme"), s("service.version", "1.4.2")].join(","),
        &[nested, middle, root],
    );
    let (mapped, ev) = events(&l, OtlpOptions::default());
    assert_eq!((mapped.spans, mapped.skipped, ev.len()), (3, 2, 2));
    assert_eq!(ev[0]["event_type"], "run_started");
    assert_eq!(
        ev[0]["event_id"],
        format!("otel-{TRACE}-00000000000000aa-start")
    );
    assert_eq!(ev[0]["run_id"], "run-1");
    assert_eq!(ev[0]["workflow"], "support-bot");
    assert_eq!(
        ev[0]["agent_version"], "1.4.2",
        "from the resource's service.version"
    );
    assert_eq!(ev[0]["prompt_version"], "p7");
    assert_eq!(ev[1]["event_type"], "run_finished");
    assert_eq!(
        ev[1]["event_id"],
        format!("otel-{TRACE}-00000000000000aa-end")
    );
    assert_eq!(ev[1]["ts"], "2026-10-05T10:01:00.000000Z");
    assert_eq!(
        (ev[1]["outcome"].as_str(), ev[1]["cap_hit"].as_str()),
        (Some("success"), Some("cost"))
    );
    assert!(ev[1].get("attributes").is_none());

    // Alone in its object, the nested span's enclosing run is not known:
    // it is taken for a run (docs/otel.md), and ERROR without an outcome
    // is a failure.
    let alone = span(
        "00000000000000cc",
        "00000000000000bb",
        T0,
        T0 + 1_000,
        2,
        &[
            s("gen_ai.operation.name", "invoke_workflow"),
            s("gen_ai.workflow.name", "wf"),
        ],
        "",
    );
    let (_, ev) = events(
        &line(&s("tenant.id", "acme"), &[alone]),
        OtlpOptions::default(),
    );
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[0]["workflow"], "wf");
    assert_eq!(ev[1]["outcome"], "failure");

    // An open run: no outcome, no error, no run_finished.
    let open = span(
        "00000000000000dd",
        "",
        T0,
        T0,
        1,
        &[s("gen_ai.operation.name", "invoke_agent")],
        "",
    );
    let (_, ev) = events(&line("", &[open]), OtlpOptions::default());
    assert_eq!(ev.len(), 1);
    assert!(
        ev[0].get("tenant_id").is_none(),
        "no tenant: validation quarantines it"
    );
}

#[test]
fn span_events_named_for_agentledger_become_events_with_their_fields() {
    let evs = [
        format!(
            r#"{{"timeUnixNano":"{}","name":"agentledger.policy_block","attributes":[{},{},{}]}}"#,
            T0 + 1_000,
            s("tool", "refund"),
            s("rule", "max-refund"),
            s("note.extra", "x")
        ),
        format!(r#"{{"timeUnixNano":"{}","name":"log","attributes":[]}}"#, T0),
        format!(
            r#"{{"timeUnixNano":"{}","name":"agentledger.human_override","attributes":[{},{},{}]}}"#,
            T0 + 2_000,
            s("kind", "rollback"),
            s("tenant_id", "other"),
            s("run_id", "other")
        ),
    ]
    .join(",");
    let plain = span(
        "0000000000000001",
        "",
        T0,
        T0,
        0,
        &[s("http.route", "/x")],
        &evs,
    );
    let (mapped, ev) = events(
        &line(&s("tenant.id", "acme"), &[plain]),
        OtlpOptions::default(),
    );
    assert_eq!(
        (mapped.spans, mapped.skipped),
        (1, 0),
        "a span with events is not skipped"
    );
    assert_eq!(ev.len(), 2);
    assert_eq!(
        ev[0]["event_id"],
        format!("otel-{TRACE}-0000000000000001-0")
    );
    assert_eq!(ev[0]["event_type"], "policy_block");
    assert_eq!(ev[0]["ts"], "2026-10-05T10:00:00.000001Z");
    assert_eq!(
        (ev[0]["tool"].as_str(), ev[0]["rule"].as_str()),
        (Some("refund"), Some("max-refund"))
    );
    assert_eq!(
        ev[0]["note.extra"], "x",
        "left for validation to keep in attributes"
    );
    assert_eq!(
        ev[1]["event_id"],
        format!("otel-{TRACE}-0000000000000001-2")
    );
    assert_eq!(
        ev[1]["tenant_id"], "acme",
        "a span event cannot move the event"
    );
    assert_eq!(ev[1]["run_id"], TRACE);
}

#[test]
fn other_spans_are_skipped_and_ids_are_lowercase_hex() {
    let l = line(
        "",
        &[
            span(
                "0000000000000001",
                "",
                T0,
                T0,
                0,
                &[s("http.method", "GET")],
                "",
            ),
            span(
                "0000000000000002",
                "",
                T0,
                T0,
                0,
                &[s("gen_ai.operation.name", "create_agent")],
                "",
            ),
            span(
                "00000000000000AB",
                "",
                T0,
                T0,
                0,
                &[s("gen_ai.operation.name", "execute_tool")],
                "",
            ),
        ],
    )
    .replace(TRACE, &TRACE.to_uppercase());
    let (mapped, ev) = events(&l, OtlpOptions::default());
    assert_eq!((mapped.spans, mapped.skipped), (3, 2));
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0]["event_id"], format!("otel-{TRACE}-00000000000000ab"));
    assert_eq!(ev[0]["run_id"], TRACE);
    assert_eq!(hex(&[0x0A, 0xFF, 0x00]), "0aff00");
}

#[test]
fn otlp_is_told_by_its_first_member() {
    assert!(looks_like_otlp(b"  \n{ \"resourceSpans\": []}"));
    assert!(!looks_like_otlp(
        b"{\"event_id\":\"e\",\"resourceSpans\":1}"
    ));
    assert!(!looks_like_otlp(b"[{\"resourceSpans\":[]}]"));
    assert!(!looks_like_otlp(b""));
    assert!(parse_line(b"{\"resourceSpans\":[{\"scopeSpans\":7}]}").is_err());
    assert!(parse_line(b"\xff").unwrap_err().contains("UTF-8"));
}
