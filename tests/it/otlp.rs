//! OpenTelemetry input end to end (SPEC section 7): the OTLP sample gives
//! the NDJSON sample's metrics; the receiver stores what a file ingest
//! stores; a receiver killed while clients send loses no request it
//! answered and stores none twice.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use crate::common::Env;

/// The columns of the events table that spans and lines must agree on:
/// all but the ids, attributes and provenance.
const SAME: &str = "SELECT * EXCLUDE (event_id, attributes, source, line, ingest_id, ingested_at, content_hash) FROM events ORDER BY tenant_id, run_id, ts, event_type, model, tool, decision, kind, outcome";

fn load_references(env: &Env, dir: &Path) {
    for (table, file) in [
        ("prices", "model_prices.csv"),
        ("plans", "customer_plans.csv"),
        ("policies", "workflow_policies.csv"),
    ] {
        env.ok(&["load", table, dir.join(file).to_str().unwrap()]);
    }
}

fn otlp_sample(env: &Env, runs: u32) -> std::path::PathBuf {
    let out = env.path("otlp-sample");
    env.ok(&[
        "sample",
        "--otlp",
        "--out",
        out.to_str().unwrap(),
        "--runs",
        &runs.to_string(),
    ]);
    out
}

#[test]
fn the_otlp_sample_gives_the_ndjson_samples_events_and_metrics() {
    let lines = Env::new();
    let sample = lines.path("sample");
    lines.ok(&[
        "sample",
        "--out",
        sample.to_str().unwrap(),
        "--runs",
        "300",
        "--no-bad-lines",
    ]);
    load_references(&lines, &sample);
    let by_line = lines.ingest(&[&sample.join("events.ndjson")]);

    let spans = Env::new();
    let dir = otlp_sample(&spans, 300);
    assert!(!dir.join("events.ndjson").exists());
    load_references(&spans, &dir);
    // Told OTLP by its content.
    let by_span = spans.ingest(&[&dir.join("traces.json")]);
    assert_eq!(by_span["stored"], by_line["stored"], "{by_span}");
    assert_eq!(by_span["quarantined"], 0, "{by_span}");
    let otlp = &by_span["otlp"];
    assert_eq!(otlp["events_derived"], by_span["read"]);
    assert!(otlp["spans_read"].as_u64().unwrap() > 300, "{otlp}");
    assert_eq!(otlp["spans_skipped"], 0);

    // Rows that tie on every ORDER BY key (two calls of one tool in the
    // same millisecond) may come in either order: compared as sorted lines.
    let sorted = |env: &Env| {
        let mut rows: Vec<String> = env
            .ok(&["sql", "--format", "csv", SAME])
            .lines()
            .map(String::from)
            .collect();
        rows.sort();
        rows
    };
    let (from_spans, from_lines) = (sorted(&spans), sorted(&lines));
    assert_eq!(from_spans.len(), from_lines.len());
    if let Some((a, b)) = from_spans.iter().zip(&from_lines).find(|(a, b)| a != b) {
        panic!("the events differ:\n  spans: {a}\n  lines: {b}");
    }
    let metrics = ["metrics", "--by", "tenant_id,week", "--format", "csv"];
    assert_eq!(spans.ok(&metrics), lines.ok(&metrics));
    let readiness = ["readiness", "--format", "json"];
    assert_eq!(spans.ok(&readiness), lines.ok(&readiness));

    // Read as NDJSON by choice, every line is a bad event.
    let forced = Env::new();
    let s = forced.ok(&[
        "ingest",
        "--input",
        "ndjson",
        "--format",
        "json",
        dir.join("traces.json").to_str().unwrap(),
    ]);
    let s: serde_json::Value = serde_json::from_str(&s).unwrap();
    assert_eq!(s["stored"], 0);
    assert!(s.get("otlp").is_none());
}

/// A running `agentledger serve --otlp`.
struct Receiver {
    child: Child,
    addr: String,
}

impl Receiver {
    fn start(env: &Env, spool: &Path, extra: &[&str]) -> Receiver {
        let mut child = env
            .command()
            .args([
                "serve",
                "--otlp",
                "127.0.0.1:0",
                "--spool",
                spool.to_str().unwrap(),
            ])
            .args(extra)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("serve starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent && let Some(at) = line.find("listening on http://") {
                    let rest = &line[at + "listening on http://".len()..];
                    let addr = rest.split('/').next().unwrap().to_string();
                    let _ = tx.send(addr);
                    sent = true;
                }
                eprintln!("serve: {line}");
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the receiver says where it listens");
        Receiver { child, addr }
    }

    /// SIGTERM, and the exit status.
    fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "serve did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// One HTTP/1.1 request; the status code and body, or an error when the
/// connection broke before an answer.
fn post(
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    // The server may answer (413) before it read everything.
    let _ = stream.write_all(body);
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line in {text:?}")))?;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Ok((status, body))
}

const JSON: (&str, &str) = ("Content-Type", "application/json");
const PROTOBUF: (&str, &str) = ("Content-Type", "application/x-protobuf");

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// The requests of an OTLP/JSON file: one per run (resource), as JSON.
fn requests_of(file: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for line in std::fs::read_to_string(file).unwrap().lines() {
        let data: serde_json::Value = serde_json::from_str(line).unwrap();
        for rs in data["resourceSpans"].as_array().unwrap() {
            out.push(serde_json::json!({ "resourceSpans": [rs] }).to_string());
        }
    }
    out
}

#[test]
fn the_receiver_stores_what_a_file_ingest_stores_and_refuses_bad_requests() {
    let files = Env::new();
    let dir = otlp_sample(&files, 120);
    let file = dir.join("traces.json");
    files.ingest(&[&file]);

    let env = Env::new();
    let spool = env.path("spool");
    let receiver = Receiver::start(
        &env,
        &spool,
        &["--commit-interval", "0.5", "--max-request-bytes", "1000000"],
    );
    let addr = receiver.addr.clone();
    for (i, request) in requests_of(&file).iter().enumerate() {
        let (status, body) = match i % 3 {
            0 => post(&addr, "/v1/traces", &[JSON], request.as_bytes()),
            1 => post(
                &addr,
                "/v1/traces",
                &[JSON, ("Content-Encoding", "gzip")],
                &gzip(request.as_bytes()),
            ),
            _ => {
                let decoded: ExportTraceServiceRequest = serde_json::from_str(request).unwrap();
                post(&addr, "/v1/traces", &[PROTOBUF], &decoded.encode_to_vec())
            }
        }
        .unwrap();
        assert_eq!(status, 200, "{body}");
    }
    // A client's retry of a request it got an answer for.
    let first = &requests_of(&file)[0];
    assert_eq!(
        post(&addr, "/v1/traces", &[JSON], first.as_bytes())
            .unwrap()
            .0,
        200
    );

    let (status, _) = post(&addr, "/v1/logs", &[JSON], b"{}").unwrap();
    assert_eq!(status, 404);
    let (status, body) =
        post(&addr, "/v1/traces", &[("Content-Type", "text/plain")], b"x").unwrap();
    assert_eq!(status, 415, "{body}");
    let (status, body) = post(&addr, "/v1/traces", &[PROTOBUF], b"\xff\xff\xff").unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("protobuf"), "{body}");
    let (status, body) = post(&addr, "/v1/traces", &[JSON], &vec![b' '; 1_000_001]).unwrap();
    assert_eq!(status, 413, "{body}");
    assert!(
        body.contains("1000000 bytes") && body.contains("--max-request-bytes"),
        "{body}"
    );
    // A gzip bomb: small on the wire, over the limit unpacked.
    let (status, body) = post(
        &addr,
        "/v1/traces",
        &[JSON, ("Content-Encoding", "gzip")],
        &gzip(&vec![b' '; 2_000_000]),
    )
    .unwrap();
    assert_eq!(status, 413, "{body}");

    assert!(receiver.stop().success());
    assert!(
        std::fs::read_dir(&spool)
            .unwrap()
            .flatten()
            .all(|e| e.file_name() == ".lock"),
        "the spool is empty once committed"
    );
    let all =
        "SELECT * EXCLUDE (source, line, ingest_id, ingested_at) FROM events ORDER BY event_id";
    let received = env.ok(&["sql", "--format", "csv", all]);
    assert_eq!(received, files.ok(&["sql", "--format", "csv", all]));
    assert!(received.lines().count() > 120);
}

#[test]
fn a_receiver_killed_while_clients_send_loses_no_answered_request_and_stores_none_twice() {
    let files = Env::new();
    let dir = otlp_sample(&files, 240);
    let file = dir.join("traces.json");
    let expected: u64 = files.ingest(&[&file])["stored"].as_u64().unwrap();
    let requests = Arc::new(requests_of(&file));
    let run_of = |request: &str| -> String {
        let v: serde_json::Value = serde_json::from_str(request).unwrap();
        let attrs = v["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"]
            .as_array()
            .unwrap()
            .clone();
        attrs
            .iter()
            .find(|a| a["key"] == "agentledger.run_id")
            .unwrap()["value"]["stringValue"]
            .as_str()
            .unwrap()
            .to_string()
    };

    let env = Env::new();
    let spool = env.path("spool");
    // Commits now and then while clients send, so the kill may fall before,
    // during or after one.
    let receiver = Receiver::start(&env, &spool, &["--commit-interval", "0.3"]);
    let addr = receiver.addr.clone();
    let answered = Arc::new(Mutex::new(Vec::new()));
    let senders: Vec<_> = (0..4)
        .map(|t| {
            let (requests, answered, addr) =
                (Arc::clone(&requests), Arc::clone(&answered), addr.clone());
            std::thread::spawn(move || {
                for (i, request) in requests.iter().enumerate().filter(|(i, _)| i % 4 == t) {
                    match post(&addr, "/v1/traces", &[JSON], request.as_bytes()) {
                        Ok((200, _)) => answered.lock().unwrap().push(i),
                        Ok((status, body)) => panic!("status {status}: {body}"),
                        Err(_) => return, // the receiver is gone
                    }
                }
            })
        })
        .collect();
    // Kill it once a good part was answered, while the senders go on.
    let deadline = Instant::now() + Duration::from_secs(120);
    while answered.lock().unwrap().len() < requests.len() / 3 {
        assert!(Instant::now() < deadline, "requests are not being answered");
        std::thread::sleep(Duration::from_millis(5));
    }
    receiver.kill();
    for s in senders {
        s.join().unwrap();
    }
    let answered = answered.lock().unwrap().clone();
    assert!(
        answered.len() < requests.len(),
        "the kill fell while clients were sending"
    );

    // The next start commits what the killed one accepted.
    let receiver = Receiver::start(&env, &spool, &["--commit-interval", "0.3"]);
    assert!(receiver.stop().success());
    let stored: std::collections::HashSet<String> = env
        .query("SELECT DISTINCT run_id FROM events")
        .iter()
        .map(|r| r["run_id"].as_str().unwrap().to_string())
        .collect();
    for &i in &answered {
        assert!(
            stored.contains(&run_of(&requests[i])),
            "request {i} was answered 200 but is not in the lake"
        );
    }
    let once = "SELECT count(*) AS n FROM (SELECT event_id FROM events GROUP BY event_id HAVING count(*) > 1)";
    assert_eq!(env.scalar(once), "0");

    // Clients retry what got no answer (and, harmlessly, the rest): every
    // event once.
    let receiver = Receiver::start(&env, &spool, &["--commit-interval", "0.3"]);
    for request in requests.iter() {
        assert_eq!(
            post(&receiver.addr, "/v1/traces", &[JSON], request.as_bytes())
                .unwrap()
                .0,
            200
        );
    }
    assert!(receiver.stop().success());
    assert_eq!(
        env.scalar("SELECT count(*) FROM events"),
        expected.to_string()
    );
    assert_eq!(env.scalar(once), "0");
}

#[test]
fn message_contents_never_reach_the_spool_unless_kept() {
    let request = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"tenant.id","value":{"stringValue":"acme"}}]},"scopeSpans":[{"spans":[{"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"b7ad6b7169203331","name":"chat","startTimeUnixNano":"1791194400000000000","endTimeUnixNano":"1791194401000000000","attributes":[{"key":"gen_ai.operation.name","value":{"stringValue":"chat"}},{"key":"gen_ai.request.model","value":{"stringValue":"gpt-4.1"}},{"key":"gen_ai.usage.input_tokens","value":{"intValue":"10"}},{"key":"gen_ai.usage.output_tokens","value":{"intValue":"2"}},{"key":"gen_ai.input.messages","value":{"stringValue":"SECRET-PROMPT"}}]}]}]}]}"#;
    let spooled = |dir: &Path| -> String {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap())
            .collect()
    };
    for keep in [false, true] {
        let env = Env::new();
        let spool = env.path("spool");
        let mut args = vec!["--commit-interval", "3600"];
        if keep {
            args.push("--keep-messages");
        }
        let receiver = Receiver::start(&env, &spool, &args);
        let (status, body) =
            post(&receiver.addr, "/v1/traces", &[JSON], request.as_bytes()).unwrap();
        assert_eq!(status, 200, "{body}");
        // Answered: on disk in the spool, not yet committed.
        let text = spooled(&spool);
        assert!(text.contains("b7ad6b7169203331"), "{text}");
        assert_eq!(text.contains("SECRET-PROMPT"), keep, "{text}");
        assert!(receiver.stop().success());
        let stored = env.scalar("SELECT attributes FROM events");
        assert_eq!(stored.contains("SECRET-PROMPT"), keep, "{stored}");
    }
}

#[test]
fn run_reads_an_otlp_landing_area_once() {
    let env = Env::new();
    let dir = otlp_sample(&env, 60);
    let landing = env.path("otel");
    std::fs::create_dir_all(&landing).unwrap();
    std::fs::copy(dir.join("traces.json"), landing.join("traces.json")).unwrap();
    let config = env.write(
        "agentledger.toml",
        &format!(
            "lake = {:?}\nprices = {:?}\nreports = {:?}\n[[landings]]\npath = \"otel\"\ninput = \"otlp\"\n",
            env.lake().display().to_string(),
            dir.join("model_prices.csv").display().to_string(),
            env.path("reports").display().to_string()
        ),
    );
    let c = config.to_str().unwrap();
    env.ok(&["run", "--config", c, "--week", "2026-W42"]);
    let stored = env.scalar("SELECT count(*) FROM events");
    let files = Env::new();
    let expected = files.ingest(&[&dir.join("traces.json")])["stored"].to_string();
    assert_eq!(stored, expected);
    // Again: the landing file is known, nothing is read twice.
    env.ok(&["run", "--config", c, "--week", "2026-W42"]);
    assert_eq!(env.scalar("SELECT count(*) FROM events"), expected);
    assert_eq!(
        env.scalar("SELECT count(*) FROM events WHERE event_id LIKE 'otel-%'"),
        expected
    );
}
