//! Window inputs sorted by their PARTITION BY keys in every stage.
//!
//! DataFusion leaves a window's PARTITION BY keys out of the sort below it
//! when a filter made them constant (`WHERE tenant_id = 'a' AND run_id =
//! 'r'`: the timeline, a run's policy, a run's checks). In one process the
//! window sees those constants through its input. Ballista cuts the plan
//! into stages at each repartition, and the stage above reads a shuffle
//! that knows nothing of them: the window's executor then refuses its
//! input ("Expects PARTITION BY expression to be ordered").
//!
//! [`SortByPartitionKeys`], run by the scheduler after DataFusion's rules,
//! puts the missing keys first in that sort. Where they are constant,
//! sorting by them changes no row's place; the window's answers are the
//! same either way, since it computes each partition on its own.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::error::Result;
use datafusion::physical_expr::{LexOrdering, PhysicalSortExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::windows::{BoundedWindowAggExec, WindowAggExec};
use datafusion::physical_plan::{ExecutionPlan, InputOrderMode, PhysicalExpr};

/// See the module.
#[derive(Debug, Default)]
pub struct SortByPartitionKeys;

impl PhysicalOptimizerRule for SortByPartitionKeys {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let keys = if let Some(window) = node.downcast_ref::<BoundedWindowAggExec>() {
                if window.input_order_mode != InputOrderMode::Sorted {
                    return Ok(Transformed::no(node));
                }
                window.partition_keys()
            } else if let Some(window) = node.downcast_ref::<WindowAggExec>() {
                window.partition_keys()
            } else {
                return Ok(Transformed::no(node));
            };
            let Some(sort) = node.children()[0].downcast_ref::<SortExec>() else {
                return Ok(Transformed::no(node));
            };
            let missing: Vec<PhysicalSortExpr> = keys
                .iter()
                .filter(|key| {
                    !sort
                        .expr()
                        .iter()
                        .any(|sorted| sorted.expr.as_ref() == key.as_ref() as &dyn PhysicalExpr)
                })
                .map(|key| PhysicalSortExpr::new_default(Arc::clone(key)))
                .collect();
            if missing.is_empty() {
                return Ok(Transformed::no(node));
            }
            let Some(ordering) =
                LexOrdering::new(missing.into_iter().chain(sort.expr().iter().cloned()))
            else {
                return Ok(Transformed::no(node));
            };
            let sorted = SortExec::new(ordering, Arc::clone(sort.input()))
                .with_preserve_partitioning(sort.preserve_partitioning())
                .with_fetch(sort.fetch());
            let recompute = ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute);
            Ok(Transformed::yes(
                node.replace_children(vec![Arc::new(sorted)], recompute)?,
            ))
        })
        .data()
    }

    fn name(&self) -> &str {
        "agentledger_sort_by_partition_keys"
    }

    fn schema_check(&self) -> bool {
        true
    }
}
