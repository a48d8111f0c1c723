//! Helpers: run the binary against a temporary lake, write inputs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn lake(&self) -> PathBuf {
        self.dir.path().join("lake")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        p
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_agentledger"));
        // The memory settings of the shell running the tests do not apply.
        c.env("AGENTLEDGER_LAKE", self.lake())
            .env_remove("RUST_LOG")
            .env_remove("AGENTLEDGER_MEMORY_LIMIT")
            .env_remove("AGENTLEDGER_SPILL_DIR");
        c
    }

    /// Runs the binary with `args`; returns the output whatever the status.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("binary runs")
    }

    /// Runs the binary and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        succeeded(args, self.run(args))
    }

    /// [`Env::ok`] with one extra environment variable.
    pub fn ok_with_env(&self, var: (&str, &str), args: &[&str]) -> String {
        let out = self
            .command()
            .env(var.0, var.1)
            .args(args)
            .output()
            .expect("binary runs");
        succeeded(args, out)
    }

    /// Runs the binary and asserts failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "agentledger {args:?} should fail; stdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    /// Runs a command that prints JSON, with one extra environment
    /// variable; panics with its stderr if it fails.
    pub fn json_with_env(&self, var: (&str, &str), args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.ok_with_env(var, args)).unwrap()
    }

    /// The bundled sample's events split into `parts` files of consecutive
    /// lines, in the test's folder.
    pub fn split_sample(&self, parts: usize) -> Vec<PathBuf> {
        let text = std::fs::read_to_string(sample("events.ndjson")).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let per = lines.len().div_ceil(parts);
        lines
            .chunks(per)
            .enumerate()
            .map(|(i, chunk)| self.write(&format!("part-{i}.ndjson"), &(chunk.join("\n") + "\n")))
            .collect()
    }

    /// `agentledger sample --runs RUNS --seed SEED` into the test's folder
    /// `sample`; returns the events file.
    pub fn generated_sample(&self, runs: u32, seed: u32) -> PathBuf {
        let out = self.path("sample");
        self.ok(&[
            "sample",
            "--out",
            out.to_str().unwrap(),
            "--runs",
            &runs.to_string(),
            "--seed",
            &seed.to_string(),
        ]);
        out.join("events.ndjson")
    }

    /// Ingests and returns the JSON summary.
    pub fn ingest(&self, sources: &[&Path]) -> serde_json::Value {
        let mut args = vec!["ingest", "--format", "json"];
        let owned: Vec<String> = sources.iter().map(|p| p.display().to_string()).collect();
        args.extend(owned.iter().map(String::as_str));
        serde_json::from_str(&self.ok(&args)).unwrap()
    }

    /// Runs a query and returns its rows as JSON objects.
    pub fn query(&self, sql: &str) -> Vec<serde_json::Value> {
        let out = self.ok(&["sql", "--format", "json", sql]);
        serde_json::from_str::<Vec<serde_json::Value>>(&out)
            .unwrap_or_else(|e| panic!("bad JSON from sql ({e}): {out}"))
    }

    /// A single value of a one-row, one-column query, as text.
    pub fn scalar(&self, sql: &str) -> String {
        let rows = self.query(sql);
        assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
        let obj = rows[0].as_object().unwrap();
        assert_eq!(obj.len(), 1, "{sql}: {rows:?}");
        match obj.values().next().unwrap() {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
}

/// A valid event line.
pub fn event(id: &str, event_type: &str, ts: &str, extra: &str) -> String {
    let sep = if extra.is_empty() { "" } else { "," };
    format!(
        r#"{{"event_id":"{id}","event_type":"{event_type}","ts":"{ts}","tenant_id":"acme","run_id":"r1"{sep}{extra}}}"#
    )
}

pub fn model_call(id: &str, ts: &str, cost: &str) -> String {
    event(
        id,
        "model_call",
        ts,
        &format!(r#""model":"gpt-4.1","input_tokens":100,"output_tokens":20,"cost_usd":{cost}"#),
    )
}

/// Every data file below a lake folder, relative to the lake (not the
/// table's Delta log).
pub fn data_files(lake: &Path, table: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![lake.join(table)];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                if !p.ends_with(agentledger_lake::delta::DELTA_LOG_DIR) {
                    stack.push(p);
                }
            } else {
                out.push(p.strip_prefix(lake).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// The files a Delta reader sees in `table` (paths relative to the lake),
/// replaying its `_delta_log` versions in order; they must run from 0
/// without a gap.
pub fn delta_files(lake: &Path, table: &str) -> std::collections::BTreeSet<String> {
    let dir = lake
        .join(table)
        .join(agentledger_lake::delta::DELTA_LOG_DIR);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 25 && n.ends_with(".json"))
        .collect();
    names.sort();
    let mut files = std::collections::BTreeSet::new();
    for (i, name) in names.iter().enumerate() {
        assert_eq!(name, &format!("{i:020}.json"), "{}: a gap", dir.display());
        for line in std::fs::read_to_string(dir.join(name)).unwrap().lines() {
            let action: serde_json::Value = serde_json::from_str(line).unwrap();
            if let Some(add) = action.get("add") {
                files.insert(format!("{table}/{}", add["path"].as_str().unwrap()));
            } else if let Some(remove) = action.get("remove") {
                let path = format!("{table}/{}", remove["path"].as_str().unwrap());
                assert!(
                    files.remove(&path),
                    "{}: {path} removed, not there",
                    dir.display()
                );
            }
        }
    }
    files
}

/// The files agentledger's own readers see in `table`.
pub fn committed_files(lake: &Path, table: &str) -> std::collections::BTreeSet<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let lake = agentledger_lake::Lake::open_existing(lake.to_str().unwrap()).unwrap();
        let snapshot = agentledger_lake::Snapshot::load(&lake).await.unwrap();
        snapshot
            .files(table)
            .iter()
            .map(|f| f.path.clone())
            .collect()
    })
}

/// Stdout of a run that must have succeeded; its stderr and stdout if not.
fn succeeded(args: &[&str], out: Output) -> String {
    assert!(
        out.status.success(),
        "agentledger {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A file of the bundled sample (`sample-data/NAME`).
pub fn sample(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sample-data")
        .join(name)
        .display()
        .to_string()
}

/// A lake holding the bundled sample: the three reference tables and the
/// events.
pub fn sample_lake() -> Env {
    let env = Env::new();
    env.ok(&["load", "prices", &sample("model_prices.csv")]);
    env.ok(&["load", "plans", &sample("customer_plans.csv")]);
    env.ok(&["load", "policies", &sample("workflow_policies.csv")]);
    env.ok(&["ingest", &sample("events.ndjson")]);
    env
}
