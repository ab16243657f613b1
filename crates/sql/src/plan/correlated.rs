//! Correlated subqueries DataFusion cannot decorrelate, run once per outer row as PostgreSQL
//! runs them (its SubPlan): a scalar subquery correlated by more than equality (`(SELECT
//! count(*) FROM o x WHERE x.amt < o.amt)`) or one that does not aggregate (`(SELECT name
//! FROM c WHERE c.id = o.cid)`), `EXISTS` over such a correlation outside a WHERE, and a
//! LATERAL subquery whose select list or join condition reads the outer row (`FROM o,
//! LATERAL (SELECT o.id * 2 AS n) l`). DataFusion turns a subquery into a join where it can,
//! which runs it once for all rows; the rest it refuses at analysis ("must be aggregated") or
//! leaves in the plan to fail at execution ("Physical plan does not support logical expression
//! ScalarSubquery").
//!
//! - [`Correlated`] takes them: as an analyzer rule (after type coercion) the subqueries
//!   analysis would refuse, as an optimizer rule (after DataFusion's decorrelation) what
//!   DataFusion left. Each becomes an [`Apply`] node under the plan node that used it (a
//!   projection, filter or sort; a join's right side for LATERAL), the subquery's value a
//!   column of its output.
//! - [`ApplyExec`] (planned by [`Planner`], the session's query planner) runs the subquery for
//!   each distinct tuple of the outer values it reads, bound as constants, as any query is
//!   run (in the statement's task context: at its snapshot, through its transaction), and
//!   appends its value (a scalar subquery: NULL for no row, 21000 for more than one; EXISTS:
//!   whether a row came) or joins its rows (LATERAL: each outer row with each of its rows; a
//!   LEFT JOIN LATERAL keeps an outer row with none, NULL-extended).
//!
//! Slow over a large outer input (one planned query per distinct outer tuple), right on any.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::array::{new_empty_array, new_null_array, ArrayRef, BooleanArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{concat, take};
use datafusion::arrow::datatypes::{Field, SchemaRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, DFSchemaRef, ExprSchema, ScalarValue};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::{SendableRecordBatchStream, SessionState, TaskContext};
use datafusion::logical_expr::expr::Exists;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{
    check_subquery_expr, Expr, Extension, Filter, JoinType, LogicalPlan, LogicalPlanBuilder, Subquery, SubqueryAlias,
    UserDefinedLogicalNode, UserDefinedLogicalNodeCore,
};
use datafusion::optimizer::decorrelate::PullUpCorrelatedExpr;
use datafusion::optimizer::{AnalyzerRule, ApplyOrder, OptimizerConfig, OptimizerRule};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    collect, DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
};
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};
use futures::TryStreamExt;
use raftable_common::Error;

use crate::error::to_datafusion;

/// The rule, as both an analyzer and an optimizer rule of a session's context.
#[derive(Debug, Default)]
pub(crate) struct Correlated;

impl AnalyzerRule for Correlated {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DfResult<LogicalPlan> {
        // What analysis would refuse, and the scalar subqueries DataFusion's decorrelation
        // cannot pull the correlation out of (its own test): it turns the others into joins,
        // which run the subquery once. They are taken here, before optimisation: pushing a
        // filter through a table's alias renames its columns but not the outer references
        // to them.
        // And uncorrelated scalar subqueries of a column that is never NULL (`(SELECT id FROM t
        // WHERE id = 999)`): DataFusion keeps the column's NOT NULL for the subquery's value,
        // which no row makes NULL, and fails (23502) when none is found.
        let taken = |plan: &LogicalPlan, subquery: &Subquery, expr: &Expr| {
            let scalar = matches!(expr, Expr::ScalarSubquery(_));
            let never_null = || {
                subquery.outer_ref_columns.is_empty()
                    && subquery.subquery.schema().fields().iter().any(|f| !f.is_nullable())
            };
            check_subquery_expr(plan, &subquery.subquery, expr).is_err()
                || (scalar && (!decorrelatable(subquery) || never_null()))
        };
        plan.transform_up_with_subqueries(|plan| per_row(plan, &taken)).data()
    }

    fn name(&self) -> &str {
        "raftable_correlated_subqueries"
    }
}

impl OptimizerRule for Correlated {
    fn name(&self) -> &str {
        "raftable_correlated_subqueries"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    #[allow(deprecated)]
    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(&self, plan: LogicalPlan, _config: &dyn OptimizerConfig) -> DfResult<Transformed<LogicalPlan>> {
        match plan {
            LogicalPlan::Join(_) => lateral(plan),
            // What is left correlated after DataFusion's decorrelation.
            plan => per_row(plan, &|_: &LogicalPlan, s: &Subquery, _: &Expr| !s.outer_ref_columns.is_empty()),
        }
    }
}

/// Whether DataFusion's decorrelation can pull `subquery`'s correlation out into a join (as
/// `ScalarSubqueryToJoin` asks).
fn decorrelatable(subquery: &Subquery) -> bool {
    let mut pull_up = PullUpCorrelatedExpr::new().with_need_handle_count_bug(true);
    subquery.subquery.as_ref().clone().rewrite(&mut pull_up).is_ok() && pull_up.can_pull_up
}

/// What an [`Apply`] adds to its input's rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd)]
enum Kind {
    /// The value of a scalar subquery: one column.
    Scalar,
    /// Whether the subquery returns a row.
    Exists,
    /// The subquery's rows, joined to the row (`outer`: a LEFT JOIN, keeping a row without).
    Lateral { outer: bool },
}

/// `plan` (a projection, filter or sort) with the subqueries of its expressions that `take`
/// selects, uncorrelated or whose outer references its input holds, read from [`Apply`] nodes
/// under it.
fn per_row(
    plan: LogicalPlan,
    take: &dyn Fn(&LogicalPlan, &Subquery, &Expr) -> bool,
) -> DfResult<Transformed<LogicalPlan>> {
    if !matches!(plan, LogicalPlan::Projection(_) | LogicalPlan::Filter(_) | LogicalPlan::Sort(_)) {
        return Ok(Transformed::no(plan));
    }
    let input = plan.inputs()[0].clone();
    let mut found: Vec<(Subquery, Kind)> = Vec::new();
    for expr in plan.expressions() {
        expr.apply(|e| {
            let (subquery, kind) = match e {
                Expr::ScalarSubquery(subquery) => (subquery, Kind::Scalar),
                Expr::Exists(Exists { subquery, .. }) => (subquery, Kind::Exists),
                _ => return Ok(TreeNodeRecursion::Continue),
            };
            let new = !found.iter().any(|(s, k)| s == subquery && *k == kind);
            // A correlated subquery is this node's if its outer references read the input.
            let ours =
                subquery.outer_ref_columns.is_empty() || !outer_columns(&subquery.subquery, input.schema()).is_empty();
            if new && ours && take(&plan, subquery, e) {
                found.push((subquery.clone(), kind));
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
    }
    if found.is_empty() {
        return Ok(Transformed::no(plan));
    }
    let mut applied = input;
    let mut columns = Vec::with_capacity(found.len());
    for (subquery, kind) in &found {
        let name = format!("__subquery_{}", applied.schema().fields().len());
        let apply = Apply::new(applied, Arc::clone(&subquery.subquery), *kind, Some(name.clone()))?;
        applied = LogicalPlan::Extension(Extension { node: Arc::new(apply) });
        columns.push(Expr::Column(Column::new_unqualified(name)));
    }
    let column_of = |subquery: &Subquery, kind: Kind| {
        found.iter().position(|(s, k)| s == subquery && *k == kind).map(|i| columns[i].clone())
    };
    let replace = |expr: Expr| {
        expr.transform(|e| {
            let replaced = match &e {
                Expr::ScalarSubquery(subquery) => column_of(subquery, Kind::Scalar),
                Expr::Exists(Exists { subquery, negated }) => {
                    column_of(subquery, Kind::Exists).map(|c| if *negated { !c } else { c })
                }
                _ => None,
            };
            Ok(replaced.map_or_else(|| Transformed::no(e), Transformed::yes))
        })
        .data()
    };
    let projection = matches!(plan, LogicalPlan::Projection(_));
    let names = NamePreserver::new(&plan);
    let exprs = plan
        .expressions()
        .into_iter()
        .map(|e| {
            let saved = names.save(&e);
            let e = replace(e)?;
            Ok(if projection { saved.restore(e) } else { e })
        })
        .collect::<DfResult<Vec<_>>>()?;
    let passed_through = plan.inputs()[0].schema().columns();
    let rewritten = plan.with_new_exprs(exprs, vec![applied])?;
    if projection {
        return Ok(Transformed::yes(rewritten));
    }
    // A filter or sort passes its input's columns through: not the subqueries' values.
    let restored =
        LogicalPlanBuilder::from(rewritten).project(passed_through.into_iter().map(Expr::Column))?.build()?;
    Ok(Transformed::yes(restored))
}

/// A join (inner or left) whose right side is a LATERAL subquery reading the left side, as an
/// [`Apply`]; its condition filters the subquery's rows (so a LEFT JOIN keeps the rows it
/// matches none of).
fn lateral(plan: LogicalPlan) -> DfResult<Transformed<LogicalPlan>> {
    let LogicalPlan::Join(join) = &plan else {
        return Ok(Transformed::no(plan));
    };
    if !matches!(join.join_type, JoinType::Inner | JoinType::Left) {
        return Ok(Transformed::no(plan));
    }
    let (subquery, alias) = match join.right.as_ref() {
        LogicalPlan::Subquery(subquery) => (subquery, None),
        LogicalPlan::SubqueryAlias(SubqueryAlias { input, alias, .. }) => match input.as_ref() {
            LogicalPlan::Subquery(subquery) => (subquery, Some(alias.clone())),
            _ => return Ok(Transformed::no(plan)),
        },
        _ => return Ok(Transformed::no(plan)),
    };
    let left = join.left.schema();
    if outer_columns(&subquery.subquery, left).is_empty() {
        return Ok(Transformed::no(plan));
    }
    let mut right = subquery.subquery.as_ref().clone();
    if let Some(alias) = alias {
        right = LogicalPlan::SubqueryAlias(SubqueryAlias::try_new(Arc::new(right), alias)?);
    }
    let conditions = join.on.iter().map(|(l, r)| l.clone().eq(r.clone())).chain(join.filter.clone());
    if let Some(condition) = conjunction(conditions) {
        let inner = right.schema().clone();
        let condition = condition
            .transform(|e| match e {
                Expr::Column(c) if left.has_column(&c) && !inner.has_column(&c) => {
                    let field = Arc::clone(left.field_from_column(&c)?);
                    Ok(Transformed::yes(Expr::OuterReferenceColumn(field, c)))
                }
                e => Ok(Transformed::no(e)),
            })
            .data()?;
        right = LogicalPlan::Filter(Filter::try_new(condition, Arc::new(right))?);
    }
    let kind = Kind::Lateral { outer: join.join_type == JoinType::Left };
    let apply = Apply::new(join.left.as_ref().clone(), Arc::new(right), kind, None)?;
    Ok(Transformed::yes(LogicalPlan::Extension(Extension { node: Arc::new(apply) })))
}

/// The columns of `schema` that `subquery` reads as outer references (in it or in subqueries
/// nested in it, [`Apply`] nodes' included), with their positions in `schema`.
fn outer_columns(subquery: &LogicalPlan, schema: &DFSchema) -> Vec<(Column, usize)> {
    let mut found: Vec<(Column, usize)> = Vec::new();
    visit_outer_references(subquery, &mut |c: &Column| {
        if let Some(i) = schema.maybe_index_of_column(c) {
            if !found.iter().any(|(f, _)| f == c) {
                found.push((c.clone(), i));
            }
        }
    });
    found
}

fn visit_outer_references(plan: &LogicalPlan, f: &mut dyn FnMut(&Column)) {
    let _ = plan.apply_with_subqueries(|p| {
        if let Some(apply) = as_apply(p) {
            visit_outer_references(&apply.subquery, f);
        }
        p.apply_expressions(|e| {
            e.apply(|e| {
                if let Expr::OuterReferenceColumn(_, c) = e {
                    f(c);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
}

fn as_apply(plan: &LogicalPlan) -> Option<&Apply> {
    match plan {
        LogicalPlan::Extension(Extension { node }) => node.as_any().downcast_ref::<Apply>(),
        _ => None,
    }
}

/// `plan` with the outer references to the columns of `values` replaced by those values (and
/// no longer listed as its subqueries' outer references).
fn bind(plan: &LogicalPlan, values: &HashMap<Column, ScalarValue>) -> DfResult<LogicalPlan> {
    let unlisted = |mut subquery: Subquery| {
        subquery.outer_ref_columns.retain(|e| !matches!(e, Expr::OuterReferenceColumn(_, c) if values.contains_key(c)));
        subquery
    };
    plan.clone()
        .transform_up_with_subqueries(|p| {
            let p = match as_apply(&p) {
                Some(apply) => {
                    let subquery = Arc::new(bind(&apply.subquery, values)?);
                    let apply = Apply { subquery, ..apply.clone() };
                    LogicalPlan::Extension(Extension { node: Arc::new(apply) })
                }
                None => match p {
                    LogicalPlan::Subquery(subquery) => LogicalPlan::Subquery(unlisted(subquery)),
                    p => p,
                },
            };
            p.map_expressions(|e| {
                e.transform(|e| match e {
                    Expr::OuterReferenceColumn(_, c) if values.contains_key(&c) => {
                        Ok(Transformed::yes(Expr::Literal(values[&c].clone(), None)))
                    }
                    Expr::ScalarSubquery(s) => Ok(Transformed::yes(Expr::ScalarSubquery(unlisted(s)))),
                    Expr::Exists(Exists { subquery, negated }) => {
                        Ok(Transformed::yes(Expr::Exists(Exists { subquery: unlisted(subquery), negated })))
                    }
                    e => Ok(Transformed::no(e)),
                })
            })
        })
        .data()
}

/// The placeholders (`$n`) of `plan`, each once, in order of number: what an [`Apply`] shows
/// as its expressions, so that binding a prepared statement's parameters reaches its subquery.
fn placeholders(plan: &LogicalPlan) -> Vec<Expr> {
    let mut found: Vec<Expr> = Vec::new();
    let _ = plan.apply_with_subqueries(|p| {
        p.apply_expressions(|e| {
            e.apply(|e| {
                if let Expr::Placeholder(p) = e {
                    if !found.iter().any(|f| matches!(f, Expr::Placeholder(q) if q.id == p.id)) {
                        found.push(e.clone());
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    found.sort_by_key(|e| match e {
        Expr::Placeholder(p) => p.id.trim_start_matches('$').parse::<usize>().unwrap_or(usize::MAX),
        _ => usize::MAX,
    });
    found
}

/// Its input's rows, each with what its correlated subquery gives for it ([`Kind`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Apply {
    input: LogicalPlan,
    /// The subquery, reading the input's columns as outer references.
    subquery: Arc<LogicalPlan>,
    kind: Kind,
    /// The input's columns, then the subquery's value (`__subquery_<n>`) or its columns.
    schema: DFSchemaRef,
    name: Option<String>,
}

impl Apply {
    fn new(input: LogicalPlan, subquery: Arc<LogicalPlan>, kind: Kind, name: Option<String>) -> DfResult<Self> {
        let added = match (kind, &name) {
            (Kind::Lateral { outer }, _) => {
                let fields = subquery
                    .schema()
                    .iter()
                    .map(|(q, f)| (q.cloned(), Arc::new(f.as_ref().clone().with_nullable(f.is_nullable() || outer))))
                    .collect();
                DFSchema::new_with_metadata(fields, HashMap::new())?
            }
            (Kind::Scalar, Some(name)) => {
                let fields = subquery.schema().fields();
                if fields.len() != 1 {
                    return Err(to_datafusion(Error::SyntaxError("subquery must return only one column".into())));
                }
                let field = Field::new(name, fields[0].data_type().clone(), true);
                DFSchema::from_unqualified_fields(vec![field].into(), HashMap::new())?
            }
            (Kind::Exists, Some(name)) => {
                let field = Field::new(name, datafusion::arrow::datatypes::DataType::Boolean, false);
                DFSchema::from_unqualified_fields(vec![field].into(), HashMap::new())?
            }
            _ => return Err(DataFusionError::Internal("a subquery's value needs a column name".into())),
        };
        let schema = Arc::new(input.schema().join(&added)?);
        Ok(Self { input, subquery, kind, schema, name })
    }
}

impl PartialOrd for Apply {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        (&self.input, &self.subquery, &self.kind, &self.name)
            .partial_cmp(&(&other.input, &other.subquery, &other.kind, &other.name))
            .filter(|o| *o != Ordering::Equal || self == other)
    }
}

impl UserDefinedLogicalNodeCore for Apply {
    fn name(&self) -> &str {
        "Apply"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        placeholders(&self.subquery)
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let mut outer: Vec<String> = Vec::new();
        visit_outer_references(&self.subquery, &mut |c: &Column| {
            if !outer.contains(&c.flat_name()) {
                outer.push(c.flat_name());
            }
        });
        write!(f, "Apply: {:?} of a subquery per distinct ({})", self.kind, outer.join(", "))
    }

    fn with_exprs_and_inputs(&self, exprs: Vec<Expr>, mut inputs: Vec<LogicalPlan>) -> DfResult<Self> {
        let input = inputs.pop().ok_or_else(|| DataFusionError::Internal("Apply takes one input".into()))?;
        // The placeholders, as bound (or left).
        let bound: HashMap<String, Expr> = placeholders(&self.subquery)
            .into_iter()
            .zip(exprs)
            .filter_map(|(p, e)| match p {
                Expr::Placeholder(p) if !matches!(&e, Expr::Placeholder(q) if q.id == p.id) => Some((p.id, e)),
                _ => None,
            })
            .collect();
        let subquery = if bound.is_empty() {
            Arc::clone(&self.subquery)
        } else {
            let plan = self.subquery.as_ref().clone().transform_up_with_subqueries(|p| {
                p.map_expressions(|e| {
                    e.transform(|e| match &e {
                        Expr::Placeholder(p) if bound.contains_key(&p.id) => Ok(Transformed::yes(bound[&p.id].clone())),
                        _ => Ok(Transformed::no(e)),
                    })
                })
            })?;
            Arc::new(plan.data)
        };
        Apply::new(input, subquery, self.kind, self.name.clone())
    }
}

/// The session's query planner: DataFusion's, with [`Apply`] planned as [`ApplyExec`].
#[derive(Debug)]
pub(crate) struct Planner;

#[async_trait]
impl QueryPlanner for Planner {
    async fn create_physical_plan(
        &self,
        plan: &LogicalPlan,
        session: &dyn datafusion::catalog::Session,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(ApplyPlanner)])
            .create_physical_plan(plan, session)
            .await
    }
}

struct ApplyPlanner;

#[async_trait]
impl ExtensionPlanner for ApplyPlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        session: &dyn datafusion::catalog::Session,
        _context: &datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext,
    ) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
        let Some(apply) = node.as_any().downcast_ref::<Apply>() else {
            return Ok(None);
        };
        let state = session
            .as_any()
            .downcast_ref::<SessionState>()
            .ok_or_else(|| DataFusionError::Internal("Apply is planned in a SessionState".into()))?;
        let (Some(input), Some(logical)) = (physical_inputs.first(), logical_inputs.first()) else {
            return Err(DataFusionError::Internal("Apply takes one input".into()));
        };
        let schema: SchemaRef = Arc::new(apply.schema.as_arrow().clone());
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            input.output_partitioning().clone(),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(Some(Arc::new(ApplyExec {
            input: Arc::clone(input),
            subquery: Arc::clone(&apply.subquery),
            outer: outer_columns(&apply.subquery, logical.schema()),
            kind: apply.kind,
            state: Arc::new(state.clone()),
            schema,
            properties: Arc::new(properties),
        })))
    }
}

/// Runs an [`Apply`]: its input's batches, each row extended by its subquery's outcome.
#[derive(Debug)]
pub(crate) struct ApplyExec {
    input: Arc<dyn ExecutionPlan>,
    subquery: Arc<LogicalPlan>,
    /// The outer references, with their positions in the input's rows.
    outer: Vec<(Column, usize)>,
    kind: Kind,
    /// The statement's session state, to plan the bound subquery in.
    state: Arc<SessionState>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl DisplayAs for ApplyExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let outer: Vec<String> = self.outer.iter().map(|(c, _)| c.flat_name()).collect();
        write!(f, "ApplyExec: {:?} per distinct ({})", self.kind, outer.join(", "))
    }
}

impl ExecutionPlan for ApplyExec {
    fn name(&self) -> &str {
        "ApplyExec"
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
        let input = children.pop().ok_or_else(|| DataFusionError::Internal("ApplyExec takes one input".into()))?;
        Ok(Arc::new(ApplyExec {
            input,
            subquery: Arc::clone(&self.subquery),
            outer: self.outer.clone(),
            kind: self.kind,
            state: Arc::clone(&self.state),
            schema: Arc::clone(&self.schema),
            properties: Arc::clone(&self.properties),
        }))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        let input = self.input.execute(partition, Arc::clone(&context))?;
        let runs = Arc::new(Runs {
            subquery: Arc::clone(&self.subquery),
            outer: self.outer.clone(),
            kind: self.kind,
            state: Arc::clone(&self.state),
            context,
            schema: Arc::clone(&self.schema),
            cache: Mutex::new(HashMap::new()),
        });
        let stream = input.and_then(move |batch| {
            let runs = Arc::clone(&runs);
            async move { runs.extend(batch).await }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(Arc::clone(&self.schema), stream)))
    }
}

/// Outcomes kept per distinct outer tuple, up to this many (then forgotten, and run again).
const CACHED: usize = 10_000;

/// The subquery's runs for one partition's stream, remembered per outer tuple.
struct Runs {
    subquery: Arc<LogicalPlan>,
    outer: Vec<(Column, usize)>,
    kind: Kind,
    state: Arc<SessionState>,
    context: Arc<TaskContext>,
    schema: SchemaRef,
    cache: Mutex<HashMap<Vec<ScalarValue>, Arc<Vec<RecordBatch>>>>,
}

impl Runs {
    /// `batch` with each row's outcome.
    async fn extend(&self, batch: RecordBatch) -> DfResult<RecordBatch> {
        let mut outcomes = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            let key = self
                .outer
                .iter()
                .map(|(_, i)| ScalarValue::try_from_array(batch.column(*i), row))
                .collect::<DfResult<Vec<_>>>()?;
            let cached =
                self.cache.lock().map_err(|_| DataFusionError::Internal("cache poisoned".into()))?.get(&key).cloned();
            let outcome = match cached {
                Some(outcome) => outcome,
                None => {
                    let outcome = Arc::new(self.run(&key).await?);
                    let mut cache =
                        self.cache.lock().map_err(|_| DataFusionError::Internal("cache poisoned".into()))?;
                    if cache.len() >= CACHED {
                        cache.clear();
                    }
                    cache.insert(key, Arc::clone(&outcome));
                    outcome
                }
            };
            outcomes.push(outcome);
        }
        let added = self.schema.fields().len() - batch.num_columns();
        let fields = &self.schema.fields()[batch.num_columns()..];
        let columns: Vec<ArrayRef> = match self.kind {
            Kind::Scalar => {
                let ty = fields[0].data_type();
                let values = outcomes.iter().map(|batches| scalar_value(batches, ty)).collect::<DfResult<Vec<_>>>()?;
                let values = if values.is_empty() { new_empty_array(ty) } else { ScalarValue::iter_to_array(values)? };
                batch.columns().iter().cloned().chain([values]).collect()
            }
            Kind::Exists => {
                let exists: BooleanArray = outcomes.iter().map(|b| Some(b.iter().any(|b| b.num_rows() > 0))).collect();
                batch.columns().iter().cloned().chain([Arc::new(exists) as ArrayRef]).collect()
            }
            Kind::Lateral { outer } => {
                let mut rows: Vec<u32> = Vec::new();
                let mut parts: Vec<Vec<ArrayRef>> = vec![Vec::new(); added];
                for (row, batches) in outcomes.iter().enumerate() {
                    let matched: usize = batches.iter().map(RecordBatch::num_rows).sum();
                    let repeat = if matched == 0 && outer { 1 } else { matched };
                    rows.extend(std::iter::repeat_n(row as u32, repeat));
                    for (i, part) in parts.iter_mut().enumerate() {
                        if matched == 0 && outer {
                            part.push(new_null_array(fields[i].data_type(), 1));
                        }
                        part.extend(batches.iter().map(|b| Arc::clone(b.column(i))));
                    }
                }
                let indices = UInt32Array::from(rows);
                let mut columns =
                    batch.columns().iter().map(|c| take(c, &indices, None)).collect::<Result<Vec<_>, _>>()?;
                for (part, field) in parts.iter().zip(fields) {
                    let refs: Vec<&dyn datafusion::arrow::array::Array> = part.iter().map(|a| a.as_ref()).collect();
                    columns.push(if refs.is_empty() { new_empty_array(field.data_type()) } else { concat(&refs)? });
                }
                columns
            }
        };
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }

    /// The subquery's rows for one outer tuple (a scalar subquery: at most two, enough to
    /// tell one from more; EXISTS: at most one).
    async fn run(&self, key: &[ScalarValue]) -> DfResult<Vec<RecordBatch>> {
        let values = self.outer.iter().map(|(c, _)| c.clone()).zip(key.iter().cloned()).collect();
        let mut plan = bind(&self.subquery, &values)?;
        let limit = match self.kind {
            Kind::Scalar => Some(2),
            Kind::Exists => Some(1),
            Kind::Lateral { .. } => None,
        };
        if let Some(limit) = limit {
            plan = LogicalPlanBuilder::from(plan).limit(0, Some(limit))?.build()?;
        }
        let physical = self.state.create_physical_plan(&plan).await?;
        collect(physical, Arc::clone(&self.context)).await
    }
}

/// A scalar subquery's value from its rows: NULL for none, an error for more than one.
fn scalar_value(batches: &[RecordBatch], ty: &datafusion::arrow::datatypes::DataType) -> DfResult<ScalarValue> {
    let mut rows = batches.iter().flat_map(|b| (0..b.num_rows()).map(move |r| (b, r)));
    let Some((batch, row)) = rows.next() else {
        return ScalarValue::try_from(ty);
    };
    if rows.next().is_some() {
        return Err(to_datafusion(Error::CardinalityViolation(
            "more than one row returned by a subquery used as an expression".into(),
        )));
    }
    let value = ScalarValue::try_from_array(batch.column(0), row)?;
    if value.data_type() == *ty {
        Ok(value)
    } else {
        value.cast_to(ty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, Schema};
    use datafusion::logical_expr::{col, lit, placeholder, table_scan};

    #[test]
    fn parameters_and_outer_values_reach_the_subquery() -> DfResult<()> {
        let schema = Schema::new(vec![Field::new("a", DataType::Int64, true)]);
        let input = table_scan(Some("t"), &schema, None)?.build()?;
        let outer_a = Column::new(Some("t"), "a");
        let outer = Expr::OuterReferenceColumn(Arc::new(Field::new("a", DataType::Int64, true)), outer_a.clone());
        let subquery = table_scan(Some("u"), &schema, None)?
            .filter(col("u.a").lt(outer).and(col("u.a").gt(placeholder("$2"))).and(col("u.a").gt(placeholder("$1"))))?
            .build()?;
        let apply = Apply::new(input.clone(), Arc::new(subquery), Kind::Exists, Some("__subquery_1".into()))?;
        assert_eq!(apply.schema.fields().len(), 2);
        // Parameters show as the node's expressions, in order, and bind into its subquery.
        assert_eq!(UserDefinedLogicalNodeCore::expressions(&apply), vec![placeholder("$1"), placeholder("$2")]);
        let bound =
            UserDefinedLogicalNodeCore::with_exprs_and_inputs(&apply, vec![lit(5i64), lit(6i64)], vec![input.clone()])?;
        assert!(UserDefinedLogicalNodeCore::expressions(&bound).is_empty());
        let text = bound.subquery.display_indent().to_string();
        assert!(text.contains("Int64(5)") && text.contains("Int64(6)"), "{text}");
        // The outer column is found in the input, and a run binds its value.
        assert_eq!(outer_columns(&bound.subquery, input.schema()), vec![(outer_a.clone(), 0)]);
        let run = bind(&bound.subquery, &HashMap::from([(outer_a, ScalarValue::Int64(Some(7)))]))?;
        assert!(outer_columns(&run, input.schema()).is_empty());
        assert!(run.display_indent().to_string().contains("u.a < Int64(7)"));
        Ok(())
    }

    #[test]
    fn a_scalar_subquery_is_one_value_or_null() -> DfResult<()> {
        use datafusion::arrow::array::Int64Array;
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
        let rows = |v: Vec<i64>| RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(v))]);
        assert_eq!(scalar_value(&[], &DataType::Int64)?, ScalarValue::Int64(None));
        assert_eq!(scalar_value(&[rows(vec![])?, rows(vec![4])?], &DataType::Int64)?, ScalarValue::Int64(Some(4)));
        let err = scalar_value(&[rows(vec![4])?, rows(vec![5])?], &DataType::Int64).unwrap_err();
        assert!(matches!(crate::error::from_datafusion(err), Error::CardinalityViolation(_)));
        Ok(())
    }
}
