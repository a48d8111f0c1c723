//! `agentledger run --config FILE`: the batch's TOML configuration.
//!
//! ```toml
//! lake = "../lake"                  # lake URL or path (else --lake / AGENTLEDGER_LAKE)
//! landing = "landing/"              # where new event files arrive: folder, glob or URL
//! prices = "model_prices.csv"       # reference files, reloaded when they change
//! plans = "customer_plans.csv"
//! policies = "workflow_policies.csv"
//! reports = "../reports"            # each week's report goes to <reports>/<YYYY-Www>/
//! engine = "ballista://scheduler:50050"  # optional: the report's queries on a cluster
//!
//! [[landings]]                      # more landing areas, each read its own way
//! path = "otel/"                    # OTLP/JSON files from a Collector's file exporter
//! input = "otlp"                    # auto (the default: told by content), ndjson or otlp
//! keep_messages = false             # keep prompts and completions of spans (SPEC section 7)
//!
//! [alerts]
//! webhook = "https://hooks.slack.com/services/..."   # optional
//! timeout_seconds = 10
//! attempts = 5
//! ```
//!
//! Relative paths are relative to the config file's folder. Unknown keys
//! are refused, naming the key and its line.

use std::path::{Path, PathBuf};

use agentledger_ingest::{IngestOptions, Input, OtlpOptions};
use serde::Deserialize;

/// The batch configuration.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The lake (path or URL).
    pub lake: Option<String>,
    /// The landing area (folder, glob or object-store URL); its files are
    /// told NDJSON or OTLP/JSON by their content.
    pub landing: Option<String>,
    /// More landing areas, each with how its files are read.
    #[serde(default)]
    pub landings: Vec<LandingArea>,
    /// `model_prices.csv` to keep loaded.
    pub prices: Option<String>,
    /// `customer_plans.csv` to keep loaded.
    pub plans: Option<String>,
    /// `workflow_policies.csv` to keep loaded (SPEC section 8).
    pub policies: Option<String>,
    /// The folder reports go to.
    pub reports: Option<String>,
    /// Alert delivery.
    #[serde(default)]
    pub alerts: AlertsConfig,
    /// Where the report's queries run: `embedded` (this process) or
    /// `ballista://HOST:PORT` (`agentledger cluster scheduler`). Ingest and
    /// loads always run in this process.
    pub engine: Option<String>,
}

/// One `[[landings]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LandingArea {
    /// Folder, glob or object-store URL.
    pub path: String,
    /// What its files hold: `auto` (told by content), `ndjson` or `otlp`.
    #[serde(default)]
    pub input: Input,
    /// Keep message contents of spans in `attributes`.
    #[serde(default)]
    pub keep_messages: bool,
}

impl LandingArea {
    /// The ingest options of this area's files.
    pub fn options(&self) -> IngestOptions {
        IngestOptions {
            input: self.input,
            otlp: OtlpOptions {
                keep_messages: self.keep_messages,
            },
            ..IngestOptions::default()
        }
    }
}

/// `[alerts]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// Webhook URL (Slack-compatible `text`).
    pub webhook: Option<String>,
    /// Seconds per request.
    pub timeout_seconds: Option<u64>,
    /// Attempts per alert.
    pub attempts: Option<u32>,
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown keys.
    #[error("config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's message: line, column and the key.
        message: String,
    },
}

fn is_url(s: &str) -> bool {
    s.contains("://")
}

impl Config {
    /// Reads `path`; relative paths inside are resolved against its folder.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |v: &mut Option<String>| {
            if let Some(s) = v.as_mut()
                && !is_url(s)
                && Path::new(s).is_relative()
            {
                *s = normalize(&base.join(&*s)).display().to_string();
            }
        };
        resolve(&mut config.lake);
        resolve(&mut config.landing);
        for area in &mut config.landings {
            let mut path = Some(std::mem::take(&mut area.path));
            resolve(&mut path);
            area.path = path.unwrap_or_default();
        }
        resolve(&mut config.prices);
        resolve(&mut config.plans);
        resolve(&mut config.policies);
        resolve(&mut config.reports);
        Ok(config)
    }

    /// Every landing area: `landing` (told by content), then `[[landings]]`.
    pub fn landing_areas(&self) -> Vec<LandingArea> {
        let first = self.landing.iter().map(|path| LandingArea {
            path: path.clone(),
            input: Input::Auto,
            keep_messages: false,
        });
        first.chain(self.landings.iter().cloned()).collect()
    }

    /// Parses TOML text; the error names the line and the key.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim().replace('\n', " "))
    }
}

/// `a/b/../c` as `a/c`, without touching the file system (the path may
/// not exist yet), so log lines show the path a person would write.
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                match out.components().next_back() {
                    Some(Component::Normal(_)) => {
                        out.pop();
                    }
                    // Above the root is the root.
                    Some(Component::RootDir | Component::Prefix(_)) => {}
                    _ => out.push(".."),
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let err = Config::parse("lake = \"x\"\nlandng = \"y\"\n").unwrap_err();
        assert!(err.contains("landng") && err.contains("line 2"), "{err}");
        let err = Config::parse("[alerts]\nwebhok = \"http://x\"\n").unwrap_err();
        assert!(err.contains("webhok"), "{err}");
        let err = Config::parse("[[landings]]\npath = \"x\"\ninput = \"otel\"\n").unwrap_err();
        assert!(err.contains("otel") && err.contains("line 3"), "{err}");
        let err = Config::parse("[[landings]]\npth = \"x\"\n").unwrap_err();
        assert!(err.contains("pth"), "{err}");
        let err = Config::parse("reports = 3\n").unwrap_err();
        assert!(err.contains("reports") || err.contains("string"), "{err}");
    }

    #[test]
    fn paths_are_cleaned_lexically() {
        assert_eq!(
            normalize(Path::new("sample-data/../sample-lake")),
            PathBuf::from("sample-lake")
        );
        assert_eq!(
            normalize(Path::new("sample-data/.")),
            PathBuf::from("sample-data")
        );
        assert_eq!(
            normalize(Path::new("../x/./y/../z")),
            PathBuf::from("../x/z")
        );
        assert_eq!(normalize(Path::new("/a/b/../../..")), PathBuf::from("/"));
        assert_eq!(normalize(Path::new("a/..")), PathBuf::from("."));
    }

    #[test]
    fn relative_paths_are_relative_to_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("batch.toml");
        std::fs::write(
            &path,
            "lake = \"lake\"\nlanding = \"s3://bucket/in/\"\npolicies = \"ref/policies.csv\"\nreports = \"/abs/reports\"\nengine = \"ballista://sched:50050\"\n[alerts]\nwebhook = \"http://127.0.0.1:9/\"\n",
        )
        .unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(
            c.lake.unwrap(),
            dir.path().join("lake").display().to_string()
        );
        assert_eq!(c.landing.unwrap(), "s3://bucket/in/");
        assert_eq!(
            c.policies.unwrap(),
            dir.path().join("ref/policies.csv").display().to_string()
        );
        assert_eq!(c.reports.unwrap(), "/abs/reports");
        // Not a path.
        assert_eq!(c.engine.unwrap(), "ballista://sched:50050");
        assert_eq!(c.alerts.webhook.unwrap(), "http://127.0.0.1:9/");
    }
}
