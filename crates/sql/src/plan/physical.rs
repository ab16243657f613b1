//! Physical optimizer rules where DataFusion's physical plan computes what PostgreSQL's would
//! not, registered around DataFusion's own (`super::context`):
//!
//! - [`WindowGuard`], ahead of DataFusion's sort enforcement, which removes a sort whose
//!   ordering a window's output already has and pushes the sort's LIMIT into the window's
//!   input: the window then saw only the first rows (`count(*) OVER ()` under
//!   `ORDER BY ... LIMIT 3` answered 3: a wrong answer). The guard ([`GuardExec`]) sits above
//!   the top window of each chain in a plan that has a LIMIT; it passes batches through and
//!   claims no ordering, so the sort (a top-k) stays above the window and the LIMIT with it.
//! - [`FilterFirst`], last: DataFusion moves a projection below a filter when that narrows the
//!   rows' width, and then computes the projection for rows the filter drops
//!   (`SELECT id, total / n FROM t WHERE id > 5` divided by a zero the WHERE excludes: 22012
//!   where PostgreSQL answers). The rule puts the filter back first. It also makes each AND /
//!   OR of a filter or projection whose right side can fail row by row ([`LazyBool`]):
//!   DataFusion computes both sides over the whole batch, so `WHERE n <> 0 AND total / n > 2`
//!   divided by zero where PostgreSQL, evaluating `n <> 0` first for each row, answers.
//!
//! DataFusion's top-k aggregation ([`TOPK_AGGREGATION`]) is left out.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use datafusion::arrow::array::BooleanArray;
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::compute::kernels::boolean::{and_kleene, or_kleene};
use datafusion::arrow::datatypes::{DataType, FieldRef, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::cast::as_boolean_array;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{ColumnarValue, Operator};
use datafusion::physical_expr::expressions::{
    BinaryExpr, CaseExpr, Column, IsNotNullExpr, IsNullExpr, Literal, NotExpr,
};
use datafusion::physical_expr::split_conjunction;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_expr_common::utils::scatter;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::execution_plan::{
    Boundedness, ChildrenPropertiesMode, EmissionType, ReplaceChildrenOptions,
};
use datafusion::physical_plan::filter::{FilterExec, FilterExecBuilder};
use datafusion::physical_plan::limit::{GlobalLimitExec, LocalLimitExec};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::windows::{BoundedWindowAggExec, WindowAggExec};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties};

/// The name of DataFusion's rule that makes a grouping under ORDER BY ... LIMIT a top-k
/// aggregation, left out of raftable's rules (its hash table panics on a NaN float key).
pub(crate) const TOPK_AGGREGATION: &str = "LimitAggregation";

/// No LIMIT pushed below a window function; see the module's text.
#[derive(Debug, Default)]
pub(crate) struct WindowGuard;

/// The name of DataFusion's rule [`WindowGuard`] must run ahead of.
pub(crate) const GUARD_AHEAD_OF: &str = "EnsureRequirements";

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

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let input =
            children.pop().ok_or_else(|| DataFusionError::Internal("WindowGuardExec takes one input".into()))?;
        Ok(Self::over(&input))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        self.input.execute(partition, context)
    }
}

/// A filter computed before the projection DataFusion moved below it; see the module's text.
#[derive(Debug, Default)]
pub(crate) struct FilterFirst;

impl PhysicalOptimizerRule for FilterFirst {
    fn optimize(&self, plan: Arc<dyn ExecutionPlan>, _config: &ConfigOptions) -> DfResult<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let node = filter_first(&node)?.map_or_else(|| Transformed::no(node), Transformed::yes);
            node.transform_data(|n| Ok(lazy_booleans(&n)?.map_or_else(|| Transformed::no(n), Transformed::yes)))
        })
        .data()
    }

    fn name(&self) -> &str {
        "raftable_filter_first"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `Filter(Projection(input))` as `Projection(Filter(input))` when the projection computes
/// something and every column the filter reads passes through it unchanged.
fn filter_first(node: &Arc<dyn ExecutionPlan>) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
    let Some(filter) = node.downcast_ref::<FilterExec>() else { return Ok(None) };
    let Some(projection) = filter.input().downcast_ref::<ProjectionExec>() else { return Ok(None) };
    let computes = projection.expr().iter().any(|e| !e.expr.is::<Column>());
    if filter.projection().is_some() || !computes {
        return Ok(None);
    }
    let mut passes_through = true;
    let predicate = Arc::clone(filter.predicate())
        .transform_up(|e| {
            let Some(column) = e.downcast_ref::<Column>() else { return Ok(Transformed::no(e)) };
            match projection.expr().get(column.index()).map(|p| &p.expr) {
                Some(source) if source.is::<Column>() => Ok(Transformed::yes(Arc::clone(source))),
                _ => {
                    passes_through = false;
                    Ok(Transformed::no(e))
                }
            }
        })?
        .data;
    if !passes_through {
        return Ok(None);
    }
    let filtered =
        FilterExecBuilder::from(filter).with_input(Arc::clone(projection.input())).with_predicate(predicate).build()?;
    Ok(Some(Arc::new(ProjectionExec::try_new(projection.expr().to_vec(), Arc::new(filtered))?)))
}

/// A filter's or projection's expressions with each AND / OR whose right side can fail made a
/// [`LazyBool`]; `None` when there is none.
fn lazy_booleans(node: &Arc<dyn ExecutionPlan>) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
    if let Some(filter) = node.downcast_ref::<FilterExec>() {
        // Conjuncts that cannot fail first, as PostgreSQL orders a scan's conditions by cost
        // (`WHERE (a - 1) <> 1 AND f` tests `f` first).
        let original: Vec<_> = split_conjunction(filter.predicate()).into_iter().cloned().collect();
        let (safe, fallible): (Vec<_>, Vec<_>) = original.iter().cloned().partition(cannot_fail);
        let ordered: Vec<_> = safe.into_iter().chain(fallible).collect();
        let reordered = ordered.iter().zip(&original).any(|(a, b)| !Arc::ptr_eq(a, b));
        // A row stops at its first conjunct that is not true (false and NULL both drop it):
        // the conjuncts that cannot fail stay a plain AND at the top (DataFusion reads
        // constants and equivalences off them: `relname = 'x'` makes `relname` constant for the
        // sort above), and those that can fail each run only on the rows all before them keep.
        let mut changed = reordered;
        let mut safe_part: Option<Arc<dyn PhysicalExpr>> = None;
        let mut chain: Option<Arc<dyn PhysicalExpr>> = None;
        for conjunct in ordered {
            let conjunct = lazy(conjunct)?;
            changed |= conjunct.transformed;
            let right = conjunct.data;
            if cannot_fail(&right) && chain.is_none() {
                safe_part = Some(match safe_part {
                    None => right,
                    Some(left) => Arc::new(BinaryExpr::new(left, Operator::And, right)),
                });
                continue;
            }
            chain = Some(match chain.take().or_else(|| safe_part.clone()) {
                None => right,
                Some(left) => {
                    changed = true;
                    Arc::new(LazyBool { left, or: false, qual: true, right })
                }
            });
        }
        let predicate = match (safe_part, chain) {
            (Some(safe), Some(chain)) if !Arc::ptr_eq(&safe, &chain) => {
                Some(Arc::new(BinaryExpr::new(safe, Operator::And, chain)) as Arc<dyn PhysicalExpr>)
            }
            (safe, chain) => chain.or(safe),
        };
        let predicate = predicate.expect("a predicate has a conjunct");
        if !changed {
            return Ok(None);
        }
        return Ok(Some(Arc::new(FilterExecBuilder::from(filter).with_predicate(predicate).build()?)));
    }
    let Some(projection) = node.downcast_ref::<ProjectionExec>() else { return Ok(None) };
    let mut changed = false;
    let mut exprs = projection.expr().to_vec();
    for e in &mut exprs {
        let rewritten = lazy(Arc::clone(&e.expr))?;
        changed |= rewritten.transformed;
        e.expr = rewritten.data;
    }
    if !changed {
        return Ok(None);
    }
    Ok(Some(Arc::new(ProjectionExec::try_new(exprs, Arc::clone(projection.input()))?)))
}

fn lazy(expr: Arc<dyn PhysicalExpr>) -> DfResult<Transformed<Arc<dyn PhysicalExpr>>> {
    expr.transform_up(|e| {
        let Some(binary) = e.downcast_ref::<BinaryExpr>() else { return Ok(Transformed::no(e)) };
        if !matches!(binary.op(), Operator::And | Operator::Or) || cannot_fail(binary.right()) {
            return Ok(Transformed::no(e));
        }
        let lazy = LazyBool {
            left: Arc::clone(binary.left()),
            or: *binary.op() == Operator::Or,
            qual: false,
            right: Arc::clone(binary.right()),
        };
        Ok(Transformed::yes(Arc::new(lazy) as Arc<dyn PhysicalExpr>))
    })
}

/// Whether `expr` cannot fail for any row: columns, constants, comparisons, NOT, IS [NOT] NULL
/// and AND / OR of such (a comparison of columns of one type does not fail; a cast, an
/// arithmetic operator or a function call may).
fn cannot_fail(expr: &Arc<dyn PhysicalExpr>) -> bool {
    let node_safe = expr.is::<Column>()
        || expr.is::<Literal>()
        || expr.is::<NotExpr>()
        || expr.is::<IsNullExpr>()
        || expr.is::<IsNotNullExpr>()
        || expr.is::<LazyBool>()
        || expr.downcast_ref::<BinaryExpr>().is_some_and(|b| {
            matches!(
                b.op(),
                Operator::And
                    | Operator::Or
                    | Operator::Eq
                    | Operator::NotEq
                    | Operator::Lt
                    | Operator::LtEq
                    | Operator::Gt
                    | Operator::GtEq
                    | Operator::IsDistinctFrom
                    | Operator::IsNotDistinctFrom
            )
        });
    node_safe && expr.children().into_iter().all(cannot_fail) && !expr.is::<CaseExpr>()
}

/// `left AND right` / `left OR right` evaluated as PostgreSQL evaluates them for each row:
/// `right` only where `left` does not decide (AND: where `left` is not false; OR: not true).
/// The other rows are decided by `left` alone, so `right` never fails for them. A filter's
/// conjunction (`qual`) needs `right` only where `left` is true: a NULL drops the row too.
#[derive(Debug, Eq)]
pub(crate) struct LazyBool {
    left: Arc<dyn PhysicalExpr>,
    or: bool,
    qual: bool,
    right: Arc<dyn PhysicalExpr>,
}

impl PartialEq for LazyBool {
    fn eq(&self, other: &Self) -> bool {
        self.or == other.or && self.qual == other.qual && self.left.eq(&other.left) && self.right.eq(&other.right)
    }
}

impl Hash for LazyBool {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.left.hash(state);
        self.or.hash(state);
        self.qual.hash(state);
        self.right.hash(state);
    }
}

impl fmt::Display for LazyBool {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} {} {}", self.left, if self.or { "OR" } else { "AND" }, self.right)
    }
}

impl PhysicalExpr for LazyBool {
    fn data_type(&self, _input_schema: &Schema) -> DfResult<DataType> {
        Ok(DataType::Boolean)
    }

    fn nullable(&self, input_schema: &Schema) -> DfResult<bool> {
        Ok(self.left.nullable(input_schema)? || self.right.nullable(input_schema)?)
    }

    fn return_field(&self, input_schema: &Schema) -> DfResult<FieldRef> {
        Ok(Arc::new(datafusion::arrow::datatypes::Field::new(
            "lazy_bool",
            DataType::Boolean,
            self.nullable(input_schema)?,
        )))
    }

    fn evaluate(&self, batch: &RecordBatch) -> DfResult<ColumnarValue> {
        let rows = batch.num_rows();
        let left = self.left.evaluate(batch)?.into_array(rows)?;
        let left = as_boolean_array(&left)?;
        // The rows `left` does not decide: AND's where it is not false, OR's where not true.
        let needed: BooleanArray = match self.qual {
            true => left.iter().map(|v| Some(v == Some(true))).collect(),
            false => left.iter().map(|v| Some(v != Some(self.or))).collect(),
        };
        let right = match needed.true_count() {
            0 => return Ok(ColumnarValue::Array(Arc::new(left.clone()))),
            n if n == rows => self.right.evaluate(batch)?.into_array(rows)?,
            _ => {
                let some = filter_record_batch(batch, &needed)?;
                let partial = self.right.evaluate(&some)?.into_array(some.num_rows())?;
                scatter(&needed, partial.as_ref())?
            }
        };
        let right = as_boolean_array(&right)?;
        let result = if self.or { or_kleene(left, right)? } else { and_kleene(left, right)? };
        Ok(ColumnarValue::Array(Arc::new(result)))
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.left, &self.right]
    }

    fn with_new_children(self: Arc<Self>, mut children: Vec<Arc<dyn PhysicalExpr>>) -> DfResult<Arc<dyn PhysicalExpr>> {
        let (Some(right), Some(left)) = (children.pop(), children.pop()) else {
            return Err(DataFusionError::Internal("AND / OR takes two operands".into()));
        };
        Ok(Arc::new(LazyBool { left, or: self.or, qual: self.qual, right }))
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.left.fmt_sql(f)?;
        write!(f, " {} ", if self.or { "OR" } else { "AND" })?;
        self.right.fmt_sql(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int32Array, RecordBatch};
    use datafusion::arrow::datatypes::Field;
    use datafusion::physical_expr::expressions::{binary, col, lit};

    #[test]
    fn the_right_side_runs_only_where_the_left_does_not_decide() {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int32, true)]));
        let batch =
            RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(Int32Array::from(vec![Some(0), Some(2), None]))])
                .unwrap();
        let n = col("n", &schema).unwrap();
        let nonzero = binary(Arc::clone(&n), Operator::NotEq, lit(0i32), &schema).unwrap();
        let quotient = binary(lit(10i32), Operator::Divide, n, &schema).unwrap();
        let big = binary(quotient, Operator::Gt, lit(1i32), &schema).unwrap();
        // DataFusion's AND divides every row by n: division by zero.
        let eager = binary(Arc::clone(&nonzero), Operator::And, Arc::clone(&big), &schema).unwrap();
        assert!(eager.evaluate(&batch).is_err());
        for (or, qual, expected) in [
            (false, false, vec![Some(false), Some(true), None]),
            (false, true, vec![Some(false), Some(true), None]),
            (true, false, vec![Some(true), Some(true), None]),
        ] {
            let left = if or {
                binary(Arc::clone(&nonzero), Operator::Eq, lit(false), &schema).unwrap()
            } else {
                Arc::clone(&nonzero)
            };
            let e = LazyBool { left, or, qual, right: Arc::clone(&big) };
            let out = e.evaluate(&batch).unwrap().into_array(3).unwrap();
            assert_eq!(as_boolean_array(&out).unwrap().iter().collect::<Vec<_>>(), expected, "or {or}, qual {qual}");
        }
        assert!(!cannot_fail(&big) && cannot_fail(&nonzero));
    }
}
