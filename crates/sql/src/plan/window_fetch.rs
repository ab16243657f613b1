//! A guard between a window function and a LIMIT above it, a physical optimizer rule run
//! ahead of DataFusion's sort enforcement. That enforcement removes a sort whose ordering a
//! window's output already has and pushes the sort's LIMIT into the window's input: the
//! window then sees only the first rows (`count(*) OVER ()` under `ORDER BY ... LIMIT 3`
//! answered 3 where PostgreSQL answers the table's row count: a wrong answer). [`WindowGuard`]
//! puts a [`GuardExec`] above the top window of each chain in a plan that has a LIMIT; the
//! guard passes batches through and claims no ordering, so the sort (a top-k) stays above the
//! window and the LIMIT with it.

use std::fmt;
use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::execution_plan::{
    Boundedness, ChildrenPropertiesMode, EmissionType, ReplaceChildrenOptions,
};
use datafusion::physical_plan::limit::{GlobalLimitExec, LocalLimitExec};
use datafusion::physical_plan::windows::{BoundedWindowAggExec, WindowAggExec};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties};

/// The rule; see the module's text.
#[derive(Debug, Default)]
pub(crate) struct WindowGuard;

/// The name of DataFusion's rule the guard must run ahead of.
pub(crate) const AHEAD_OF: &str = "EnsureRequirements";

fn is_window(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.is::<WindowAggExec>() || plan.is::<BoundedWindowAggExec>()
}

fn has_fetch(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.fetch().is_some() || plan.is::<GlobalLimitExec>() || plan.is::<LocalLimitExec>()
}

impl PhysicalOptimizerRule for WindowGuard {
    fn optimize(&self, plan: Arc<dyn ExecutionPlan>, _config: &ConfigOptions) -> DfResult<Arc<dyn ExecutionPlan>> {
        if !plan.exists(|p| Ok(has_fetch(p)))? || !plan.exists(|p| Ok(is_window(p)))? {
            return Ok(plan);
        }
        plan.transform_up(|node| {
            if is_window(&node) || node.is::<GuardExec>() || !node.children().into_iter().any(is_window) {
                return Ok(Transformed::no(node));
            }
            let children =
                node.children().into_iter().map(|c| if is_window(c) { GuardExec::over(c) } else { Arc::clone(c) });
            let recompute = ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute);
            Ok(Transformed::yes(Arc::clone(&node).replace_children(children.collect(), recompute)?))
        })
        .data()
    }

    fn name(&self) -> &str {
        "raftable_window_guard"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Passes its input's batches through, claiming no output ordering; see the module's text.
#[derive(Debug)]
pub(crate) struct GuardExec {
    input: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
}

impl GuardExec {
    fn over(input: &Arc<dyn ExecutionPlan>) -> Arc<dyn ExecutionPlan> {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(input.schema()),
            input.output_partitioning().clone(),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Arc::new(Self { input: Arc::clone(input), properties: Arc::new(properties) })
    }
}

impl DisplayAs for GuardExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "WindowGuardExec")
    }
}

impl ExecutionPlan for GuardExec {
    fn name(&self) -> &str {
        "WindowGuardExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, mut children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        let input = children.pop().ok_or_else(|| DataFusionError::Internal("WindowGuardExec takes one input".into()))?;
        Ok(Self::over(&input))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        self.input.execute(partition, context)
    }
}
