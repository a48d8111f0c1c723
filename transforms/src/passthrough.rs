//! [`PassThroughExec`]: a plan node that hands its input's batches on
//! unchanged, and what each kind of it does besides ([`PassThrough`]).
//! Optimizers push no filter, projection, limit or sort through such a
//! node, and it reports no statistics.

use std::fmt;
use std::sync::Arc;

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PhysicalExpr, PlanProperties,
    SendableRecordBatchStream,
};

/// What a kind of [`PassThroughExec`] does besides passing batches on.
pub trait PassThrough: fmt::Debug + Send + Sync + 'static {
    /// The node's name in plans.
    const NAME: &'static str;

    /// The state of a node over `input`.
    fn over(input: &Arc<dyn ExecutionPlan>) -> Self;

    /// Called before `partition` runs; an error stops it.
    fn before_execute(&self, partition: usize) -> Result<()>;
}

/// A node that passes its input through (see the module).
#[derive(Debug)]
pub struct PassThroughExec<P> {
    input: Arc<dyn ExecutionPlan>,
    state: P,
}

impl<P: PassThrough> PassThroughExec<P> {
    /// A node over `input`.
    pub fn new(input: Arc<dyn ExecutionPlan>) -> Self {
        let state = P::over(&input);
        Self { input, state }
    }
}

impl<P: PassThrough> DisplayAs for PassThroughExec<P> {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(P::NAME)
    }
}

impl<P: PassThrough> ExecutionPlan for PassThroughExec<P> {
    fn name(&self) -> &str {
        P::NAME
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return Err(DataFusionError::Internal(format!(
                "{} has one input, not {}",
                P::NAME,
                children.len()
            )));
        }
        Ok(Arc::new(Self::new(children.swap_remove(0))))
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let recompute = ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute);
        self.replace_children(children, recompute)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.state.before_execute(partition)?;
        self.input.execute(partition, context)
    }
}
