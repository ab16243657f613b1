//! PostgreSQL's meaning for expressions DataFusion plans its own way, as one rewrite of every
//! expression after type coercion: integer `+`, `-`, `*` checked for overflow and fractions
//! rounded when cast to integers (`super::arithmetic`), text cast to a date or timestamp read in PostgreSQL's input forms
//! (`super::datetime`). [`PostgresExprs`] is registered twice in a session's context: as an
//! analyzer rule after DataFusion's type coercion (plans), and as a function rewrite, which
//! `SessionState::create_physical_expr` applies after coercing (expressions raftable compiles
//! outside a plan: ON CONFLICT assignments, RETURNING lists, CHECK constraints).

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::common::DFSchema;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::expr_rewriter::{FunctionRewrite, NamePreserver};
use datafusion::logical_expr::utils::merge_schema;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::optimizer::AnalyzerRule;

use super::{arithmetic, datetime};

/// The rewrite; each expression keeps its output name.
#[derive(Debug, Default)]
pub(crate) struct PostgresExprs;

const NAME: &str = "raftable_postgres_exprs";

impl AnalyzerRule for PostgresExprs {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DfResult<LogicalPlan> {
        each_expression(plan, |e, schema, _| e.transform_up(|e| rewrite(e, schema)))
    }

    fn name(&self) -> &str {
        NAME
    }
}

impl FunctionRewrite for PostgresExprs {
    fn name(&self) -> &str {
        NAME
    }

    fn rewrite(&self, expr: Expr, schema: &DFSchema, _config: &ConfigOptions) -> DfResult<Transformed<Expr>> {
        rewrite(expr, schema)
    }
}

/// `plan` with `f` applied to each expression of each node (subqueries' too) but table
/// scans' (their filters name the source's columns; DataFusion pushes them there later),
/// each output keeping its name. `f` gets the schema the node's expressions read and whether
/// the node is a filter.
pub(crate) fn each_expression(
    plan: LogicalPlan,
    mut f: impl FnMut(Expr, &DFSchema, bool) -> DfResult<Transformed<Expr>>,
) -> DfResult<LogicalPlan> {
    plan.transform_up_with_subqueries(|plan| {
        if matches!(plan, LogicalPlan::TableScan(_)) {
            return Ok(Transformed::no(plan));
        }
        let inputs = plan.inputs();
        let schema = if inputs.is_empty() { plan.schema().as_ref().clone() } else { merge_schema(&inputs) };
        let names = NamePreserver::new(&plan);
        let filter = matches!(plan, LogicalPlan::Filter(_));
        plan.map_expressions(|e| {
            let saved = names.save(&e);
            Ok(f(e, &schema, filter)?.update_data(|e| saved.restore(e)))
        })
    })
    .data()
}

/// One expression node (its operands are visited by the caller).
pub(crate) fn rewrite(expr: Expr, schema: &DFSchema) -> DfResult<Transformed<Expr>> {
    arithmetic::checked(expr, schema)?
        .transform_data(|e| arithmetic::rounded_cast(e, schema))?
        .transform_data(|e| datetime::text_cast(e, schema))
}
