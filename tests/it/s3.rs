//! The lake on a real S3-compatible server (moto, started on loopback by
//! `scripts/s3-server`), with and without a fault-injecting proxy
//! (`tests/s3/fault_proxy.py`) between agentledger and the server.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Env, sample};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn wait_for_port(port: u16, what: &str) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{what} did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One raw HTTP/1.1 request; returns the status code.
fn http(port: u16, method: &str, path: &str, body: &[u8]) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut response = String::new();
    let _ = s.read_to_string(&mut response);
    response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// The body of `GET path`, or none unless the status is 200. The server
/// wants a signature on reads, and does not check it.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let auth = "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, \
                SignedHeaders=host, Signature=00";
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n")?;
    (head.split_whitespace().nth(1) == Some("200")).then(|| body.to_string())
}

/// The rows a Delta reader sees in `table` of the lake at `s3://lake/PREFIX`:
/// its Delta log's versions replayed in order, each bringing the table to a
/// newer lake version than the one before.
fn delta_rows(port: u16, prefix: &str, table: &str) -> u64 {
    let mut files: std::collections::BTreeMap<String, u64> = Default::default();
    let mut reflected = Vec::new();
    for version in 0.. {
        let key = format!("/lake/{prefix}/{table}/_delta_log/{version:020}.json");
        let Some(body) = http_get(port, &key) else {
            break;
        };
        for line in body.lines() {
            let action: Value = serde_json::from_str(line).unwrap();
            if let Some(info) = action.get("commitInfo") {
                reflected.push(info["agentledgerVersion"].as_u64().unwrap());
            } else if let Some(add) = action.get("add") {
                let stats: Value = serde_json::from_str(add["stats"].as_str().unwrap()).unwrap();
                let rows = stats["numRecords"].as_u64().unwrap();
                files.insert(add["path"].as_str().unwrap().to_string(), rows);
            } else if let Some(remove) = action.get("remove") {
                assert!(files.remove(remove["path"].as_str().unwrap()).is_some());
            }
        }
    }
    assert!(!reflected.is_empty(), "{prefix}/{table} has a Delta log");
    assert!(
        reflected.windows(2).all(|w| w[0] < w[1]),
        "{prefix}/{table}: {reflected:?}"
    );
    files.values().sum()
}

/// A moto server with one bucket, killed on drop.
pub(crate) struct S3 {
    child: Child,
    pub(crate) port: u16,
}

impl S3 {
    pub(crate) fn start() -> Self {
        let port = free_port();
        let child = Command::new(root().join("scripts/s3-server"))
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("scripts/s3-server runs");
        wait_for_port(port, "the S3 server");
        let s3 = Self { child, port };
        assert_eq!(http(port, "PUT", "/lake", b""), 200, "bucket created");
        s3
    }

    fn put(&self, key: &str, body: &[u8]) {
        assert_eq!(http(self.port, "PUT", &format!("/lake/{key}"), body), 200);
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        // scripts/s3-server execs python: the child is the server itself.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The fault proxy, killed on drop.
struct Proxy {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Proxy {
    fn start(upstream: u16, dir: &Path, args: &[&str]) -> Self {
        let port = free_port();
        let log = dir.join(format!("proxy-{port}.log"));
        let child = Command::new("python3")
            .arg(root().join("tests/s3/fault_proxy.py"))
            .arg(port.to_string())
            .arg(upstream.to_string())
            .args(["--log", log.to_str().unwrap()])
            .args(args)
            .spawn()
            .expect("the proxy runs");
        wait_for_port(port, "the fault proxy");
        Self { child, port, log }
    }

    fn faults(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with('2') && !l.starts_with("outage starts"))
            .count()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// agentledger against `s3://lake/PREFIX` through `port`.
pub(crate) fn cmd(env: &Env, port: u16, prefix: &str) -> Command {
    let mut c = env.command();
    c.env("AGENTLEDGER_LAKE", format!("s3://lake/{prefix}"))
        .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN");
    c
}

fn run(env: &Env, port: u16, prefix: &str, args: &[&str]) -> Output {
    cmd(env, port, prefix).args(args).output().unwrap()
}

fn ok(env: &Env, port: u16, prefix: &str, args: &[&str]) -> String {
    let out = run(env, port, prefix, args);
    assert!(
        out.status.success(),
        "agentledger {args:?} on S3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `agentledger ingest --format json SOURCES...`: the summary.
fn ingest_json(env: &Env, port: u16, prefix: &str, sources: &[&str]) -> Value {
    let mut args = vec!["ingest", "--format", "json"];
    args.extend_from_slice(sources);
    serde_json::from_str(&ok(env, port, prefix, &args)).unwrap()
}

fn scalar(env: &Env, port: u16, prefix: &str, sql: &str) -> String {
    let rows: Vec<Value> =
        serde_json::from_str(&ok(env, port, prefix, &["sql", "--format", "json", sql])).unwrap();
    let v = rows[0]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .clone();
    match v {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

/// The lake holds exactly `events` events, each once.
fn assert_exact(env: &Env, port: u16, prefix: &str, events: &str) {
    assert_eq!(
        scalar(env, port, prefix, "SELECT count(*) FROM events"),
        events
    );
    assert_eq!(
        scalar(
            env,
            port,
            prefix,
            "SELECT count(DISTINCT event_id) FROM events"
        ),
        events
    );
}

/// Events of the sample, split into `parts` files, plus the count of
/// distinct valid event ids the whole sample stores.
fn local_reference(env: &Env) -> (String, String) {
    env.ok(&["load", "prices", &sample("model_prices.csv")]);
    env.ok(&["load", "plans", &sample("customer_plans.csv")]);
    env.ok(&["ingest", &sample("events.ndjson")]);
    (
        env.scalar("SELECT count(*) FROM events"),
        env.ok(&["metrics", "--by", "tenant_id,week", "--format", "csv"]),
    )
}

#[test]
fn every_command_works_on_an_s3_lake_and_agrees_with_a_local_one() {
    let env = Env::new();
    let (events, metrics) = local_reference(&env);
    let s3 = S3::start();
    let p = s3.port;
    ok(
        &env,
        p,
        "a",
        &["load", "prices", &sample("model_prices.csv")],
    );
    ok(
        &env,
        p,
        "a",
        &["load", "plans", &sample("customer_plans.csv")],
    );
    // Sources on S3 too: half the sample uploaded, half local.
    let parts = env.split_sample(2);
    s3.put("landing/part-0.ndjson", &std::fs::read(&parts[0]).unwrap());
    let summary: Value = ingest_json(
        &env,
        p,
        "a",
        &["s3://lake/landing/", parts[1].to_str().unwrap()],
    );
    assert!(
        summary["sources"][0]["source"]
            .as_str()
            .unwrap()
            .starts_with("s3://lake/landing/")
    );
    assert_eq!(scalar(&env, p, "a", "SELECT count(*) FROM events"), events);
    assert_eq!(
        ok(
            &env,
            p,
            "a",
            &["metrics", "--by", "tenant_id,week", "--format", "csv"]
        ),
        metrics
    );
    // The same sources again: nothing new, not even in the quarantine.
    let again: Value = ingest_json(
        &env,
        p,
        "a",
        &["s3://lake/landing/", parts[1].to_str().unwrap()],
    );
    assert_eq!(again["stored"], 0);
    assert_eq!(again["quarantined_new"], 0);
    // The weekly report from S3 equals the one from the local lake.
    let local = env.path("local-report");
    env.ok(&[
        "report",
        "--week",
        "2026-W43",
        "--out",
        local.to_str().unwrap(),
    ]);
    let remote = env.path("s3-report");
    ok(
        &env,
        p,
        "a",
        &[
            "report",
            "--week",
            "2026-W43",
            "--out",
            remote.to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::read_to_string(local.join("margin.csv")).unwrap(),
        std::fs::read_to_string(remote.join("margin.csv")).unwrap()
    );
    // Nothing lands outside the prefix, and the layout is the Hive one.
    let listing = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import urllib.request,re;b=urllib.request.urlopen('http://127.0.0.1:{p}/lake?list-type=2&max-keys=10000').read().decode();print('\\n'.join(re.findall('<Key>([^<]*)</Key>',b)))"
        ))
        .output()
        .unwrap();
    let keys = String::from_utf8(listing.stdout).unwrap();
    assert!(
        keys.lines()
            .any(|k| k.starts_with("a/events/date=2026-10-")),
        "{keys}"
    );
    assert!(
        keys.lines()
            .all(|k| k.starts_with("a/") || k.starts_with("landing/")),
        "{keys}"
    );

    // The scheduled batch on S3: lake and landing area both in the bucket.
    let config = env.write(
        "batch.toml",
        &format!(
            "lake = \"s3://lake/b\"\nlanding = \"s3://lake/landing/\"\nprices = \"{}\"\nplans = \"{}\"\nreports = \"reports\"\n",
            sample("model_prices.csv"),
            sample("customer_plans.csv")
        ),
    );
    let batch_args = [
        "run",
        "--config",
        config.to_str().unwrap(),
        "--week",
        "2026-W43",
    ];
    let log = run(&env, p, "unused", &batch_args);
    assert!(
        log.status.success(),
        "{}",
        String::from_utf8_lossy(&log.stderr)
    );
    assert!(env.path("reports/2026-W43/report.html").exists());
    let half = scalar(&env, p, "b", "SELECT count(*) FROM events");
    assert!(half.parse::<u64>().unwrap() > 1000, "{half}");
    let log = run(&env, p, "unused", &batch_args);
    assert!(String::from_utf8_lossy(&log.stderr).contains("already_ingested=1"));

    // Retention on S3: everything before 2026-10-27 out, atomically.
    let today = chrono::Utc::now().date_naive();
    let days = (today - chrono::NaiveDate::from_ymd_opt(2026, 10, 27).unwrap())
        .num_days()
        .to_string();
    let kept = scalar(
        &env,
        p,
        "a",
        "SELECT count(*) FROM events WHERE date >= DATE '2026-10-27'",
    );
    let out = cmd(&env, p, "a")
        .env("AGENTLEDGER_RETAIN_GRACE_SECS", "0")
        .args(["retain", "--days", &days])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(scalar(&env, p, "a", "SELECT count(*) FROM events"), kept);
}

#[test]
fn two_ingests_at_once_never_lose_or_duplicate_an_event() {
    let env = Env::new();
    let (events, _) = local_reference(&env);
    let s3 = S3::start();
    let p = s3.port;
    let parts = env.split_sample(2);
    // Different files at the same moment, then the same file twice at once.
    for round in [vec![&parts[0], &parts[1]], vec![&parts[0], &parts[0]]] {
        let children: Vec<Child> = round
            .iter()
            .map(|f| {
                cmd(&env, p, "race")
                    .args(["ingest", f.to_str().unwrap()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    assert_exact(&env, p, "race", &events);
}

#[test]
fn transient_faults_are_retried_and_the_event_set_is_exact() {
    let env = Env::new();
    let (events, _) = local_reference(&env);
    let s3 = S3::start();
    let proxy = Proxy::start(
        s3.port,
        env.dir.path(),
        &[
            "--error-rate",
            "0.15",
            "--status",
            "500,503,429",
            "--drop-rate",
            "0.05",
            "--slow-rate",
            "0.1",
            "--slow-ms",
            "300",
            "--seed",
            "7",
        ],
    );
    let p = proxy.port;
    let started = Instant::now();
    ok(
        &env,
        p,
        "f",
        &["load", "prices", &sample("model_prices.csv")],
    );
    ok(&env, p, "f", &["ingest", &sample("events.ndjson")]);
    assert!(proxy.faults() > 0, "faults were injected");
    assert!(started.elapsed() < Duration::from_secs(120));
    // Read back straight from the server.
    assert_exact(&env, s3.port, "f", &events);
}

#[test]
fn a_server_outage_mid_ingest_is_ridden_out() {
    let env = Env::new();
    let (events, _) = local_reference(&env);
    let s3 = S3::start();
    let proxy = Proxy::start(
        s3.port,
        env.dir.path(),
        &["--outage-after", "6", "--outage-secs", "3"],
    );
    let out = run(&env, proxy.port, "o", &["ingest", &sample("events.ndjson")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(proxy.faults() > 0, "the outage happened during the ingest");
    assert_eq!(
        scalar(&env, s3.port, "o", "SELECT count(*) FROM events"),
        events
    );
}

#[test]
fn persistent_faults_fail_in_bounded_time_and_a_rerun_completes() {
    let env = Env::new();
    let (events, _) = local_reference(&env);
    let s3 = S3::start();
    let parts = env.split_sample(2);
    // Half the events land first, through a healthy path.
    ok(&env, s3.port, "p", &["ingest", parts[0].to_str().unwrap()]);
    let before = scalar(&env, s3.port, "p", "SELECT count(*) FROM events");
    let proxy = Proxy::start(
        s3.port,
        env.dir.path(),
        &["--always-fail", "--status", "500"],
    );
    let started = Instant::now();
    let out = cmd(&env, proxy.port, "p")
        .env("AGENTLEDGER_RETRY_TIMEOUT_SECS", "3")
        .args(["ingest", &sample("events.ndjson")])
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("500") || err.to_lowercase().contains("server"),
        "{err}"
    );
    assert!(
        elapsed < Duration::from_secs(60),
        "gave up after {elapsed:?}"
    );
    // Nothing half-done is visible, and a re-run completes the exact set.
    assert_eq!(
        scalar(&env, s3.port, "p", "SELECT count(*) FROM events"),
        before
    );
    ok(&env, s3.port, "p", &["ingest", &sample("events.ndjson")]);
    assert_exact(&env, s3.port, "p", &events);
}

/// Four ingest workers started together on one S3 lake, with overlapping
/// sources (every file goes to two of them): each event is stored exactly
/// once, the quarantine holds each bad line once, the summaries add up as if
/// they had run one after another. No ingest waits for another's lock: the
/// two timings are printed (`--nocapture`) for BENCHMARKS.md.
#[test]
fn four_concurrent_ingests_with_overlapping_sources_store_each_event_once() {
    let env = Env::new();
    let events = env.generated_sample(3000, 11);
    let text = std::fs::read_to_string(&events).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let per = lines.len().div_ceil(4);
    let parts: Vec<String> = lines
        .chunks(per)
        .enumerate()
        .map(|(i, c)| {
            env.write(&format!("four/part-{i}.ndjson"), &(c.join("\n") + "\n"))
                .display()
                .to_string()
        })
        .collect();
    let sources: Vec<[&str; 2]> = (0..4)
        .map(|i| [parts[i].as_str(), parts[(i + 1) % 4].as_str()])
        .collect();
    // The reference: the whole sample into a local lake.
    env.ingest(&[&events]);
    let events = env.scalar("SELECT count(*) FROM events");
    let quarantined = env.scalar("SELECT count(*) FROM quarantine");

    let s3 = S3::start();
    let p = s3.port;
    // One after another.
    let started = Instant::now();
    for s in &sources {
        ingest_json(&env, p, "serial", s);
    }
    let serial = started.elapsed();
    // All at once.
    let started = Instant::now();
    let children: Vec<Child> = sources
        .iter()
        .map(|s| {
            cmd(&env, p, "together")
                .args(["ingest", "--format", "json", s[0], s[1]])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut stored = 0;
    let mut read = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let s: Value = serde_json::from_slice(&out.stdout).unwrap();
        let n = |k: &str| s[k].as_u64().unwrap();
        assert_eq!(
            n("read"),
            n("stored") + n("duplicate") + n("quarantined"),
            "{s}"
        );
        stored += n("stored");
        read += n("read");
    }
    let together = started.elapsed();
    assert_eq!(
        read as usize,
        2 * lines.iter().filter(|l| !l.trim().is_empty()).count()
    );
    assert_eq!(
        stored.to_string(),
        events,
        "each event stored by exactly one"
    );
    for prefix in ["serial", "together"] {
        assert_exact(&env, p, prefix, &events);
        assert_eq!(
            scalar(&env, p, prefix, "SELECT count(*) FROM quarantine"),
            quarantined,
            "{prefix}: each bad line quarantined once"
        );
        // Other engines read the same through the tables' Delta logs, which
        // the four processes kept in step among themselves.
        assert_eq!(delta_rows(p, prefix, "events").to_string(), events);
        assert_eq!(delta_rows(p, prefix, "quarantine").to_string(), quarantined);
    }
    // Timing is measured, not asserted (tests run beside each other); the
    // figures are in BENCHMARKS.md.
    eprintln!("four ingests: {serial:?} one after another, {together:?} at once");
}
