//! `agentledger sql`: every table by name, four formats, read-only.

use crate::common::{Env, model_call};

fn lake_with_events(env: &Env) {
    let f = env.write(
        "e.ndjson",
        &[
            model_call("a", "2026-10-05T10:00:00Z", "0.1"),
            model_call("b", "2026-10-05T11:00:00Z", "0.2"),
        ]
        .join("\n"),
    );
    env.ingest(&[&f]);
}

#[test]
fn every_table_is_queryable_by_name_even_when_empty() {
    let env = Env::new();
    let err = env.fails(&["sql", "SELECT 1"]);
    assert!(
        err.contains("no lake at"),
        "a mistyped lake is not an empty one: {err}"
    );
    std::fs::create_dir_all(env.lake()).unwrap();
    for t in [
        "events",
        "model_calls",
        "tool_calls",
        "model_prices",
        "customer_plans",
        "quarantine",
    ] {
        assert_eq!(env.scalar(&format!("SELECT count(*) FROM {t}")), "0", "{t}");
    }
}

#[test]
fn formats_table_csv_json_and_parquet() {
    let env = Env::new();
    lake_with_events(&env);
    let q = "SELECT event_id, cost_usd FROM events ORDER BY event_id";
    let table = env.ok(&["sql", q]);
    assert!(table.contains("| a        | 0.100000000000 |"), "{table}");
    assert!(table.trim_end().ends_with("2 rows"), "{table}");
    let csv = env.ok(&["sql", "--format", "csv", q]);
    assert_eq!(
        csv,
        "event_id,cost_usd\na,0.100000000000\nb,0.200000000000\n"
    );
    let json: serde_json::Value =
        serde_json::from_str(&env.ok(&["sql", "--format", "json", q])).unwrap();
    assert_eq!(
        json[1]["cost_usd"], "0.200000000000",
        "money is decimal text in JSON"
    );
    let out = env.path("out.parquet");
    env.ok(&[
        "sql",
        "--format",
        "parquet",
        "--out",
        out.to_str().unwrap(),
        q,
    ]);
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(&bytes[..4], b"PAR1");
    assert!(
        env.fails(&["sql", "--format", "parquet", q])
            .contains("--out")
    );
}

#[test]
fn csv_cells_that_a_spreadsheet_would_run_are_escaped() {
    let env = Env::new();
    std::fs::create_dir_all(env.lake()).unwrap();
    let csv = env.ok(&[
        "sql",
        "--format",
        "csv",
        "SELECT '=HYPERLINK(\"x\")' AS a, '-1.5' AS b, '@x' AS c",
    ]);
    assert_eq!(csv, "a,b,c\n\"'=HYPERLINK(\"\"x\"\")\",-1.5,'@x\n");
}

#[test]
fn statements_that_change_data_are_refused() {
    let env = Env::new();
    lake_with_events(&env);
    let out = env.path("copy.csv");
    for stmt in [
        "CREATE TABLE t AS SELECT 1".to_string(),
        "INSERT INTO events SELECT * FROM events".to_string(),
        "DELETE FROM events".to_string(),
        "DROP TABLE events".to_string(),
        "CREATE VIEW v AS SELECT 1".to_string(),
        format!("COPY events TO '{}'", out.display()),
        "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'".to_string(),
        "SET datafusion.execution.target_partitions = 1".to_string(),
    ] {
        let err = env.fails(&["sql", &stmt]);
        assert!(
            err.contains("read-only") || err.contains("not supported") || err.contains("refused"),
            "{stmt}: {err}"
        );
        assert!(!out.exists(), "{stmt} wrote a file");
    }
    assert_eq!(env.scalar("SELECT count(*) FROM events"), "2");
}

#[test]
fn a_query_can_come_from_stdin() {
    use std::io::Write;
    let env = Env::new();
    lake_with_events(&env);
    let mut child = env
        .command()
        .args(["sql", "--format", "csv"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"SELECT count(*) AS n FROM events;\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "n\n2\n");
}

#[test]
fn a_bad_query_fails_with_one_line() {
    let env = Env::new();
    std::fs::create_dir_all(env.lake()).unwrap();
    let err = env.fails(&["sql", "SELECT nope FROM events"]);
    assert!(err.starts_with("error: ") && err.contains("nope"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}
