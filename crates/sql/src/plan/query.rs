//! Queries (SELECT, VALUES, EXPLAIN): a prepared point select where the shape allows
//! (`super::point`), else a DataFusion logical plan, optimised once at prepare where every
//! execution may reuse the optimised plan, with the result columns described as PostgreSQL
//! names and types them (`crate::columns`) and marked with the table column they come from.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Column, TableReference};
use datafusion::execution::SessionState;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{Query, Statement};
use raftable_common::Result;

use super::functions::async_values;
use super::params::{immutable, inferred};
use super::point::{point_select_table, PointSelect};
use super::{Plan, Planned, Planner};
use crate::catalog::{Catalog, PUBLIC};
use crate::columns::{origin_field, with_distinct_names, Columns};
use crate::error::from_datafusion;
use crate::offload::{blocking, planning};
use crate::table::TableDef;

/// A query planned by DataFusion.
pub(crate) struct QueryPlan {
    pub plan: LogicalPlan,
    /// The plan through DataFusion's analyzer and logical optimizer once, placeholders still
    /// in it, with the parameter types: each execution binds the values into it and plans it
    /// physically, without optimizing again. `None` where that is not safe (see
    /// [`optimize_once`]): then every execution optimizes `plan` with its values.
    pub optimized: Option<(LogicalPlan, Vec<DataType>)>,
    /// The result columns' PostgreSQL names and types, where DataFusion's differ.
    pub columns: Option<Arc<Columns>>,
    pub command: &'static str,
}

/// Plans a SELECT, VALUES or EXPLAIN statement.
pub(crate) async fn plan(planner: &Planner<'_>, stmt: &Statement) -> Result<Planned> {
    if let Statement::Query(q) = stmt {
        if let Some(point) = point_select(planner, q).await {
            let schema = point.schema.clone();
            let params = super::params::typed(point.param_types());
            return Ok((Plan::PointSelect(point), Some(schema), params));
        }
    }
    let state = planner.ctx.state();
    let plan = statement_plan(&state, stmt).await?;
    let plan = async_values(plan)?;
    let params = inferred(&plan)?;
    let optimized = match stmt {
        Statement::Query(_) => optimize_once(planner, &plan),
        _ => None,
    };
    let schema = described(planner, &plan, optimized.as_ref().map(|(p, _)| p));
    let mut schema = with_origins(&plan, schema, planner.catalog);
    let (command, columns) = match stmt {
        Statement::Query(q) => ("SELECT", Columns::of(q, &schema).map(Arc::new)),
        _ => ("EXPLAIN", None),
    };
    if let Some(columns) = &columns {
        schema = columns.schema();
    }
    Ok((Plan::Query(QueryPlan { plan, optimized, columns, command }), Some(schema), params))
}

/// DataFusion's plan of `stmt`; a query naming two outputs alike (which DataFusion refuses: as
/// duplicates, or as ambiguous for `c.id` and a subquery's `id`) planned with them renamed
/// ([`with_distinct_names`]: those named alike, else every one; [`Columns`] names them back).
pub(crate) async fn statement_plan(state: &SessionState, stmt: &Statement) -> Result<LogicalPlan> {
    let plan = |stmt: Statement| planning(state.statement_to_plan(DfStatement::Statement(Box::new(stmt))));
    match (plan(stmt.clone()).await, stmt) {
        (Err(e), Statement::Query(q))
            if ["require unique expression names", "which would be ambiguous"]
                .iter()
                .any(|m| e.to_string().contains(m)) =>
        {
            let mut last = e;
            for every in [false, true] {
                let Some(distinct) = with_distinct_names(q, every) else { continue };
                match plan(Statement::Query(Box::new(distinct))).await {
                    Ok(planned) => return Ok(planned),
                    Err(e) => last = e,
                }
            }
            Err(from_datafusion(last))
        }
        (planned, _) => planned.map_err(from_datafusion),
    }
}

/// The point-select plan of `q`, if it has that shape on an existing table.
async fn point_select(planner: &Planner<'_>, q: &Query) -> Option<PointSelect> {
    let name = point_select_table(q)?;
    let def = planner.catalog.get(&name).await.ok()??;
    PointSelect::plan(q, &def)
}

/// The columns `plan` returns as execution produces them: names from the plan, types after
/// DataFusion's analyzer (type coercion), where the plan as built may still give a UNION its
/// left branch's types (`SELECT 1 UNION ALL SELECT 2.5` is numeric, not bigint: described as
/// bigint, binary-format clients read the numeric's bytes as an int8). `optimized` (the plan
/// through analyzer and optimizer already, which keep its output) spares a second analysis;
/// the plan's own types where the analyzer cannot run before parameters are bound.
fn described(planner: &Planner<'_>, plan: &LogicalPlan, optimized: Option<&LogicalPlan>) -> SchemaRef {
    let planned = plan.schema().as_arrow().clone();
    let analyzed_here;
    let analyzed = match optimized {
        Some(optimized) => optimized,
        None => {
            let state = planner.ctx.state();
            match state.analyzer().execute_and_check(plan.clone(), state.config_options(), |_, _| {}) {
                Ok(analyzed) => analyzed_here = analyzed,
                Err(_) => return Arc::new(planned),
            }
            &analyzed_here
        }
    };
    let types = analyzed.schema().as_arrow().fields().iter().map(|f| f.data_type().clone()).collect::<Vec<_>>();
    if types.len() != planned.fields().len() {
        return Arc::new(planned);
    }
    let fields = planned
        .fields()
        .iter()
        .zip(types)
        .map(|(f, ty)| if ty == DataType::Null { f.as_ref().clone() } else { f.as_ref().clone().with_data_type(ty) })
        .collect::<Vec<_>>();
    Arc::new(Schema::new_with_metadata(fields, planned.metadata().clone()))
}

/// `plan` through the analyzer and optimizer, with its parameter types, if the optimized
/// plan may be reused by every execution. Not when:
/// - the plan calls a function that is not immutable (the optimizer folds `now()` into the
///   time it runs);
/// - a parameter's type is unknown anywhere it is used (`LIMIT $1`, planned without a type,
///   or `$1` compared with a column and also tested with `IS NULL`): the analyzer coerced the
///   plan around the placeholder's type, and a value bound later is not coerced again;
/// - the optimizer fails on the placeholders.
fn optimize_once(planner: &Planner<'_>, plan: &LogicalPlan) -> Option<(LogicalPlan, Vec<DataType>)> {
    if !immutable(plan) {
        return None;
    }
    let types = inferred(plan).ok()?;
    if types.contains(&DataType::Null) {
        return None;
    }
    let optimized = blocking(|| planner.ctx.state().optimize(plan)).ok()?;
    Some((optimized, types))
}

/// `schema` (the output of `plan`) with its columns that are a user table's column marked
/// with their origin: a column (or an alias of one) of the top projection, else an output
/// field, qualified by a scanned table or by an alias of one. A name that is also an alias of
/// anything else (a subquery or CTE named like a table) marks nothing.
pub(crate) fn with_origins(plan: &LogicalPlan, schema: SchemaRef, catalog: &Catalog) -> SchemaRef {
    let mut tables: HashMap<TableReference, Arc<TableDef>> = HashMap::new();
    let mut shadowed: Vec<TableReference> = Vec::new();
    let user_table = |name: &TableReference| match name.schema() {
        None | Some(PUBLIC) => catalog.cached(name.table()),
        Some(_) => None,
    };
    let _ = plan.apply_with_subqueries(|node| {
        match node {
            LogicalPlan::TableScan(scan) => {
                if let Some(def) = user_table(&scan.table_name) {
                    tables.insert(scan.table_name.clone(), def);
                }
            }
            LogicalPlan::SubqueryAlias(a) => match a.input.as_ref() {
                LogicalPlan::TableScan(scan) if user_table(&scan.table_name).is_some() => {
                    tables.extend(user_table(&scan.table_name).map(|def| (a.alias.clone(), def)));
                }
                _ => shadowed.push(a.alias.clone()),
            },
            _ => {}
        }
        Ok(TreeNodeRecursion::Continue)
    });
    for name in &shadowed {
        tables.remove(name);
    }
    if tables.is_empty() {
        return schema;
    }
    let dfschema = plan.schema();
    let mut marked = false;
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, field)| {
            let field = field.as_ref().clone();
            let source = projected_column(plan, i).or_else(|| {
                let (qualifier, planned) = (i < dfschema.fields().len()).then(|| dfschema.qualified_field(i))?;
                Some(Column::new(qualifier.cloned(), planned.name()))
            });
            let def = source.as_ref().and_then(|c| c.relation.as_ref()).and_then(|q| tables.get(q));
            match def.zip(source.as_ref()).and_then(|(d, c)| d.column(&c.name).ok().map(|i| (d, i))) {
                Some((def, column)) => {
                    marked = true;
                    origin_field(field, def, column)
                }
                None => field,
            }
        })
        .collect();
    if marked {
        Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
    } else {
        schema
    }
}

/// The column output `i` of the top projection of `plan` is, or an alias of (through a sort or
/// limit above it).
fn projected_column(plan: &LogicalPlan, i: usize) -> Option<Column> {
    match plan {
        LogicalPlan::Projection(p) => match p.expr.get(i)? {
            Expr::Column(c) => Some(c.clone()),
            Expr::Alias(a) => match a.expr.as_ref() {
                Expr::Column(c) => Some(c.clone()),
                _ => None,
            },
            _ => None,
        },
        LogicalPlan::Sort(s) => projected_column(&s.input, i),
        LogicalPlan::Limit(l) => projected_column(&l.input, i),
        _ => None,
    }
}
