//! Command-line arguments (clap derive): names, help and validation only.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Cost and quality analytics for AI agents: events into a Parquet lake,
/// metrics with SQL.
#[derive(Debug, Parser)]
#[command(name = "agentledger", version, about, long_about = None)]
pub struct Cli {
    /// The lake: a local path, or a file://, s3://, gs://, az:// or memory:// URL.
    #[arg(
        long,
        global = true,
        env = "AGENTLEDGER_LAKE",
        default_value = "./lake"
    )]
    pub lake: String,

    /// The most memory DataFusion may hold for queries, such as 512M, 2G,
    /// 1.5GiB or 50% (of the memory available); sorts and aggregations
    /// spill to disk beyond it. Wins over AGENTLEDGER_MEMORY_LIMIT; default:
    /// half the memory available (the container's limit, else physical
    /// memory).
    #[arg(long, global = true, value_name = "SIZE", value_parser = parse_size)]
    pub memory_limit: Option<agentledger_transforms::memory::Size>,

    /// The folder for spill files (created if missing). Wins over
    /// AGENTLEDGER_SPILL_DIR; default: the OS temporary folder (TMPDIR).
    #[arg(long, global = true, value_name = "DIR")]
    pub spill_dir: Option<PathBuf>,

    /// Where queries run: `embedded` (this process, the default) or
    /// `ballista://HOST:PORT`, a cluster's scheduler (`agentledger cluster
    /// scheduler`). For the commands that read (sql, metrics, gate, report,
    /// readiness, timeline, serve, run's report); writes always run here.
    #[arg(long, global = true, env = "AGENTLEDGER_ENGINE", value_name = "ENGINE")]
    pub engine: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

fn parse_size(text: &str) -> Result<agentledger_transforms::memory::Size, String> {
    agentledger_transforms::memory::parse_size(text)
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ingest NDJSON events (files, directories, globs, URLs; .gz and .zst too).
    Ingest(IngestArgs),
    /// Load a reference table (model prices, customer plans or workflow policies) from CSV.
    Load(LoadArgs),
    /// Run read-only SQL over the lake's tables; no query and a terminal opens a prompt.
    Sql(SqlArgs),
    /// Metrics of finished runs (success, cost per success, rates, margin) by keys.
    Metrics(MetricsArgs),
    /// The release gate: does the candidate's success rate drop too far below the baseline's?
    Gate(GateArgs),
    /// One run's events in order, with what each cost and the running total.
    Timeline(TimelineArgs),
    /// Is the agent ready for real customers? The SPEC section 8 checklist per group, with the runs that break it.
    Readiness(ReadinessArgs),
    /// Write the weekly margin report (HTML, charts, margin.csv, alerts.json) for an ISO week.
    Report(ReportArgs),
    /// The scheduled batch: ingest new landing files, reload reference files, report, alert.
    Run(RunArgs),
    /// Delete event and quarantine partitions older than N days.
    Retain(RetainArgs),
    /// Rewrite event partitions made of many small files as one file each.
    Compact(CompactArgs),
    /// Rebuild every run part from the events now, with this binary's definitions, and the key index.
    Rebuild(RebuildArgs),
    /// Write realistic, deterministic sample events and reference CSVs.
    Sample(SampleArgs),
    /// The long-running server: OpenTelemetry traces over OTLP/HTTP (--otlp), and read-only SQL over the PostgreSQL protocol (--pg).
    Serve(ServeArgs),
    /// Users of the SQL server (serve --pg): add or replace one.
    User(UserArgs),
    /// Run queries past one machine: a Ballista scheduler or executor in this process.
    Cluster(ClusterArgs),
}

/// `agentledger cluster`.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    pub command: ClusterCommand,
}

/// `agentledger cluster ...`.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Ballista's scheduler: takes queries from `--engine ballista://HOST:PORT`
    /// and hands their tasks to executors. Runs until stopped.
    Scheduler(SchedulerArgs),
    /// Ballista's executor: runs tasks the scheduler hands out, reading the
    /// lake with this process's credentials. Runs until stopped.
    Executor(ExecutorArgs),
}

/// `agentledger cluster scheduler`.
#[derive(Debug, Args)]
pub struct SchedulerArgs {
    /// Listen on this address (HOST:PORT).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:50050")]
    pub bind: String,
    /// The host name executors and clients reach this scheduler by, when
    /// not the one of --bind (such as 0.0.0.0).
    #[arg(long, value_name = "HOST")]
    pub external_host: Option<String>,
    /// An executor silent this long is taken for dead: its tasks run on
    /// the others.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub executor_timeout: u64,
}

/// `agentledger cluster executor`.
#[derive(Debug, Args)]
pub struct ExecutorArgs {
    /// The scheduler: ballista://HOST:PORT (or HOST:PORT).
    #[arg(long, value_name = "URL")]
    pub scheduler: String,
    /// Tasks run at once (default: the cores available).
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
    /// Serve shuffle data on this address (HOST:PORT); tasks arrive on the
    /// next port.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:50051")]
    pub bind: String,
    /// The host name the scheduler and other executors reach this one by,
    /// when not the one of --bind.
    #[arg(long, value_name = "HOST")]
    pub external_host: Option<String>,
    /// Where shuffle files go (default: a folder of the OS temporary folder).
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
}

/// The SQL server's users file (`--users`).
#[derive(Debug, Args)]
pub struct UsersFile {
    /// The SQL server's users file, written by `agentledger user add`
    /// (created by it if missing).
    #[arg(
        long = "users",
        value_name = "FILE",
        env = "AGENTLEDGER_PG_USERS",
        default_value = "pg-users.json"
    )]
    pub path: PathBuf,
}

/// `agentledger user`.
#[derive(Debug, Args)]
pub struct UserArgs {
    #[command(subcommand)]
    pub command: UserCommand,
}

/// `agentledger user ...`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user, or replace the one of that name: role, tenants and a
    /// SCRAM-SHA-256 verifier of the password (the password itself is
    /// not stored).
    Add(UserAddArgs),
}

/// `agentledger user add`.
#[derive(Debug, Args)]
pub struct UserAddArgs {
    /// The name the user logs in with.
    pub name: String,
    /// admin (everything, the quarantine included), analyst (every tenant,
    /// no quarantine) or tenant (only the rows of --tenant).
    #[arg(long, value_name = "ROLE")]
    pub role: String,
    /// A tenant a tenant user sees (repeat for several).
    #[arg(long = "tenant", value_name = "TENANT_ID")]
    pub tenants: Vec<String>,
    #[command(flatten)]
    pub users: UsersFile,
    /// Read the password from the first line of stdin instead of asking
    /// at the terminal.
    #[arg(long)]
    pub password_stdin: bool,
}

/// `agentledger serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Take OpenTelemetry traces over OTLP/HTTP on this address
    /// (POST /v1/traces, protobuf or JSON, optionally gzip), e.g.
    /// 127.0.0.1:4318.
    #[arg(long, value_name = "ADDR")]
    pub otlp: Option<std::net::SocketAddr>,
    /// Local folder where accepted requests wait, synced to disk, until
    /// they are committed to the lake; one receiver per folder.
    #[arg(long, value_name = "DIR", default_value = "otlp-spool")]
    pub spool: PathBuf,
    /// Commit what waits in the spool at least this often.
    #[arg(long, value_name = "SECONDS",
          default_value_t = agentledger_serve::otlp::DEFAULT_COMMIT_INTERVAL.as_secs_f64())]
    pub commit_interval: f64,
    /// Commit as soon as this many spans wait.
    #[arg(long, value_name = "N", default_value_t = agentledger_serve::otlp::DEFAULT_COMMIT_SPANS)]
    pub commit_spans: u64,
    /// Largest request body, compressed or after decompression (413 above).
    #[arg(long, value_name = "BYTES",
          default_value_t = agentledger_serve::otlp::DEFAULT_MAX_REQUEST_BYTES)]
    pub max_request_bytes: usize,
    /// Refuse requests with 503 and Retry-After while the spool holds more
    /// than this (the lake is slower than the senders, or unreachable).
    #[arg(long, value_name = "BYTES",
          default_value_t = agentledger_serve::otlp::DEFAULT_MAX_SPOOL_BYTES)]
    pub max_spool_bytes: u64,
    /// Keep message contents of spans (prompts, completions, tool
    /// arguments and results); by default they are dropped on receipt.
    #[arg(long)]
    pub keep_messages: bool,
    /// Answer SQL over the PostgreSQL wire protocol on this address, e.g.
    /// 127.0.0.1:5432 (read-only; users from --users).
    #[arg(long, value_name = "ADDR")]
    pub pg: Option<std::net::SocketAddr>,
    #[command(flatten)]
    pub users: UsersFile,
    /// Offer TLS with this PEM certificate chain (needs --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Longest time one SQL statement may run; a client's
    /// statement_timeout may only shorten it.
    #[arg(long, value_name = "SECONDS",
          default_value_t = agentledger_serve::pg::DEFAULT_STATEMENT_TIMEOUT.as_secs_f64())]
    pub statement_timeout: f64,
    /// Memory one SQL statement may use (it spills to disk first, then
    /// fails with SQLSTATE 53200), such as 256M or 1G.
    #[arg(long, value_name = "SIZE", default_value = "512MiB")]
    pub query_memory: String,
    /// SQL connections at once; one more is refused (SQLSTATE 53300).
    #[arg(long, value_name = "N", default_value_t = agentledger_serve::pg::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Close a SQL connection idle for this long.
    #[arg(long, value_name = "SECONDS",
          default_value_t = agentledger_serve::pg::DEFAULT_IDLE_TIMEOUT.as_secs_f64())]
    pub idle_timeout: f64,
    /// Append the SQL audit log (one JSON line per login and statement)
    /// to this file; default: stderr.
    #[arg(long, value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
    /// How to write log lines.
    #[arg(long, value_enum, default_value_t = SummaryFormat::Text)]
    pub log_format: SummaryFormat,
}

/// `agentledger retain`.
#[derive(Debug, Args)]
pub struct RetainArgs {
    /// Keep the last N days (UTC): partitions dated before today − N go.
    #[arg(long, value_name = "N")]
    pub days: u32,
    /// List what would be deleted; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// How to print what was (or would be) deleted.
    #[arg(long, value_enum, default_value_t = SummaryFormat::Text)]
    pub format: SummaryFormat,
}

/// `agentledger compact`.
#[derive(Debug, Args)]
pub struct CompactArgs {
    /// Rewrite a date partition once it has this many files (at least 2).
    #[arg(long, value_name = "N", default_value_t = agentledger_lake::compact::MIN_FILES as u64,
          value_parser = clap::value_parser!(u64).range(2..))]
    pub min_files: u64,
    /// How to print what was done.
    #[arg(long, value_enum, default_value_t = SummaryFormat::Text)]
    pub format: SummaryFormat,
}

/// `agentledger rebuild`.
#[derive(Debug, Args)]
pub struct RebuildArgs {
    /// How to print what was done.
    #[arg(long, value_enum, default_value_t = SummaryFormat::Text)]
    pub format: SummaryFormat,
}

/// `agentledger report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The ISO week, YYYY-Www (default: the last complete week).
    #[arg(long, value_name = "YYYY-Www", value_parser = parse_week)]
    pub week: Option<agentledger_reports::weekly::IsoWeek>,
    /// The folder to write report.html, the charts, margin.csv, alerts.json and summary.json into.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// POST each new negative account to this webhook (Slack-compatible JSON).
    #[arg(long, value_name = "URL")]
    pub webhook: Option<String>,
}

fn parse_week(text: &str) -> Result<agentledger_reports::weekly::IsoWeek, String> {
    agentledger_reports::weekly::IsoWeek::parse(text)
}

/// `agentledger run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The batch's TOML config (lake, landing, prices, plans, policies, reports, [alerts]).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Report this ISO week instead of the last complete one.
    #[arg(long, value_name = "YYYY-Www", value_parser = parse_week)]
    pub week: Option<agentledger_reports::weekly::IsoWeek>,
    /// Exit 3 when the week has negative accounts (for schedulers that page).
    #[arg(long)]
    pub fail_on_alert: bool,
    /// Log lines on stderr as text or one JSON object per line.
    #[arg(long, value_enum, default_value_t = SummaryFormat::Text)]
    pub log_format: SummaryFormat,
}

/// `agentledger metrics`.
#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// Group by a comma list of tenant_id,workflow,agent_version,date,week,month
    /// (none: one row over every finished run).
    #[arg(long, value_name = "KEYS", default_value = "", value_parser = parse_keys)]
    pub by: Keys,
    /// First date counted (a finished run's UTC date), YYYY-MM-DD.
    #[arg(long, value_name = "DATE")]
    pub from: Option<chrono::NaiveDate>,
    /// First date not counted (exclusive), YYYY-MM-DD.
    #[arg(long, value_name = "DATE")]
    pub to: Option<chrono::NaiveDate>,
    /// List the open runs (no run_finished yet) and their cost so far instead.
    #[arg(long)]
    pub open: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    /// Output file (required for parquet; optional otherwise, default stdout).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Parsed `--by` keys.
#[derive(Debug, Clone)]
pub struct Keys(pub Vec<agentledger_queries::Key>);

fn parse_keys(text: &str) -> Result<Keys, String> {
    agentledger_queries::parse_keys(text).map(Keys)
}

/// `agentledger gate`.
#[derive(Debug, Args)]
pub struct GateArgs {
    /// The agent_version in production.
    #[arg(long, value_name = "V")]
    pub baseline: String,
    /// The agent_version to release.
    #[arg(long, value_name = "V")]
    pub candidate: String,
    /// The largest allowed drop in success rate, in percentage points.
    #[arg(long, value_name = "PP", default_value_t = 2.0)]
    pub threshold: f64,
    /// First date counted (a finished run's UTC date), YYYY-MM-DD.
    #[arg(long, value_name = "DATE")]
    pub from: Option<chrono::NaiveDate>,
    /// First date not counted (exclusive), YYYY-MM-DD.
    #[arg(long, value_name = "DATE")]
    pub to: Option<chrono::NaiveDate>,
    /// How to print the verdict.
    #[arg(long, value_enum, default_value_t = SummaryFormat::Text)]
    pub format: SummaryFormat,
}

/// `agentledger readiness`.
#[derive(Debug, Args)]
pub struct ReadinessArgs {
    /// Group by a comma list of tenant_id,workflow,agent_version,date,week,month
    /// (none: one row over every finished run).
    #[arg(long, value_name = "KEYS", default_value = "", value_parser = parse_keys)]
    pub by: Keys,
    /// First date counted (a finished run's UTC date), YYYY-MM-DD.
    #[arg(long, value_name = "DATE")]
    pub from: Option<chrono::NaiveDate>,
    /// First date not counted (exclusive), YYYY-MM-DD.
    #[arg(long, value_name = "DATE")]
    pub to: Option<chrono::NaiveDate>,
    /// Offending runs listed per group and failed condition (the worst first); each count is of all of them.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub limit: u64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReadinessFormat::Table)]
    pub format: ReadinessFormat,
    /// Exit 1 when any group is not ready (2 when the check cannot run), for deployment pipelines.
    #[arg(long)]
    pub fail_on_fail: bool,
}

/// `agentledger readiness --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReadinessFormat {
    /// An aligned table, then the offending runs of each group that is not ready.
    Table,
    /// CSV with a header row; the offending runs listed in one column.
    Csv,
    /// A JSON array of objects named as in SPEC section 8.
    Json,
}

/// `agentledger timeline`.
#[derive(Debug, Args)]
pub struct TimelineArgs {
    /// The run's tenant_id.
    #[arg(long, value_name = "T")]
    pub tenant: String,
    /// The run_id.
    #[arg(long, value_name = "R")]
    pub run: String,
    /// Output format; html is one self-contained page with the policy in force and every breach marked.
    #[arg(long, value_enum, default_value_t = TimelineFormat::Table)]
    pub format: TimelineFormat,
    /// Output file (required for parquet; optional otherwise, default stdout).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// `agentledger ingest`.
#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Files, directories (walked recursively), globs or object-store URLs.
    #[arg(required = true, value_name = "SOURCE")]
    pub sources: Vec<String>,
    /// How to print the summary.
    #[arg(long, value_enum, default_value_t = SummaryFormat::Text)]
    pub format: SummaryFormat,
    /// What the sources hold: SPEC section-1 events (ndjson), OTLP/JSON
    /// traces (otlp, SPEC section 7), or either, told per file by its
    /// content (auto).
    #[arg(long, value_enum, default_value_t = InputArg::Auto)]
    pub input: InputArg,
    /// Keep message contents of OTLP spans (prompts, completions, system
    /// instructions, tool arguments and results) in `attributes`; by
    /// default they are not stored.
    #[arg(long)]
    pub keep_messages: bool,
}

/// `--input`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InputArg {
    /// Told per file: OTLP/JSON when its first object starts with
    /// `resourceSpans`, else NDJSON.
    Auto,
    /// SPEC section-1 events, one JSON object per line.
    Ndjson,
    /// OTLP/JSON traces, one TracesData object per line.
    Otlp,
}

/// Summary output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SummaryFormat {
    /// Lines for people.
    Text,
    /// One JSON object.
    Json,
}

/// `agentledger load`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    #[command(subcommand)]
    pub table: LoadTable,
}

/// Which reference table to load.
#[derive(Debug, Subcommand)]
pub enum LoadTable {
    /// model_prices.csv: model,provider,effective_from,input_usd_per_mtok,cached_input_usd_per_mtok,output_usd_per_mtok
    Prices {
        /// The CSV file.
        file: PathBuf,
    },
    /// customer_plans.csv: tenant_id,effective_from,price_per_success_usd,monthly_fee_usd
    Plans {
        /// The CSV file.
        file: PathBuf,
    },
    /// workflow_policies.csv: tenant_id,workflow,effective_from,allowed_tools,forbidden_tools,approval_required_tools,max_tool_calls_per_run,max_cost_usd_per_run
    Policies {
        /// The CSV file.
        file: PathBuf,
    },
}

/// `agentledger sql`.
#[derive(Debug, Args)]
pub struct SqlArgs {
    /// The query. Without it: a prompt on a terminal, else the query is read from stdin.
    pub query: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    /// Output file (required for parquet; optional otherwise, default stdout).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// `agentledger timeline --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TimelineFormat {
    /// An aligned table.
    Table,
    /// CSV with a header row.
    Csv,
    /// A JSON array of objects.
    Json,
    /// A Parquet file (needs --out).
    Parquet,
    /// One self-contained HTML page: events, costs, the policy in force, breaches, approvals.
    Html,
}

impl TimelineFormat {
    /// The row format, for all but html.
    pub fn rows(self) -> Option<OutputFormat> {
        match self {
            TimelineFormat::Table => Some(OutputFormat::Table),
            TimelineFormat::Csv => Some(OutputFormat::Csv),
            TimelineFormat::Json => Some(OutputFormat::Json),
            TimelineFormat::Parquet => Some(OutputFormat::Parquet),
            TimelineFormat::Html => None,
        }
    }
}

/// Row output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// An aligned table.
    Table,
    /// CSV with a header row.
    Csv,
    /// A JSON array of objects.
    Json,
    /// A Parquet file (needs --out).
    Parquet,
}

/// `agentledger sample`.
#[derive(Debug, Args)]
pub struct SampleArgs {
    /// Directory to write events.ndjson, model_prices.csv, customer_plans.csv and workflow_policies.csv into.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Number of agent runs to generate.
    #[arg(long, default_value_t = 400)]
    pub runs: u64,
    /// Random seed; the same seed gives the same bytes.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Leave out bad lines and repeats (clean data for benchmarks).
    #[arg(long)]
    pub no_bad_lines: bool,
    /// Write the events as OpenTelemetry spans instead: traces.json, one
    /// OTLP/JSON TracesData object per line (SPEC section 7), in place of
    /// events.ndjson. The same runs and metrics; bad lines and repeats have
    /// no span form and are left out.
    #[arg(long)]
    pub otlp: bool,
}
