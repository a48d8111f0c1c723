//! The OTLP/HTTP receiver: `POST /v1/traces`, protobuf or JSON, optionally
//! gzip (SPEC section 7).
//!
//! A request is decoded into `opentelemetry-proto`'s types (so a malformed
//! one is refused with 400 before anything is written), written as one
//! OTLP/JSON line to the spool, and answered 200 once that line is synced
//! ([`crate::spool`]). Message contents are dropped before the line is
//! written unless kept (`--keep-messages`), so by default they never reach
//! the disk. The committer ingests the spool into the lake every
//! `commit_interval` or once `commit_spans` spans are waiting, through the
//! ingest `agentledger ingest` runs.
//!
//! Limits, each named in the error a client gets: a request body over
//! `max_request_bytes` (compressed or not) is refused with 413; while the
//! spool holds more than `max_spool_bytes` (the lake is slower than the
//! senders, or unreachable) requests are refused with 503 and `Retry-After`,
//! which OTLP exporters retry; an attribute over the ingest's attribute
//! limit quarantines its span's event with that limit named, like any input.
//! At most `max_concurrent_requests` requests are decoded at once, so the
//! receiver's memory stays bounded whatever the senders do.

use std::convert::Infallible;
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use agentledger_ingest::otlp::is_message_attribute;
use agentledger_ingest::{IngestOptions, Input, OtlpOptions};
use agentledger_lake::Lake;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, watch};

use crate::spool::Spool;

/// How the receiver runs.
#[derive(Debug, Clone)]
pub struct ReceiverConfig {
    /// Where to listen.
    pub addr: SocketAddr,
    /// The spool folder (local disk).
    pub spool: PathBuf,
    /// Commit at least this often while spans wait.
    pub commit_interval: Duration,
    /// Commit as soon as this many spans wait.
    pub commit_spans: u64,
    /// Largest request body, compressed or after decompression.
    pub max_request_bytes: usize,
    /// Refuse requests (503) while the spool holds more than this.
    pub max_spool_bytes: u64,
    /// Requests decoded at once.
    pub max_concurrent_requests: usize,
    /// How spans are mapped; `keep_messages` also keeps them in the spool.
    pub otlp: OtlpOptions,
}

/// Default of [`ReceiverConfig::commit_interval`].
pub const DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_secs(10);
/// Default of [`ReceiverConfig::commit_spans`].
pub const DEFAULT_COMMIT_SPANS: u64 = 50_000;
/// Default of [`ReceiverConfig::max_request_bytes`]: 16 MiB.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 16 << 20;
/// Default of [`ReceiverConfig::max_spool_bytes`]: 1 GiB.
pub const DEFAULT_MAX_SPOOL_BYTES: u64 = 1 << 30;
/// Default of [`ReceiverConfig::max_concurrent_requests`].
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 16;

impl ReceiverConfig {
    /// The defaults for `addr` and `spool`.
    pub fn new(addr: SocketAddr, spool: PathBuf) -> Self {
        Self {
            addr,
            spool,
            commit_interval: DEFAULT_COMMIT_INTERVAL,
            commit_spans: DEFAULT_COMMIT_SPANS,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_spool_bytes: DEFAULT_MAX_SPOOL_BYTES,
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
            otlp: OtlpOptions::default(),
        }
    }
}

/// What a receiver did, when it stops.
#[derive(Debug, Clone, Default)]
pub struct ReceiverSummary {
    /// Requests answered 200.
    pub requests: u64,
    /// Spans in those requests.
    pub spans: u64,
    /// Commits to the lake (ingests that stored something or not).
    pub commits: u64,
    /// Events stored by those commits.
    pub stored: u64,
}

/// Shared state of the HTTP side.
struct Shared {
    spool: Spool,
    config: ReceiverConfig,
    permits: Semaphore,
    requests: AtomicU64,
    spans: AtomicU64,
    /// Woken when enough spans wait for a commit.
    wake: Notify,
    /// Set once shutdown starts: new requests get 503.
    stopping: watch::Receiver<bool>,
}

/// Runs the receiver until `shutdown` resolves: then stops taking
/// connections, lets requests in flight finish (for at most 30 seconds),
/// commits everything accepted, and returns. Segments a previous run left
/// in the spool are committed first, at start.
pub async fn serve_otlp(
    lake: Lake,
    config: ReceiverConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<ReceiverSummary, ServeError> {
    let (spool, _lock) = Spool::open(&config.spool).map_err(|e| ServeError::Spool {
        dir: config.spool.clone(),
        reason: e.to_string(),
    })?;
    let listener = TcpListener::bind(config.addr)
        .await
        .map_err(|e| ServeError::Bind {
            addr: config.addr,
            reason: e.to_string(),
        })?;
    let local = listener.local_addr().map_err(|e| ServeError::Bind {
        addr: config.addr,
        reason: e.to_string(),
    })?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        spool: spool.clone(),
        permits: Semaphore::new(config.max_concurrent_requests.max(1)),
        requests: AtomicU64::new(0),
        spans: AtomicU64::new(0),
        wake: Notify::new(),
        stopping: stop_rx.clone(),
        config: config.clone(),
    });
    tracing::info!(
        listen = %local,
        spool = %config.spool.display(),
        commit_interval_s = config.commit_interval.as_secs_f64(),
        commit_spans = config.commit_spans,
        "OTLP/HTTP receiver listening on http://{local}/v1/traces"
    );

    let committer = tokio::spawn(commit_loop(
        lake.clone(),
        Arc::clone(&shared),
        stop_rx.clone(),
    ));

    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!("accepting a connection failed: {e}");
                        continue;
                    }
                };
                let shared = Arc::clone(&shared);
                let mut stop = stop_rx.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let shared = Arc::clone(&shared);
                        async move { Ok::<_, Infallible>(handle(&shared, req).await) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    tokio::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        _ = stop.changed() => {
                            conn.as_mut().graceful_shutdown();
                            let _ = conn.await;
                        }
                    }
                });
            }
        }
    }
    tracing::info!(
        "shutting down: finishing requests in flight, then committing what was accepted"
    );
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(Duration::from_secs(30), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            "requests still in flight after 30 s were cut off (they got no answer; their clients retry)"
        );
        connections.abort_all();
    }
    shared.wake.notify_one();
    let (commits, stored) = committer
        .await
        .map_err(|e| ServeError::Commit(e.to_string()))??;
    Ok(ReceiverSummary {
        requests: shared.requests.load(Ordering::Relaxed),
        spans: shared.spans.load(Ordering::Relaxed),
        commits,
        stored,
    })
}

/// Why the receiver could not run or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The spool cannot be opened.
    #[error("spool {dir}: {reason}")]
    Spool {
        /// The folder.
        dir: PathBuf,
        /// Why.
        reason: String,
    },
    /// The address cannot be listened on.
    #[error("cannot listen on {addr}: {reason}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The final commit failed: what was accepted stays in the spool, and
    /// the next start commits it.
    #[error(
        "committing the spool to the lake failed: {0}; what was accepted stays in the spool and the next start commits it"
    )]
    Commit(String),
}

/// Commits the spool: at start (what an earlier run left), then whenever
/// the interval passes or enough spans wait, and a last time at shutdown.
/// A failed commit is retried at the next turn, the spool kept; the one at
/// shutdown fails the receiver.
async fn commit_loop(
    lake: Lake,
    shared: Arc<Shared>,
    mut stopping: watch::Receiver<bool>,
) -> Result<(u64, u64), ServeError> {
    let options = IngestOptions {
        input: Input::Otlp,
        otlp: shared.config.otlp,
        ..IngestOptions::default()
    };
    let (mut commits, mut stored) = (0u64, 0u64);
    let mut last = Instant::now();
    // At start (segments an earlier process left), and after a failed
    // commit (sealed segments wait even when no new span arrives).
    let mut first = true;
    let mut pending = false;
    loop {
        let stop = *stopping.borrow();
        let waiting = shared.spool.gauges.spans_since_seal.load(Ordering::Relaxed);
        let interval_passed = last.elapsed() >= shared.config.commit_interval;
        let due = first
            || stop
            || (pending && interval_passed)
            || (waiting > 0 && interval_passed)
            || waiting >= shared.config.commit_spans;
        if due {
            first = false;
            last = Instant::now();
            let result = commit_once(&lake, &shared.spool, &options).await;
            pending = result.is_err();
            match result {
                Ok(Some(n)) => {
                    commits += 1;
                    stored += n;
                }
                Ok(None) => {}
                Err(e) if stop => return Err(ServeError::Commit(e)),
                Err(e) => tracing::error!(
                    "committing the spool failed: {e}; the spool is kept and the commit tried again in {:.0} s",
                    shared.config.commit_interval.as_secs_f64()
                ),
            }
            if stop {
                return Ok((commits, stored));
            }
        }
        let tick = shared
            .config
            .commit_interval
            .min(Duration::from_secs(1))
            .max(Duration::from_millis(50));
        tokio::select! {
            () = tokio::time::sleep(tick) => {}
            () = shared.wake.notified() => {}
            _ = stopping.changed() => {}
        }
    }
}

/// Seals the spool and ingests its sealed segments; removes them once
/// committed. The events stored, or none when the spool was empty.
async fn commit_once(
    lake: &Lake,
    spool: &Spool,
    options: &IngestOptions,
) -> Result<Option<u64>, String> {
    let sealed = spool.seal().await.map_err(|e| e.to_string())?;
    if sealed.is_empty() {
        return Ok(None);
    }
    let started = Instant::now();
    let sources: Vec<String> = sealed.iter().map(|p| p.display().to_string()).collect();
    let summary = agentledger_batch::ops::ingest(lake, &sources, options, None)
        .await
        .map_err(|e| e.to_string())?;
    spool.remove(&sealed).map_err(|e| e.to_string())?;
    let otlp = summary.otlp.unwrap_or_default();
    tracing::info!(
        step = "otlp-commit",
        segments = sealed.len(),
        spans = otlp.spans_read,
        skipped = otlp.spans_skipped,
        stored = summary.stored,
        duplicate = summary.duplicate,
        quarantined = summary.quarantined,
        version = summary.version,
        seconds = (started.elapsed().as_secs_f64() * 100.0).round() / 100.0,
        "spool committed"
    );
    Ok(Some(summary.stored))
}

type Answer = Response<Full<Bytes>>;

fn answer(status: StatusCode, message: &str) -> Answer {
    let mut r = Response::new(Full::new(Bytes::from(format!("{message}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn retry_later(status: StatusCode, message: &str, seconds: u32) -> Answer {
    let mut r = answer(status, message);
    r.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
    r
}

/// The request's body encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Answer {
    if req.uri().path() != "/v1/traces" {
        return answer(
            StatusCode::NOT_FOUND,
            "not found: this receiver takes OTLP traces at POST /v1/traces",
        );
    }
    if req.method() != hyper::Method::POST {
        let mut r = answer(StatusCode::METHOD_NOT_ALLOWED, "use POST for /v1/traces");
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
        return r;
    }
    if *shared.stopping.borrow() {
        return retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            "the receiver is shutting down; retry",
            5,
        );
    }
    let config = &shared.config;
    let spooled = shared.spool.gauges.bytes.load(Ordering::Relaxed);
    if spooled > config.max_spool_bytes {
        return retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!(
                "the spool holds {spooled} bytes not yet committed to the lake, over its limit of {} bytes (--max-spool-bytes); retry later",
                config.max_spool_bytes
            ),
            10,
        );
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let encoding = match content_type.as_str() {
        "application/x-protobuf" | "application/protobuf" => Encoding::Protobuf,
        "application/json" => Encoding::Json,
        other => {
            return answer(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &format!(
                    "Content-Type '{other}' is not OTLP: send application/x-protobuf or application/json"
                ),
            );
        }
    };
    let gzip = match req
        .headers()
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
    {
        None | Some("identity") => false,
        Some("gzip") => true,
        Some(other) => {
            return answer(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &format!("Content-Encoding '{other}' is not supported: send gzip or none"),
            );
        }
    };
    let limit = config.max_request_bytes;
    // Bounded memory: at most so many requests are read and decoded at once.
    let Ok(_permit) = shared.permits.acquire().await else {
        return retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            "the receiver is shutting down; retry",
            5,
        );
    };
    let body = match Limited::new(req.into_body(), limit).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            let r = Refusal::too_large(limit);
            return answer(r.status, &r.message);
        }
        Err(e) => {
            return answer(
                StatusCode::BAD_REQUEST,
                &format!("cannot read the request body: {e}"),
            );
        }
    };
    // Unpacking, decoding and writing the line are CPU work on up to
    // `max_request_bytes`: on the blocking pool, not the runtime's threads
    // that accept connections and answer other requests.
    let keep_messages = config.otlp.keep_messages;
    let decoded =
        tokio::task::spawn_blocking(move || to_line(body, gzip, encoding, limit, keep_messages))
            .await;
    let (line, spans) = match decoded {
        Ok(Ok(decoded)) => decoded,
        Ok(Err(r)) => return answer(r.status, &r.message),
        Err(e) => {
            return answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("decoding the request failed: {e}"),
            );
        }
    };
    if spans > 0 {
        if let Err(e) = shared.spool.append(line, spans).await {
            return retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("the request could not be made durable in the spool ({e}); retry"),
                5,
            );
        }
        if shared.spool.gauges.spans_since_seal.load(Ordering::Relaxed) >= config.commit_spans {
            shared.wake.notify_one();
        }
    }
    shared.requests.fetch_add(1, Ordering::Relaxed);
    shared.spans.fetch_add(spans, Ordering::Relaxed);
    let reply = ExportTraceServiceResponse {
        partial_success: None,
    };
    let (body, content_type) = match encoding {
        Encoding::Protobuf => (Bytes::from(reply.encode_to_vec()), "application/x-protobuf"),
        Encoding::Json => (Bytes::from_static(b"{}"), "application/json"),
    };
    let mut r = Response::new(Full::new(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r
}

/// Why a request body is refused: its status and the message.
struct Refusal {
    status: StatusCode,
    message: String,
}

impl Refusal {
    fn bad(message: String) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message,
        }
    }

    fn too_large(limit: usize) -> Self {
        Self {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!(
                "request body over the limit of {limit} bytes (--max-request-bytes); export smaller batches"
            ),
        }
    }
}

/// A request body as one OTLP/JSON spool line and its span count, message
/// contents dropped unless kept; or why it is refused.
fn to_line(
    body: Bytes,
    gzip: bool,
    encoding: Encoding,
    limit: usize,
    keep_messages: bool,
) -> Result<(Vec<u8>, u64), Refusal> {
    let body = if gzip {
        let mut out = Vec::new();
        let decoder = flate2::read::MultiGzDecoder::new(&body[..]);
        match decoder.take(limit as u64 + 1).read_to_end(&mut out) {
            Ok(n) if n > limit => return Err(Refusal::too_large(limit)),
            Ok(_) => Bytes::from(out),
            Err(e) => {
                return Err(Refusal::bad(format!("the gzip body cannot be read: {e}")));
            }
        }
    } else {
        body
    };
    let mut request = match encoding {
        Encoding::Protobuf => ExportTraceServiceRequest::decode(body).map_err(|e| {
            Refusal::bad(format!(
                "the body is not an OTLP ExportTraceServiceRequest in protobuf: {e}"
            ))
        })?,
        Encoding::Json => {
            serde_json::from_slice::<ExportTraceServiceRequest>(&body).map_err(|e| {
                Refusal::bad(format!(
                    "the body is not an OTLP ExportTraceServiceRequest in JSON: {e}"
                ))
            })?
        }
    };
    if !keep_messages {
        drop_messages(&mut request);
    }
    let spans: u64 = request
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len() as u64)
        .sum();
    if spans == 0 {
        return Ok((Vec::new(), 0));
    }
    let line = serde_json::to_vec(&request)
        .map_err(|e| Refusal::bad(format!("the request cannot be written as OTLP/JSON: {e}")))?;
    Ok((line, spans))
}

/// Drops message contents from spans and span events (SPEC section 7):
/// they are not stored, so they are not spooled either.
fn drop_messages(request: &mut ExportTraceServiceRequest) {
    let keep = |kv: &KeyValue| !is_message_attribute(&kv.key);
    for rs in &mut request.resource_spans {
        for ss in &mut rs.scope_spans {
            for span in &mut ss.spans {
                span.attributes.retain(keep);
                for event in &mut span.events {
                    event.attributes.retain(keep);
                }
            }
        }
    }
}
