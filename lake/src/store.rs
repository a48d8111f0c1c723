//! Lake URLs to object stores, in one place.
//!
//! A lake is one root URL. Local paths (the default) and `file://` URLs map
//! to the local file system, `memory://` to a process-local in-memory store
//! (for tests). Every path inside the lake is relative to its root, so a
//! partition value can never point outside it: [`object_store::path::Path`]
//! refuses `..` segments and we only build paths from validated values.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use url::Url;

use crate::error::{Error, Result};

/// An opened lake: a store, the root inside it, and the URL DataFusion uses
/// to find the store.
#[derive(Debug, Clone)]
pub struct Lake {
    store: Arc<dyn ObjectStore>,
    root: Path,
    /// The prefix [`Lake::path`] puts before a relative path: the root's
    /// parts, each encoded as a path part.
    prefix: Path,
    store_url: Url,
    display: String,
    /// Leases every commit made through this handle must still hold
    /// (see [`crate::lease::Lease::fence`]).
    fences: Vec<Arc<crate::lease::Held>>,
}

impl Lake {
    /// Opens the lake at `url`: a local path, `file://...`, `s3://BUCKET/PREFIX`,
    /// `gs://BUCKET/PREFIX`, `az://CONTAINER/PREFIX` or `memory://NAME`.
    ///
    /// A local lake's directory is created if missing.
    pub fn open(url: &str) -> Result<Self> {
        Self::open_unchecked(url, true)
    }

    fn open_unchecked(url: &str, create: bool) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        if url.is_empty() {
            return Err(invalid("empty"));
        }
        match Url::parse(url) {
            Ok(parsed) if parsed.scheme().len() > 1 => match parsed.scheme() {
                "file" => {
                    let path = parsed
                        .to_file_path()
                        .map_err(|()| invalid("not a local file path"))?;
                    Self::open_local(&path, url, create)
                }
                "memory" => {
                    let store = memory_store(parsed.host_str().unwrap_or("default"));
                    let store_url = Url::parse(&format!(
                        "memory://{}",
                        parsed.host_str().unwrap_or("default")
                    ))
                    .map_err(|e| invalid(&e.to_string()))?;
                    Ok(Self::assembled(
                        store,
                        Path::from(parsed.path().trim_matches('/')),
                        store_url,
                        url,
                    ))
                }
                "s3" | "s3a" | "gs" | "az" | "abfs" | "abfss" => {
                    let (store, store_url) = cloud_store(&parsed).map_err(|e| invalid(&e))?;
                    Ok(Self::assembled(
                        store,
                        Path::from(parsed.path().trim_matches('/')),
                        store_url,
                        url,
                    ))
                }
                other => Err(invalid(&format!(
                    "unsupported scheme '{other}' (use a local path, file://, s3://, gs://, az:// or memory://)"
                ))),
            },
            // Not a URL (or a Windows drive letter): a local path.
            _ => Self::open_local(std::path::Path::new(url), url, create),
        }
    }

    /// Opens an existing lake for reading: like [`Lake::open`], but a local
    /// lake that does not exist is an error instead of a new empty lake, so
    /// a mistyped path is not answered with empty tables.
    pub fn open_existing(url: &str) -> Result<Self> {
        Self::open_unchecked(url, false)
    }

    fn open_local(path: &std::path::Path, display: &str, create: bool) -> Result<Self> {
        if !create && !path.is_dir() {
            return Err(Error::NoLake(display.to_string()));
        }
        std::fs::create_dir_all(path).map_err(|source| Error::Io {
            context: format!("cannot create lake directory {}", path.display()),
            source,
        })?;
        let abs = std::fs::canonicalize(path).map_err(|source| Error::Io {
            context: format!("cannot resolve lake directory {}", path.display()),
            source,
        })?;
        Self::local_at(&abs, display)
    }

    fn local_at(abs: &std::path::Path, display: &str) -> Result<Self> {
        let root = Path::from_absolute_path(abs).map_err(|e| Error::InvalidUrl {
            url: display.to_string(),
            reason: e.to_string(),
        })?;
        Ok(Self::assembled(
            Arc::new(LocalFileSystem::new()),
            root,
            Url::parse("file:///").expect("static URL"),
            display,
        ))
    }

    fn assembled(store: Arc<dyn ObjectStore>, root: Path, store_url: Url, display: &str) -> Self {
        let prefix = Path::from_iter(root.parts().map(|p| p.as_ref().to_string()));
        Self {
            store,
            root,
            prefix,
            store_url,
            display: display.to_string(),
            fences: Vec::new(),
        }
    }

    /// This lake, with every commit made through it fenced by `held` too.
    pub(crate) fn with_fence(&self, held: Arc<crate::lease::Held>) -> Self {
        let mut lake = self.clone();
        lake.fences.push(held);
        lake
    }

    /// The leases a commit through this handle must still hold.
    pub(crate) fn fences(&self) -> &[Arc<crate::lease::Held>] {
        &self.fences
    }

    /// The object store holding the lake.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The URL (scheme and authority only) under which the store is
    /// registered with DataFusion.
    pub fn store_url(&self) -> &Url {
        &self.store_url
    }

    /// The lake URL as the user gave it.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// The absolute store path of `relative` (a path inside the lake).
    pub fn path(&self, relative: &str) -> Path {
        join(&self.prefix, relative)
    }

    /// The lake's directory when it is on the local file system.
    pub fn local_root(&self) -> Option<std::path::PathBuf> {
        (self.store_url.scheme() == "file")
            .then(|| std::path::PathBuf::from(format!("/{}", self.root)))
    }

    /// The path of `absolute` relative to the lake root, if it is inside it.
    pub fn relative(&self, absolute: &Path) -> Option<String> {
        absolute.prefix_match(&self.root).map(|parts| {
            parts
                .map(|p| p.as_ref().to_string())
                .collect::<Vec<_>>()
                .join("/")
        })
    }
}

/// How long one storage request may be retried before it fails: transient
/// errors (HTTP 5xx, 429, timeouts, dropped connections) are retried with
/// exponential backoff and jitter within this time. Set
/// `AGENTLEDGER_RETRY_TIMEOUT_SECS` to change it (default 120).
pub fn retry_timeout() -> std::time::Duration {
    crate::retry::env_secs("AGENTLEDGER_RETRY_TIMEOUT_SECS", 120)
}

fn retry_config() -> object_store::RetryConfig {
    let timeout = retry_timeout();
    object_store::RetryConfig {
        backoff: object_store::BackoffConfig {
            init_backoff: std::time::Duration::from_millis(100),
            max_backoff: std::time::Duration::from_secs(10).min(timeout),
            base: 2.0,
        },
        // The time budget bounds the retries, not a count: an outage of a
        // few seconds fails fast, refused connections, many times.
        max_retries: 1000,
        retry_timeout: timeout,
    }
}

/// The store for an `s3://`, `gs://` or `az://` URL, configured the
/// standard way from the environment (`AWS_*`, `GOOGLE_*`, `AZURE_*`
/// variables, as object_store's builders read them), and the URL it is
/// registered under with DataFusion.
/// `relative` (a path inside a lake, as the log names it) under the lake's
/// store path `prefix`: what [`Lake::path`] returns, for code that has the
/// prefix but not the lake (a plan in another process).
pub fn join(prefix: &Path, relative: &str) -> Path {
    // Borrowed parts, joined once: a reader builds this for every live
    // file of every table it opens.
    let relative = relative
        .split('/')
        .filter(|s| !s.is_empty())
        .map(object_store::path::PathPart::from);
    Path::from_iter(prefix.parts().chain(relative))
}

fn cloud_store(url: &Url) -> std::result::Result<(Arc<dyn ObjectStore>, Url), String> {
    let bucket = url
        .host_str()
        .filter(|b| !b.is_empty())
        .ok_or("the URL names no bucket or container")?;
    let base = Url::parse(&format!("{}://{bucket}", url.scheme())).map_err(|e| e.to_string())?;
    let store: Arc<dyn ObjectStore> = match url.scheme() {
        "s3" | "s3a" => Arc::new(
            object_store::aws::AmazonS3Builder::from_env()
                .with_url(url.as_str())
                .with_retry(retry_config())
                .build()
                .map_err(|e| e.to_string())?,
        ),
        "gs" => Arc::new(
            object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_url(url.as_str())
                .with_retry(retry_config())
                .build()
                .map_err(|e| e.to_string())?,
        ),
        _ => Arc::new(
            object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_url(url.as_str())
                .with_retry(retry_config())
                .build()
                .map_err(|e| e.to_string())?,
        ),
    };
    Ok((store, base))
}

/// Process-wide registry of named in-memory stores, so that two opens of
/// `memory://x` in one process see the same data (as two opens of a
/// directory do).
fn memory_store(name: &str) -> Arc<dyn ObjectStore> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static STORES: OnceLock<Mutex<HashMap<String, Arc<dyn ObjectStore>>>> = OnceLock::new();
    let mut stores = STORES
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    Arc::clone(
        stores
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(InMemory::new())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_join_the_root_and_each_part_of_a_relative_path() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("a lake #1");
        let lake = Lake::open(root.to_str().unwrap()).unwrap();
        let mut want: Vec<String> = root
            .to_str()
            .unwrap()
            .split('/')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        want.extend(["events", "date=2026-10-05", "p%1.parquet"].map(String::from));
        assert_eq!(
            lake.path("events//date=2026-10-05/p%1.parquet/"),
            Path::from_iter(want)
        );
        let s3 = Lake::open("memory://bucket/some/prefix").unwrap();
        assert_eq!(s3.path("_log/1.json").as_ref(), "some/prefix/_log/1.json");
    }

    #[test]
    fn local_paths_and_file_urls_open_the_same_root() {
        let dir = tempfile::tempdir().unwrap();
        let a = Lake::open(dir.path().to_str().unwrap()).unwrap();
        let url = format!("file://{}", dir.path().display());
        let b = Lake::open(&url).unwrap();
        assert_eq!(a.path("events"), b.path("events"));
        assert_eq!(
            a.relative(&a.path("events/x.parquet")).unwrap(),
            "events/x.parquet"
        );
    }

    #[test]
    fn reading_a_missing_local_lake_is_an_error_not_an_empty_lake() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = Lake::open_existing(missing.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("no lake at"), "{err}");
        assert!(!missing.exists());
        Lake::open(missing.to_str().unwrap()).unwrap();
        Lake::open_existing(missing.to_str().unwrap()).unwrap();
    }

    #[test]
    fn unsupported_schemes_are_refused_with_the_reason() {
        let err = Lake::open("ftp://host/x").unwrap_err().to_string();
        assert!(err.contains("unsupported scheme 'ftp'"), "{err}");
    }

    #[test]
    fn memory_lakes_with_one_name_share_data() {
        let a = Lake::open("memory://shared-test").unwrap();
        let b = Lake::open("memory://shared-test").unwrap();
        assert!(Arc::ptr_eq(a.store(), b.store()));
    }
}
