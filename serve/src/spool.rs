//! The receiver's spool: accepted requests, durable on local disk until
//! they are committed to the lake.
//!
//! Requests are appended, one OTLP/JSON line each, to the open segment file
//! by one writer task, which syncs the file before it answers any of the
//! requests it wrote (so concurrent requests share one sync). A request is
//! answered 200 only after its line is synced: a crash after that leaves it
//! in the spool, and the next start commits it. A crash during a write
//! leaves at most a partial last line, of a request that got no answer; it
//! is cut off when the spool is opened again.
//!
//! The committer seals the open segment (a new one is opened for the next
//! requests), ingests the sealed segments into the lake and removes them
//! once the ingest committed. A crash between the commit and the removal
//! ingests them again at the next start, which stores nothing twice: the
//! events derived from spans have ids made of the trace and span ids, and a
//! quarantined line's key is its segment, line and text.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};

/// Extension of segment files (a name the ingest reads as JSON lines).
const SEGMENT_EXTENSION: &str = "jsonl";

/// What the writer task is asked to do.
enum Job {
    /// Append these lines (one request, already one line each) and answer
    /// once they are synced.
    Append {
        lines: Vec<u8>,
        spans: u64,
        done: oneshot::Sender<std::io::Result<()>>,
    },
    /// Close the open segment, open a new one, and answer with every sealed
    /// segment.
    Seal {
        done: oneshot::Sender<std::io::Result<Vec<PathBuf>>>,
    },
}

/// The spool's counters, shared with the HTTP side.
#[derive(Debug, Default)]
pub struct Gauges {
    /// Bytes in all segments not yet committed and removed.
    pub bytes: AtomicU64,
    /// Spans accepted since the last seal.
    pub spans_since_seal: AtomicU64,
}

/// A handle to the spool's writer task.
#[derive(Clone)]
pub struct Spool {
    jobs: mpsc::Sender<Job>,
    /// Shared counters.
    pub gauges: Arc<Gauges>,
    dir: PathBuf,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool").field("dir", &self.dir).finish()
    }
}

/// The lock that keeps a second receiver off this spool.
#[derive(Debug)]
pub struct SpoolLock(#[allow(dead_code)] File);

impl Spool {
    /// Opens (creating it if needed) the spool in `dir`: takes its lock,
    /// cuts a partial last line off every segment, and starts the writer on
    /// a new segment. Segments left by an earlier run are sealed: the first
    /// [`Spool::seal`] returns them.
    pub fn open(dir: &Path) -> std::io::Result<(Spool, SpoolLock)> {
        std::fs::create_dir_all(dir)?;
        let lock = File::create(dir.join(".lock"))?;
        lock.try_lock().map_err(|e| {
            std::io::Error::other(format!(
                "spool {} is in use by another receiver ({e}); give each receiver its own --spool",
                dir.display()
            ))
        })?;
        let gauges = Arc::new(Gauges::default());
        for segment in segments(dir)? {
            let len = cut_partial_line(&segment)?;
            gauges.bytes.fetch_add(len, Ordering::Relaxed);
        }
        let (tx, rx) = mpsc::channel(1024);
        let writer = Writer {
            dir: dir.to_path_buf(),
            seq: 0,
            open: None,
            gauges: Arc::clone(&gauges),
        };
        std::thread::Builder::new()
            .name("otlp-spool".into())
            .spawn(move || writer.run(rx))?;
        Ok((
            Spool {
                jobs: tx,
                gauges,
                dir: dir.to_path_buf(),
            },
            SpoolLock(lock),
        ))
    }

    /// Appends one request's line (without its line end) and returns once
    /// it is synced to disk.
    pub async fn append(&self, mut line: Vec<u8>, spans: u64) -> std::io::Result<()> {
        line.push(b'\n');
        let (done, answer) = oneshot::channel();
        self.jobs
            .send(Job::Append {
                lines: line,
                spans,
                done,
            })
            .await
            .map_err(|_| std::io::Error::other("the spool writer stopped"))?;
        answer
            .await
            .map_err(|_| std::io::Error::other("the spool writer stopped"))?
    }

    /// Seals the open segment and returns every sealed segment, oldest
    /// first.
    pub async fn seal(&self) -> std::io::Result<Vec<PathBuf>> {
        let (done, answer) = oneshot::channel();
        self.jobs
            .send(Job::Seal { done })
            .await
            .map_err(|_| std::io::Error::other("the spool writer stopped"))?;
        answer
            .await
            .map_err(|_| std::io::Error::other("the spool writer stopped"))?
    }

    /// Removes committed segments.
    pub fn remove(&self, committed: &[PathBuf]) -> std::io::Result<()> {
        for path in committed {
            let len = std::fs::metadata(path)?.len();
            std::fs::remove_file(path)?;
            self.gauges.bytes.fetch_sub(len, Ordering::Relaxed);
        }
        sync_dir(&self.dir)
    }
}

/// The segment files in `dir`, oldest first (their names sort by time).
pub fn segments(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == SEGMENT_EXTENSION) {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// Cuts off bytes after the last line end (a write a crash interrupted);
/// returns the length left.
fn cut_partial_line(path: &Path) -> std::io::Result<u64> {
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    let len = file.metadata()?.len();
    let mut keep = len;
    let mut buf = vec![0u8; 64 * 1024];
    // Back from the end, a chunk at a time, to the last line end.
    while keep > 0 {
        let from = keep.saturating_sub(buf.len() as u64);
        let n = (keep - from) as usize;
        file.seek(SeekFrom::Start(from))?;
        file.read_exact(&mut buf[..n])?;
        match buf[..n].iter().rposition(|&b| b == b'\n') {
            Some(i) => {
                keep = from + i as u64 + 1;
                break;
            }
            None => keep = from,
        }
    }
    if keep < len {
        tracing::warn!(
            segment = %path.display(),
            bytes = len - keep,
            "cut a partial last line off a spool segment (a request interrupted before it was answered)"
        );
        file.set_len(keep)?;
        file.sync_all()?;
    }
    Ok(keep)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// An append waiting for its sync: the lines, their spans, who to answer.
type Pending = (Vec<u8>, u64, oneshot::Sender<std::io::Result<()>>);

/// The writer task's state.
struct Writer {
    dir: PathBuf,
    seq: u64,
    /// The open segment, created at the first append after a seal.
    open: Option<(PathBuf, File)>,
    gauges: Arc<Gauges>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        while let Some(job) = rx.blocking_recv() {
            match job {
                Job::Append { lines, spans, done } => {
                    // Every append waiting now shares one sync.
                    let mut batch = vec![(lines, spans, done)];
                    while let Ok(job) = rx.try_recv() {
                        match job {
                            Job::Append { lines, spans, done } => batch.push((lines, spans, done)),
                            Job::Seal { done } => {
                                self.append(batch);
                                batch = Vec::new();
                                let _ = done.send(self.seal());
                                break;
                            }
                        }
                    }
                    if !batch.is_empty() {
                        self.append(batch);
                    }
                }
                Job::Seal { done } => {
                    let _ = done.send(self.seal());
                }
            }
        }
    }

    fn append(&mut self, batch: Vec<Pending>) {
        let result = self.write_all(&batch);
        for (_, _, done) in batch {
            let _ = done.send(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
            });
        }
    }

    fn write_all(&mut self, batch: &[Pending]) -> std::io::Result<()> {
        if self.open.is_none() {
            let name = format!(
                "{}-{:06}.{SEGMENT_EXTENSION}",
                chrono::Utc::now().format("%Y%m%dT%H%M%S%6fZ"),
                self.seq
            );
            self.seq += 1;
            let path = self.dir.join(name);
            let file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&path)?;
            sync_dir(&self.dir)?;
            self.open = Some((path, file));
        }
        let (path, file) = self.open.as_mut().expect("opened above");
        let before = file.metadata()?.len();
        let mut bytes = 0u64;
        let mut spans = 0u64;
        let written = (|| {
            for (lines, n, _) in batch {
                file.write_all(lines)?;
                bytes += lines.len() as u64;
                spans += n;
            }
            file.sync_data()
        })();
        if let Err(e) = written {
            // Nothing of this batch was answered 200: take it back, so no
            // request the clients will retry is committed twice over.
            let _ = file.set_len(before);
            tracing::error!(segment = %path.display(), "spool write failed: {e}");
            return Err(e);
        }
        self.gauges.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.gauges
            .spans_since_seal
            .fetch_add(spans, Ordering::Relaxed);
        Ok(())
    }

    fn seal(&mut self) -> std::io::Result<Vec<PathBuf>> {
        if let Some((_, file)) = self.open.take() {
            file.sync_all()?;
        }
        self.gauges.spans_since_seal.store(0, Ordering::Relaxed);
        segments(&self.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn appends_are_durable_lines_and_a_partial_tail_is_cut_on_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (spool, _lock) = Spool::open(dir.path()).unwrap();
            assert!(
                Spool::open(dir.path()).is_err(),
                "a second receiver is kept off the spool"
            );
            spool.append(b"{\"a\":1}".to_vec(), 2).await.unwrap();
            spool.append(b"{\"b\":2}".to_vec(), 3).await.unwrap();
            assert_eq!(spool.gauges.spans_since_seal.load(Ordering::Relaxed), 5);
            let sealed = spool.seal().await.unwrap();
            assert_eq!(sealed.len(), 1);
            assert_eq!(
                std::fs::read_to_string(&sealed[0]).unwrap(),
                "{\"a\":1}\n{\"b\":2}\n"
            );
            assert_eq!(spool.gauges.spans_since_seal.load(Ordering::Relaxed), 0);
            // A crash in the middle of a write.
            let mut f = OpenOptions::new().append(true).open(&sealed[0]).unwrap();
            f.write_all(b"{\"c\":").unwrap();
            spool.append(b"{\"d\":4}".to_vec(), 1).await.unwrap();
        }
        let (spool, _lock) = Spool::open(dir.path()).unwrap();
        let sealed = spool.seal().await.unwrap();
        assert_eq!(
            sealed.len(),
            2,
            "the segment of the earlier run, and the one after its seal"
        );
        assert_eq!(
            std::fs::read_to_string(&sealed[0]).unwrap(),
            "{\"a\":1}\n{\"b\":2}\n"
        );
        assert_eq!(std::fs::read_to_string(&sealed[1]).unwrap(), "{\"d\":4}\n");
        assert_eq!(spool.gauges.bytes.load(Ordering::Relaxed), 24);
        spool.remove(&sealed).unwrap();
        assert_eq!(spool.gauges.bytes.load(Ordering::Relaxed), 0);
        assert!(segments(dir.path()).unwrap().is_empty());
    }
}
