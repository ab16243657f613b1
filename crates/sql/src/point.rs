//! The fast path of prepared point statements: `SELECT cols FROM t WHERE <every key column> =
//! $n` and `INSERT INTO t (...) VALUES ($1, ...), ($k, ...)` whose values are all parameters, one
//! row or many (plain, `ON CONFLICT DO NOTHING` or an upsert overwriting from `excluded`). They
//! are recognised once, at prepare time, from the statement's shape; each execution then binds
//! the parameters, encodes the keys and goes straight to the shards (one `Get`, or one
//! `ShardWrite` per shard), without DataFusion planning, optimisation or execution. Anything
//! else takes the general path.

use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::scalar::ScalarValue;
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr as AstExpr, GroupByExpr, Insert, Query, SelectItem, SetExpr, TableFactor, Value,
};
use raftable_common::{Error, Result, ShardRead};

use crate::catalog::TableDef;
use crate::ddl::{ident, table_name};
use crate::dml::{self, Conflict};
use crate::encoding::{bucket_of, encode_key_part, row_key, RowDecoder};
use crate::engine::Engine;
use crate::pg_catalog::origin_field;
use crate::types::coerce_scalar;

/// A primary-key lookup.
pub struct PointSelect {
    pub def: Arc<TableDef>,
    /// Table columns returned, in order.
    columns: Vec<usize>,
    /// Per key column (in key order), the parameter index holding its value.
    key_params: Vec<usize>,
    pub schema: SchemaRef,
}

/// An insert of rows whose values are all parameters.
pub struct ParamInsert {
    pub def: Arc<TableDef>,
    /// Per row, per visible column, the parameter index giving its value (None: the default).
    rows: Vec<Vec<Option<usize>>>,
    pub conflict: Conflict,
}

/// `$n` as a 0-based parameter index.
fn placeholder(e: &AstExpr) -> Option<usize> {
    match e {
        AstExpr::Value(v) => match &v.value {
            Value::Placeholder(p) => p.strip_prefix('$')?.parse::<usize>().ok()?.checked_sub(1),
            _ => None,
        },
        _ => None,
    }
}

/// The table named by a query of the point-select shape, if it is one.
pub fn point_select_table(q: &Query) -> Option<String> {
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
    pub fn plan(q: &Query, def: &Arc<TableDef>) -> Option<PointSelect> {
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
            let i = def.column(&ident(id)).ok().filter(|i| !def.columns[*i].hidden)?;
            columns.push(i);
            let field =
                Field::new(alias.unwrap_or_else(|| def.columns[i].name.clone()), def.columns[i].ty.arrow(), true);
            fields.push(origin_field(field, def, i));
        }
        let mut key_params = vec![None; def.pk.len()];
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
                    let pos = def.pk.iter().position(|k| def.columns[*k].name == col)?;
                    if key_params[pos].replace(param).is_some() {
                        return None;
                    }
                }
                AstExpr::Nested(inner) => conjuncts.push(inner),
                _ => return None,
            }
        }
        let key_params = key_params.into_iter().collect::<Option<Vec<_>>>()?;
        let mut distinct = columns.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() != columns.len() {
            return None; // a column returned twice: the general path handles it
        }
        Some(PointSelect { def: def.clone(), columns, key_params, schema: Arc::new(Schema::new(fields)) })
    }

    /// Parameter types: the key columns' types where the key takes them.
    pub fn param_types(&self) -> Vec<(usize, DataType)> {
        self.key_params.iter().enumerate().map(|(k, p)| (*p, self.def.columns[self.def.pk[k]].ty.arrow())).collect()
    }

    pub async fn execute(&self, engine: &Engine, params: &[ScalarValue]) -> Result<RecordBatch> {
        let mut pk = Vec::with_capacity(16);
        for (k, p) in self.key_params.iter().enumerate() {
            let col = &self.def.columns[self.def.pk[k]];
            let value = match coerce_scalar(&col.ty, &col.name, &params[*p]) {
                Ok(v) => v,
                // A value the key column cannot hold (too long, out of range) matches no row.
                Err(Error::StringTooLong(_) | Error::OutOfRange(_)) => {
                    return Ok(RecordBatch::new_empty(self.schema.clone()))
                }
                Err(e) => return Err(e),
            };
            if changed_text(&params[*p], &value) {
                // Coercion rewrote the text (blank-trimmed, canonical uuid): equality on the
                // stored text would not hold.
                return Ok(RecordBatch::new_empty(self.schema.clone()));
            }
            if value.is_null() {
                // `key = NULL` matches nothing.
                return Ok(RecordBatch::new_empty(self.schema.clone()));
            }
            let array = value.to_array().map_err(crate::error::from_datafusion)?;
            encode_key_part(&mut pk, array.as_ref(), 0)?;
        }
        let shard = self.def.shards[bucket_of(&pk, self.def.buckets) as usize];
        let rows = engine.cluster.read(shard, ShardRead::Get { key: row_key(&self.def, &pk) }).await?;
        let mut decoder = RowDecoder::new(&self.def, &self.columns, self.schema.clone());
        for row in &rows {
            decoder.push(&row.value)?;
        }
        decoder.finish()
    }
}

/// The table columns an INSERT lists (all visible ones when it lists none).
pub fn target_columns(insert: &Insert, def: &TableDef) -> Result<Vec<usize>> {
    if insert.columns.is_empty() {
        return Ok(def.visible());
    }
    insert
        .columns
        .iter()
        .map(|c| def.column(&c.0.last().and_then(|p| p.as_ident()).map(ident).unwrap_or_default()))
        .collect()
}

/// Whether coercing text changed it (then the value is not the text the query compares).
pub fn changed_text(before: &ScalarValue, after: &ScalarValue) -> bool {
    match (before, after) {
        (ScalarValue::Utf8(Some(a)), ScalarValue::Utf8(Some(b))) => a != b,
        _ => false,
    }
}

impl ParamInsert {
    /// The plan of `insert` into `def`, if it is rows of parameters without RETURNING.
    pub fn plan(insert: &Insert, def: &Arc<TableDef>, conflict: &Conflict) -> Option<ParamInsert> {
        if insert.returning.is_some() || matches!(conflict, Conflict::Update { .. }) {
            return None;
        }
        let q = insert.source.as_ref()?;
        if q.with.is_some() || q.order_by.is_some() || q.limit_clause.is_some() {
            return None;
        }
        let SetExpr::Values(values) = q.body.as_ref() else { return None };
        let columns = target_columns(insert, def).ok()?;
        if values.rows.is_empty() || columns.iter().any(|c| def.columns[*c].hidden) {
            return None;
        }
        let visible = def.visible();
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

    pub fn param_types(&self) -> Vec<(usize, DataType)> {
        let visible = self.def.visible();
        self.rows
            .iter()
            .flat_map(|row| row.iter().enumerate())
            .filter_map(|(slot, p)| p.map(|p| (p, self.def.columns[visible[slot]].ty.arrow())))
            .collect()
    }

    /// Inserts the rows; returns how many rows were written (skipped conflicts not counted).
    pub async fn execute(&self, engine: &Engine, params: &[ScalarValue]) -> Result<usize> {
        let visible = self.def.visible();
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(visible.len());
        for (slot, &col) in visible.iter().enumerate() {
            // A column the statement leaves out takes its default in every row: coerced once.
            let default =
                self.rows.iter().any(|row| row[slot].is_none()).then(|| self.def.default_value(col)).transpose()?;
            let values = self.rows.iter().map(|row| match row[slot] {
                Some(p) => params[p].clone(),
                None => default.clone().expect("computed when a row lacks the column"),
            });
            arrays.push(column_array(&self.def, col, values.collect())?);
        }
        Ok(dml::insert(engine, &self.def, &arrays, &self.conflict).await?.0)
    }
}

/// One column's values as an array. Parameters arrive decoded to the column's type, so the
/// values share one type; where they do not (a typed NULL of another type, a default), each is
/// first coerced to the column's type by PostgreSQL's rules. `dml::insert` checks the result.
fn column_array(def: &TableDef, col: usize, values: Vec<ScalarValue>) -> Result<ArrayRef> {
    let first = values.first().map(ScalarValue::data_type);
    let values = if values.iter().all(|v| Some(v.data_type()) == first) {
        values
    } else {
        let column = &def.columns[col];
        values.iter().map(|v| coerce_scalar(&column.ty, &column.name, v)).collect::<Result<Vec<_>>>()?
    };
    ScalarValue::iter_to_array(values).map_err(crate::error::from_datafusion)
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::ast::Statement;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;
    use crate::catalog::ColumnDef;
    use crate::types::SqlType;

    fn table() -> Arc<TableDef> {
        let column =
            |name: &str, ty, nullable| ColumnDef { name: name.into(), ty, nullable, default: None, hidden: false };
        Arc::new(TableDef {
            id: 1,
            name: "t".into(),
            columns: vec![column("k", SqlType::BigInt, false), column("v", SqlType::Text, true)],
            pk: vec![0],
            buckets: 2,
            shards: vec![1, 2],
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
