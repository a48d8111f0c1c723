//! A DataFusion session over the lake: every table queryable by name.
//!
//! [`open_session`] reads the lake's commit log once and registers each
//! stored table as a [`LakeTable`] over exactly the files of that snapshot,
//! so a query never sees half of an ingest that is committing beside it.
//! Derived tables are SQL views whose text lives in `sql/*.sql`, embedded
//! here and readable by analysts.

mod table;
pub mod udf;

use std::sync::Arc;

use agentledger_lake::Lake;
use agentledger_lake::log::Snapshot;
use agentledger_lake::schema::{CUSTOMER_PLANS, EVENTS, MODEL_PRICES, QUARANTINE};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};

pub use table::LakeTable;

/// Result with this crate's error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors while opening or querying the lake.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The lake could not be read.
    #[error(transparent)]
    Lake(#[from] agentledger_lake::Error),
    /// DataFusion failed to plan or run a query.
    #[error("{0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    /// A statement that would change data was refused.
    #[error(
        "refused: agentledger sql is read-only and this statement would create, change or delete data ({0}); use agentledger ingest / load to change the lake"
    )]
    ReadOnly(String),
}

/// Views derived from the stored tables, by name: `(name, SQL)`, each
/// defined before the views that read it.
pub const VIEWS: &[(&str, &str)] = &[
    ("model_calls", include_str!("../sql/model_calls.sql")),
    ("tool_calls", include_str!("../sql/tool_calls.sql")),
    ("runs", include_str!("../sql/runs.sql")),
];

/// The stored tables every session registers.
pub const STORED_TABLES: &[&str] = &[EVENTS, QUARANTINE, MODEL_PRICES, CUSTOMER_PLANS];

/// Opens a session over the lake's current snapshot.
pub async fn open_session(lake: &Lake) -> Result<SessionContext> {
    let snapshot = Snapshot::load(lake).await?;
    session_at(lake, &snapshot).await
}

/// Opens a session over a given snapshot.
pub async fn session_at(lake: &Lake, snapshot: &Snapshot) -> Result<SessionContext> {
    // DATAFUSION_* variables (target partitions, batch size...) apply.
    let mut config = SessionConfig::from_env()?.with_information_schema(true);
    let parquet = &mut config.options_mut().execution.parquet;
    parquet.pushdown_filters = true;
    parquet.reorder_filters = true;
    let ctx = SessionContext::new_with_config(config);
    ctx.register_udf(udf::DivMoney::udf());
    let store_url = ObjectStoreUrl::parse(lake.store_url().as_str())?;
    ctx.register_object_store(lake.store_url(), Arc::clone(lake.store()));
    for table in STORED_TABLES {
        let provider = LakeTable::new(lake, snapshot, table, store_url.clone());
        ctx.register_table(*table, Arc::new(provider))?;
    }
    for (name, sql) in VIEWS {
        let plan = ctx.sql(sql).await?.into_unoptimized_plan();
        ctx.register_table(
            *name,
            Arc::new(datafusion::datasource::ViewTable::new(
                plan,
                Some(sql.to_string()),
            )),
        )?;
    }
    Ok(ctx)
}

/// Plans `sql` as a read-only query: DDL, DML (INSERT, UPDATE, DELETE,
/// COPY) and other statements are refused.
pub async fn query(ctx: &SessionContext, sql: &str) -> Result<DataFrame> {
    let options = datafusion::execution::context::SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    match ctx.sql_with_options(sql, options).await {
        Ok(df) => Ok(df),
        Err(e) => {
            let text = e.to_string();
            if text.contains("not supported")
                && (text.contains("DDL") || text.contains("DML") || text.contains("Statement"))
            {
                Err(Error::ReadOnly(
                    text.trim_start_matches("Error during planning: ")
                        .to_string(),
                ))
            } else {
                Err(e.into())
            }
        }
    }
}
