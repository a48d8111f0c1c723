//! What one session may see: every row, or only the rows of some tenants.
//!
//! The SQL server (SPEC section 9) opens a session per user role. A
//! tenant-scoped session is the same session as any other, with every
//! stored table that has a `tenant_id` column read through a
//! [`ScopeBarrierExec`]: the scan, its `tenant_id IN (...)` filter, and
//! above them a node through which no optimizer pushes anything. The
//! user's own expressions (a `WHERE`, a cast, a join condition) are
//! therefore evaluated only on rows of the session's tenants: a predicate
//! pushed into the Parquet reader beside the tenant filter could otherwise
//! run first and fail on another tenant's value, and echo it in the error.
//! The barrier also reports no statistics, so no count is answered from
//! file metadata, which covers every tenant. Every view (`runs`, `metrics`,
//! ...) is planned over these scans, so it sees what they see.

use std::sync::Arc;

use datafusion::common::{Result, ScalarValue};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{Column, in_list};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;

use crate::passthrough::{PassThrough, PassThroughExec};

/// The rows a session may read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Scope {
    /// `None`: every tenant; otherwise only these (sorted, no repeats).
    tenants: Option<Arc<[String]>>,
    /// Whether the `quarantine` table (raw rejected lines) is registered.
    quarantine: bool,
}

impl Scope {
    /// Every row of every table, the quarantine included: the commands.
    pub fn everything() -> Self {
        Self {
            tenants: None,
            quarantine: true,
        }
    }

    /// Every tenant, without the quarantine's raw lines.
    pub fn all_tenants() -> Self {
        Self {
            tenants: None,
            quarantine: false,
        }
    }

    /// Only the rows of `tenants`, without the quarantine. An empty list
    /// is a scope that sees no rows.
    pub fn tenants<I: IntoIterator<Item = String>>(tenants: I) -> Self {
        let mut list: Vec<String> = tenants.into_iter().collect();
        list.sort();
        list.dedup();
        Self {
            tenants: Some(list.into()),
            quarantine: false,
        }
    }

    /// The tenants this scope is limited to, if it is.
    pub fn tenant_list(&self) -> Option<&[String]> {
        self.tenants.as_deref()
    }

    /// Whether the quarantine table is visible.
    pub fn sees_quarantine(&self) -> bool {
        self.quarantine
    }

    /// `input` (a scan whose schema has `tenant_id`, every column read)
    /// limited to the scope's tenants, projected to `projection`, behind a
    /// barrier; `input` itself when the scope has no tenant list.
    ///
    /// `wildcard`: rows whose `tenant_id` is `*` are kept too (a workflow
    /// policy for every tenant, SPEC section 8, is no tenant's data).
    pub(crate) fn restrict(
        &self,
        input: Arc<dyn ExecutionPlan>,
        projection: Option<&Vec<usize>>,
        wildcard: bool,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(tenants) = &self.tenants else {
            return Ok(input);
        };
        let mut tenants = tenants.to_vec();
        if wildcard {
            tenants.push("*".to_string());
        }
        let schema = input.schema();
        let index = schema.index_of("tenant_id")?;
        let column: Arc<dyn PhysicalExpr> = Arc::new(Column::new("tenant_id", index));
        // Literals of the column's own type (`Utf8`, or `Utf8View` in a
        // session of string views): the Parquet reader compares them
        // with the column as they are.
        let column_type = schema.field(index).data_type();
        let list = tenants
            .iter()
            .map(|t| {
                let value = ScalarValue::Utf8(Some(t.clone())).cast_to(column_type)?;
                Ok(
                    Arc::new(datafusion::physical_expr::expressions::Literal::new(value))
                        as Arc<dyn PhysicalExpr>,
                )
            })
            .collect::<Result<_>>()?;
        let predicate = in_list(column, list, &false, &schema)?;
        let mut plan: Arc<dyn ExecutionPlan> = Arc::new(FilterExec::try_new(predicate, input)?);
        if let Some(projection) = projection {
            let exprs: Vec<(Arc<dyn PhysicalExpr>, String)> = projection
                .iter()
                .map(|&i| {
                    let name = schema.field(i).name().clone();
                    (
                        Arc::new(Column::new(&name, i)) as Arc<dyn PhysicalExpr>,
                        name,
                    )
                })
                .collect();
            plan = Arc::new(ProjectionExec::try_new(exprs, plan)?);
        }
        Ok(Arc::new(ScopeBarrierExec::new(plan)))
    }
}

/// Passes its input through unchanged and lets nothing through it:
/// optimizers push no filter, projection, limit or sort below it, and it
/// has no statistics. See the module's documentation for why.
pub type ScopeBarrierExec = PassThroughExec<Barrier>;

/// A [`ScopeBarrierExec`]: nothing to do but be there.
#[derive(Debug)]
pub struct Barrier;

impl PassThrough for Barrier {
    const NAME: &'static str = "ScopeBarrierExec";

    fn over(_input: &Arc<dyn ExecutionPlan>) -> Self {
        Barrier
    }

    fn before_execute(&self, _partition: usize) -> Result<()> {
        Ok(())
    }
}
