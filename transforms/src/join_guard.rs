//! Keeps DataFusion's nested-loop join from re-running its build side.
//!
//! When a `NestedLoopJoinExec` cannot hold its build (left) side in the
//! memory pool, DataFusion 55 falls back to a multi-pass join that executes
//! the left input a second time and spills it. Most inputs cannot be run
//! twice: a `RepartitionExec` below it panics ("partition not used yet"),
//! and a shared stream yields only the rows the first pass left (apache/
//! datafusion#24676); LEFT-family joins over several partitions also emit
//! wrong unmatched rows in that path (#22641). agentledger's joins of
//! periods with plans have such a left side. [`GuardNestedLoopJoins`] puts
//! [`ExecuteOnceExec`] above every nested-loop join's left input, so that
//! the second execution fails with "resources exhausted" instead: the query
//! stops with the memory-limit error rather than a panic or a wrong answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::error::{DataFusionError, Result};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
use datafusion::physical_plan::joins::NestedLoopJoinExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};

use crate::passthrough::{PassThrough, PassThroughExec};

/// The physical optimizer rule that guards every nested-loop join's build
/// side with [`ExecuteOnceExec`]. Runs after DataFusion's own rules.
#[derive(Debug, Default)]
pub struct GuardNestedLoopJoins;

impl PhysicalOptimizerRule for GuardNestedLoopJoins {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(join) = node.downcast_ref::<NestedLoopJoinExec>() else {
                return Ok(Transformed::no(node));
            };
            if join.left().downcast_ref::<ExecuteOnceExec>().is_some() {
                return Ok(Transformed::no(node));
            }
            let left: Arc<dyn ExecutionPlan> =
                Arc::new(ExecuteOnceExec::new(Arc::clone(join.left())));
            let right = Arc::clone(join.right());
            // The guard has its input's properties: the join's stay.
            let keep = ReplaceChildrenOptions::new(ChildrenPropertiesMode::Keep);
            Ok(Transformed::yes(
                node.replace_children(vec![left, right], keep)?,
            ))
        })
        .data()
    }

    fn name(&self) -> &str {
        "guard_nested_loop_joins"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Passes its input through the first time each partition is executed; a
/// second execution fails with `ResourcesExhausted`.
pub type ExecuteOnceExec = PassThroughExec<ExecuteOnce>;

/// The partitions an [`ExecuteOnceExec`] has run.
#[derive(Debug)]
pub struct ExecuteOnce {
    executed: Vec<AtomicBool>,
}

impl PassThrough for ExecuteOnce {
    const NAME: &'static str = "ExecuteOnceExec";

    fn over(input: &Arc<dyn ExecutionPlan>) -> Self {
        let partitions = input.output_partitioning().partition_count();
        Self {
            executed: (0..partitions).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    fn before_execute(&self, partition: usize) -> Result<()> {
        let again = self
            .executed
            .get(partition)
            .is_some_and(|done| done.swap(true, Ordering::SeqCst));
        if again {
            return Err(DataFusionError::ResourcesExhausted(
                "the build side of a nested loop join does not fit in memory (DataFusion's fallback would run it a second time, which this input does not allow)".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{SessionConfig, SessionContext};

    /// A nested-loop join whose build side (a DISTINCT: a repartition
    /// below it) does not fit a 256 KiB pool, with the plan's own join
    /// order; its answer with and without the guard.
    async fn join_out_of_memory(
        guarded: bool,
    ) -> Result<Vec<datafusion::arrow::array::RecordBatch>> {
        use datafusion::execution::memory_pool::FairSpillPool;
        use datafusion::execution::runtime_env::RuntimeEnvBuilder;
        use datafusion::execution::session_state::SessionStateBuilder;
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(256 << 10)))
            .build_arc()?;
        let mut config = SessionConfig::new().with_target_partitions(2);
        config.options_mut().optimizer.join_reordering = false;
        let mut state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features();
        if guarded {
            state = state.with_physical_optimizer_rule(Arc::new(GuardNestedLoopJoins));
        }
        let ctx = SessionContext::new_with_state(state.build());
        ctx.sql(
            "SELECT count(*) FROM (SELECT DISTINCT value AS a FROM range(200000)) l \
             JOIN (SELECT value AS b FROM range(10)) r ON l.a + r.b < 0",
        )
        .await?
        .collect()
        .await
    }

    #[tokio::test]
    async fn a_build_side_that_does_not_fit_fails_as_out_of_memory_not_a_panic() {
        let err = join_out_of_memory(true).await.expect_err("does not fit");
        assert!(
            matches!(err.find_root(), DataFusionError::ResourcesExhausted(_)),
            "{err}"
        );
        // Without the guard, DataFusion 55.2 runs the DISTINCT a second time
        // and its repartition panics. When this no longer fails, DataFusion
        // has fixed its fallback and the guard can go.
        let unguarded = tokio::spawn(join_out_of_memory(false)).await;
        assert!(
            unguarded.as_ref().is_err_and(|e| e.is_panic()),
            "DataFusion's nested-loop fallback changed: {unguarded:?}"
        );
    }

    #[tokio::test]
    async fn a_guarded_input_runs_once_and_answers_do_not_change() {
        let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(2));
        let sql = "SELECT count(*) AS n FROM (SELECT DISTINCT column1 % 7 AS a FROM (VALUES (1), (2), (3), (9))) l \
                   JOIN (VALUES (1), (5), (8)) r ON l.a < r.column1";
        let plan = || async {
            ctx.sql(sql)
                .await
                .unwrap()
                .create_physical_plan()
                .await
                .unwrap()
        };
        // A plan runs once (its repartitions hold state): one to guard, one
        // to compare with.
        let guarded = GuardNestedLoopJoins
            .optimize(plan().await, &ConfigOptions::default())
            .unwrap();
        let text = datafusion::physical_plan::displayable(guarded.as_ref())
            .indent(false)
            .to_string();
        assert!(
            text.contains("NestedLoopJoinExec") && text.contains("ExecuteOnceExec"),
            "{text}"
        );
        let batches = datafusion::physical_plan::collect(guarded, ctx.task_ctx())
            .await
            .unwrap();
        let expected = datafusion::physical_plan::collect(plan().await, ctx.task_ctx())
            .await
            .unwrap();
        assert_eq!(batches, expected);

        let once =
            ExecuteOnceExec::new(Arc::new(datafusion::physical_plan::empty::EmptyExec::new(
                Arc::new(datafusion::arrow::datatypes::Schema::empty()),
            )));
        assert!(once.execute(0, ctx.task_ctx()).is_ok());
        let Err(err) = once.execute(0, ctx.task_ctx()) else {
            panic!("executed twice");
        };
        assert!(
            matches!(err, DataFusionError::ResourcesExhausted(_)),
            "{err}"
        );
    }
}
