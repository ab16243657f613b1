//! The fast path of prepared point statements: `SELECT cols FROM t WHERE <every key column> =
//! $n` (the primary key's, or a unique index's) and `INSERT INTO t (...) VALUES ($1, ...), ($k, ...)` whose values are all parameters, one
//! row or many (plain, `ON CONFLICT DO NOTHING` or an upsert overwriting from `excluded`). They
//! are recognised here once, at prepare time, from the statement's shape; each execution
//! (`exec::point`) then binds the parameters, encodes the keys and goes straight to the shards
//! (one `Get`, or one `ShardWrite` per shard), without DataFusion planning, optimisation or
//! execution. Anything else takes the general path.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr as AstExpr, GroupByExpr, Insert, Query, SelectItem, SetExpr, TableFactor,
};
use raftable_common::Result;

use super::Conflict;
use crate::ast::{column_name, ident, param_number, table_name};
use crate::columns::origin_field;
use crate::table::{IndexDef, IndexState, TableDef};

/// A lookup by the primary key, or by every column of a public unique index (`via`).
pub(crate) struct PointSelect {
    pub def: Arc<TableDef>,
    /// Table columns returned, in order.
    pub columns: Vec<usize>,
    /// Per key column (in key order), the parameter index holding its value.
    pub key_params: Vec<usize>,
    /// The unique index looked up (None: the primary key).
    pub via: Option<IndexDef>,
    pub schema: SchemaRef,
}

/// An insert of rows whose values are all parameters.
pub(crate) struct ParamInsert {
    pub def: Arc<TableDef>,
    /// Per row, per visible column, the parameter index giving its value (None: the default).
    pub rows: Vec<Vec<Option<usize>>>,
    pub conflict: Conflict,
}

/// `$n` as a 0-based parameter index.
fn placeholder(e: &AstExpr) -> Option<usize> {
    param_number(e).map(|n| n - 1)
}

/// The table named by a query of the point-select shape, if it is one.
pub(crate) fn point_select_table(q: &Query) -> Option<String> {
    if q.with.is_some() || q.order_by.is_some() || q.limit_clause.is_some() || q.fetch.is_some() {
        return None;
    }
    let SetExpr::Select(s) = q.body.as_ref() else { return None };
    let plain_group = matches!(&s.group_by, GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty());
    if s.distinct.is_some() || !plain_group || s.having.is_some() || s.from.len() != 1 || !s.from[0].joins.is_empty() {
        return None;
    }
    match &s.from[0].relation {
        TableFactor::Table { name, alias: None, args: None, .. } => table_name(name).ok(),
        _ => None,
    }
}

impl PointSelect {
    /// The plan of `q` against `def`, if `q` is a point select on it.
    pub(crate) fn plan(q: &Query, def: &Arc<TableDef>) -> Option<PointSelect> {
        let SetExpr::Select(s) = q.body.as_ref() else { return None };
        let mut columns = Vec::new();
        let mut fields = Vec::new();
        for item in &s.projection {
            let (id, alias) = match item {
                SelectItem::Wildcard(_) => {
                    for i in def.visible() {
                        columns.push(i);
                        let field = Field::new(&def.columns[i].name, def.columns[i].ty.arrow(), true);
                        fields.push(origin_field(field, def, i));
                    }
                    continue;
                }
                SelectItem::UnnamedExpr(AstExpr::Identifier(id)) => (id, None),
                SelectItem::ExprWithAlias { expr: AstExpr::Identifier(id), alias } => (id, Some(ident(alias))),
                _ => return None,
            };
            let i = def.column(&ident(id)).ok().filter(|i| def.columns[*i].is_visible())?;
            columns.push(i);
            let field =
                Field::new(alias.unwrap_or_else(|| def.columns[i].name.clone()), def.columns[i].ty.arrow(), true);
            fields.push(origin_field(field, def, i));
        }
        // column → parameter, for each `column = $n`.
        let mut equal: Vec<(usize, usize)> = Vec::new();
        let mut conjuncts = vec![s.selection.as_ref()?];
        while let Some(e) = conjuncts.pop() {
            match e {
                AstExpr::BinaryOp { left, op: BinaryOperator::And, right } => {
                    conjuncts.push(left);
                    conjuncts.push(right);
                }
                AstExpr::BinaryOp { left, op: BinaryOperator::Eq, right } => {
                    let (col, param) = match (left.as_ref(), right.as_ref()) {
                        (AstExpr::Identifier(id), p) | (p, AstExpr::Identifier(id)) => (ident(id), placeholder(p)?),
                        _ => return None,
                    };
                    let i = def.column(&col).ok().filter(|i| def.columns[*i].is_visible() || def.pk.contains(i))?;
                    if equal.iter().any(|(c, _)| *c == i) {
                        return None;
                    }
                    equal.push((i, param));
                }
                AstExpr::Nested(inner) => conjuncts.push(inner),
                _ => return None,
            }
        }
        // The primary key if the equalities name exactly its columns, else a unique index's.
        let names_exactly =
            |key: &[usize]| key.len() == equal.len() && key.iter().all(|k| equal.iter().any(|(c, _)| c == k));
        let via = match names_exactly(&def.pk) {
            true => None,
            false => Some(
                def.indexes
                    .iter()
                    .find(|i| i.unique && i.state == IndexState::Public && names_exactly(&i.columns))?
                    .clone(),
            ),
        };
        let key = via.as_ref().map_or(&def.pk, |i| &i.columns);
        let key_params =
            key.iter().map(|k| equal.iter().find(|(c, _)| c == k).map(|(_, p)| *p)).collect::<Option<Vec<_>>>()?;
        let mut distinct = columns.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() != columns.len() {
            return None; // a column returned twice: the general path handles it
        }
        Some(PointSelect { def: def.clone(), columns, key_params, via, schema: Arc::new(Schema::new(fields)) })
    }

    /// Parameter types: the key columns' types where the key takes them.
    pub(crate) fn param_types(&self) -> Vec<(usize, DataType)> {
        let key = self.via.as_ref().map_or(&self.def.pk, |i| &i.columns);
        self.key_params.iter().zip(key).map(|(p, c)| (*p, self.def.columns[*c].ty.arrow())).collect()
    }
}

/// The table columns an INSERT lists (all visible ones when it lists none).
pub(crate) fn target_columns(insert: &Insert, def: &TableDef) -> Result<Vec<usize>> {
    if insert.columns.is_empty() {
        return Ok(def.visible());
    }
    insert.columns.iter().map(|c| def.column(&column_name(c))).collect()
}

impl ParamInsert {
    /// The plan of `insert` into `def`, if it is rows of parameters without RETURNING.
    pub(crate) fn plan(insert: &Insert, def: &Arc<TableDef>, conflict: &Conflict) -> Option<ParamInsert> {
        if insert.returning.is_some() || matches!(conflict, Conflict::Update { .. }) {
            return None;
        }
        let q = insert.source.as_ref()?;
        if q.with.is_some() || q.order_by.is_some() || q.limit_clause.is_some() {
            return None;
        }
        let SetExpr::Values(values) = q.body.as_ref() else { return None };
        let columns = target_columns(insert, def).ok()?;
        if values.rows.is_empty() || columns.iter().any(|c| !def.columns[*c].is_visible()) {
            return None;
        }
        let visible = def.visible();
        // A column left out whose default is computed per row (a sequence, the time) takes the
        // DataFusion path, which calls it.
        if visible.iter().any(|v| !columns.contains(v) && def.columns[*v].computed.is_some()) {
            return None;
        }
        let slots = columns.iter().map(|col| visible.iter().position(|v| v == col)).collect::<Option<Vec<_>>>()?;
        let mut rows = Vec::with_capacity(values.rows.len());
        for row in &values.rows {
            if row.len() != columns.len() {
                return None;
            }
            let mut params = vec![None; visible.len()];
            for (slot, e) in slots.iter().zip(row.iter()) {
                if params[*slot].replace(placeholder(e)?).is_some() {
                    return None;
                }
            }
            rows.push(params);
        }
        Some(ParamInsert { def: def.clone(), rows, conflict: conflict.clone() })
    }

    pub(crate) fn param_types(&self) -> Vec<(usize, DataType)> {
        let visible = self.def.visible();
        self.rows
            .iter()
            .flat_map(|row| row.iter().enumerate())
            .filter_map(|(slot, p)| p.map(|p| (p, self.def.columns[visible[slot]].ty.arrow())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::ast::Statement;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;
    use crate::table::ColumnDef;
    use crate::types::SqlType;

    fn table() -> Arc<TableDef> {
        let column = |name: &str, ty, nullable| ColumnDef::new(name, ty, nullable);
        Arc::new(TableDef {
            id: 1,
            name: "t".into(),
            columns: vec![column("k", SqlType::BigInt, false), column("v", SqlType::Text, true)],
            pk: vec![0],
            buckets: 2,
            shards: vec![1, 2],
            checks: Vec::new(),
            indexes: Vec::new(),
            foreign_keys: Vec::new(),
            referenced_by: Vec::new(),
            version: 0,
            comment: None,
        })
    }

    fn insert_plan(sql: &str) -> Option<ParamInsert> {
        let stmt = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap().remove(0);
        let Statement::Insert(insert) = stmt else { panic!("not an insert: {sql}") };
        ParamInsert::plan(&insert, &table(), &Conflict::Fail)
    }

    #[test]
    fn rows_of_parameters_take_the_fast_path() {
        let plan = insert_plan("INSERT INTO t (v, k) VALUES ($2, $1), ($4, $3)").expect("fast path");
        assert_eq!(plan.rows, vec![vec![Some(0), Some(1)], vec![Some(2), Some(3)]]);
        let types = plan.param_types();
        assert_eq!(types.iter().filter(|(_, t)| *t == DataType::Int64).map(|(p, _)| *p).collect::<Vec<_>>(), [0, 2]);
        // A column left out takes its default.
        let plan = insert_plan("INSERT INTO t (k) VALUES ($1), ($2), ($3)").expect("fast path");
        assert_eq!(plan.rows, vec![vec![Some(0), None], vec![Some(1), None], vec![Some(2), None]]);
    }

    #[test]
    fn anything_but_parameters_takes_the_general_path() {
        for sql in [
            "INSERT INTO t VALUES ($1, $2), (3, $4)",
            "INSERT INTO t VALUES ($1, $2), ($3)",
            "INSERT INTO t VALUES ($1, $2::text)",
            "INSERT INTO t (k, k) VALUES ($1, $2)",
            "INSERT INTO t VALUES ($1, $2) RETURNING k",
            "INSERT INTO t SELECT $1, $2",
        ] {
            assert!(insert_plan(sql).is_none(), "{sql}");
        }
    }
}
