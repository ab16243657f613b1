//! UPDATE and DELETE: the rows to change as a DataFusion plan, built from the statement's AST
//! the way DataFusion's own SQL planner builds DML plans, but reading what a conditional write
//! needs: a scan of the table with every column (the hidden row id too), the WHERE filter, and
//! for UPDATE the new values after the old row:
//!
//! ```text
//! Projection: <every column>, <new value 1> AS __raftable_set_0, ...
//!   Filter: <WHERE>
//!     [SubqueryAlias: <alias>]
//!       TableScan: <table> (ShardedTable::internal)
//! ```
//!
//! `exec::modify` runs it through the statement's transaction and buffers the changed rows.

use std::sync::Arc;

use datafusion::common::TableReference;
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder};
use datafusion::sql::sqlparser::ast::helpers::attached_token::AttachedToken;
use datafusion::sql::sqlparser::ast::{
    Assignment, AssignmentTarget, CascadeOption, Delete, Expr as AstExpr, FromTable, Ident, ObjectName, SelectItem,
    Statement, TableAlias, TableFactor, TableWithJoins, Truncate, TruncateIdentityOption, Update,
};
use raftable_common::{Error, Result};

use super::context::Tables;
use super::insert::is_default_keyword;
use super::params::{in_exprs, inferred, merge_types, with_type};
use super::returning::Returning;
use super::{Plan, Planned, Planner};
use crate::ast::{column_name, ident};
use crate::cluster::ClusterRef;
use crate::error::from_datafusion;
use crate::scan::{computed_default, Current, ShardedTable};
use crate::table::{Identity, TableDef};

/// An UPDATE or DELETE.
pub(crate) struct ModifyPlan {
    pub def: Arc<TableDef>,
    /// Every column of the rows to change, in table order, then (UPDATE) the new values.
    pub read: LogicalPlan,
    /// UPDATE: the table column of each new value; DELETE: `None`.
    pub sets: Option<Vec<usize>>,
    pub returning: Option<Returning>,
}

impl ModifyPlan {
    /// The command tag's verb.
    pub(crate) fn command(&self) -> &'static str {
        if self.sets.is_some() {
            "UPDATE"
        } else {
            "DELETE"
        }
    }
}

/// Plans an UPDATE.
/// `SET c = DEFAULT`: the column's default (computed, constant or NULL).
fn default_expr(planner: &Planner<'_>, def: &TableDef, i: usize) -> Result<Expr> {
    let column = &def.columns[i];
    match &column.computed {
        Some(computed) => {
            let nextval =
                datafusion::execution::FunctionRegistry::udf(planner.ctx, "nextval").map_err(from_datafusion)?;
            Ok(computed_default(computed, column.ty.arrow(), &nextval))
        }
        None => Ok(Expr::Literal(def.default_value(i)?, None)),
    }
}

pub(crate) async fn plan_update(planner: &Planner<'_>, update: &Update) -> Result<Planned> {
    if update.from.is_some() || !update.table.joins.is_empty() {
        return Err(Error::Unsupported("UPDATE ... FROM is not supported".into()));
    }
    if !update.order_by.is_empty() || update.limit.is_some() {
        return Err(Error::SyntaxError("UPDATE does not take ORDER BY or LIMIT".into()));
    }
    let TableFactor::Table { name, alias, .. } = &update.table.relation else {
        return Err(Error::Unsupported("UPDATE of something other than a table".into()));
    };
    let def = planner.table(name).await?;
    let statement = Statement::Update(update.clone());
    plan_modify(
        planner,
        &statement,
        def,
        alias.as_ref(),
        update.selection.as_ref(),
        Some(&update.assignments),
        update.returning.as_deref(),
    )
    .await
}

/// Plans a DELETE.
pub(crate) async fn plan_delete(planner: &Planner<'_>, delete: &Delete) -> Result<Planned> {
    let tables = match &delete.from {
        FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
    };
    if tables.len() != 1 || !tables[0].joins.is_empty() || delete.using.is_some() || !delete.tables.is_empty() {
        return Err(Error::Unsupported("DELETE from several tables or USING is not supported".into()));
    }
    if !delete.order_by.is_empty() || delete.limit.is_some() {
        return Err(Error::SyntaxError("DELETE does not take ORDER BY or LIMIT".into()));
    }
    let TableFactor::Table { name, alias, .. } = &tables[0].relation else {
        return Err(Error::Unsupported("DELETE from something other than a table".into()));
    };
    let def = planner.table(name).await?;
    let statement = Statement::Delete(delete.clone());
    plan_modify(planner, &statement, def, alias.as_ref(), delete.selection.as_ref(), None, delete.returning.as_deref())
        .await
}

/// Plans a TRUNCATE: each table's rows deleted as by `DELETE FROM t`, all in the statement's
/// transaction (so, as in PostgreSQL, atomic and undone by ROLLBACK). A table named twice is
/// emptied once. With `CASCADE`, the tables whose foreign keys reference one emptied are
/// emptied too (without it, `exec` refuses to empty a table another references).
pub(crate) async fn plan_truncate(planner: &Planner<'_>, truncate: &Truncate) -> Result<Planned> {
    if truncate.partitions.is_some() || truncate.on_cluster.is_some() {
        return Err(Error::unsupported(format!("{truncate}")));
    }
    let mut names: Vec<ObjectName> = truncate.table_names.iter().map(|t| t.name.clone()).collect();
    if matches!(truncate.cascade, Some(CascadeOption::Cascade)) {
        let mut i = 0;
        while i < names.len() {
            let def = planner.table(&names[i]).await?;
            for &id in &def.referenced_by {
                let Some(other) = planner.catalog.by_id(id).await? else { continue };
                let name = ObjectName::from(vec![Ident::with_quote('"', other.name.clone())]);
                if !names.contains(&name) && other.id != def.id {
                    names.push(name);
                }
            }
            i += 1;
        }
    }
    let mut plans: Vec<ModifyPlan> = Vec::new();
    for name in &names {
        let delete = Delete {
            delete_token: AttachedToken::empty(),
            optimizer_hints: Vec::new(),
            tables: Vec::new(),
            from: FromTable::WithFromKeyword(vec![TableWithJoins {
                relation: TableFactor::Table {
                    name: name.clone(),
                    alias: None,
                    args: None,
                    with_hints: Vec::new(),
                    version: None,
                    with_ordinality: false,
                    partitions: Vec::new(),
                    json_path: None,
                    sample: None,
                    index_hints: Vec::new(),
                },
                joins: Vec::new(),
            }]),
            using: None,
            selection: None,
            returning: None,
            output: None,
            order_by: Vec::new(),
            limit: None,
        };
        let (plan, _, _) = plan_delete(planner, &delete).await?;
        let Plan::Modify(plan) = plan else { return Err(Error::Internal("a DELETE planned as something else".into())) };
        if !plans.iter().any(|p| p.def.id == plan.def.id) {
            plans.push(plan);
        }
    }
    let restart_identity = matches!(truncate.identity, Some(TruncateIdentityOption::Restart));
    Ok((Plan::Truncate { tables: plans, restart_identity }, None, Vec::new()))
}

async fn plan_modify(
    planner: &Planner<'_>,
    statement: &Statement,
    def: Arc<TableDef>,
    alias: Option<&TableAlias>,
    selection: Option<&AstExpr>,
    assignments: Option<&[Assignment]>,
    returning: Option<&[SelectItem]>,
) -> Result<Planned> {
    let table = TableReference::bare(def.name.clone());
    let catalog = planner.catalog.clone();
    let current: Current = Arc::new(move |name| catalog.leased(name));
    let internal = ShardedTable::internal(def.clone(), ClusterRef(planner.cluster.clone()), None, current);
    let source = provider_as_source(Arc::new(internal));
    let state = planner.ctx.state();
    let tables = Tables::resolve(&state, statement, vec![(table.clone(), source.clone())]).await?;
    let alias = alias.map(|a| ident(&a.name));

    let mut builder = LogicalPlanBuilder::scan(table, source, None).map_err(from_datafusion)?;
    if let Some(alias) = &alias {
        builder = builder.alias(alias.as_str()).map_err(from_datafusion)?;
    }
    let scanned = builder.schema().clone();
    if let Some(selection) = selection {
        let filter = tables.expr(selection, &scanned)?;
        builder = builder.filter(filter).map_err(from_datafusion)?;
    }
    let mut exprs: Vec<Expr> = scanned.columns().into_iter().map(Expr::Column).collect();
    let mut sets = None;
    if let Some(assignments) = assignments {
        let mut columns = Vec::with_capacity(assignments.len());
        for (j, a) in assignments.iter().enumerate() {
            let AssignmentTarget::ColumnName(col) = &a.target else {
                return Err(Error::Unsupported("UPDATE SET (a, b) = ... is not supported".into()));
            };
            let name = column_name(col);
            let i = def.column(&name)?;
            if !def.columns[i].is_visible() {
                return Err(Error::UndefinedColumn(format!("column \"{name}\" does not exist")));
            }
            let is_default = is_default_keyword(&a.value);
            if def.columns[i].identity == Some(Identity::Always) && !is_default {
                return Err(Error::GeneratedAlways(format!("column \"{name}\" can only be updated to DEFAULT")));
            }
            let value = if is_default { default_expr(planner, &def, i)? } else { tables.expr(&a.value, &scanned)? };
            let value = with_type(value, &def, i);
            exprs.push(value.alias(format!("__raftable_set_{j}")));
            columns.push(i);
        }
        sets = Some(columns);
    }
    let read = builder.project(exprs).map_err(from_datafusion)?.build().map_err(from_datafusion)?;
    let returning = returning.map(|items| Returning::plan(&tables, &def, alias.as_deref(), items)).transpose()?;
    let mut params = inferred(&read)?;
    if let Some(r) = &returning {
        merge_types(&mut params, in_exprs(&r.exprs)?);
    }
    let schema = returning.as_ref().map(|r| r.schema.clone());
    Ok((Plan::Modify(ModifyPlan { def, read, sets, returning }), schema, params))
}
