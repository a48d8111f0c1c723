//! [`LakeTable`]: one stored table as of one snapshot.
//!
//! A `ListingTable` would list the table's folder and so see files that no
//! commit names yet (an ingest in progress, or one that was killed). This
//! provider is given its file list by the commit log instead, and hands
//! DataFusion's own Parquet scan (pruning, filter pushdown, metadata cache)
//! exactly those files, with `date` as the Hive partition column.

use std::ops::Range;
use std::sync::{Arc, OnceLock};

use agentledger_lake::Lake;
use agentledger_lake::log::{FileEntry, Snapshot};
use agentledger_lake::schema::{WORKFLOW_POLICIES, is_partitioned, partition_field, table_schema};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::stats::Precision;
use datafusion::common::{DataFusionError, Result, ScalarValue, Statistics, project_schema};
use datafusion::datasource::TableType;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use datafusion::datasource::table_schema::TableSchema;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use object_store::ObjectMeta;
use object_store::path::Path;

use crate::scope::Scope;

/// A stored table over the files one snapshot names.
#[derive(Debug)]
pub struct LakeTable {
    file_schema: SchemaRef,
    schema: SchemaRef,
    partition_cols: Vec<Arc<Field>>,
    /// The files as the log names them, in one buffer: a session
    /// registers every stored table, and a lake with a long history has
    /// thousands of files in some, so DataFusion's file list (an object
    /// path and a partition value for each) is built by the first scan.
    listed: Listed,
    /// That list, or why the log's names cannot be read (reported by a
    /// scan, so that a session that never reads the table opens).
    files: OnceLock<std::result::Result<Arc<Vec<PartitionedFile>>, String>>,
    /// The table's name in the lake.
    name: String,
    /// The store path of the lake the log's paths are relative to.
    prefix: Path,
    store_url: ObjectStoreUrl,
    /// Whether string columns are read as `Utf8View`.
    string_views: bool,
    /// The rows a scan may return ([`Scope::restrict`]).
    scope: Scope,
    /// Whether `tenant_id = '*'` means every tenant (workflow policies).
    wildcard_tenant: bool,
}

/// A table's files as the log names them: their paths and dates in one
/// string, and for each its ranges in it and its size.
#[derive(Debug, Default)]
struct Listed {
    text: String,
    files: Vec<ListedFile>,
    /// The rows of all the files, as their log entries count them.
    rows: u64,
}

#[derive(Debug)]
struct ListedFile {
    path: Range<usize>,
    date: Option<Range<usize>>,
    size: u64,
    rows: u64,
}

impl Listed {
    fn new(files: &[&FileEntry]) -> Self {
        let mut text = String::with_capacity(
            files
                .iter()
                .map(|f| f.path.len() + f.date.as_ref().map_or(0, String::len))
                .sum(),
        );
        let mut push = |s: &str| {
            let start = text.len();
            text.push_str(s);
            start..text.len()
        };
        let rows = files.iter().map(|f| f.rows).sum();
        let files = files
            .iter()
            .map(|f| ListedFile {
                path: push(&f.path),
                date: f.date.as_deref().map(&mut push),
                size: f.size,
                rows: f.rows,
            })
            .collect();
        Self { text, files, rows }
    }
}

/// A [`LakeTable`] as plain data, for a query engine in another process
/// (`--engine ballista://...`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LakeTableParts {
    /// The stored table's name.
    pub table: String,
    /// The lake's path in its store.
    pub prefix: String,
    /// The store, as DataFusion's object-store registry names it.
    pub store_url: String,
    /// The files, with paths relative to `prefix`.
    pub files: Vec<FileEntry>,
    /// The tenants the scan is limited to, if it is.
    pub tenants: Option<Vec<String>>,
    /// Whether the scope sees the quarantine.
    pub quarantine: bool,
    /// Whether string columns are read as `Utf8View`.
    pub string_views: bool,
}

/// The table's schema as SQL sees it: the files' columns, then the
/// partition columns.
fn with_partitions(file_schema: &Schema, partition_cols: &[Arc<Field>]) -> SchemaRef {
    let mut fields: Vec<Arc<Field>> = file_schema.fields().iter().cloned().collect();
    fields.extend(partition_cols.iter().cloned());
    Arc::new(Schema::new(fields))
}

/// `YYYY-MM-DD` as days since 1970-01-01 (Arrow's `Date32`), parsed
/// directly: a cast through Arrow costs an array per file, which a lake of
/// many files pays on every first scan of its table.
fn date32(date: &str) -> Option<i32> {
    let day = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    i32::try_from(
        day.signed_duration_since(chrono::DateTime::UNIX_EPOCH.date_naive())
            .num_days(),
    )
    .ok()
}

impl LakeTable {
    /// The table `name` as of `snapshot`.
    pub fn new(lake: &Lake, snapshot: &Snapshot, name: &str, store_url: ObjectStoreUrl) -> Self {
        Self::with_files(lake, name, &snapshot.files(name), store_url)
    }

    /// The table `name` over exactly `files`.
    pub fn with_files(
        lake: &Lake,
        name: &str,
        files: &[&FileEntry],
        store_url: ObjectStoreUrl,
    ) -> Self {
        Self::at_prefix(lake.path(""), name, files, store_url)
    }

    fn at_prefix(
        prefix: Path,
        name: &str,
        files: &[&FileEntry],
        store_url: ObjectStoreUrl,
    ) -> Self {
        let file_schema = table_schema(name).expect("a stored table");
        let partition_cols: Vec<Arc<Field>> = if is_partitioned(name) {
            vec![Arc::new(partition_field())]
        } else {
            vec![]
        };
        let schema = with_partitions(&file_schema, &partition_cols);
        Self {
            file_schema,
            schema,
            partition_cols,
            listed: Listed::new(files),
            files: OnceLock::new(),
            name: name.to_string(),
            prefix,
            store_url,
            string_views: false,
            scope: Scope::everything(),
            wildcard_tenant: name == WORKFLOW_POLICIES,
        }
    }

    /// What this table is, as plain data: what a query engine in another
    /// process needs to scan the same files ([`LakeTable::from_parts`]).
    /// It names the store and the files, never a credential: the process
    /// that scans reaches the store with its own.
    pub fn to_parts(&self) -> LakeTableParts {
        let text = &self.listed.text;
        LakeTableParts {
            table: self.name.clone(),
            prefix: self.prefix.to_string(),
            store_url: self.store_url.as_str().to_string(),
            files: self
                .listed
                .files
                .iter()
                .map(|f| FileEntry {
                    table: self.name.clone(),
                    path: text[f.path.clone()].to_string(),
                    size: f.size,
                    rows: f.rows,
                    date: f.date.clone().map(|d| text[d].to_string()),
                })
                .collect(),
            tenants: self.scope.tenant_list().map(<[String]>::to_vec),
            quarantine: self.scope.sees_quarantine(),
            string_views: self.string_views,
        }
    }

    /// The table [`LakeTable::to_parts`] described. Fails on a table name
    /// this build does not store, or a store URL that does not parse.
    pub fn from_parts(parts: &LakeTableParts) -> Result<Self> {
        if table_schema(&parts.table).is_none() {
            return Err(DataFusionError::Plan(format!(
                "no stored table is named {:?} in this build of agentledger",
                parts.table
            )));
        }
        let store_url = ObjectStoreUrl::parse(&parts.store_url)?;
        let files: Vec<&FileEntry> = parts.files.iter().collect();
        let mut table = Self::at_prefix(
            Path::from(parts.prefix.as_str()),
            &parts.table,
            &files,
            store_url,
        );
        table.scope = match &parts.tenants {
            Some(tenants) => Scope::tenants(tenants.iter().cloned()),
            None if parts.quarantine => Scope::everything(),
            None => Scope::all_tenants(),
        };
        if parts.string_views {
            table = table.with_string_views();
        }
        Ok(table)
    }

    /// This table with its string columns read as Arrow's `Utf8View`
    /// (string views) instead of `Utf8`: the Parquet reader then points
    /// into the pages' dictionaries instead of copying every value, and
    /// DataFusion groups and compares short strings inline. The values are
    /// the same; only the Arrow type of the columns differs, which is why
    /// only sessions whose results go straight to people (`agentledger
    /// sql`, the SQL server) ask for it, and Rust code reading batches
    /// keeps `Utf8`.
    pub fn with_string_views(mut self) -> Self {
        let view = |fields: &arrow::datatypes::Fields| -> Vec<Arc<Field>> {
            fields
                .iter()
                .map(|f| match f.data_type() {
                    DataType::Utf8 => {
                        Arc::new(f.as_ref().clone().with_data_type(DataType::Utf8View))
                    }
                    _ => Arc::clone(f),
                })
                .collect()
        };
        self.string_views = true;
        self.file_schema = Arc::new(Schema::new(view(self.file_schema.fields())));
        self.schema = with_partitions(&self.file_schema, &self.partition_cols);
        self
    }

    /// This table as `scope` may see it: limited to its tenants when the
    /// table has a `tenant_id` column and the scope a tenant list.
    pub fn with_scope(mut self, scope: &Scope) -> Self {
        self.scope = scope.clone();
        self
    }

    /// DataFusion's list of the files, built once.
    fn files(&self) -> Result<Arc<Vec<PartitionedFile>>> {
        self.files
            .get_or_init(|| {
                let partitioned = !self.partition_cols.is_empty();
                let text = &self.listed.text;
                self.listed
                    .files
                    .iter()
                    .map(|f| {
                        let path = &text[f.path.clone()];
                        let file = PartitionedFile::new_from_meta(ObjectMeta {
                            location: agentledger_lake::store::join(&self.prefix, path),
                            last_modified: chrono::DateTime::UNIX_EPOCH,
                            size: f.size,
                            e_tag: None,
                            version: None,
                        });
                        match (&f.date, partitioned) {
                            (Some(date), true) => {
                                let date = &text[date.clone()];
                                let day = date32(date).ok_or_else(|| {
                                    format!(
                                        "the commit log names {path} with the partition date {date:?}, which is not a YYYY-MM-DD date"
                                    )
                                })?;
                                Ok(file.with_partition_values(vec![ScalarValue::Date32(Some(day))]))
                            }
                            _ => Ok(file),
                        }
                    })
                    .collect::<std::result::Result<Vec<_>, String>>()
                    .map(Arc::new)
            })
            .clone()
            .map_err(DataFusionError::Execution)
    }

    /// The table's row count as the log has it, for the planner: a join
    /// builds its hash table from its smaller side only when the planner
    /// knows the sizes (`model_calls` joins `model_prices`' few rows to
    /// every model call). Inexact, so that no answer is taken from it:
    /// `count(*)` still counts the rows in the files.
    fn statistics_of_rows(&self) -> Statistics {
        let rows = usize::try_from(self.listed.rows).unwrap_or(usize::MAX);
        Statistics::new_unknown(&self.schema).with_num_rows(Precision::Inexact(rows))
    }

    /// The column a tenant scope filters on, when this scan must.
    fn scoped_column(&self) -> Option<usize> {
        self.scope.tenant_list()?;
        self.schema.index_of("tenant_id").ok()
    }
}

#[async_trait]
impl TableProvider for LakeTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // A scoped scan takes no filter of the user's: it must stay above
        // the tenant filter (see `scope`).
        let pushdown = if self.scoped_column().is_some() {
            TableProviderFilterPushDown::Unsupported
        } else {
            TableProviderFilterPushDown::Inexact
        };
        Ok(vec![pushdown; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if let Some(tenant) = self.scoped_column() {
            // Read the requested columns and `tenant_id`, filter, then
            // keep the requested ones. No limit below the filter: it
            // would count other tenants' rows.
            let (inner, keep) = match projection {
                None => (None, None),
                Some(p) if p.contains(&tenant) => (Some(p.clone()), None),
                Some(p) => {
                    let mut with_tenant = p.clone();
                    with_tenant.push(tenant);
                    (Some(with_tenant), Some((0..p.len()).collect::<Vec<_>>()))
                }
            };
            let scan = self.scan_files(state, inner.as_ref(), None).await?;
            return self
                .scope
                .restrict(scan, keep.as_ref(), self.wildcard_tenant);
        }
        self.scan_files(state, projection, limit).await
    }
}

impl LakeTable {
    async fn scan_files(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if self.listed.files.is_empty() {
            return Ok(Arc::new(EmptyExec::new(project_schema(
                &self.schema,
                projection,
            )?)));
        }
        let format = ParquetFormat::default().with_options(state.table_options().parquet.clone());
        let source = format.file_source(
            TableSchema::builder(Arc::clone(&self.file_schema))
                .with_table_partition_cols(self.partition_cols.clone())
                .build(),
        );
        let groups = FileGroup::new(self.files()?.as_ref().clone())
            .split_files(state.config().target_partitions());
        let config = FileScanConfigBuilder::new(self.store_url.clone(), source)
            .with_file_groups(groups)
            .with_statistics(self.statistics_of_rows())
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        format.create_physical_plan(state, config).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentledger_lake::schema::{CUSTOMER_PLANS, EVENTS};
    use datafusion::physical_plan::statistics::{StatisticsArgs, StatisticsContext};

    fn entry(table: &str, path: &str, size: u64, date: Option<&str>) -> FileEntry {
        FileEntry {
            table: table.into(),
            path: path.into(),
            size,
            rows: 1,
            date: date.map(str::to_string),
        }
    }

    #[test]
    fn the_file_list_is_built_by_the_first_scan_from_the_logs_names() {
        let lake = Lake::open("memory://table-files/sub").unwrap();
        let url = ObjectStoreUrl::parse(lake.store_url().as_str()).unwrap();
        let a = entry(
            EVENTS,
            "events/date=2026-10-05/a.parquet",
            10,
            Some("2026-10-05"),
        );
        let b = entry(
            EVENTS,
            "events/date=1969-12-31/b.parquet",
            20,
            Some("1969-12-31"),
        );
        let table = LakeTable::with_files(&lake, EVENTS, &[&a, &b], url.clone());
        let files = table.files().unwrap();
        let got: Vec<_> = files
            .iter()
            .map(|f| {
                (
                    f.object_meta.location.to_string(),
                    f.object_meta.size,
                    f.partition_values.clone(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    lake.path(&a.path).to_string(),
                    10,
                    vec![ScalarValue::Date32(date32("2026-10-05"))]
                ),
                (
                    lake.path(&b.path).to_string(),
                    20,
                    vec![ScalarValue::Date32(Some(-1))]
                ),
            ]
        );
        assert!(got[0].0.starts_with("sub/events/"), "{}", got[0].0);
        // Built once.
        assert!(Arc::ptr_eq(&files, &table.files().unwrap()));
        // A name the log got wrong is the scan's error, naming the file.
        let bad = entry(EVENTS, "events/date=x/c.parquet", 5, Some("2026-13-01"));
        let table = LakeTable::with_files(&lake, EVENTS, &[&a, &bad], url.clone());
        let err = table.files().unwrap_err().to_string();
        assert!(
            err.contains("events/date=x/c.parquet") && err.contains("2026-13-01"),
            "{err}"
        );
        // An unpartitioned table has no partition values.
        let plans = entry(CUSTOMER_PLANS, "customer_plans/p.parquet", 7, None);
        let table = LakeTable::with_files(&lake, CUSTOMER_PLANS, &[&plans], url);
        let files = table.files().unwrap();
        assert_eq!(files.len(), 1);
        assert!(files[0].partition_values.is_empty());
        assert_eq!(files[0].object_meta.size, 7);
    }

    #[tokio::test]
    async fn a_scan_tells_the_planner_the_rows_the_log_counts_and_no_more() {
        let lake = Lake::open("memory://table-rows").unwrap();
        let url = ObjectStoreUrl::parse(lake.store_url().as_str()).unwrap();
        let mut a = entry(
            EVENTS,
            "events/date=2026-10-05/a.parquet",
            10,
            Some("2026-10-05"),
        );
        a.rows = 700;
        let mut b = entry(
            EVENTS,
            "events/date=2026-10-06/b.parquet",
            20,
            Some("2026-10-06"),
        );
        b.rows = 42;
        let table = LakeTable::with_files(&lake, EVENTS, &[&a, &b], url);
        let ctx = datafusion::prelude::SessionContext::new();
        ctx.register_object_store(lake.store_url(), Arc::clone(lake.store()));
        let plan = table
            .scan(&ctx.state(), Some(&vec![0, 1]), &[], None)
            .await
            .unwrap();
        let stats = StatisticsContext::new()
            .compute(plan.as_ref(), &StatisticsArgs::new())
            .unwrap();
        // Inexact: the planner may size joins by it, but no answer (such
        // as count(*)) is taken from the log instead of the files.
        assert_eq!(stats.num_rows, Precision::Inexact(742));
        assert_eq!(stats.column_statistics.len(), 2);
    }

    #[test]
    fn a_table_made_again_from_its_parts_scans_the_same_files_as_the_same_scope_sees_them() {
        let lake = Lake::open("memory://table-parts/deep/prefix").unwrap();
        let url = ObjectStoreUrl::parse(lake.store_url().as_str()).unwrap();
        let a = entry(
            EVENTS,
            "events/date=2026-10-05/a.parquet",
            10,
            Some("2026-10-05"),
        );
        let mut b = entry(
            EVENTS,
            "events/date=2026-10-06/b.parquet",
            20,
            Some("2026-10-06"),
        );
        b.rows = 7;
        let scopes = [
            Scope::everything(),
            Scope::all_tenants(),
            Scope::tenants(["acme".to_string(), "beta".to_string()]),
        ];
        for scope in scopes {
            for views in [false, true] {
                let table =
                    LakeTable::with_files(&lake, EVENTS, &[&a, &b], url.clone()).with_scope(&scope);
                let table = if views {
                    table.with_string_views()
                } else {
                    table
                };
                let parts = table.to_parts();
                // What travels names no lake object, only the store and paths.
                let json = serde_json::to_string(&parts).unwrap();
                let again = LakeTable::from_parts(&serde_json::from_str(&json).unwrap()).unwrap();
                assert_eq!(again.to_parts(), parts);
                assert_eq!(again.schema(), table.schema());
                assert_eq!(again.scope, scope);
                let listed = |t: &LakeTable| -> Vec<_> {
                    t.files()
                        .unwrap()
                        .iter()
                        .map(|f| {
                            let meta = &f.object_meta;
                            (meta.location.clone(), meta.size, f.partition_values.clone())
                        })
                        .collect()
                };
                assert_eq!(listed(&again), listed(&table));
                assert!(
                    listed(&again)[0]
                        .0
                        .as_ref()
                        .starts_with("deep/prefix/events/")
                );
                assert_eq!(again.statistics_of_rows(), table.statistics_of_rows());
            }
        }
        // A name this build does not store is refused by name.
        let mut parts = LakeTable::with_files(&lake, EVENTS, &[&a], url).to_parts();
        parts.table = "secrets".into();
        let err = LakeTable::from_parts(&parts).unwrap_err().to_string();
        assert!(err.contains("secrets"), "{err}");
    }

    #[test]
    fn partition_dates_are_the_days_arrow_casts_them_to() {
        for date in [
            "1969-12-31",
            "1970-01-01",
            "2000-02-29",
            "2026-10-05",
            "2262-04-11",
        ] {
            let cast = ScalarValue::Utf8(Some(date.to_string()))
                .cast_to(&partition_field().data_type().clone())
                .unwrap();
            assert_eq!(ScalarValue::Date32(date32(date)), cast, "{date}");
        }
        for bad in [
            "2026-13-01",
            "2026-02-30",
            "20261005",
            "",
            "date=2026-10-05",
        ] {
            assert_eq!(date32(bad), None, "{bad:?}");
        }
    }
}
