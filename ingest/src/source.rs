//! Where events come from: files, directories, globs and object-store URLs.
//!
//! Sources are expanded up front (so a missing file fails the ingest before
//! anything is written) into an ordered list: arguments in the order given,
//! a directory's files in byte order of their paths. Compression is told by
//! the file's first bytes (gzip, zstd), so a misnamed file still reads.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use agentledger_lake::Lake;
use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::error::{Error, Result};

/// Extensions a directory walk picks up (after removing `.gz` / `.zst`).
const EVENT_EXTENSIONS: &[&str] = &["ndjson", "jsonl", "json"];

/// One file to ingest.
#[derive(Clone)]
pub enum Source {
    /// A local file.
    Local {
        /// Absolute path.
        path: PathBuf,
    },
    /// An object in a store.
    Object {
        /// The store.
        store: Arc<dyn ObjectStore>,
        /// The object's location.
        location: object_store::path::Path,
        /// The URL shown to people and stored as the event's `source`.
        url: String,
        /// Size in bytes.
        size: u64,
    },
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

impl Source {
    /// The name stored with every event and quarantined line of this source.
    pub fn name(&self) -> String {
        match self {
            Source::Local { path } => path.display().to_string(),
            Source::Object { url, .. } => url.clone(),
        }
    }

    /// Size in bytes as stored (compressed size for compressed files).
    pub fn size(&self) -> u64 {
        match self {
            Source::Local { path } => std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
            Source::Object { size, .. } => *size,
        }
    }

    /// The stored bytes, not decompressed.
    fn raw_reader(&self, handle: &tokio::runtime::Handle) -> Result<Box<dyn Read + Send>> {
        let raw: Box<dyn Read + Send> = match self {
            Source::Local { path } => {
                Box::new(std::fs::File::open(path).map_err(|e| Error::Source {
                    source_name: self.name(),
                    reason: e.to_string(),
                })?)
            }
            Source::Object {
                store, location, ..
            } => {
                let got = handle
                    .block_on(store.get(location))
                    .map_err(|e| Error::Source {
                        source_name: self.name(),
                        reason: e.to_string(),
                    })?;
                let stream = got.into_stream().map_err(std::io::Error::other);
                let reader = tokio_util::io::StreamReader::new(stream);
                Box::new(tokio_util::io::SyncIoBridge::new_with_handle(
                    reader,
                    handle.clone(),
                ))
            }
        };
        Ok(raw)
    }

    /// The number of stored bytes and their xxh3-128 hash (hex): how the
    /// batch tells a landing file it has ingested from one that changed.
    pub fn content_hash(&self, handle: &tokio::runtime::Handle) -> Result<(u64, String)> {
        let mut reader = self.raw_reader(handle)?;
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut size = 0u64;
        loop {
            let n = reader.read(&mut buf).map_err(|e| Error::Source {
                source_name: self.name(),
                reason: e.to_string(),
            })?;
            if n == 0 {
                break;
            }
            size += n as u64;
            hasher.update(&buf[..n]);
        }
        Ok((size, format!("{:032x}", hasher.digest128())))
    }

    /// Opens the source for reading lines, decompressing as needed. Bytes
    /// read from storage are added to `counter` (for progress).
    pub fn open(
        &self,
        handle: &tokio::runtime::Handle,
        counter: Arc<AtomicU64>,
    ) -> Result<Box<dyn BufRead + Send>> {
        let raw = self.raw_reader(handle)?;
        let mut buffered = BufReader::with_capacity(
            256 * 1024,
            Counting {
                inner: raw,
                counter,
            },
        );
        let magic = buffered.fill_buf().map_err(|e| Error::Source {
            source_name: self.name(),
            reason: e.to_string(),
        })?;
        Ok(if magic.starts_with(&[0x1f, 0x8b]) {
            Box::new(BufReader::with_capacity(
                256 * 1024,
                flate2::bufread::MultiGzDecoder::new(buffered),
            ))
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            let decoder =
                zstd::stream::read::Decoder::with_buffer(buffered).map_err(|e| Error::Source {
                    source_name: self.name(),
                    reason: e.to_string(),
                })?;
            Box::new(BufReader::with_capacity(256 * 1024, decoder))
        } else {
            Box::new(buffered)
        })
    }
}

struct Counting<R> {
    inner: R,
    counter: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Whether a file found by a directory walk or a listing is an event file.
fn is_event_file(name: &str) -> bool {
    let base = name
        .strip_suffix(".gz")
        .or_else(|| name.strip_suffix(".zst"))
        .unwrap_or(name);
    base.rsplit_once('.')
        .is_some_and(|(_, ext)| EVENT_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()))
}

fn has_glob_chars(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Expands source arguments into files, in ingest order.
pub async fn expand(args: &[String]) -> Result<Vec<Source>> {
    let mut out = Vec::new();
    for arg in args {
        let before = out.len();
        match url::Url::parse(arg) {
            Ok(url) if url.scheme() == "file" => {
                let path = url.to_file_path().map_err(|()| Error::Source {
                    source_name: arg.clone(),
                    reason: "not a local file URL".into(),
                })?;
                expand_local(&path, arg, &mut out)?;
            }
            Ok(url) if url.scheme().len() > 1 => expand_object(arg, &mut out).await?,
            _ => expand_local(Path::new(arg), arg, &mut out)?,
        }
        if out.len() == before {
            return Err(Error::Source {
                source_name: arg.clone(),
                reason: "no event files found (expected .ndjson, .jsonl or .json, optionally .gz or .zst)".into(),
            });
        }
    }
    Ok(out)
}

fn expand_local(path: &Path, arg: &str, out: &mut Vec<Source>) -> Result<()> {
    let not_found = |reason: String| Error::Source {
        source_name: arg.to_string(),
        reason,
    };
    if !path.exists() && has_glob_chars(arg) {
        let mut matches: Vec<PathBuf> = glob::glob(arg)
            .map_err(|e| not_found(format!("invalid glob pattern: {e}")))?
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| not_found(e.to_string()))?;
        matches.sort_by(|a, b| {
            a.as_os_str()
                .as_encoded_bytes()
                .cmp(b.as_os_str().as_encoded_bytes())
        });
        for m in matches {
            if m.is_dir() {
                walk(&m, out).map_err(|e| not_found(e.to_string()))?;
            } else {
                push_local(&m, out).map_err(|e| not_found(e.to_string()))?;
            }
        }
        return Ok(());
    }
    let meta = std::fs::metadata(path).map_err(|e| not_found(e.to_string()))?;
    if meta.is_dir() {
        walk(path, out).map_err(|e| not_found(e.to_string()))
    } else {
        push_local(path, out).map_err(|e| not_found(e.to_string()))
    }
}

fn push_local(path: &Path, out: &mut Vec<Source>) -> std::io::Result<()> {
    // Check it can be opened now, so an unreadable file fails before writing.
    std::fs::File::open(path)?;
    out.push(Source::Local {
        path: std::fs::canonicalize(path)?,
    });
    Ok(())
}

fn walk(dir: &Path, out: &mut Vec<Source>) -> std::io::Result<()> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let path = entry.path();
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(path);
            } else if is_event_file(&entry.file_name().to_string_lossy()) {
                files.push(path);
            }
        }
    }
    files.sort_by(|a, b| {
        a.as_os_str()
            .as_encoded_bytes()
            .cmp(b.as_os_str().as_encoded_bytes())
    });
    for f in files {
        push_local(&f, out)?;
    }
    Ok(())
}

async fn expand_object(arg: &str, out: &mut Vec<Source>) -> Result<()> {
    let fail = |reason: String| Error::Source {
        source_name: arg.to_string(),
        reason,
    };
    let lake = Lake::open(arg).map_err(|e| fail(e.to_string()))?;
    let store = Arc::clone(lake.store());
    let root = lake.path("");
    let base = arg.trim_end_matches('/');
    match store.head(&root).await {
        Ok(meta) => {
            out.push(Source::Object {
                store,
                location: meta.location,
                url: base.to_string(),
                size: meta.size,
            });
            Ok(())
        }
        Err(object_store::Error::NotFound { .. }) => {
            let mut metas: Vec<_> = store
                .list(Some(&root))
                .try_collect()
                .await
                .map_err(|e| fail(e.to_string()))?;
            metas.sort_by(|a, b| a.location.as_ref().cmp(b.location.as_ref()));
            for meta in metas {
                if !meta.location.filename().is_some_and(is_event_file) {
                    continue;
                }
                let rel = lake.relative(&meta.location).unwrap_or_default();
                out.push(Source::Object {
                    store: Arc::clone(&store),
                    url: format!("{base}/{rel}"),
                    location: meta.location,
                    size: meta.size,
                });
            }
            Ok(())
        }
        Err(e) => Err(fail(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_walks_pick_event_files_only() {
        for yes in [
            "a.ndjson",
            "a.jsonl",
            "a.json",
            "a.ndjson.gz",
            "a.jsonl.zst",
            "A.NDJSON",
        ] {
            assert!(is_event_file(yes), "{yes}");
        }
        for no in ["README.md", "a.csv", "a.gz", "ndjson"] {
            assert!(!is_event_file(no), "{no}");
        }
    }

    #[tokio::test]
    async fn directories_are_walked_recursively_in_byte_order() {
        let dir = tempfile::tempdir().unwrap();
        for p in [
            "b/2.ndjson",
            "a.ndjson",
            "b/10.ndjson",
            "B.jsonl",
            "notes.txt",
        ] {
            let path = dir.path().join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "").unwrap();
        }
        let got = expand(&[dir.path().display().to_string()]).await.unwrap();
        let names: Vec<String> = got
            .iter()
            .map(|s| {
                s.name()
                    .strip_prefix(
                        &std::fs::canonicalize(dir.path())
                            .unwrap()
                            .display()
                            .to_string(),
                    )
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(
            names,
            ["/B.jsonl", "/a.ndjson", "/b/10.ndjson", "/b/2.ndjson"]
        );
    }

    #[tokio::test]
    async fn a_missing_source_fails_naming_it() {
        let err = expand(&["/no/such/file.ndjson".into()])
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("/no/such/file.ndjson"), "{err}");
    }
}
