//! Result columns named and typed the way PostgreSQL does: the RowDescription of a query.
//!
//! Sits between planning ([`crate::Session::prepare`]) and the wire (`server::pgwire`).
//! DataFusion names an output column after its whole expression (`count(*)`, `Int64(1)`) and
//! types every integer literal as BIGINT; PostgreSQL names it after the column or function
//! (`count`), a cast's type (`int4`) or `?column?`, and types an integer literal that fits as
//! int4. Drivers build rows from those names (node-postgres objects, psycopg dict rows) and pick
//! value types from the OIDs (node-postgres hands an int8 over as a string), so [`Columns`]
//! renames the outputs of a query's first select list as PostgreSQL's `FigureColname` does and
//! sends its integer literals as int4. DataFusion's plan is untouched: PostgreSQL allows two
//! outputs with one name (`SELECT 1, 2`), DataFusion's projections do not.

use std::sync::Arc;

use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::sql::sqlparser::ast::{
    visit_expressions_mut, AccessExpr, CeilFloorKind, DataType as SqlType, Expr, Ident, ObjectName, Query, SelectItem,
    SetExpr, UnaryOperator, Value,
};
use futures::StreamExt;

use crate::ast::ident;
use crate::table::TableDef;

/// How a query's result columns differ from DataFusion's: their names, and the columns sent as
/// another type (an integer literal as int4).
#[derive(Debug)]
pub(crate) struct Columns {
    schema: SchemaRef,
    casts: Vec<Option<DataType>>,
}

impl Columns {
    /// The PostgreSQL columns of `query`, planned by DataFusion as `planned`; `None` when they
    /// are DataFusion's already (or the select list cannot be matched to the outputs).
    pub(crate) fn of(query: &Query, planned: &Schema) -> Option<Columns> {
        let (items, plain) = first_select(&query.body)?;
        let wildcards =
            items.iter().filter(|i| matches!(i, SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..))).count();
        let n = planned.fields().len();
        // A wildcard stands for the outputs the other items leave; with more than one, which
        // output belongs to which item is not known here.
        if wildcards > 1 || (wildcards == 0 && items.len() != n) || items.len() - wildcards > n {
            return None;
        }
        let star = n - (items.len() - wildcards);
        let mut fields = Vec::with_capacity(n);
        let mut casts = Vec::with_capacity(n);
        for item in items {
            let (name, expr) = match item {
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                    for f in &planned.fields()[fields.len()..fields.len() + star] {
                        fields.push(f.as_ref().clone());
                        casts.push(None);
                    }
                    continue;
                }
                SelectItem::UnnamedExpr(e) => (output_name(e), e),
                SelectItem::ExprWithAlias { expr, alias } => (ident(alias), expr),
                SelectItem::ExprWithAliases { .. } => return None,
            };
            let field = &planned.fields()[fields.len()];
            // In a plain select list a literal's column holds that literal only, so it fits.
            let int4 = plain && field.data_type() == &DataType::Int64 && int4_literal(expr);
            let ty = if int4 { DataType::Int32 } else { field.data_type().clone() };
            casts.push(int4.then_some(DataType::Int32));
            fields.push(Field::new(name, ty, field.is_nullable()).with_metadata(field.metadata().clone()));
        }
        let changed = casts.iter().any(Option::is_some)
            || fields.iter().zip(planned.fields().iter()).any(|(a, b)| a.name() != b.name());
        changed.then(|| Columns { schema: Arc::new(Schema::new(fields)), casts })
    }

    /// The columns to describe to the client.
    pub(crate) fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// `stream`'s batches with these columns.
    pub(crate) fn apply(self: &Arc<Self>, stream: SendableRecordBatchStream) -> SendableRecordBatchStream {
        let columns = self.clone();
        let batches = stream.map(move |batch| columns.batch(batch?));
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), batches))
    }

    /// `batch` renamed and cast. Each field keeps the type and nullability of what execution
    /// produced, which the plan described at prepare may not know yet (an untyped parameter in
    /// the select list, a UNION's branches before coercion, a scalar subquery finding no row
    /// for a NOT NULL column).
    fn batch(&self, batch: RecordBatch) -> datafusion::error::Result<RecordBatch> {
        let mut arrays = batch.columns().to_vec();
        let mut fields = Vec::with_capacity(arrays.len());
        for (i, array) in arrays.iter_mut().enumerate() {
            if let Some(Some(to)) = self.casts.get(i) {
                *array = cast(array, to)?;
            }
            let field = match self.schema.fields().get(i) {
                Some(f) => Field::new(f.name(), array.data_type().clone(), true).with_metadata(f.metadata().clone()),
                None => Field::new(batch.schema().field(i).name(), array.data_type().clone(), true),
            };
            fields.push(field);
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
            .map_err(|e| DataFusionError::ArrowError(Box::new(e), None))
    }
}

/// `query` with a select list DataFusion plans when it names two outputs alike (`SELECT k, k`,
/// `SELECT 1, 1`, `SELECT *, k`): every later output of a name already given, and with a
/// wildcard every plain column, aliased to a name of its own. PostgreSQL allows the duplicates;
/// [`Columns::of`] the original query then names the outputs as PostgreSQL does. In each
/// select of the query's body (a UNION's branches too), not in subqueries; `None` if nothing
/// changed. With `every`, every unnamed output but a select's first is renamed: for names
/// DataFusion gives alike to outputs written differently (it drops a window's constant
/// `PARTITION BY false`).
pub(crate) fn with_distinct_names(query: &Query, every: bool) -> Option<Query> {
    fn distinct(body: &mut SetExpr, every: bool, changed: &mut bool) {
        match body {
            SetExpr::Select(select) => {
                let wildcard = select
                    .projection
                    .iter()
                    .any(|i| matches!(i, SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)));
                let mut seen = std::collections::HashSet::new();
                for (i, item) in select.projection.iter_mut().enumerate() {
                    let (key, expr) = match item {
                        SelectItem::UnnamedExpr(e @ (Expr::Identifier(_) | Expr::CompoundIdentifier(_)))
                            if wildcard =>
                        {
                            (None, e.clone())
                        }
                        SelectItem::UnnamedExpr(e) if every && i > 0 => (None, e.clone()),
                        SelectItem::UnnamedExpr(e) => (Some(unaliased_key(e)), e.clone()),
                        SelectItem::ExprWithAlias { expr, alias } => (Some(ident(alias)), expr.clone()),
                        _ => continue,
                    };
                    if key.is_some_and(|k| seen.insert(k)) {
                        continue;
                    }
                    let alias = Ident::with_quote('"', format!("__raftable_output_{i}"));
                    *item = SelectItem::ExprWithAlias { expr, alias };
                    *changed = true;
                }
            }
            SetExpr::Query(q) => distinct(&mut q.body, every, changed),
            SetExpr::SetOperation { left, right, .. } => {
                distinct(left, every, changed);
                distinct(right, every, changed);
            }
            _ => {}
        }
    }
    let mut query = query.clone();
    let mut changed = false;
    distinct(&mut query.body, every, &mut changed);
    changed.then_some(query)
}

/// What DataFusion's name of an unaliased output is taken to be: a column's own name (`k` and
/// `t.k` may be one column), a scalar subquery's output's, else the expression without its casts (DataFusion names a cast
/// after its operand: `f('x'::date)`, `f(DATE 'x')` and `f('x')` are one name).
fn unaliased_key(e: &Expr) -> String {
    match e {
        Expr::Identifier(i) => ident(i),
        Expr::CompoundIdentifier(parts) => parts.last().map(ident).unwrap_or_default(),
        Expr::Cast { expr, .. } => unaliased_key(expr),
        // A scalar subquery is named after its one output (`(SELECT o.id ...)` is `id`).
        Expr::Subquery(q) => match q.body.as_ref() {
            SetExpr::Select(select) => match select.projection.as_slice() {
                [SelectItem::UnnamedExpr(e)] => unaliased_key(e),
                [SelectItem::ExprWithAlias { alias, .. }] => ident(alias),
                _ => e.to_string(),
            },
            _ => e.to_string(),
        },
        other => {
            let mut e = other.clone();
            let _ = visit_expressions_mut(&mut e, |x| {
                match x {
                    Expr::Cast { expr, .. } => *x = std::mem::replace(expr.as_mut(), Expr::value(Value::Null)),
                    Expr::TypedString(typed) => *x = Expr::Value(typed.value.clone()),
                    _ => {}
                }
                std::ops::ControlFlow::<()>::Continue(())
            });
            e.to_string()
        }
    }
}

/// Field metadata of a result column that is a table's column: `<table OID>.<attnum>`, which
/// `server::pgwire` sends in RowDescription (pgJDBC looks the column up by them).
const ORIGIN: &str = "raftable.origin";

/// `field` marked as column `column` of `def` (for RowDescription).
pub(crate) fn origin_field(field: Field, def: &TableDef, column: usize) -> Field {
    match def.attnum(column) {
        Some(n) => {
            let mut metadata = field.metadata().clone();
            metadata.insert(ORIGIN.to_string(), format!("{}.{n}", def.oid()));
            field.with_metadata(metadata)
        }
        None => field,
    }
}

/// Field metadata of a column of one of PostgreSQL's vector types (`int2vector`, `oidvector`):
/// a list in Arrow, so `unnest` reads it, but described and sent as PostgreSQL sends the type
/// (elements separated by spaces), which drivers hand over as text (SQLAlchemy splits it).
const VECTOR: &str = "raftable.vector";

/// `field` (a list column) marked as of the vector type `type_name`.
pub(crate) fn vector_field(field: Field, type_name: &str) -> Field {
    let mut metadata = field.metadata().clone();
    metadata.insert(VECTOR.to_string(), type_name.to_string());
    field.with_metadata(metadata)
}

/// The vector type (`int2vector`, `oidvector`) a result field was marked with, if any.
pub fn vector_type(field: &Field) -> Option<&str> {
    field.metadata().get(VECTOR).map(String::as_str)
}

/// The table OID and column number a result field was marked with, if any.
pub fn origin(field: &Field) -> Option<(i32, i16)> {
    let (table, column) = field.metadata().get(ORIGIN)?.split_once('.')?;
    Some((table.parse().ok()?, column.parse().ok()?))
}

/// The name PostgreSQL gives an output expression without an alias (`?column?` when nothing
/// names it).
pub(crate) fn output_name(expr: &Expr) -> String {
    name(expr).map_or_else(|| "?column?".to_string(), |(n, _)| n)
}

/// The select list that names a query's outputs (a set operation's first branch), and whether
/// it is the query's only one (no set operation, so its outputs hold its own values only).
fn first_select(body: &SetExpr) -> Option<(&[SelectItem], bool)> {
    match body {
        SetExpr::Select(s) => Some((&s.projection, true)),
        SetExpr::Query(q) => first_select(&q.body).map(|(items, _)| (items, false)),
        SetExpr::SetOperation { left, .. } => first_select(left).map(|(items, _)| (items, false)),
        _ => None,
    }
}

/// An integer literal PostgreSQL types as int4 (`1`, `-5`; not `3000000000`).
fn int4_literal(expr: &Expr) -> bool {
    match expr {
        Expr::Value(v) => matches!(&v.value, Value::Number(n, _) if n.parse::<i32>().is_ok()),
        Expr::UnaryOp { op: UnaryOperator::Minus, expr } => {
            matches!(expr.as_ref(), Expr::Value(v) if matches!(&v.value, Value::Number(n, _)
                if format!("-{n}").parse::<i32>().is_ok()))
        }
        Expr::Nested(e) => int4_literal(e),
        _ => false,
    }
}

/// The name PostgreSQL gives an unnamed output (`FigureColname`), with its strength: 2 for a
/// column or function name, 1 for a keyword-like name (`case`, a cast's type), which a cast
/// replaces with its type's name. `None`: `?column?`.
fn name(expr: &Expr) -> Option<(String, u8)> {
    let strong = |s: &str| Some((s.to_string(), 2));
    match expr {
        Expr::Identifier(id) => Some((ident(id), 2)),
        Expr::CompoundIdentifier(ids) => ids.last().map(|id| (ident(id), 2)),
        Expr::Function(f) => last(&f.name).map(|n| (n, 2)),
        Expr::Nested(e) | Expr::Collate { expr: e, .. } => name(e),
        Expr::Cast { expr, data_type, .. } => match name(expr) {
            Some((n, 2)) => Some((n, 2)),
            _ => Some((type_name(data_type), 1)),
        },
        Expr::TypedString(t) => Some((type_name(&t.data_type), 1)),
        Expr::Interval(_) => Some(("interval".into(), 1)),
        Expr::Case { .. } => Some(("case".into(), 1)),
        Expr::Array(_) => Some(("array".into(), 1)),
        Expr::Exists { .. } => strong("exists"),
        Expr::Subquery(q) => match first_select(&q.body) {
            Some(([SelectItem::UnnamedExpr(e)], _)) => name(e),
            Some(([SelectItem::ExprWithAlias { alias, .. }], _)) => Some((ident(alias), 2)),
            _ => None,
        },
        Expr::Extract { .. } => strong("extract"),
        Expr::Substring { .. } => strong("substring"),
        // `substring(s FROM 'pattern')` as `ast::rewrite::regex_substrings` rewrote it.
        Expr::CompoundFieldAccess { root, access_chain }
            if access_chain.len() == 1
                && matches!(root.as_ref(), Expr::Nested(f) if matches!(f.as_ref(),
                    Expr::Function(f) if last(&f.name).as_deref() == Some("regexp_match"))) =>
        {
            strong("substring")
        }
        // A subscript names nothing: the subscripted expression does.
        Expr::CompoundFieldAccess { root, access_chain }
            if access_chain.iter().all(|a| matches!(a, AccessExpr::Subscript(_))) =>
        {
            name(root)
        }
        Expr::Trim { .. } => strong("btrim"),
        Expr::Position { .. } => strong("position"),
        Expr::Overlay { .. } => strong("overlay"),
        Expr::AtTimeZone { .. } => strong("timezone"),
        Expr::Ceil { field: CeilFloorKind::DateTimeField(_), .. } => strong("ceil"),
        Expr::Floor { field: CeilFloorKind::DateTimeField(_), .. } => strong("floor"),
        _ => None,
    }
}

fn last(name: &ObjectName) -> Option<String> {
    name.0.last().and_then(|p| p.as_ident()).map(ident)
}

/// A type's name in `pg_type`, which PostgreSQL gives a cast of an unnamed value.
fn type_name(ty: &SqlType) -> String {
    match ty {
        SqlType::Int(_) | SqlType::Integer(_) | SqlType::Int4(_) => "int4",
        SqlType::BigInt(_) | SqlType::Int8(_) => "int8",
        SqlType::SmallInt(_) | SqlType::Int2(_) => "int2",
        SqlType::Real | SqlType::Float4 => "float4",
        SqlType::Double(_) | SqlType::DoublePrecision | SqlType::Float8 | SqlType::Float(_) => "float8",
        SqlType::Boolean | SqlType::Bool => "bool",
        SqlType::Varchar(_) | SqlType::CharacterVarying(_) => "varchar",
        SqlType::Char(_) | SqlType::Character(_) => "bpchar",
        SqlType::Numeric(_) | SqlType::Decimal(_) | SqlType::Dec(_) => "numeric",
        SqlType::Timestamp(_, tz) => {
            use datafusion::sql::sqlparser::ast::TimezoneInfo;
            if matches!(tz, TimezoneInfo::Tz | TimezoneInfo::WithTimeZone) {
                "timestamptz"
            } else {
                "timestamp"
            }
        }
        SqlType::Custom(name, _) => return last(name).unwrap_or_else(|| ty.to_string().to_lowercase()),
        other => return other.to_string().to_lowercase(),
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::ast::Statement;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    /// The columns of `sql` given DataFusion's output types, as (name, type) pairs.
    fn columns(sql: &str, planned: &[DataType]) -> Vec<(String, DataType)> {
        let Statement::Query(q) = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap().remove(0) else {
            panic!("not a query")
        };
        let planned = Schema::new(
            planned.iter().enumerate().map(|(i, t)| Field::new(format!("df{i}"), t.clone(), true)).collect::<Vec<_>>(),
        );
        let columns = Columns::of(&q, &planned).expect("renamed");
        columns.schema.fields().iter().map(|f| (f.name().clone(), f.data_type().clone())).collect()
    }

    fn names(sql: &str, n: usize) -> Vec<String> {
        columns(sql, &vec![DataType::Utf8; n]).into_iter().map(|(n, _)| n).collect()
    }

    /// Outputs named alike get names of their own for DataFusion: the later ones, and with a
    /// wildcard every plain column; subqueries are left alone.
    #[test]
    fn outputs_named_alike_are_renamed_for_planning() {
        let distinct = |sql: &str| {
            let Statement::Query(q) = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap().remove(0) else {
                panic!("not a query")
            };
            with_distinct_names(&q, false).map(|q| q.to_string())
        };
        assert_eq!(
            distinct("SELECT k, t.k, 1, 1, v AS k FROM t").as_deref(),
            Some(
                "SELECT k, t.k AS \"__raftable_output_1\", 1, 1 AS \"__raftable_output_3\", \
                 v AS \"__raftable_output_4\" FROM t"
            )
        );
        assert_eq!(
            distinct("SELECT *, k FROM t UNION SELECT a, a FROM (SELECT 1 AS a, 2 AS a) AS s").as_deref(),
            Some(
                "SELECT *, k AS \"__raftable_output_1\" FROM t UNION SELECT a, a AS \"__raftable_output_1\" \
                 FROM (SELECT 1 AS a, 2 AS a) AS s"
            )
        );
        assert_eq!(distinct("SELECT k, v, count(*) FROM t"), None);
        // The original select list names the outputs.
        assert_eq!(names("SELECT k, t.k, count(*), count(*)", 4), ["k", "k", "count", "count"]);
    }

    /// Expected names are PostgreSQL 15's for the same select lists.
    #[test]
    fn outputs_are_named_as_postgres_names_them() {
        assert_eq!(
            names("SELECT 1, 1 AS One, 1 + 1, \"Q\", t.Id, COUNT(*), pg_catalog.version(), 'a'", 8),
            ["?column?", "one", "?column?", "Q", "id", "count", "version", "?column?"]
        );
        assert_eq!(
            names("SELECT 1::int, '1'::bigint, now()::date, count(*)::int, CAST(x AS DOUBLE PRECISION), 'a'::text::varchar", 6),
            ["int4", "int8", "now", "count", "x", "varchar"]
        );
        assert_eq!(
            names("SELECT CASE WHEN true THEN 1 END, (SELECT 1 AS x), EXISTS (SELECT 1), COALESCE(a, 1), ARRAY[1]", 5),
            ["case", "x", "exists", "coalesce", "array"]
        );
        assert_eq!(
            names("SELECT EXTRACT(year FROM d), SUBSTRING(s FROM 1 FOR 1), TRIM(s), DATE '2020-01-01', (x), -1", 6),
            ["extract", "substring", "btrim", "date", "x", "?column?"]
        );
        assert_eq!(names("SELECT (regexp_match(o, 'x'))[1], a[2], (b)[1][2]", 3), ["substring", "a", "b"]);
        assert_eq!(names("SELECT a FROM t UNION SELECT b FROM u", 1), ["a"]);
    }

    #[test]
    fn a_wildcard_keeps_the_names_it_expands_to() {
        assert_eq!(names("SELECT *, 1 FROM t", 3), ["df0", "df1", "?column?"]);
        assert_eq!(names("SELECT 1, t.* FROM t", 3), ["?column?", "df1", "df2"]);
        let Statement::Query(q) = Parser::parse_sql(&PostgreSqlDialect {}, "SELECT *, * FROM t").unwrap().remove(0)
        else {
            unreachable!()
        };
        let planned = Schema::new(vec![Field::new("a", DataType::Utf8, true), Field::new("a", DataType::Utf8, true)]);
        assert!(Columns::of(&q, &planned).is_none());
    }

    #[test]
    fn integer_literals_that_fit_are_int4_in_a_plain_select_only() {
        let types = |sql: &str| -> Vec<DataType> {
            columns(sql, &[DataType::Int64, DataType::Int64, DataType::Int64]).into_iter().map(|(_, t)| t).collect()
        };
        assert_eq!(types("SELECT 1, -2147483648, 2147483648"), [DataType::Int32, DataType::Int32, DataType::Int64]);
        assert_eq!(types("SELECT 1 + 1, (7), k"), [DataType::Int64, DataType::Int32, DataType::Int64]);
        // A UNION's column may hold the other branch's larger values.
        assert_eq!(
            types("SELECT 1, 2, 3 UNION SELECT 3000000000, 2, 3"),
            vec![DataType::Int64, DataType::Int64, DataType::Int64]
        );
    }

    #[tokio::test]
    async fn batches_take_the_new_names_and_types() {
        use datafusion::arrow::array::{Array, Int32Array, Int64Array};
        let Statement::Query(q) = Parser::parse_sql(&PostgreSqlDialect {}, "SELECT 7, 7").unwrap().remove(0) else {
            unreachable!()
        };
        let planned = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Int64, false),
        ]));
        let columns = Arc::new(Columns::of(&q, &planned).unwrap());
        let batch = RecordBatch::try_new(
            planned.clone(),
            vec![Arc::new(Int64Array::from(vec![7])), Arc::new(Int64Array::from(vec![7]))],
        )
        .unwrap();
        let stream = Box::pin(RecordBatchStreamAdapter::new(planned, futures::stream::iter(vec![Ok(batch)])));
        let out: Vec<RecordBatch> = columns.apply(stream).map(|b| b.unwrap()).collect().await;
        assert_eq!(out[0].schema().field(1).name(), "?column?");
        let col = out[0].column(1).as_any().downcast_ref::<Int32Array>().unwrap();
        assert_eq!((col.len(), col.value(0)), (1, 7));
    }

    /// What runs may differ from what was planned at prepare (a NULL in a column planned NOT
    /// NULL, another type): the batch passes renamed, with its own types.
    #[tokio::test]
    async fn batches_keep_the_types_and_nulls_execution_gave() {
        use datafusion::arrow::array::{Float64Array, Int64Array};
        let Statement::Query(q) =
            Parser::parse_sql(&PostgreSqlDialect {}, "SELECT (SELECT k FROM t), x + 1 FROM u").unwrap().remove(0)
        else {
            unreachable!()
        };
        let planned = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Int64, false),
        ]));
        let columns = Arc::new(Columns::of(&q, &planned).unwrap());
        let ran = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Float64, true),
        ]));
        let batch = RecordBatch::try_new(
            ran.clone(),
            vec![Arc::new(Int64Array::from(vec![None::<i64>])), Arc::new(Float64Array::from(vec![2.5]))],
        )
        .unwrap();
        let stream = Box::pin(RecordBatchStreamAdapter::new(ran, futures::stream::iter(vec![Ok(batch)])));
        let out: Vec<RecordBatch> = columns.apply(stream).map(|b| b.unwrap()).collect().await;
        let schema = out[0].schema();
        assert_eq!((schema.field(0).name().as_str(), schema.field(1).data_type()), ("k", &DataType::Float64));
        assert!(out[0].column(0).is_null(0));
    }

    #[test]
    fn a_column_origin_is_its_table_oid_and_visible_column_number() {
        use crate::table::ColumnDef;
        use crate::types::SqlType;
        let column = |name: &str, hidden| ColumnDef { hidden, ..ColumnDef::new(name, SqlType::BigInt, true) };
        let def = TableDef {
            id: 7,
            name: "t".into(),
            columns: vec![column("rowid", true), column("a", false), column("b", false)],
            pk: vec![0],
            buckets: 1,
            shards: vec![1],
            checks: Vec::new(),
            indexes: Vec::new(),
            foreign_keys: Vec::new(),
            referenced_by: Vec::new(),
            version: 0,
            comment: None,
        };
        let field = origin_field(Field::new("b", DataType::Int64, true), &def, 2);
        assert_eq!(origin(&field), Some((0x1000_0007, 2)));
        // The hidden row id has no column number: no origin.
        assert_eq!(origin(&origin_field(Field::new("rowid", DataType::Int64, true), &def, 0)), None);
        assert_eq!(origin(&Field::new("b", DataType::Int64, true)), None);
    }
}
