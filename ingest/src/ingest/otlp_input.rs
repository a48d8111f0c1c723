//! OTLP/JSON sources end to end through the ingest (SPEC section 7): the
//! summary's counts, re-exports stored once, bad spans quarantined with
//! their trace and span id, and derived events through the suspects path.

use std::fmt::Write as _;

use agentledger_lake::Lake;
use agentledger_lake::log::Snapshot;
use agentledger_lake::parquet_io::read_columns;
use agentledger_lake::schema::QUARANTINE;
use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use futures::StreamExt;

use super::{IngestOptions, Input, OtlpCounts, ingest};

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

fn kv(key: &str, value: &str) -> String {
    format!(r#"{{"key":"{key}","value":{{"stringValue":"{value}"}}}}"#)
}

fn int(key: &str, value: i64) -> String {
    format!(r#"{{"key":"{key}","value":{{"intValue":"{value}"}}}}"#)
}

fn span(trace: &str, id: &str, parent: &str, attrs: &[String]) -> String {
    format!(
        r#"{{"traceId":"{trace}","spanId":"{id}","parentSpanId":"{parent}","name":"s","startTimeUnixNano":"1791194400000000000","endTimeUnixNano":"1791194401000000000","attributes":[{}],"status":{{}}}}"#,
        attrs.join(",")
    )
}

fn traces(spans: &[String]) -> String {
    format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{}]}},"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
        kv("tenant.id", "acme"),
        spans.join(",")
    )
}

/// One run: the agent span, a good chat, a tool without access, a chat
/// without a model, a chat with negative output tokens, an HTTP span.
fn one_run() -> String {
    let root = "1000000000000001";
    let chat = |id: &str, model: Option<&str>, out: i64| {
        let mut a = vec![
            kv("gen_ai.operation.name", "chat"),
            int("gen_ai.usage.input_tokens", 100),
            int("gen_ai.usage.output_tokens", out),
        ];
        if let Some(m) = model {
            a.push(kv("gen_ai.request.model", m));
        }
        span(TRACE, id, root, &a)
    };
    traces(&[
        span(
            TRACE,
            root,
            "",
            &[
                kv("gen_ai.operation.name", "invoke_agent"),
                kv("gen_ai.agent.name", "support"),
                kv("agentledger.run.outcome", "success"),
            ],
        ),
        chat("2000000000000001", Some("gpt-4o"), 20),
        span(
            TRACE,
            "2000000000000002",
            root,
            &[
                kv("gen_ai.operation.name", "execute_tool"),
                kv("gen_ai.tool.name", "search"),
            ],
        ),
        chat("2000000000000003", None, 20),
        chat("2000000000000004", Some("gpt-4o"), -1),
        span(TRACE, "2000000000000005", root, &[kv("http.method", "GET")]),
    ])
}

async fn quarantine(lake: &Lake) -> Vec<(i64, String, String)> {
    let snapshot = Snapshot::load(lake).await.unwrap();
    let mut out = Vec::new();
    for file in snapshot.files(QUARANTINE) {
        let mut stream = read_columns(lake, file, &["line", "reason", "message"])
            .await
            .unwrap();
        while let Some(batch) = stream.next().await {
            let batch = batch.unwrap();
            for i in 0..batch.num_rows() {
                out.push((
                    batch.column(0).as_primitive::<Int64Type>().value(i),
                    batch.column(1).as_string::<i32>().value(i).to_string(),
                    batch.column(2).as_string::<i32>().value(i).to_string(),
                ));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn an_otlp_file_is_counted_deduplicated_and_quarantined_by_span() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path().join("lake").to_str().unwrap()).unwrap();
    let file = dir.path().join("spans.json");
    // The same export twice (a retry), and a line that is not OTLP.
    let body = format!("{}\n{{\"resourceSpans\": 5}}\n{}\n", one_run(), one_run());
    std::fs::write(&file, body).unwrap();
    let sources = [file.to_str().unwrap().to_string()];

    let s = ingest(&lake, &sources, &IngestOptions::default(), None)
        .await
        .unwrap();
    assert_eq!(
        s.otlp,
        Some(OtlpCounts {
            spans_read: 12,
            spans_skipped: 2,
            events_derived: 12
        })
    );
    assert_eq!(s.sources[0].otlp, s.otlp);
    // 12 events and the one bad line; the repeat's good events are
    // duplicates, each export's two bad spans are quarantined.
    assert_eq!(
        (s.read, s.stored, s.duplicate, s.quarantined),
        (13, 4, 4, 5)
    );
    assert_eq!(s.quarantine_reasons["invalid_otlp"], 1);
    assert_eq!(s.quarantine_reasons["missing_field"], 2);
    assert_eq!(s.quarantine_reasons["out_of_range"], 2);
    let q = quarantine(&lake).await;
    assert_eq!(q.len(), 5);
    assert_eq!((q[0].0, q[0].1.as_str()), (1, "missing_field"));
    assert!(
        q[0].2
            .starts_with(&format!("trace {TRACE} span 2000000000000003: ")),
        "{}",
        q[0].2
    );
    assert!(q[0].2.contains("'model'"), "{}", q[0].2);
    assert!(q[1].2.contains("span 2000000000000004"), "{}", q[1].2);
    assert_eq!((q[2].0, q[2].1.as_str()), (2, "invalid_otlp"));

    // Exported again: nothing new is stored, nothing added to the
    // quarantine, and no commit.
    let again = ingest(&lake, &sources, &IngestOptions::default(), None)
        .await
        .unwrap();
    assert_eq!(
        (
            again.stored,
            again.duplicate,
            again.quarantined,
            again.quarantined_new
        ),
        (0, 8, 5, 0)
    );
    assert_eq!(again.version, None);

    // Told to read it as NDJSON, every line is a bad event line.
    let options = IngestOptions {
        input: Input::Ndjson,
        ..IngestOptions::default()
    };
    let as_events = ingest(&lake, &sources, &options, None).await.unwrap();
    assert_eq!(
        (as_events.read, as_events.quarantined, as_events.otlp),
        (3, 3, None)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn derived_events_resolved_as_suspects_are_validated_as_spans() {
    // A filter far too small for the input makes almost every event a
    // suspect, decoded again when it proves new: as an event derived from a
    // span, so a tool call of unknown access stays valid.
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path().join("lake").to_str().unwrap()).unwrap();
    let mut body = String::new();
    for line in 0..20 {
        let spans: Vec<String> = (0..100)
            .map(|i| {
                span(
                    &format!("{:032x}", line * 1000 + i + 1),
                    "3000000000000001",
                    "",
                    &[
                        kv("gen_ai.operation.name", "execute_tool"),
                        kv("gen_ai.tool.name", "lookup"),
                    ],
                )
            })
            .collect();
        writeln!(body, "{}", traces(&spans)).unwrap();
    }
    let file = dir.path().join("tools.json.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, body.as_bytes()).unwrap();
    std::fs::write(&file, gz.finish().unwrap()).unwrap();
    let options = IngestOptions {
        dedup_filter_bits: Some(1024),
        ..IngestOptions::default()
    };
    let sources = [file.to_str().unwrap().to_string()];
    let s = ingest(&lake, &sources, &options, None).await.unwrap();
    assert_eq!((s.read, s.stored, s.quarantined), (2000, 2000, 0));
    let again = ingest(&lake, &sources, &options, None).await.unwrap();
    assert_eq!((again.stored, again.duplicate), (0, 2000));
}
