//! The memory budget every DataFusion session runs under, and where spill
//! files go.
//!
//! One memory pool serves the whole process: every session agentledger
//! builds ([`crate::open_session`], the run-parts sessions of a refresh)
//! draws on it, so the limit holds for a command however many sessions it
//! opens. The pool is DataFusion's [`FairSpillPool`] inside a
//! [`TrackConsumersPool`], so that the error of a query that does not fit
//! names the operators that held the most. Operators that can spill (sorts,
//! hash aggregates, repartitions) write to temporary files when they reach
//! their share instead of failing; each session has its own disk manager,
//! in [`SPILL_DIR_VAR`] (or `--spill-dir`) when set, else in the OS
//! temporary folder, and its files go when it ends.
//!
//! The limit is, in order: what the command line set ([`configure`], the
//! `--memory-limit` flag), [`LIMIT_VAR`], or half of the memory the process
//! may use (a container's cgroup limit, else physical memory; 2 GiB when
//! neither can be read). DataFusion counts only the large state of its
//! operators (hash tables, sort buffers, join build sides), not the batches
//! streaming between them, Parquet decoding or the allocator's slack: the
//! other half is their headroom.

use std::fmt;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::{
    FairSpillPool, MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation, TrackConsumersPool,
};
use datafusion::execution::object_store::ObjectStoreRegistry;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{DataFrame, SessionConfig};
use futures::StreamExt;

/// The environment variable that sets the memory limit.
pub const LIMIT_VAR: &str = "AGENTLEDGER_MEMORY_LIMIT";
/// The command-line flag that sets the memory limit (and wins over
/// [`LIMIT_VAR`]).
pub const LIMIT_FLAG: &str = "--memory-limit";
/// The environment variable naming the folder for spill files.
pub const SPILL_DIR_VAR: &str = "AGENTLEDGER_SPILL_DIR";
/// The command-line flag naming the folder for spill files.
pub const SPILL_DIR_FLAG: &str = "--spill-dir";

/// The default limit as a share of the memory available.
pub const DEFAULT_PERCENT: f64 = 50.0;
/// The memory assumed available when it cannot be read (not Linux).
pub const FALLBACK_AVAILABLE: u64 = 4 << 30;
/// The limit per partition below which a session has fewer partitions than
/// cores (see [`Budget::tune`]).
pub const MEMORY_PER_PARTITION: u64 = 8 << 20;
/// The least memory a sort sets aside for merging (see [`Budget::tune`]).
const MIN_SORT_RESERVATION: u64 = 256 << 10;
/// Memory consumers named in the error of a query that does not fit.
const TOP_CONSUMERS: usize = 5;

/// A memory size as written in a setting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Size {
    /// A number of bytes.
    Bytes(u64),
    /// A percentage (0 < p <= 100) of the memory available to the process.
    Percent(f64),
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Size::Bytes(n) => f.write_str(&format_bytes(*n)),
            Size::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// Parses a memory size: a number of bytes with an optional unit (`B`, `K`,
/// `M`, `G`, `T`, also written `KB`/`KiB`, `MB`/`MiB`... and in any case;
/// every unit is a power of 1024), as in `512M`, `2G`, `1.5GiB`, `1048576`,
/// or a share of the memory available, as in `50%`. Zero, negative numbers
/// and anything else are refused.
pub fn parse_size(text: &str) -> Result<Size, String> {
    let t = text.trim();
    if let Some(number) = t.strip_suffix('%') {
        let p = parse_number(number.trim())
            .ok_or_else(|| format!("{text:?} is not a size (a percentage is a number then %)"))?;
        if p <= 0.0 || p > 100.0 {
            return Err(format!(
                "{text:?} is not a size: a percentage must be more than 0 and at most 100"
            ));
        }
        return Ok(Size::Percent(p));
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = (&t[..split], t[split..].trim());
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => {
            return Err(format!(
                "{text:?} is not a size: write a number of bytes with an optional unit K, M, G or T (powers of 1024), such as 512M, 2G or 1.5GiB, or a percentage of the memory available, such as 50%"
            ));
        }
    };
    let bytes = if number.contains('.') {
        let n = parse_number(number).ok_or_else(|| format!("{text:?} is not a size"))?;
        let b = n * (1u64 << shift) as f64;
        if b >= u64::MAX as f64 {
            return Err(format!("{text:?} is too large"));
        }
        b as u64
    } else {
        number
            .parse::<u64>()
            .map_err(|_| format!("{text:?} is not a size (no number before the unit)"))?
            .checked_mul(1u64 << shift)
            .ok_or_else(|| format!("{text:?} is too large"))?
    };
    if bytes == 0 {
        return Err(format!(
            "{text:?} is not a usable memory limit: it must be more than 0 bytes"
        ));
    }
    Ok(Size::Bytes(bytes))
}

/// Digits with at most one `.` and a digit on at least one side.
fn parse_number(text: &str) -> Option<f64> {
    let valid = !text.is_empty()
        && text.chars().all(|c| c.is_ascii_digit() || c == '.')
        && text.chars().filter(|&c| c == '.').count() <= 1
        && text.chars().any(|c| c.is_ascii_digit());
    valid.then(|| text.parse::<f64>().ok()).flatten()
}

/// Bytes as people read them: `512 MiB`, `1.5 GiB`, `1000 B`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut unit = 0;
    let mut value = bytes as f64;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value.fract() == 0.0 {
        format!("{value} {}", UNITS[unit])
    } else {
        let text = format!("{value:.2}");
        let text = text.trim_end_matches('0').trim_end_matches('.');
        format!("{text} {}", UNITS[unit])
    }
}

/// What the command line sets; `None` leaves the environment variable or
/// the default in force.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// `--memory-limit`.
    pub memory_limit: Option<Size>,
    /// `--spill-dir`.
    pub spill_dir: Option<PathBuf>,
}

/// Where the limit in force came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// [`LIMIT_FLAG`].
    Flag(Size),
    /// [`LIMIT_VAR`].
    Env(Size),
    /// Nothing set: [`DEFAULT_PERCENT`] of the memory available.
    Default,
}

/// The process's memory budget: the limit, the shared pool and the spill
/// folder.
pub struct Budget {
    limit: u64,
    source: Source,
    available: Available,
    spill_dir: Option<PathBuf>,
    pool: Arc<dyn MemoryPool>,
}

impl fmt::Debug for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Budget")
            .field("limit", &self.limit)
            .field("source", &self.source)
            .field("spill_dir", &self.spill_dir)
            .finish()
    }
}

static BUDGET: OnceLock<Budget> = OnceLock::new();

/// Sets the budget from the command line (flags win over the environment
/// variables). Call it once, before any session is opened; the sessions of
/// a process that never calls it use the environment and the default.
pub fn configure(settings: Settings) -> Result<&'static Budget, String> {
    let budget = Budget::resolve(settings)?;
    let mut fresh = false;
    let stored = BUDGET.get_or_init(|| {
        fresh = true;
        budget
    });
    if !fresh {
        return Err("the memory limit is already in force for this process".into());
    }
    Ok(stored)
}

/// The budget in force: [`configure`]'s, or one from the environment.
pub fn budget() -> Result<&'static Budget, String> {
    if let Some(b) = BUDGET.get() {
        return Ok(b);
    }
    let budget = Budget::resolve(Settings::default())?;
    Ok(BUDGET.get_or_init(|| budget))
}

impl Budget {
    fn resolve(settings: Settings) -> Result<Self, String> {
        let source = match settings.memory_limit {
            Some(size) => Source::Flag(size),
            None => match std::env::var(LIMIT_VAR) {
                Ok(text) => Source::Env(
                    // The parser's message starts with the value: VAR="value" is not...
                    parse_size(&text).map_err(|e| format!("{LIMIT_VAR}={e}"))?,
                ),
                Err(std::env::VarError::NotPresent) => Source::Default,
                Err(std::env::VarError::NotUnicode(raw)) => {
                    return Err(format!("{LIMIT_VAR}={raw:?} is not a size"));
                }
            },
        };
        let spill_dir = match settings.spill_dir {
            Some(dir) => Some(dir),
            None => std::env::var_os(SPILL_DIR_VAR)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
        };
        let available = Available::detect();
        let size = match &source {
            Source::Flag(s) | Source::Env(s) => *s,
            Source::Default => Size::Percent(DEFAULT_PERCENT),
        };
        let limit = match size {
            Size::Bytes(n) => n,
            Size::Percent(p) => ((available.bytes as f64 * p / 100.0) as u64).max(1),
        };
        let pool_size = usize::try_from(limit).unwrap_or(usize::MAX);
        // FairSpillPool, not GreedyMemoryPool: a query runs each operator
        // once per partition, and under a greedy pool the first partition's
        // sort can take nearly all of it while the others' cannot get room
        // for one batch (measured: a 200,000-run aggregate-and-sort failed
        // at 64 MiB greedy; it runs at 32 MiB fair, each partition spilling
        // at its share).
        let pool: Arc<dyn MemoryPool> = Arc::new(TrackConsumersPool::new(
            FairSpillPool::new(pool_size),
            NonZeroUsize::new(TOP_CONSUMERS).expect("not zero"),
        ));
        Ok(Self {
            limit,
            source,
            available,
            spill_dir,
            pool,
        })
    }

    /// The limit in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Where the limit came from.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The folder spill files go into (`None`: the OS temporary folder).
    pub fn spill_dir(&self) -> Option<&std::path::Path> {
        self.spill_dir.as_deref()
    }

    /// The pool every session draws on.
    pub fn pool(&self) -> &Arc<dyn MemoryPool> {
        &self.pool
    }

    /// The limit and where it came from, for messages:
    /// `20 MiB, set by --memory-limit`, `11.77 GiB, the default: 50% of
    /// the 23.54 GiB of physical memory`.
    pub fn describe(&self) -> String {
        let limit = format_bytes(self.limit);
        let of = |p: f64| format!("{p}% of {}", self.available.phrase());
        match &self.source {
            Source::Flag(Size::Bytes(_)) => format!("{limit}, set by {LIMIT_FLAG}"),
            Source::Flag(Size::Percent(p)) => format!("{limit}, set by {LIMIT_FLAG}: {}", of(*p)),
            Source::Env(Size::Bytes(_)) => format!("{limit}, set by {LIMIT_VAR}"),
            Source::Env(Size::Percent(p)) => format!("{limit}, set by {LIMIT_VAR}: {}", of(*p)),
            Source::Default => format!("{limit}, the default: {}", of(DEFAULT_PERCENT)),
        }
    }

    /// Fits the session to the limit.
    ///
    /// Partitions: each runs its own copy of every operator, and each copy
    /// that can spill gets an equal share of the pool, which must hold a
    /// few batches (a sort of 8192 rows sets aside twice their size). Under
    /// a small limit there are at most one partition per
    /// [`MEMORY_PER_PARTITION`] (16 cores under a 16 MiB limit: 2), unless
    /// `DATAFUSION_EXECUTION_TARGET_PARTITIONS` says how many.
    ///
    /// Sorts: each partition of each sort sets aside
    /// `sort_spill_reservation_bytes` (10 MiB by default) for merging before
    /// it spills, unspillable: a plan with 5 sorts on 16 partitions would
    /// need 800 MiB before it read a row. Under a small limit it is a
    /// sixteenth of the limit per partition, at least 256 KiB; a
    /// `DATAFUSION_EXECUTION_*` variable that set it lower stays.
    pub fn tune(&self, config: &mut SessionConfig) {
        let execution = &mut config.options_mut().execution;
        if std::env::var_os("DATAFUSION_EXECUTION_TARGET_PARTITIONS").is_none() {
            let fit = (self.limit / MEMORY_PER_PARTITION).max(1);
            let fit = usize::try_from(fit).unwrap_or(usize::MAX);
            if fit < execution.target_partitions {
                execution.target_partitions = fit;
            }
        }
        let partitions = execution.target_partitions.max(1) as u64;
        let share = self.limit / 16 / partitions;
        let fitted = share.max(MIN_SORT_RESERVATION) as usize;
        if fitted < execution.sort_spill_reservation_bytes {
            execution.sort_spill_reservation_bytes = fitted;
        }
    }

    /// A runtime for one session: the shared pool, and a disk manager of
    /// its own for spill files (removed with the session). Fails when the
    /// spill folder cannot be made.
    pub fn runtime_env(&self) -> Result<Arc<RuntimeEnv>, String> {
        self.runtime_env_with(None)
    }

    /// [`Budget::runtime_env`] whose object stores come from `stores`
    /// instead of being registered one by one: a cluster executor reaches
    /// whichever store a plan names.
    pub fn runtime_env_with(
        &self,
        stores: Option<Arc<dyn ObjectStoreRegistry>>,
    ) -> Result<Arc<RuntimeEnv>, String> {
        let mode = match &self.spill_dir {
            Some(dir) => DiskManagerMode::Directories(vec![dir.clone()]),
            None => DiskManagerMode::OsTmpDirectory,
        };
        let builder = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::clone(&self.pool))
            .with_disk_manager_builder(DiskManagerBuilder::default().with_mode(mode));
        let builder = match stores {
            Some(stores) => builder.with_object_store_registry(stores),
            None => builder,
        };
        builder
            .build_arc()
            .map_err(|e| {
                let dir = self.spill_dir.as_deref().unwrap_or(std::path::Path::new(""));
                format!(
                    "cannot make a folder for spill files in {} (set by {SPILL_DIR_FLAG} or {SPILL_DIR_VAR}): {e}",
                    dir.display()
                )
            })
    }
}

/// The memory the process may use, and what that is.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Available {
    bytes: u64,
    kind: AvailableKind,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum AvailableKind {
    Physical,
    Container,
    Unknown,
}

impl Available {
    /// The container's memory limit when it is below physical memory, else
    /// physical memory; [`FALLBACK_AVAILABLE`] when neither can be read.
    fn detect() -> Self {
        let physical = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| meminfo_total(&text));
        // cgroup v2, then v1; "max" (v2) or a huge number (v1) is no limit.
        let container = [
            "/sys/fs/cgroup/memory.max",
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
        ]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .filter_map(|text| text.trim().parse::<u64>().ok())
        .min();
        match (physical, container) {
            (p, Some(c)) if p.is_none_or(|p| c < p) => Self {
                bytes: c,
                kind: AvailableKind::Container,
            },
            (Some(p), _) => Self {
                bytes: p,
                kind: AvailableKind::Physical,
            },
            _ => Self {
                bytes: FALLBACK_AVAILABLE,
                kind: AvailableKind::Unknown,
            },
        }
    }

    fn phrase(&self) -> String {
        let size = format_bytes(self.bytes);
        match self.kind {
            AvailableKind::Physical => format!("the {size} of physical memory"),
            AvailableKind::Container => format!("the container's memory limit of {size}"),
            AvailableKind::Unknown => format!("{size} (the memory size could not be read)"),
        }
    }
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
fn meminfo_total(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line
        .trim_start_matches("MemTotal:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

/// Runs `df` and keeps its rows in memory, counted against the budget as
/// `consumer` for as long as the returned table lives (DataFusion's own
/// [`DataFrame::cache`] holds them uncounted). `None` when the rows would
/// take more than a quarter of the limit or more than the pool has free: the caller
/// then reads `df`'s source again instead, which spills where it must.
pub async fn cache_counted(
    df: DataFrame,
    consumer: &str,
) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
    let pool = Arc::clone(&df.task_ctx().runtime_env().memory_pool);
    let cap = match pool.memory_limit() {
        MemoryLimit::Finite(n) => n / 4,
        _ => usize::MAX,
    };
    let schema = Arc::clone(df.schema().inner());
    let reservation = MemoryConsumer::new(consumer).register(&pool);
    let gave_up = AtomicBool::new(false);
    let streams = df.execute_stream_partitioned().await?;
    let partitions = futures::future::try_join_all(streams.into_iter().map(|mut stream| {
        let (reservation, gave_up) = (&reservation, &gave_up);
        async move {
            let mut batches = Vec::new();
            while let Some(batch) = stream.next().await {
                if gave_up.load(Ordering::Relaxed) {
                    break;
                }
                let batch = batch?;
                let size = batch.get_array_memory_size();
                if reservation.size() + size > cap || reservation.try_grow(size).is_err() {
                    gave_up.store(true, Ordering::Relaxed);
                    break;
                }
                batches.push(batch);
            }
            Ok::<_, DataFusionError>(batches)
        }
    }))
    .await?;
    if gave_up.into_inner() {
        return Ok(None);
    }
    let table = MemTable::try_new(schema, partitions)?;
    Ok(Some(Arc::new(CountedTable {
        table,
        _reservation: reservation,
    })))
}

/// A [`MemTable`] whose memory stays reserved in the pool while it lives.
#[derive(Debug)]
struct CountedTable {
    table: MemTable,
    _reservation: MemoryReservation,
}

#[async_trait::async_trait]
impl TableProvider for CountedTable {
    fn schema(&self) -> SchemaRef {
        self.table.schema()
    }

    fn table_type(&self) -> TableType {
        self.table.table_type()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>, DataFusionError> {
        self.table.scan(state, projection, filters, limit).await
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>, DataFusionError> {
        self.table.supports_filters_pushdown(filters)
    }
}

/// What a user reads when a query did not fit: the limit, what set it and
/// how to raise it, then DataFusion's account (the largest consumers).
/// `None` when `err` is not DataFusion's "resources exhausted".
pub fn exhausted_message(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let detail = exhausted_detail(err)?;
    let detail = detail.split_whitespace().collect::<Vec<_>>().join(" ");
    if detail.contains("disk space") {
        return Some(format!(
            "out of spill space: the query spilled more to disk than DataFusion allows ({detail}); free space or point {SPILL_DIR_VAR} / {SPILL_DIR_FLAG} at a larger disk, or raise the memory limit so that less spills ({LIMIT_FLAG} or {LIMIT_VAR})"
        ));
    }
    let limit = match budget() {
        Ok(b) => b.describe(),
        Err(_) => "in force".into(),
    };
    Some(format!(
        "out of memory: the query needs more than the memory limit of {limit}, even spilling to disk where it can; raise it with {LIMIT_FLAG} SIZE or {LIMIT_VAR}=SIZE (such as 4G, or 75% of the memory available). DataFusion: {detail}"
    ))
}

/// The text of the "resources exhausted" error somewhere in `err`'s chain.
fn exhausted_detail(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cause = Some(err);
    while let Some(e) = cause {
        let df = e
            .downcast_ref::<DataFusionError>()
            .or_else(|| e.downcast_ref::<Arc<DataFusionError>>().map(Arc::as_ref));
        if let Some(DataFusionError::ResourcesExhausted(text)) = df.map(DataFusionError::find_root)
        {
            return Some(text.clone());
        }
        // Errors that crossed Arrow or Parquet as text.
        let text = e.to_string();
        if let Some(at) = text.find("Resources exhausted: ") {
            return Some(text[at + "Resources exhausted: ".len()..].to_string());
        }
        cause = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units_in_any_case() {
        let b = |n: u64| Ok(Size::Bytes(n));
        assert_eq!(parse_size("512M"), b(512 << 20));
        assert_eq!(parse_size("2G"), b(2 << 30));
        assert_eq!(parse_size("2g"), b(2 << 30));
        assert_eq!(parse_size("1.5GiB"), b(3 << 29));
        assert_eq!(parse_size("1.5 GB"), b(3 << 29));
        assert_eq!(parse_size(" 20MiB "), b(20 << 20));
        assert_eq!(parse_size("1K"), b(1024));
        assert_eq!(parse_size("64kb"), b(64 << 10));
        assert_eq!(parse_size("1T"), b(1 << 40));
        assert_eq!(parse_size("1048576"), b(1 << 20));
        assert_eq!(parse_size("100B"), b(100));
        assert_eq!(parse_size(".5K"), b(512));
        assert_eq!(parse_size("50%"), Ok(Size::Percent(50.0)));
        assert_eq!(parse_size("12.5 %"), Ok(Size::Percent(12.5)));
    }

    #[test]
    fn garbage_zero_negative_and_overflow_are_refused() {
        for bad in [
            "",
            " ",
            "G",
            "lots",
            "2X",
            "2 GiBs",
            "-1G",
            "1,5G",
            "1.2.3M",
            "..",
            "0",
            "0K",
            "0.0001B",
            "1e9",
            "0x10",
            "0%",
            "101%",
            "-5%",
            "%",
            "inf",
            "NaN",
            "99999999999999999999",
            "20000000T",
            "1G1",
        ] {
            let err = parse_size(bad).expect_err(bad);
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
    }

    #[test]
    fn sizes_print_as_people_read_them() {
        assert_eq!(format_bytes(20 << 20), "20 MiB");
        assert_eq!(format_bytes(3 << 29), "1.5 GiB");
        assert_eq!(format_bytes(1000), "1000 B");
        assert_eq!(format_bytes(1024), "1 KiB");
        assert_eq!(format_bytes(12_345_678), "11.77 MiB");
        assert_eq!(Size::Percent(50.0).to_string(), "50%");
    }

    #[test]
    fn available_memory_is_read_from_meminfo() {
        let text = "MemTotal:       24684084 kB\nMemFree:        22000000 kB\n";
        assert_eq!(meminfo_total(text), Some(24684084 * 1024));
        assert_eq!(meminfo_total("nothing"), None);
        let here = Available::detect();
        assert!(here.bytes > 0);
    }

    #[test]
    fn a_small_limit_means_fewer_partitions_and_smaller_sort_reservations() {
        let budget = |size: u64| {
            Budget::resolve(Settings {
                memory_limit: Some(Size::Bytes(size)),
                spill_dir: None,
            })
            .unwrap()
        };
        let tuned = |size: u64| {
            let mut config = SessionConfig::new().with_target_partitions(16);
            budget(size).tune(&mut config);
            let e = &config.options().execution;
            (e.target_partitions, e.sort_spill_reservation_bytes)
        };
        let pinned = std::env::var_os("DATAFUSION_EXECUTION_TARGET_PARTITIONS").is_some();
        if !pinned {
            assert_eq!(tuned(16 << 20), (2, 512 << 10));
            assert_eq!(
                tuned(1 << 10),
                (1, 256 << 10),
                "at least one, at least 256 KiB"
            );
            assert_eq!(tuned(64 << 20), (8, 512 << 10));
        }
        assert_eq!(
            tuned(8 << 30),
            (16, 10 << 20),
            "a large limit changes nothing"
        );
        let described = budget(20 << 20).describe();
        assert_eq!(described, "20 MiB, set by --memory-limit");
        if std::env::var_os(LIMIT_VAR).is_none() {
            let default = Budget::resolve(Settings::default()).unwrap();
            let text = default.describe();
            assert!(text.contains(", the default: 50% of "), "{text}");
            assert_eq!(default.limit(), default.available.bytes / 2, "{text}");
        }
    }

    #[test]
    fn resources_exhausted_is_found_through_wrappers() {
        let root = DataFusionError::ResourcesExhausted(
            "Failed to allocate additional 1.0 MB for ExternalSorter[0]".into(),
        );
        let wrapped = DataFusionError::Context(
            "while sorting".into(),
            Box::new(DataFusionError::Shared(Arc::new(root))),
        );
        let text = exhausted_message(&wrapped).expect("found");
        assert!(text.contains("out of memory"), "{text}");
        assert!(
            text.contains(LIMIT_FLAG) && text.contains(LIMIT_VAR),
            "{text}"
        );
        assert!(text.contains("ExternalSorter[0]"), "{text}");
        let external = datafusion::arrow::error::ArrowError::ExternalError(Box::new(wrapped));
        assert!(exhausted_message(&external).is_some());
        let plain = DataFusionError::Execution("something else".into());
        assert_eq!(exhausted_message(&plain), None);
        let disk = DataFusionError::ResourcesExhausted(
            "The used disk space during the spilling process has exceeded the allowable limit of 100.0 GB.".into(),
        );
        let text = exhausted_message(&disk).unwrap();
        assert!(text.contains("out of spill space"), "{text}");
    }
}
