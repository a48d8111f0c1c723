//! Retrying the few storage calls object_store does not retry itself.
//!
//! object_store retries reads, overwrites and uploads through transient
//! errors, but not a conditional create (`PutMode::Create`) or a delete whose
//! connection dropped after the request went out: it cannot know whether the
//! server acted. The lake's own such calls (commit records, the lock) are
//! safe to repeat because the caller checks, on `AlreadyExists`, whether the
//! object is its own; this module repeats them with exponential backoff and
//! jitter until the retry budget ([`crate::store::retry_timeout`]) is spent.
//! Local and in-memory stores are never retried: their errors are final.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::store::{Lake, retry_timeout};

/// Runs `op` until it succeeds, fails with a non-transient error, or the
/// budget is spent.
pub async fn retrying<T, F, Fut>(lake: &Lake, mut op: F) -> Result<T, object_store::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, object_store::Error>>,
{
    let remote = !matches!(lake.store_url().scheme(), "file" | "memory");
    let deadline = Instant::now() + retry_timeout();
    let mut pause = Duration::from_millis(100);
    loop {
        match op().await {
            Err(e @ object_store::Error::Generic { .. })
                if remote && Instant::now() + pause < deadline =>
            {
                let _ = e;
                tokio::time::sleep(jittered(pause)).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

/// Creates the object at `path` with `body` only if it does not exist
/// (`PutMode::Create`, atomic on every store), repeating the request through
/// transient errors. `AlreadyExists` comes back to the caller, which checks
/// whether the object found is its own earlier attempt (commit records,
/// lease records).
pub async fn create_if_absent(
    lake: &Lake,
    path: &object_store::path::Path,
    body: Vec<u8>,
) -> Result<(), object_store::Error> {
    use object_store::{PutMode, PutOptions, PutPayload};
    let body = bytes::Bytes::from(body);
    retrying(lake, || {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        lake.store()
            .put_opts(path, PutPayload::from(body.clone()), opts)
    })
    .await
    .map(|_| ())
}

/// A duration in whole seconds from the environment variable `name`, or
/// `default` when it is unset. A value that is not a whole number is
/// reported on stderr (naming the variable) and the default is used.
pub fn env_secs(name: &str, default: u64) -> Duration {
    Duration::from_secs(env_count(name, "seconds", 0, default))
}

/// A whole number of at least `min` from the variable `name`, or `default`
/// when it is unset; a value that is not one is reported on stderr, not
/// silently ignored. `unit` names what it counts, for that message.
pub fn env_count(name: &str, unit: &str, min: u64, default: u64) -> u64 {
    let Ok(v) = std::env::var(name) else {
        return default;
    };
    match v.trim().parse::<u64>() {
        Ok(n) if n >= min => n,
        _ => {
            tracing::warn!(
                "{name}={v:?} is not a whole number of {unit} (at least {min}); using {default}"
            );
            default
        }
    }
}

/// Between half and all of `d`, so waiters and retries do not move in step.
pub(crate) fn jittered(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos());
    d.mul_f64(0.5 + f64::from(nanos % 1000) / 2000.0)
}
