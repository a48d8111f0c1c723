//! The same answers on an Apache DataFusion Ballista cluster: a scheduler
//! and two executors started from the binary (`agentledger cluster`), on
//! loopback, over a lake on the S3 test server; an executor killed in the
//! middle of a query; a scheduler that is not there.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Env, sample};
use crate::s3::{S3, cmd, free_port, wait_for_port};

/// A scheduler and its executors, killed on drop.
struct Cluster {
    scheduler: Child,
    executors: Vec<Child>,
    port: u16,
}

impl Cluster {
    /// A scheduler without any cloud credentials (none travel in plans),
    /// and `executors` executors of two tasks each, made by `executor`
    /// (which gives them their credentials, if the lake needs any).
    fn start(env: &Env, executors: usize, executor: impl Fn() -> Command) -> Self {
        let port = free_port();
        let log = |name: &str| std::fs::File::create(env.path(name)).unwrap();
        let scheduler = env
            .command()
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_ENDPOINT_URL")
            .args([
                "cluster",
                "scheduler",
                "--bind",
                &format!("127.0.0.1:{port}"),
            ])
            .args(["--executor-timeout", "10"])
            .stdout(Stdio::null())
            .stderr(log("scheduler.log"))
            .spawn()
            .unwrap();
        wait_for_port(port, "the scheduler");
        let executors = (0..executors)
            .map(|i| {
                // Two ports each: shuffle data, then tasks.
                let data = loop {
                    let p = free_port();
                    if p < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
                        break p;
                    }
                };
                let child = executor()
                    .args(["cluster", "executor"])
                    .args(["--scheduler", &format!("ballista://127.0.0.1:{port}")])
                    .args(["--bind", &format!("127.0.0.1:{data}")])
                    .args(["--concurrency", "2"])
                    .arg("--work-dir")
                    .arg(env.path(&format!("executor-{i}")))
                    .stdout(Stdio::null())
                    .stderr(log(&format!("executor-{i}.log")))
                    .spawn()
                    .unwrap();
                wait_for_port(data + 1, "an executor");
                child
            })
            .collect();
        // Registration follows the ports by a heartbeat at most.
        std::thread::sleep(Duration::from_secs(2));
        Self {
            scheduler,
            executors,
            port,
        }
    }

    fn engine(&self) -> String {
        format!("ballista://127.0.0.1:{}", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.executors.iter_mut().chain([&mut self.scheduler]) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `Output` as what a user sees: exit status, stdout, and stderr.
fn shown(out: &Output) -> (Option<i32>, String, String) {
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `text` with each "YYYY-MM-DD HH:MM UTC" a report stamps as the time it
/// was written replaced: two reports made a minute apart differ there only.
fn without_write_time(text: &str) -> String {
    text.lines()
        .map(|line| {
            let Some(at) = line.find("generated") else {
                return line.to_string();
            };
            let (head, tail) = line.split_at(at);
            let bytes = tail.as_bytes();
            let stamp = (0..bytes.len().saturating_sub(20)).find(|&i| {
                let s = &tail[i..i + 20];
                s.ends_with(" UTC")
                    && s.as_bytes()[4] == b'-'
                    && s.as_bytes()[10] == b' '
                    && s.as_bytes()[13] == b':'
                    && s[..4].bytes().all(|b| b.is_ascii_digit())
            });
            match stamp {
                Some(i) => format!("{head}{}<time>{}", &tail[..i], &tail[i + 20..]),
                None => line.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every file of a report folder, with write times blanked.
fn report_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let bytes = std::fs::read(&path).unwrap();
            let bytes = match std::str::from_utf8(&bytes) {
                Ok(text) => without_write_time(text).into_bytes(),
                Err(_) => bytes,
            };
            (name, bytes)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn write_times_are_blanked_and_nothing_else() {
    let page = "<p>week &middot; generated 2026-12-01 03:04 UTC</p>\nnot generated 2026-12-01\n";
    assert_eq!(
        without_write_time(page),
        "<p>week &middot; generated <time></p>\nnot generated 2026-12-01"
    );
    assert_eq!(
        without_write_time("\"generated_at\": \"2026-12-01 03:05 UTC\","),
        "\"generated_at\": \"<time>\","
    );
}

#[test]
fn every_command_that_reads_answers_the_same_on_a_cluster_over_s3() {
    let env = Env::new();
    let s3 = S3::start();
    let prefix = "cluster";
    let lake = |args: &[&str]| {
        let out = cmd(&env, s3.port, prefix).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", shown(&out).2);
    };
    lake(&["load", "prices", &sample("model_prices.csv")]);
    lake(&["load", "plans", &sample("customer_plans.csv")]);
    lake(&["load", "policies", &sample("workflow_policies.csv")]);
    // Two ingests: run parts made by each, merged when read.
    for part in env.split_sample(2) {
        lake(&["ingest", part.to_str().unwrap()]);
    }
    let cluster = Cluster::start(&env, 2, || cmd(&env, s3.port, prefix));
    let engine = cluster.engine();
    let both = |args: &[&str]| -> [Output; 2] {
        [None, Some(engine.as_str())].map(|engine| {
            let mut c = cmd(&env, s3.port, prefix);
            if let Some(engine) = engine {
                c.args(["--engine", engine]);
            }
            c.args(args).output().unwrap()
        })
    };
    let mut commands: Vec<Vec<&str>> = [
        "tenant_id",
        "workflow",
        "agent_version",
        "date",
        "week",
        "month",
        "tenant_id,week",
        "tenant_id,month",
        "tenant_id,date",
        "workflow,agent_version",
    ]
    .iter()
    .map(|keys| vec!["metrics", "--by", keys, "--format", "csv"])
    .collect();
    commands.extend([
        vec![
            "metrics",
            "--by",
            "tenant_id",
            "--from",
            "2026-10-12",
            "--to",
            "2026-10-19",
        ],
        vec!["metrics", "--open"],
        vec![
            "gate",
            "--baseline",
            "v1.4.0",
            "--candidate",
            "v1.5.0",
            "--format",
            "json",
        ],
        vec!["readiness", "--format", "json"],
        vec!["readiness", "--by", "workflow", "--fail-on-fail"],
        vec!["timeline", "--tenant", "acme", "--run", "run-000100"],
        vec![
            "sql",
            "--format",
            "csv",
            "SELECT m.model, r.workflow, m.date, count(*) AS calls, sum(m.cost_usd) AS cost \
             FROM model_calls m JOIN runs r USING (tenant_id, run_id) \
             GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        ],
        vec![
            "sql",
            "--format",
            "csv",
            "SELECT reason, count(*) FROM quarantine GROUP BY 1 ORDER BY 1",
        ],
    ]);
    for args in &commands {
        let [embedded, cluster] = both(args);
        assert!(
            !embedded.stdout.is_empty(),
            "{args:?}: {}",
            shown(&embedded).2
        );
        assert_eq!(shown(&embedded), shown(&cluster), "{args:?}");
    }
    // The gate's exit status on the cluster is its answer too.
    let [embedded, _] = both(&["gate", "--baseline", "v1.4.0", "--candidate", "v1.5.0"]);
    assert_eq!(embedded.status.code(), Some(1), "{}", shown(&embedded).2);

    // The weekly report: every file the same, but for the time it was made.
    let dirs: Vec<PathBuf> = ["embedded", "cluster"]
        .iter()
        .map(|name| env.path(&format!("report-{name}")))
        .collect();
    for (dir, engine) in dirs.iter().zip([None, Some(engine.as_str())]) {
        let mut c = cmd(&env, s3.port, prefix);
        if let Some(engine) = engine {
            c.args(["--engine", engine]);
        }
        let out = c
            .args(["report", "--week", "2026-W42", "--out"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", shown(&out).2);
    }
    let embedded = report_files(&dirs[0]);
    assert!(embedded.iter().any(|(name, _)| name == "report.html"));
    assert!(
        embedded
            .iter()
            .any(|(name, _)| name.starts_with("timeline-"))
    );
    assert_eq!(embedded, report_files(&dirs[1]));
    // The SQL server: a tenant's session (its scans behind the scope's
    // barrier, a node of ours that travels by name) and an admin's.
    let users = env.path("users.json");
    for (name, role) in [("acme_user", "tenant"), ("root", "admin")] {
        let mut add = env.command();
        add.args(["user", "add", name, "--role", role, "--password-stdin"])
            .arg("--users")
            .arg(&users);
        if role == "tenant" {
            add.args(["--tenant", "acme"]);
        }
        let mut child = add
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write;
        writeln!(child.stdin.take().unwrap(), "pw-{name}").unwrap();
        assert!(child.wait().unwrap().success());
    }
    let servers: Vec<PgServer> = [None, Some(engine.as_str())]
        .into_iter()
        .map(|engine| {
            let mut c = cmd(&env, s3.port, prefix);
            if let Some(engine) = engine {
                c.args(["--engine", engine]);
            }
            c.args(["serve", "--pg", "127.0.0.1:0", "--users"])
                .arg(&users);
            PgServer::start(c)
        })
        .collect();
    let psql = psql_binary();
    let ask = |server: &PgServer, user: &str, sql: &str| -> String {
        let out = Command::new(&psql)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &server.port.to_string(),
                "-U",
                user,
            ])
            .args([
                "-d",
                "agentledger",
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .env("PGPASSWORD", format!("pw-{user}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{user}: {sql}: {}", shown(&out).2);
        String::from_utf8(out.stdout).unwrap()
    };
    for (user, sql) in [
        (
            "acme_user",
            "SELECT tenant_id, count(*), sum(cost_usd) FROM model_calls GROUP BY 1 ORDER BY 1",
        ),
        (
            "acme_user",
            "SELECT count(*), sum(cost_usd) FROM readiness_runs",
        ),
        (
            "root",
            "SELECT tenant_id, count(*) FROM events GROUP BY 1 ORDER BY 1",
        ),
    ] {
        let answer = ask(&servers[0], user, sql);
        assert!(!answer.trim().is_empty(), "{user}: {sql}");
        assert_eq!(answer, ask(&servers[1], user, sql), "{user}: {sql}");
    }
    let tenants = ask(
        &servers[1],
        "acme_user",
        "SELECT DISTINCT tenant_id FROM events",
    );
    assert_eq!(tenants.trim(), "acme");
    // And the cluster is what ran them.
    let plan = ask(&servers[1], "root", "EXPLAIN SELECT count(*) FROM events");
    assert!(plan.contains("distributed_plan"), "{plan}");
}

/// `serve --pg` on a port of its choosing, killed on drop.
struct PgServer {
    child: Child,
    port: u16,
}

impl PgServer {
    fn start(mut command: Command) -> Self {
        use std::io::BufRead;
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut seen = String::new();
        for line in stderr.lines() {
            let line = line.unwrap();
            if let Some(port) = line
                .split("PostgreSQL server listening on ")
                .nth(1)
                .and_then(|addr| addr.split_whitespace().next())
                .and_then(|addr| addr.rsplit_once(':'))
                .and_then(|(_, port)| port.parse().ok())
            {
                return Self { child, port };
            }
            seen.push_str(&line);
            seen.push('\n');
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the SQL server did not start: {seen}");
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// psql, installed by `scripts/psql-env` when missing.
fn psql_binary() -> PathBuf {
    let out = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/psql-env"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", shown(&out).2);
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// The CPU time a process has used, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command name in parentheses: fields 14 and 15 are utime, stime.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    fields
        .get(11..13)
        .map_or(0, |f| f.iter().map(|v| v.parse::<u64>().unwrap_or(0)).sum())
}

#[test]
fn an_executor_killed_during_a_query_gives_no_wrong_answer_and_the_next_run_is_right() {
    let env = Env::new();
    env.ok(&["load", "prices", &sample("model_prices.csv")]);
    let events = env.generated_sample(20_000, 3);
    env.ingest(&[&events]);
    // Long enough to be killed in the middle of: every pair of one
    // tenant's calls to one model.
    let sql = "SELECT a.tenant_id, count(*) AS pairs, sum(a.input_tokens + b.output_tokens) AS tokens \
               FROM model_calls a JOIN model_calls b ON a.tenant_id = b.tenant_id AND a.model = b.model \
               GROUP BY 1 ORDER BY 1";
    let expected = env.ok(&["sql", "--format", "csv", sql]);
    let mut cluster = Cluster::start(&env, 2, || env.command());
    let engine = cluster.engine();
    let query = || {
        env.command()
            .args(["--engine", &engine, "sql", "--format", "csv", sql])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut running = query();
    // Kill the executor working hardest once the query is under way.
    let start = Instant::now();
    let busiest = loop {
        std::thread::sleep(Duration::from_millis(200));
        let ticks: Vec<u64> = cluster
            .executors
            .iter()
            .map(|c| cpu_ticks(c.id()))
            .collect();
        let (i, most) = ticks.iter().enumerate().max_by_key(|(_, t)| **t).unwrap();
        if *most > 300 || start.elapsed() > Duration::from_secs(60) {
            break i;
        }
    };
    assert!(
        running.try_wait().unwrap().is_none(),
        "the query ended before an executor was killed: nothing was tested"
    );
    let victim = &mut cluster.executors[busiest];
    let _ = Command::new("kill")
        .args(["-KILL", &victim.id().to_string()])
        .status();
    let _ = victim.wait();
    let out = running.wait_with_output().unwrap();
    let (code, stdout, stderr) = shown(&out);
    if code == Some(0) {
        // Finished on the other executor: the whole answer.
        assert_eq!(stdout, expected, "{stderr}");
    } else {
        // Or failed, saying so, with no partial rows.
        assert!(stdout.is_empty(), "{stdout}");
        assert!(stderr.contains("failed"), "{stderr}");
    }
    let again = env.ok(&["--engine", &engine, "sql", "--format", "csv", sql]);
    assert_eq!(again, expected);
}

#[test]
fn a_scheduler_that_is_not_there_fails_the_command_at_once_with_its_address() {
    let env = crate::common::sample_lake();
    let port = free_port();
    let engine = format!("ballista://127.0.0.1:{port}");
    let start = Instant::now();
    let err = env.fails(&["--engine", &engine, "metrics", "--by", "tenant_id"]);
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(
        err.contains(&format!("cannot reach the Ballista scheduler at {engine}"))
            && err.contains(&format!("tried 127.0.0.1:{port}")),
        "{err}"
    );
    // The gate and the readiness check say "could not run" (2), not "no".
    for args in [
        vec!["gate", "--baseline", "v1.4.0", "--candidate", "v1.5.0"],
        vec!["readiness", "--fail-on-fail"],
    ] {
        let out = env
            .command()
            .env("AGENTLEDGER_ENGINE", &engine)
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", shown(&out).2);
    }
    // So does the batch, with the engine in its file.
    let config = env.write(
        "batch.toml",
        &format!("reports = \"reports\"\nengine = \"{engine}\"\n"),
    );
    let out = env
        .command()
        .args(["run", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        shown(&out)
            .2
            .contains(&format!("cannot reach the Ballista scheduler at {engine}")),
        "{}",
        shown(&out).2
    );
    // A value that names no engine says what would.
    let err = env.fails(&["--engine", "duckdb", "metrics"]);
    assert!(err.contains("ballista://HOST:PORT"), "{err}");
}
