//! Deep plans in pieces, so that they can travel.
//!
//! Ballista sends a plan as one protobuf message, and protobuf decoding
//! (prost) stops at 100 levels of nesting: about 50 plan nodes, fewer under
//! deep expressions. agentledger's views stack deep (`runs` over merged
//! parts over run parts over `model_calls` over a price join...), and the
//! readiness checklist and the weekly report plan far past that. Lifting the
//! limit is not an option: this process also decodes protobuf from the
//! network (OTLP), where the limit is what stops a hostile message.
//!
//! So the client cuts its plan before it sends it: every
//! [`LEVELS`] plan nodes, the subtree below is put inside a [`Fragment`],
//! a leaf node that the codec ([`crate::codec::LakeLogicalCodec`]) writes as
//! a protobuf message of its own, nested as bytes: each piece is decoded by
//! its own call, under the limit. The scheduler puts the pieces back
//! together ([`Reassemble`]) before it optimizes and plans the whole.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::DFSchemaRef;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::Result;
use datafusion::execution::context::QueryPlanner;
use datafusion::logical_expr::{Expr, Extension, LogicalPlan, UserDefinedLogicalNodeCore};
use datafusion::optimizer::AnalyzerRule;
use datafusion::physical_plan::ExecutionPlan;

/// The most plan nodes one piece holds. With two protobuf levels a node,
/// that leaves more than half of prost's 100 levels to expressions.
pub const LEVELS: usize = 12;

/// A subtree of a plan, sent as a message of its own. A leaf: its plan is
/// not one of its inputs, so the encoder does not nest it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fragment {
    /// The subtree.
    pub plan: LogicalPlan,
}

impl PartialOrd for Fragment {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        self.plan.partial_cmp(&other.plan)
    }
}

impl Fragment {
    /// The node's name in plans and in the codec.
    pub const NAME: &'static str = "AgentledgerFragment";

    fn wrap(plan: LogicalPlan) -> LogicalPlan {
        LogicalPlan::Extension(Extension {
            node: Arc::new(Self { plan }),
        })
    }
}

impl UserDefinedLogicalNodeCore for Fragment {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![]
    }

    fn schema(&self) -> &DFSchemaRef {
        self.plan.schema()
    }

    fn expressions(&self) -> Vec<Expr> {
        vec![]
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}", Self::NAME)
    }

    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, _inputs: Vec<LogicalPlan>) -> Result<Self> {
        Ok(self.clone())
    }
}

/// `plan` cut into [`Fragment`]s of at most [`LEVELS`] nodes.
pub fn cut(plan: LogicalPlan) -> Result<LogicalPlan> {
    Ok(cut_counting(plan)?.0)
}

/// [`cut`], and the height of the piece the returned root is in.
fn cut_counting(plan: LogicalPlan) -> Result<(LogicalPlan, usize)> {
    let mut below = 0;
    let plan = plan
        .map_children(|child| {
            let (child, height) = cut_counting(child)?;
            below = below.max(height);
            Ok(Transformed::yes(child))
        })?
        .data;
    let height = below + 1;
    if height >= LEVELS {
        Ok((Fragment::wrap(plan), 1))
    } else {
        Ok((plan, height))
    }
}

/// `plan` with every [`Fragment`] replaced by its subtree.
pub fn reassemble(plan: LogicalPlan) -> Result<LogicalPlan> {
    plan.transform_up(|node| {
        if let LogicalPlan::Extension(Extension { node: inner }) = &node
            && let Some(fragment) = inner.as_any().downcast_ref::<Fragment>()
        {
            // Its own pieces first: the subtree was decoded on its own.
            return Ok(Transformed::new(
                reassemble(fragment.plan.clone())?,
                true,
                TreeNodeRecursion::Continue,
            ));
        }
        Ok(Transformed::no(node))
    })
    .map(|t| t.data)
}

/// The scheduler's analyzer rule that undoes [`cut`].
#[derive(Debug, Default)]
pub struct Reassemble;

impl AnalyzerRule for Reassemble {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        reassemble(plan)
    }

    fn name(&self) -> &str {
        "agentledger_reassemble_fragments"
    }
}

/// A client's query planner that cuts each plan before Ballista's planner
/// sends it.
#[derive(Debug)]
pub struct Cutting {
    /// Ballista's planner.
    pub inner: Arc<dyn QueryPlanner + Send + Sync>,
}

#[async_trait]
impl QueryPlanner for Cutting {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session_state: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let cut = cut(logical_plan.clone())?;
        self.inner.create_physical_plan(&cut, session_state).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{SessionContext, col, lit};

    /// The longest chain of plan nodes not broken by a fragment, in any
    /// piece: the height of `plan`'s own piece, and the longest.
    fn pieces(plan: &LogicalPlan) -> (usize, usize) {
        if let LogicalPlan::Extension(Extension { node }) = plan {
            let fragment = node.as_any().downcast_ref::<Fragment>().unwrap();
            let (own, longest) = pieces(&fragment.plan);
            return (1, own.max(longest));
        }
        let children: Vec<_> = plan.inputs().into_iter().map(pieces).collect();
        let own = 1 + children.iter().map(|c| c.0).max().unwrap_or(0);
        let longest = children.iter().map(|c| c.1).max().unwrap_or(0);
        (own, own.max(longest))
    }

    fn longest_piece(plan: &LogicalPlan) -> usize {
        pieces(plan).1
    }

    fn depth(plan: &LogicalPlan) -> usize {
        1 + plan.inputs().into_iter().map(depth).max().unwrap_or(0)
    }

    #[tokio::test]
    async fn a_deep_plan_is_cut_into_short_pieces_and_put_back_as_it_was() {
        let ctx = SessionContext::new();
        let mut df = ctx.sql("SELECT 1 AS x").await.unwrap();
        for i in 0..60 {
            df = df
                .filter(col("x").gt(lit(-i)))
                .unwrap()
                .select(vec![(col("x") + lit(i)).alias("x")])
                .unwrap();
        }
        let plan = df.into_unoptimized_plan();
        assert!(depth(&plan) > 100, "{}", depth(&plan));
        let pieces = cut(plan.clone()).unwrap();
        assert!(
            longest_piece(&pieces) <= LEVELS,
            "{}",
            longest_piece(&pieces)
        );
        assert!(depth(&pieces) < LEVELS, "{}", depth(&pieces));
        assert_eq!(pieces.schema(), plan.schema());
        assert_eq!(reassemble(pieces).unwrap(), plan);
        // A short plan is left whole.
        let short = ctx.sql("SELECT 1").await.unwrap().into_unoptimized_plan();
        assert_eq!(cut(short.clone()).unwrap(), short);
    }
}
