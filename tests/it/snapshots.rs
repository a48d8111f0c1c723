//! Snapshots of what users read: every command's `--help`, the table, CSV
//! and JSON output of `metrics`, `gate`, `timeline` and `readiness` on the bundled
//! sample, ingest summaries and error lines. A change to any of them shows
//! as a diff of `tests/it/snapshots/*.snap` to review (`cargo insta review`,
//! or `INSTA_UPDATE=always cargo test --test it snapshots` and `git diff`).
//! Temporary paths and the repository's path are replaced by `[TMP]` and
//! `[ROOT]`, so the snapshots hold only what a change can make differ.

use crate::common::{Env, sample, sample_lake};

/// `text` with the paths that differ between runs and machines, and the
/// ingest ids (a time and a random part), replaced.
fn stable(env: &Env, text: &str) -> String {
    let text = text
        .replace(&env.dir.path().display().to_string(), "[TMP]")
        .replace(env!("CARGO_MANIFEST_DIR"), "[ROOT]");
    match text.split_once(", ingest ") {
        Some((head, tail)) => {
            let rest = tail.split_once(')').map_or("", |(_, rest)| rest);
            format!("{head}, ingest [ID]){rest}")
        }
        None => text,
    }
}

fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path("snapshots");
    s.set_prepend_module_to_snapshot(false);
    s
}

const COMMANDS: [&str; 15] = [
    "ingest",
    "load",
    "sql",
    "metrics",
    "gate",
    "timeline",
    "readiness",
    "report",
    "run",
    "retain",
    "compact",
    "rebuild",
    "sample",
    "serve",
    "user",
];

#[test]
fn every_help_text() {
    let env = Env::new();
    let help = |args: &[&str]| {
        let out = env
            .command()
            .env_remove("AGENTLEDGER_LAKE")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    settings().bind(|| {
        insta::assert_snapshot!("help", help(&["--help"]));
        for command in COMMANDS {
            insta::assert_snapshot!(format!("help_{command}"), help(&[command, "--help"]));
        }
        insta::assert_snapshot!("help_user_add", help(&["user", "add", "--help"]));
        for role in ["scheduler", "executor"] {
            insta::assert_snapshot!(
                format!("help_cluster_{role}"),
                help(&["cluster", role, "--help"])
            );
        }
    });
}

#[test]
fn readiness_in_every_format() {
    let env = sample_lake();
    settings().bind(|| {
        for format in ["table", "csv", "json"] {
            insta::assert_snapshot!(
                format!("readiness_{format}"),
                env.ok(&[
                    "readiness",
                    "--by",
                    "workflow",
                    "--from",
                    "2026-10-19",
                    "--to",
                    "2026-10-26",
                    "--limit",
                    "2",
                    "--format",
                    format,
                ])
            );
        }
    });
}

#[test]
fn metrics_gate_and_timeline_in_every_format() {
    let env = sample_lake();
    settings().bind(|| {
        for format in ["table", "csv", "json"] {
            insta::assert_snapshot!(
                format!("metrics_{format}"),
                env.ok(&["metrics", "--by", "tenant_id,week", "--format", format])
            );
            insta::assert_snapshot!(
                format!("timeline_{format}"),
                env.ok(&[
                    "timeline",
                    "--tenant",
                    "umbrella",
                    "--run",
                    "run-000000",
                    "--format",
                    format,
                ])
            );
        }
        let gate = env
            .command()
            .args(["gate", "--baseline", "v1.4.0", "--candidate", "v1.5.0"])
            .output()
            .unwrap();
        insta::assert_snapshot!(
            "gate",
            format!(
                "exit {:?}\n{}",
                gate.status.code(),
                String::from_utf8_lossy(&gate.stdout)
            )
        );
    });
}

#[test]
fn ingest_summaries_and_error_lines() {
    let env = Env::new();
    env.ok(&["load", "prices", &sample("model_prices.csv")]);
    let bad = env.write(
        "bad.ndjson",
        concat!(
            r#"{"event_id":"e1","event_type":"run_started","ts":"2026-10-05T00:00:00Z","tenant_id":"t","run_id":"r","workflow":"w"}"#,
            "\n",
            r#"{"event_id":"e2","event_type":"model_call","ts":"2026-10-05T00:00:01Z","tenant_id":"t","run_id":"r","model":"m","input_tokens":-1,"output_tokens":1}"#,
            "\n{not json\n",
            r#"{"event_id":"e1","event_type":"run_started","ts":"2026-10-05T00:00:00Z","tenant_id":"t","run_id":"r","workflow":"other"}"#,
            "\n",
        ),
    );
    let bad = bad.to_str().unwrap();
    let prices = env.write(
        "prices.csv",
        "model,provider,effective_from,input_usd_per_mtok,cached_input_usd_per_mtok,output_usd_per_mtok\nm,p,2026-13-01,1,,2\n",
    );
    settings().bind(|| {
        insta::assert_snapshot!("ingest_text", stable(&env, &env.ok(&["ingest", bad])));
        let json: serde_json::Value =
            serde_json::from_str(&env.ok(&["ingest", "--format", "json", bad])).unwrap();
        let mut json = json;
        // The second ingest of the same file: nothing new.
        json["ingest_id"] = "[ID]".into();
        insta::assert_snapshot!(
            "ingest_json_again",
            stable(&env, &serde_json::to_string_pretty(&json).unwrap())
        );
        insta::assert_snapshot!(
            "error_missing_source",
            stable(
                &env,
                &env.fails(&["ingest", &env.path("nothing.ndjson").display().to_string()])
            )
        );
        insta::assert_snapshot!(
            "error_bad_prices",
            stable(
                &env,
                &env.fails(&["load", "prices", prices.to_str().unwrap()])
            )
        );
        insta::assert_snapshot!(
            "error_sql",
            stable(&env, &env.fails(&["sql", "select nope from events"]))
        );
    });
}
