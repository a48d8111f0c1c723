//! The writer lock: one writer at a time per lake.
//!
//! Writers (ingest, reference loads) serialize on `_lock/writer.json`, an
//! object created with `PutMode::Create`. The lock records the holder's pid
//! and host. A lock left by a process that was killed (same host, pid no
//! longer alive) is stale and is taken over, so a crashed batch never needs a
//! human to re-run. Readers never take the lock: they read a snapshot.

use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::Lake;

/// Where the lock lives, relative to the lake root.
pub const LOCK_PATH: &str = "_lock/writer.json";

/// The scheduled batch's lock: one `agentledger run` at a time per lake. It
/// is held for the whole run, while the writer lock is taken and released
/// by each write inside it.
pub const BATCH_LOCK_PATH: &str = "_lock/batch.json";

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Holder {
    pid: u32,
    host: String,
    purpose: String,
    since: String,
}

/// A held writer lock. Call [`WriterLock::release`] when done; a lock that
/// is never released is taken over once its process has exited.
#[derive(Debug)]
pub struct WriterLock {
    lake: Lake,
    path: Path,
    released: bool,
}

impl WriterLock {
    /// Takes the writer lock for `purpose` (shown to anyone who finds it
    /// held). While another live writer holds it, waits for it to be
    /// released, up to `AGENTLEDGER_LOCK_WAIT_SECS` (default 60), so two
    /// ingests started together both complete, one after the other.
    pub async fn acquire(lake: &Lake, purpose: &str) -> Result<Self> {
        let wait = crate::retry::env_secs("AGENTLEDGER_LOCK_WAIT_SECS", 60);
        Self::acquire_waiting(lake, LOCK_PATH, purpose, wait).await
    }

    /// Takes the lock at `relative` (for example [`BATCH_LOCK_PATH`]) without
    /// waiting: held by a live process, it is an error at once.
    pub async fn acquire_at(lake: &Lake, relative: &str, purpose: &str) -> Result<Self> {
        Self::acquire_waiting(lake, relative, purpose, std::time::Duration::ZERO).await
    }

    /// Takes the lock at `relative`, waiting up to `wait` for a live holder.
    pub async fn acquire_waiting(
        lake: &Lake,
        relative: &str,
        purpose: &str,
        wait: std::time::Duration,
    ) -> Result<Self> {
        let deadline = std::time::Instant::now() + wait;
        let mut pause = std::time::Duration::from_millis(50);
        loop {
            match Self::try_acquire(lake, relative, purpose).await {
                Err(Error::Locked { .. }) if std::time::Instant::now() < deadline => {
                    // Jittered, growing pauses: two waiters do not poll in step.
                    tokio::time::sleep(crate::retry::jittered(pause)).await;
                    pause = (pause * 2).min(std::time::Duration::from_secs(2));
                }
                other => return other,
            }
        }
    }

    async fn try_acquire(lake: &Lake, relative: &str, purpose: &str) -> Result<Self> {
        let path = lake.path(relative);
        let me = Holder {
            pid: std::process::id(),
            host: hostname(),
            purpose: purpose.to_string(),
            since: crate::log::now_rfc3339(),
        };
        let body = serde_json::to_vec(&me).expect("lock serializes");
        for _attempt in 0..3 {
            let opts = PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            };
            let put = crate::retry::retrying(lake, || {
                lake.store()
                    .put_opts(&path, PutPayload::from(body.clone()), opts.clone())
            })
            .await;
            match put {
                Ok(_) => {
                    return Ok(Self {
                        lake: lake.clone(),
                        path,
                        released: false,
                    });
                }
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            let got = crate::retry::retrying(lake, || async {
                lake.store().get(&path).await?.bytes().await
            })
            .await;
            let holder = match got {
                Ok(bytes) => serde_json::from_slice::<Holder>(&bytes).ok(),
                // Released between our put and our read: try again.
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            match holder {
                // Our own earlier attempt landed before its answer was lost.
                Some(h) if h == me => {
                    return Ok(Self {
                        lake: lake.clone(),
                        path,
                        released: false,
                    });
                }
                Some(h) if h.host == me.host && !pid_alive(h.pid) => {
                    // Stale: its process is gone. Take it over.
                    match crate::retry::retrying(lake, || lake.store().delete(&path)).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Some(h) => {
                    return Err(Error::Locked {
                        holder: format!(
                            "pid {} on {} for '{}' since {}",
                            h.pid, h.host, h.purpose, h.since
                        ),
                        path: format!("{}/{}", lake.display().trim_end_matches('/'), relative),
                    });
                }
                None => {
                    return Err(Error::Locked {
                        holder: "unreadable lock record".into(),
                        path: format!("{}/{}", lake.display().trim_end_matches('/'), relative),
                    });
                }
            }
        }
        Err(Error::Locked {
            holder: "lock changed hands repeatedly".into(),
            path: format!("{}/{}", lake.display().trim_end_matches('/'), relative),
        })
    }

    /// Releases the lock.
    pub async fn release(mut self) -> Result<()> {
        self.released = true;
        let (lake, path) = (&self.lake, &self.path);
        match crate::retry::retrying(lake, || lake.store().delete(path)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

impl Drop for WriterLock {
    fn drop(&mut self) {
        // An error path dropped the lock without releasing it. For a local
        // lake remove it right away; elsewhere it is taken over as stale
        // once this process exits.
        if !self.released && self.lake.store_url().scheme() == "file" {
            let _ = std::fs::remove_file(format!("/{}", self.path));
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown-host".into())
}

/// Whether a process with this pid exists on this host. Where that cannot be
/// told (no /proc), assume it does: never steal a live lock.
fn pid_alive(pid: u32) -> bool {
    if !std::path::Path::new("/proc/self").exists() {
        return true;
    }
    // A zombie (killed, not yet reaped by its parent) holds nothing.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_held_lock_refuses_a_second_writer_until_released() {
        let lake = Lake::open("memory://lock-test").unwrap();
        let first = WriterLock::acquire(&lake, "ingest").await.unwrap();
        let err = WriterLock::acquire_at(&lake, LOCK_PATH, "load")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("locked by another writer"), "{err}");
        assert!(err.contains("'ingest'"), "{err}");
        // A waiting writer gives up after its wait, with the same reason.
        let started = std::time::Instant::now();
        let err = WriterLock::acquire_waiting(
            &lake,
            LOCK_PATH,
            "load",
            std::time::Duration::from_millis(300),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("locked by another writer"), "{err}");
        assert!(started.elapsed() >= std::time::Duration::from_millis(300));
        first.release().await.unwrap();
        WriterLock::acquire(&lake, "load")
            .await
            .unwrap()
            .release()
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_lock_of_a_dead_process_is_taken_over() {
        let lake = Lake::open("memory://lock-stale").unwrap();
        let dead = Holder {
            pid: u32::MAX - 1,
            host: hostname(),
            purpose: "ingest".into(),
            since: "2026-01-01T00:00:00Z".into(),
        };
        lake.store()
            .put(
                &lake.path(LOCK_PATH),
                serde_json::to_vec(&dead).unwrap().into(),
            )
            .await
            .unwrap();
        WriterLock::acquire(&lake, "ingest")
            .await
            .unwrap()
            .release()
            .await
            .unwrap();
    }
}
