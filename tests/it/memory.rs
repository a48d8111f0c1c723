//! The memory limit (`--memory-limit`, `AGENTLEDGER_MEMORY_LIMIT`): under a
//! small one, sorts and aggregations spill to disk and every answer is the
//! same; a query that cannot fit fails with the limit and how to raise it.

use std::process::Output;

use crate::common::{Env, sample_lake};

/// Far below what the generated lake's merge of run parts and its sort of
/// every event hold (they spill under it), and about three times the least
/// they need to make progress (a batch per operator and per spill file
/// being merged), with the settings of [`pinned`].
const LIMIT: &str = "24M";

/// `merge_parts.sql` as written (without its header, which the command
/// line would take for a flag), ordered: a hash aggregate of one group per
/// run (`first_value(... ORDER BY ...)` and sums) and a sort of its output.
fn merge_parts_sql() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/transforms/sql/merge_parts.sql"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let body: Vec<&str> = text.lines().skip_while(|l| l.starts_with("--")).collect();
    format!("{}\nORDER BY tenant_id, run_id", body.join("\n").trim_end())
}

/// Every event, sorted: the biggest sort the lake offers.
const SORT_EVENTS: &str =
    "SELECT event_id, ts, tenant_id, run_id, event_type FROM events ORDER BY ts, event_id";

/// Runs `args` with `vars` and two settings that make the limit mean the
/// same on every machine: two partitions (as on CI; each partition's
/// operators get their share of the pool) and batches of 1024 rows (the
/// least an operator holds is a few batches, and with DataFusion's 8192 the
/// limit that forces spilling here would be close to that floor).
fn pinned(env: &Env, vars: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = env.command();
    command
        .env("DATAFUSION_EXECUTION_TARGET_PARTITIONS", "2")
        .env("DATAFUSION_EXECUTION_BATCH_SIZE", "1024");
    for (k, v) in vars {
        command.env(k, v);
    }
    command.args(args).output().expect("binary runs")
}

/// [`pinned`], asserting success; returns stdout.
fn pinned_ok(env: &Env, vars: &[(&str, &str)], args: &[&str]) -> String {
    let out = pinned(env, vars, args);
    assert!(
        out.status.success(),
        "agentledger {args:?} with {vars:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The sum of the `spill_count` metrics in an `EXPLAIN ANALYZE` output.
fn spills(explained: &str) -> u64 {
    explained
        .split("spill_count=")
        .skip(1)
        .map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u64>().unwrap()
        })
        .sum()
}

/// A lake of 20,000 generated runs (about 170,000 events).
fn generated_lake() -> Env {
    let env = Env::new();
    let events = env.generated_sample(20_000, 7);
    let dir = events.parent().unwrap();
    env.ok(&[
        "load",
        "prices",
        dir.join("model_prices.csv").to_str().unwrap(),
    ]);
    env.ok(&[
        "load",
        "plans",
        dir.join("customer_plans.csv").to_str().unwrap(),
    ]);
    env.ingest(&[&events]);
    env
}

#[test]
fn under_a_small_limit_queries_spill_to_disk_and_answer_the_same() {
    let env = generated_lake();
    let limit = &["--memory-limit", LIMIT][..];
    let merge = merge_parts_sql();
    let commands: Vec<Vec<&str>> = vec![
        vec!["metrics", "--by", "tenant_id,week", "--format", "csv"],
        vec![
            "metrics",
            "--by",
            "workflow,agent_version,date",
            "--format",
            "csv",
        ],
        vec!["metrics", "--open", "--by", "tenant_id", "--format", "csv"],
        vec!["sql", "--format", "csv", &merge],
        vec!["sql", "--format", "csv", SORT_EVENTS],
    ];
    for args in &commands {
        let free = pinned_ok(&env, &[], args);
        assert!(free.lines().count() > 3, "{args:?}: {free}");
        let limited = pinned_ok(&env, &[], &[limit, args].concat());
        assert!(
            free == limited,
            "{args:?} answers differently under --memory-limit {LIMIT}"
        );
        let by_env = pinned_ok(&env, &[("AGENTLEDGER_MEMORY_LIMIT", LIMIT)], args);
        assert!(
            free == by_env,
            "{args:?} answers differently under AGENTLEDGER_MEMORY_LIMIT={LIMIT}"
        );
    }

    // It is the limit that makes them spill: the aggregate and the sort of
    // the merge write spill files under it and none without.
    let explain = format!("EXPLAIN ANALYZE {merge}");
    let free = pinned_ok(&env, &[], &["sql", "--format", "csv", &explain]);
    assert!(free.contains("spill_count=0"), "{free}");
    assert_eq!(spills(&free), 0, "{free}");
    let limited = pinned_ok(
        &env,
        &[],
        &[limit, &["sql", "--format", "csv", &explain]].concat(),
    );
    assert!(
        spills(&limited) > 0,
        "nothing spilled under --memory-limit {LIMIT}: {limited}"
    );

    // Rebuilding every run part (windows, aggregates, joins over the
    // events, read in chunks sized to the limit) under the limit, with spill
    // files in a folder of our own: the same metrics after, and the folder
    // left empty.
    let before = pinned_ok(&env, &[], &commands[0]);
    let spill = env.path("spill");
    pinned_ok(
        &env,
        &[],
        &[limit, &["--spill-dir", spill.to_str().unwrap(), "rebuild"]].concat(),
    );
    assert_eq!(pinned_ok(&env, &[], &commands[0]), before);
    let left: Vec<_> = std::fs::read_dir(&spill)
        .expect("the spill folder was made")
        .collect();
    assert!(left.is_empty(), "spill files left behind: {left:?}");
}

/// Stderr of a run that must fail with exit code `code`.
fn fails_with(code: i32, out: Output) -> String {
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn a_query_that_cannot_fit_fails_naming_the_limit_and_how_to_raise_it() {
    let env = sample_lake();
    let big = "SELECT tenant_id, run_id, count(*) AS n FROM events GROUP BY tenant_id, run_id ORDER BY n DESC, run_id";
    let stderr = fails_with(1, env.run(&["--memory-limit", "1K", "sql", big]));
    let line = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line: {stderr}"));
    assert!(
        line.starts_with("error: out of memory: the query needs more than the memory limit of 1 KiB, set by --memory-limit"),
        "{line}"
    );
    assert!(
        line.contains("--memory-limit SIZE") && line.contains("AGENTLEDGER_MEMORY_LIMIT=SIZE"),
        "says how to raise it: {line}"
    );
    assert!(
        line.contains("Failed to allocate"),
        "DataFusion's account follows: {line}"
    );

    // Set by the variable, the message says so; every command reports it
    // the same way (gate exits 2 on an error).
    let out = env
        .command()
        .env("AGENTLEDGER_MEMORY_LIMIT", "1K")
        .args(["metrics", "--by", "tenant_id"])
        .output()
        .unwrap();
    let stderr = fails_with(1, out);
    assert!(
        stderr.contains("memory limit of 1 KiB, set by AGENTLEDGER_MEMORY_LIMIT"),
        "{stderr}"
    );
    let gate = [
        "--memory-limit",
        "1K",
        "gate",
        "--baseline",
        "v1.4.0",
        "--candidate",
        "v1.5.0",
    ];
    let stderr = fails_with(2, env.run(&gate));
    assert!(stderr.contains("memory limit of 1 KiB"), "{stderr}");

    // The flag wins over the variable.
    let out = env
        .command()
        .env("AGENTLEDGER_MEMORY_LIMIT", "1K")
        .args(["--memory-limit", "256M", "sql", big])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_batch_logs_a_query_that_cannot_fit() {
    let (env, config) = crate::report::batch_env();
    let out = env.run(&[
        "--memory-limit",
        "1K",
        "run",
        "--config",
        config.to_str().unwrap(),
        "--week",
        "2026-W44",
    ]);
    let stderr = fails_with(1, out);
    assert!(
        stderr.contains("out of memory") && stderr.contains("memory limit of 1 KiB"),
        "{stderr}"
    );
}

#[test]
fn unusable_settings_are_refused_with_their_name_and_value() {
    let env = sample_lake();
    let stderr = fails_with(2, env.run(&["--memory-limit", "lots", "sql", "SELECT 1"]));
    assert!(
        stderr.contains("'lots'") && stderr.contains("--memory-limit"),
        "{stderr}"
    );
    for bad in ["lots", "0", "-2G", "2X", "150%"] {
        let out = env
            .command()
            .env("AGENTLEDGER_MEMORY_LIMIT", bad)
            .args(["sql", "SELECT 1"])
            .output()
            .unwrap();
        let stderr = fails_with(1, out);
        assert!(
            stderr.contains(&format!("AGENTLEDGER_MEMORY_LIMIT=\"{bad}\"")),
            "{bad}: {stderr}"
        );
    }
    // Sizes as people write them are taken.
    for good in ["512M", "2G", "1.5GiB", "50%"] {
        let out = env
            .command()
            .env("AGENTLEDGER_MEMORY_LIMIT", good)
            .args(["sql", "SELECT 1"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{good}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // A spill folder that cannot be made is named with its setting.
    let file = env.write("not-a-folder", "");
    let under_file = file.join("spill");
    let stderr = fails_with(
        1,
        env.run(&[
            "--spill-dir",
            under_file.to_str().unwrap(),
            "sql",
            "SELECT 1",
        ]),
    );
    assert!(
        stderr.contains("spill files") && stderr.contains("AGENTLEDGER_SPILL_DIR"),
        "{stderr}"
    );
}
